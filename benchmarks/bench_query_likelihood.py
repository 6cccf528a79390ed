"""The embedded generator as a reranker: does it read a question and a passage together well enough to rank turns?

No cross-encoder ships in a PyPI package, but the generator reads text. Query-likelihood reranking (UPR, Sachan
et al. 2022, "Improving Passage Retrieval with Zero-Shot Question Generation") scores each of the first
CANDIDATES retrieved passages by the mean log-probability the model gives the question after the passage and an
instruction to write a question about it, with no training. Each question is asked of its own document and
scored as `longdoc eval recall` scores it (`app.evals.recall`); rows: the engine's ranking, the first CANDIDATES
reordered by the likelihood alone, and the likelihood's order fused with the engine's (reciprocal rank fusion,
equal weights, k=60), with precision@1 beside them.

    python benchmarks/bench_query_likelihood.py [--data qmsum|ectsum|cuad] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app import LongDocQA  # noqa: E402
from app.api import load_generator  # noqa: E402
from app.evals.datasets import load_eval_set  # noqa: E402
from app.evals.recall import BUDGET_TOKENS, DEPTH, budget_for, overlaps, score_question, summarise, write_documents  # noqa: E402
from app.llm.perplexity import model_nll  # noqa: E402
from benchmarks.run_header import command, run_header  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / "out" / "query_likelihood"
K = 5
CANDIDATES = 10  # passages the generator re-scores: about 4 s a question on 2 cores
RRF_K = 60
INSTRUCTION = "\nPlease write a question based on this passage.\n"

parser = argparse.ArgumentParser()
parser.add_argument("--data", default="qmsum", help="qmsum, ectsum or cuad")
parser.add_argument("--quick", action="store_true", help="two documents")
args = parser.parse_args()
logging.basicConfig(level=logging.WARNING)
console = Console(width=150)
header = run_header(command(), f"{CANDIDATES} candidates, torch {torch.__version__}")

data = load_eval_set(args.data, quick=args.quick)
folder = WORK / data.name / ("quick" if args.quick else "all")
qa = LongDocQA(index_dir=folder / "index")
qa.ingest(write_documents(data.documents, folder / "docs"), show_progress=True)
budget = budget_for(qa.settings, qa.embedder, "generator", BUDGET_TOKENS)
generator = load_generator(qa.settings)


def question_likelihood(question: str, passage: str) -> float:
    """Mean log-probability per token of `question` written after `passage` and the instruction."""
    tokenizer = generator.tokenizer
    prompt = tokenizer("Passage: " + passage + INSTRUCTION, add_special_tokens=False).input_ids
    target = tokenizer("Question: " + question, add_special_tokens=False).input_ids
    return -float(model_nll(generator.model, prompt + target)[len(prompt) - 1:].mean())


rows: dict[str, list] = {"the engine": [], "likelihood alone": [], "likelihood fused with the engine": []}
first_hit = {name: 0 for name in rows}
started = time.perf_counter()
for q in tqdm(data.questions, desc="questions"):
    passages = qa.retrieve(q.question, doc=q.doc, top_k=DEPTH)
    ranking = [(p.char_start, p.char_end, p.text) for p in passages]
    n = min(CANDIDATES, len(ranking))
    scores = [question_likelihood(q.question, text) for _, _, text in ranking[:n]]
    alone = sorted(range(n), key=lambda i: -scores[i])
    fused = sorted(range(n), key=lambda i: -(1 / (RRF_K + i) + 1 / (RRF_K + alone.index(i))))
    for name, order in (("the engine", list(range(n))), ("likelihood alone", alone),
                        ("likelihood fused with the engine", fused)):
        reranked = [ranking[i] for i in order] + ranking[n:]
        rows[name].append(score_question(q, reranked, K, budget))
        first_hit[name] += bool(reranked) and overlaps(reranked[0][:2], q.gold)
seconds = time.perf_counter() - started

table = Table("ranking", f"R@{K}", "MRR", f"R@{BUDGET_TOKENS} tok", "precision@1",
              title=f"{data.name}: {len(data.questions)} questions, the first {CANDIDATES} passages re-scored")
results = {}
for name, scored in rows.items():
    results[name] = summarise(scored) | {"precision_at_1": first_hit[name] / max(len(scored), 1)}
    r = results[name]
    table.add_row(name, f"{r['recall_at_k']:.3f}", f"{r['mrr']:.3f}", f"{r['recall_at_budget']:.3f}",
                  f"{r['precision_at_1']:.3f}")
console.print(header, highlight=False, soft_wrap=True)
console.print(table)
console.print(f"{seconds:.0f} s ({seconds / max(len(data.questions), 1):.1f} s a question)")
OUT.mkdir(parents=True, exist_ok=True)
stem = f"bench_query_likelihood_{data.name}{'_quick' if args.quick else ''}"
(OUT / f"{stem}.json").write_text(json.dumps({"header": header, "candidates": CANDIDATES, "rows": results,
                                              "seconds": round(seconds, 1)}, indent=2), encoding="utf-8")
with (OUT / f"{stem}.txt").open("w", encoding="utf-8") as f:
    Console(file=f, width=150).print(header, table, highlight=False, soft_wrap=True)
console.print(f"wrote {OUT / stem}.json and .txt")
