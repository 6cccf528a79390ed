"""One answer over sample_docs/ at about a 2K-token prompt, timed step by step (target: under 10 s on 2 cores).

The documents are ingested into a temporary index, the models are loaded and one warm-up question is asked (the
first forward pays for lazy initialisation); then the same question is asked REPEATS times through `LongDocQA`,
exactly as `longdoc ask` does, and each answer's own timings (retrieve, prefill, generate, evidence, total) are
tabled; `evidence` is the step that embeds the passages' sentences to find the supporting ones. Settings are the
product defaults except `top_k`: the most passages whose prompt stays within TARGET_PROMPT_TOKENS, found with the
product's own PromptBuilder.

    python benchmarks/bench_answer.py
"""

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from app import LongDocQA  # noqa: E402
from app.evals.datasets import DEV_CONTRACTS  # noqa: E402
from app.prompt import PromptBuilder  # noqa: E402
from app.reorder import no_reorder  # noqa: E402
from app.settings import Settings  # noqa: E402

SAMPLE_DOCS = ROOT / "sample_docs"
QUESTION = "Which state's law governs the agreement, and where must disputes be resolved?"
TARGET_PROMPT_TOKENS = 2048
REPEATS = 3
TARGET_S = 10.0
OUT = ROOT / "benchmarks" / "results" / "bench_answer.json"

console = Console()
# the dev contracts only when sample_docs/ is not there yet
docs = [SAMPLE_DOCS] if any(SAMPLE_DOCS.glob("*.*")) else sorted(DEV_CONTRACTS.glob("*.txt"))[:3]
with tempfile.TemporaryDirectory(prefix="bench-answer-") as tmp:
    started = time.perf_counter()
    qa = LongDocQA(settings=Settings.load(index_dir=Path(tmp)))
    embedder_s = time.perf_counter() - started
    started = time.perf_counter()
    report = qa.ingest(docs)
    ingest_s = time.perf_counter() - started
    started = time.perf_counter()
    model = qa.model_info()  # loads the generator
    load_s = time.perf_counter() - started

    gen = qa.engine.generator
    builder = PromptBuilder(gen.tokenizer, gen.context_window, qa.settings.max_new_tokens)
    ranked = qa.retrieve(QUESTION, top_k=40)
    top_k = max(k for k in range(1, len(ranked) + 1)
                if len(builder.build(QUESTION, ranked[:k], no_reorder).input_ids) <= TARGET_PROMPT_TOKENS)

    qa.ask(QUESTION, top_k=top_k, mode="rag")  # warm-up
    answers = []
    for _ in range(REPEATS):
        qa.engine.embedder.forget_queries()  # each run embeds the question, as a new question would
        started = time.perf_counter()
        answer = qa.ask(QUESTION, top_k=top_k, mode="rag")
        answers.append((answer, time.perf_counter() - started))

steps = ("retrieve_s", "prefill_s", "generate_s", "evidence_s", "total_s")
table = Table(title=f"One answer over {', '.join(d.name for d in docs)} ({model.name}, {model.rope_scaling['rope_type'] if model.rope_scaling else 'no'} RoPE scaling)")
for column in ("run", "prompt tokens", "answer tokens", *(s.removesuffix("_s") + " s" for s in steps), "wall s"):
    table.add_column(column, justify="right")
for i, (a, wall) in enumerate(answers, 1):
    table.add_row(str(i), str(a.prompt_tokens), str(a.completion_tokens),
                  *(f"{a.timings[s]:.2f}" for s in steps), f"{wall:.2f}")
mean = {s: statistics.mean(a.timings[s] for a, _ in answers) for s in steps}
table.add_row("mean", "", "", *(f"{mean[s]:.2f}" for s in steps),
              f"{statistics.mean(w for _, w in answers):.2f}", style="bold")
console.print(table)
console.print(f"embedder load {embedder_s:.1f} s, ingest {ingest_s:.1f} s ({len(report.ingested)} documents), "
              f"generator load {load_s:.1f} s; top_k {top_k}; answer: {answers[-1][0].answer[:120]!r}")
verdict = "meets" if mean["total_s"] < TARGET_S else "misses"
console.print(f"mean total {mean['total_s']:.2f} s: {verdict} the {TARGET_S:.0f} s target")

OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text(json.dumps({
    "bench": "answer",
    "question": QUESTION,
    "documents": [os.path.relpath(d, ROOT) for d in docs],
    "top_k": top_k,
    "model": {"name": model.name, "rope_scaling": model.rope_scaling, "context_window": model.context_window},
    # The load average says whether the machine was shared while this ran (then the seconds are not the tool's).
    "machine": {"cpu_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "platform": platform.platform(),
                "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()]},
    "load_s": {"embedder": round(embedder_s, 2), "ingest": round(ingest_s, 2), "generator": round(load_s, 2)},
    "runs": [{"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens,
              **{s: a.timings[s] for s in steps}, "wall_s": round(w, 3)} for a, w in answers],
    "mean": {s: round(v, 3) for s, v in mean.items()},
    "target_s": TARGET_S,
    "answer": answers[-1][0].answer,
}, indent=2), encoding="utf-8")
console.print(f"wrote {OUT.relative_to(ROOT)}")
