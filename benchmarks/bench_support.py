"""The support check against labels: precision and recall of "unsupported" on answer sentences of dev contracts.

`benchmarks/data/support_labels.jsonl` holds 127 sentences of 88 answers the embedded model gave to short-answer
questions on the dev CUAD contracts (`bench_quote.py`'s answers, a seeded shuffle), each labelled by reading it
against the passages its prompt held: `supported` when everything it asserts (names, dates, numbers, what they
are said to be) is stated there; a sentence that asserts nothing checkable ("What was asked.") or mixes a right
value with a made-up one is unsupported; `note` says why where it is close. The passages are stored as offsets
into the dev contracts and read back from them, so the check runs on exactly what the model was shown.

A checker that calls every sentence unsupported is printed beside it: the embedded model is wrong often enough
that its precision is high, so read recall and the supported sentences kept.

    python benchmarks/bench_support.py
"""

import json
import logging
from pathlib import Path

from rich.console import Console
from rich.table import Table

from app.answer import Passage
from app.evals.datasets import DEV_CONTRACTS, require_dev_data
from app.evidence import score_sentences
from app.settings import EMBEDDED_EMBEDDER
from app.support import answer_sentences, check_support
from index.embedder import Embedder

LABELS = Path(__file__).resolve().parent / "data" / "support_labels.jsonl"
OUT = Path(__file__).resolve().parent / "results"

require_dev_data(DEV_CONTRACTS)
logging.basicConfig(level=logging.WARNING)
console = Console(width=140)
embedder = Embedder.load(EMBEDDED_EMBEDDER)
texts: dict[str, str] = {}


def passage(rank: int, stored: dict) -> Passage:
    if stored["doc"] not in texts:
        texts[stored["doc"]] = (DEV_CONTRACTS / stored["doc"]).read_bytes().decode("utf-8-sig")
    text = texts[stored["doc"]][stored["char_start"]:stored["char_end"]]
    return Passage(rank=rank, score=0.0, doc=stored["doc"], doc_id=stored["doc"], char_start=stored["char_start"],
                   char_end=stored["char_end"], text=text)


rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()]
answers = {r["id"]: r for r in rows if "answer" in r}
checked = {}
for key, a in answers.items():
    passages = [passage(i + 1, p) for i, p in enumerate(a["passages"])]
    checked[key] = check_support(embedder, a["question"], a["answer"], passages,
                                 score_sentences(embedder, a["question"], a["answer"], passages))
tp = fp = fn = tn = 0
misses = []
for r in rows:
    sentences = answer_sentences(answers[r["id"]]["answer"])
    if sentences[r["sentence_index"]] != r["sentence"]:
        raise SystemExit(f"{LABELS}: {r['id']} sentence {r['sentence_index']} no longer splits as labelled")
    flagged = not checked[r["id"]].sentences[r["sentence_index"]].supported
    actual = not r["supported"]
    tp += flagged and actual
    fp += flagged and not actual
    fn += not flagged and actual
    tn += not flagged and not actual
    if flagged != actual:
        misses.append({"id": r["id"], "sentence": r["sentence"], "labelled_supported": r["supported"],
                       "reason": checked[r["id"]].sentences[r["sentence_index"]].reason})

n, unsupported = len(rows), tp + fn
summary = {"sentences": n, "answers": len(answers), "labelled_unsupported": unsupported,
           "precision": tp / max(1, tp + fp), "recall": tp / max(1, unsupported),
           "supported_kept": tn / max(1, tn + fp), "flag_everything_precision": unsupported / n}
table = Table("checker", "precision (unsupported)", "recall (unsupported)", "supported sentences passed",
              title=f"support check: {n} labelled sentences of {len(answers)} answers, {unsupported} unsupported")
table.add_row("app.support", f"{summary['precision']:.3f}", f"{summary['recall']:.3f}", f"{summary['supported_kept']:.3f}")
table.add_row("every sentence unsupported", f"{summary['flag_everything_precision']:.3f}", "1.000", "0.000")
console.print(table)
OUT.mkdir(parents=True, exist_ok=True)
path = OUT / "bench_support.json"
path.write_text(json.dumps({"bench": "support", "summary": summary, "misses": misses}, indent=2, ensure_ascii=False))
console.print(f"wrote {path}")
