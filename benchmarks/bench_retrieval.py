"""Retrieval on the dev CUAD contracts (or meetings): dense against hybrid, and the opening pin with its threshold.

Every (contract, category) question whose clause the contract has is retrieved within its contract, as
`longdoc ask --doc` does, and scored by recall@5: a passage overlaps a gold span.

- dense vs hybrid (dense + BM25, reciprocal rank fusion), without the pin;
- the pin (`QueryEngine._pin_opening`: the contract's opening chunk kept at rank 2) always, and only when its
  cosine to the question is at least each threshold (`pin_min_similarity`): how many places the threshold
  frees, how many answers only the opening held are lost, and how many answers the pin had pushed out of the
  five come back;
- with `--reranker PATH`, hybrid retrieval re-scored by that cross-encoder (`reranker`, 20 candidates), no pin.
  No cross-encoder ships in a PyPI package, so the default run has no such row.

`--data qmsum` asks the dev QMSum meeting queries of their meetings instead (no short-answer column), to
check the pin where a document's opening is rarely the answer.

    python benchmarks/bench_retrieval.py [--quick] [--data qmsum] [--reranker PATH]
"""

import argparse
import json
import logging
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from app import LongDocQA
from app.evals.datasets import CUAD_DIR, QMSUM_FILE, load_cuad, load_qmsum, require_dev_data
from app.evals.recall import overlaps, write_documents

OUT = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / "out" / "retrieval"
PIN_THRESHOLDS = [-1.0, 0.05, 0.1, 0.15, 0.2, 0.25]
K = 5

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="two documents")
parser.add_argument("--data", choices=("cuad", "qmsum"), default="cuad")
parser.add_argument("--reranker", default="", help="a cross-encoder directory or cached hub id to measure")
args = parser.parse_args()
require_dev_data(CUAD_DIR if args.data == "cuad" else QMSUM_FILE)
logging.basicConfig(level=logging.WARNING)
console = Console(width=140)

data = load_cuad(quick=args.quick) if args.data == "cuad" else load_qmsum(quick=args.quick)
WORK = WORK if args.data == "cuad" else WORK / args.data
WORK.mkdir(parents=True, exist_ok=True)
qa = LongDocQA(index_dir=WORK / ("index-quick" if args.quick else "index"))
qa.ingest(write_documents(data.documents, WORK / "docs"), show_progress=True)
short = {q.id for q in data.questions if q.short_answer}


def recall(hits: dict[str, bool]) -> tuple[float, float]:
    return (sum(hits.values()) / len(hits), sum(hits[i] for i in short) / max(1, len(short)))


def found(passages, q) -> bool:
    return any(overlaps((p.char_start, p.char_end), q.gold) for p in passages)


rows = {}
variants = {"dense, no pin": {"retriever": "dense"}, "hybrid, no pin": {}}
if args.reranker:
    variants[f"hybrid + reranker {Path(args.reranker).name}, no pin"] = {"reranker": args.reranker}
for name, overrides in variants.items():
    started = time.perf_counter()
    hits = {q.id: found(qa.retrieve(q.question, doc=q.doc, top_k=K, pin_opening="never", **overrides), q)
            for q in tqdm(data.questions, desc=name)}
    rows[name] = (*recall(hits), time.perf_counter() - started)

# the pin at each threshold: one retrieval without it (six deep) and the opening's cosine decide every case
cases = []
for q in tqdm(data.questions, desc="pin"):
    plain = qa.retrieve(q.question, doc=q.doc, top_k=K, pin_opening="never")
    opening = qa.store.chunks(qa.store.get(q.doc).doc_id)[0]
    retrieved = any(p.char_start == opening.char_start for p in plain)
    cosine = float(qa.store.similarities(qa.embedder.embed_queries([q.question])[0], [opening])[0])
    pinned = plain if retrieved else [*plain[:K - 1], opening]  # the pin takes the fifth place
    cases.append({"id": q.id, "retrieved": retrieved, "cosine": cosine,
                  "without": found(plain, q), "with": found(pinned, q)})
pin = []
for t in PIN_THRESHOLDS:
    hits = {c["id"]: c["with"] if c["retrieved"] or c["cosine"] >= t else c["without"] for c in cases}
    dropped = [c for c in cases if not c["retrieved"] and c["cosine"] < t]
    pin.append({"threshold": t, "recall@5": recall(hits)[0], "recall@5_short": recall(hits)[1],
                "places_freed": len(dropped), "lost": sum(c["with"] and not c["without"] for c in dropped),
                "won_back": sum(c["without"] and not c["with"] for c in dropped)})
table = Table("retrieval", "recall@5 (all)", "recall@5 (short-answer)", "pin places freed", "lost", "won back",
              title=f"{args.data} dev, {len(data.questions)} questions ({len(short)} short-answer), k={K}")
for name, (all_, short_, _) in rows.items():
    table.add_row(name, f"{all_:.3f}", f"{short_:.3f}" if short else "", "", "", "")
for p in pin:
    label = "hybrid, pin always" if p["threshold"] < 0 else f"hybrid, pin when cosine >= {p['threshold']:.2f}"
    if p["threshold"] == qa.settings.pin_min_similarity:
        label += " (default)"
    table.add_row(label, f"{p['recall@5']:.3f}", f"{p['recall@5_short']:.3f}" if short else "", str(p["places_freed"]),
                  str(p["lost"]), str(p["won_back"]))
console.print(table)

OUT.mkdir(parents=True, exist_ok=True)
path = OUT / f"bench_retrieval{'' if args.data == 'cuad' else '_' + args.data}{'_quick' if args.quick else ''}.json"
path.write_text(json.dumps({"bench": "retrieval", "k": K, "questions": len(data.questions), "short": len(short),
                            "rows": {n: {"recall@5": r[0], "recall@5_short": r[1], "seconds": r[2]}
                                     for n, r in rows.items()}, "pin": pin}, indent=2))
console.print(f"wrote {path}")
