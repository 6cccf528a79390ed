"""Answer quality on the dev CUAD contracts: abstention, evidence overlap, dense vs hybrid retrieval.

- Abstention: for questions about clauses a contract does NOT have, how often the tool says the documents do
  not answer (top passage's cosine below `min_relevance`), beside how often it wrongly abstains on questions
  whose clause IS there; swept over thresholds so the default can be read off the table.
- Evidence: the share of answers whose `evidence` sentences overlap the gold span (real generation, rag mode).
- Retrieval: evidence recall@5 of dense vs hybrid, same chunks.

Run: .venv/bin/python benchmarks/bench_answers.py [--quick]
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
from app.evals.datasets import load_cuad
from app.evals.recall import overlaps, write_documents

OUT = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / "out" / "answers"
THRESHOLDS = [0.15, 0.2, 0.25, 0.3, 0.35, 0.4]
EVIDENCE_QUESTIONS = 40  # with generation; short-answer CUAD categories, spread over contracts
K = 5

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="two contracts, 6 generated answers")
args = parser.parse_args()
logging.basicConfig(level=logging.WARNING)
console = Console()

data = load_cuad(quick=args.quick)
WORK.mkdir(parents=True, exist_ok=True)
files = write_documents(data.documents, WORK / "docs")
qa = LongDocQA(index_dir=WORK / ("index-quick" if args.quick else "index"), max_new_tokens=64)
report = qa.ingest(files, show_progress=True)
console.print(f"index: {len(qa.documents())} contracts ({len(report.ingested)} new)")

# ---- retrieval: dense vs hybrid, and the top similarity of every question ------------------------------------
results = {}
top_sim = {"present": [], "absent": []}
for method in ("dense", "hybrid"):
    qa.engine.settings = qa.settings.replace(retriever=method)
    hit, started = {}, time.perf_counter()
    for q in tqdm(data.questions, desc=f"retrieve ({method})"):
        passages = qa.engine.retrieve(q.question, doc=q.doc, top_k=K)
        hit[q.id] = any(overlaps((p.char_start, p.char_end), q.gold) for p in passages)
        if method == "dense":
            top_sim["present"].append(max((p.score for p in passages), default=0.0))
    short = [q.id for q in data.questions if q.short_answer]
    results[method] = {"recall@5": sum(hit.values()) / len(hit),
                       "recall@5_short": sum(hit[i] for i in short) / max(1, len(short)),
                       "seconds": time.perf_counter() - started}
qa.engine.settings = qa.settings
for q in tqdm(data.absent, desc="absent clauses"):
    passages = qa.engine.retrieve(q.question, doc=q.doc, top_k=K)
    top_sim["absent"].append(max((p.score for p in passages), default=0.0))

table = Table("retriever", "recall@5 (all)", "recall@5 (short-answer)", title=f"CUAD dev, {len(data.questions)} questions")
for method, r in results.items():
    table.add_row(method, f"{r['recall@5']:.3f}", f"{r['recall@5_short']:.3f}")
console.print(table)

abstention = []
table = Table("min_relevance", "abstains on absent clauses", "wrongly abstains on present",
              title=f"abstention: {len(top_sim['absent'])} absent, {len(top_sim['present'])} present")
for t in THRESHOLDS:
    right = sum(s < t for s in top_sim["absent"]) / max(1, len(top_sim["absent"]))
    wrong = sum(s < t for s in top_sim["present"]) / max(1, len(top_sim["present"]))
    abstention.append({"threshold": t, "abstain_absent": right, "abstain_present": wrong})
    table.add_row(f"{t:.2f}", f"{right:.1%}", f"{wrong:.1%}")
console.print(table)

# ---- evidence overlap, with real generation ------------------------------------------------------------------
pool = [q for q in data.questions if q.short_answer]
n = 6 if args.quick else EVIDENCE_QUESTIONS
step = max(1, len(pool) // n)
sample = pool[::step][:n]
overlap, abstained, seconds = 0, 0, []
for q in tqdm(sample, desc="answers"):
    a = qa.ask(q.question, doc=q.doc, mode="rag")
    abstained += a.abstained
    overlap += any(overlaps((e.char_start, e.char_end), q.gold) for e in a.evidence)
    seconds.append(a.timings["total_s"])
evidence = {"questions": len(sample), "evidence_overlaps_gold": overlap / max(1, len(sample)),
            "abstained": abstained, "mean_total_s": sum(seconds) / max(1, len(seconds))}
console.print(f"evidence overlaps the gold span in {evidence['evidence_overlaps_gold']:.1%} of {len(sample)} "
              f"answers ({abstained} abstained); mean {evidence['mean_total_s']:.1f} s per answer")

OUT.mkdir(parents=True, exist_ok=True)
name = "answers_quick.json" if args.quick else "answers.json"
(OUT / name).write_text(json.dumps({"retrieval": results, "abstention": abstention, "evidence": evidence,
                                    "settings": {"k": K, "retriever_default": qa.settings.retriever}}, indent=2))
console.print(f"wrote {OUT / name}")
