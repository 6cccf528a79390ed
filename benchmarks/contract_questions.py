"""The 20 questions an analyst asks of a contract, and the dev contract of a given length, for the benchmarks
that ask them one by one and as a batch (bench_batch.py, bench_server.py)."""

from pathlib import Path

from app.evals.datasets import DEV_CONTRACTS, require_dev_data

QUESTIONS = [
    "Who are the parties to this agreement?",
    "What is the date of the agreement?",
    "When does the agreement become effective?",
    "When does the initial term expire?",
    "What is the renewal term?",
    "How much notice is needed to terminate a renewal?",
    "Which state's law governs the agreement?",
    "Can a party terminate the agreement for convenience?",
    "Is consent required to assign the agreement?",
    "Is there a non-compete clause?",
    "Is there an exclusivity commitment?",
    "Is there a cap on liability?",
    "Are there liquidated damages or a termination fee?",
    "Does either party have audit rights?",
    "What insurance must a party maintain?",
    "Is there a minimum purchase commitment?",
    "Who owns the intellectual property created under the agreement?",
    "Does the agreement grant a license?",
    "What happens on a change of control?",
    "What warranties does the agreement give and for how long?",
]


def pick_contract(tokens: int) -> tuple[Path, int]:
    """The dev contract whose length in generator tokens is closest to `tokens` (the product's own tokenizer)."""
    from app.llm.generator import Generator
    from app.settings import Settings

    require_dev_data(DEV_CONTRACTS)
    tokenizer = Generator.load(Settings.load().generator_config()).tokenizer
    sizes = [(len(tokenizer(p.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]), p)
             for p in sorted(DEV_CONTRACTS.glob("*.txt"))]
    n, path = min(sizes, key=lambda s: abs(s[0] - tokens))
    return path, n
