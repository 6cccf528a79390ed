"""Ranking for meetings and calls as well as contracts: what each change moves, on all three kinds, in one run.

The dev contracts (CUAD, 476 questions), meetings (QMSum, 237 queries) and earnings calls (ECTSum, the cloze
questions `longdoc eval recall --data ectsum` builds) are ingested once each with the default settings; every
question is asked of its own document and scored as `longdoc eval recall` scores it (`app.evals.recall`):
recall@5, MRR, and recall within the first 2,000 generator tokens of the ranked passages. Rows:

- the engine as shipped (`pin_opening = "auto"`), and with the opening pinned `always` and `never`;
- the rest are measured without the pin, against "hybrid, no pin":
  - the keyword list weighted 0.7 in the reciprocal rank fusion (a tuned-looking weight: does it hold on
    every kind?);
  - the question's key terms (its frame words, "summarize", "discussion", "what did ... think", dropped) as
    the keyword query;
  - a third ranked list for a question naming a speaker of the document: the fused ranking cut to the
    chunks where that speaker talks;
  - maximal marginal relevance: the first ten reordered so that a turn much like one already placed gives way
    to another (cosine to the question weighted 0.7, closeness to the placed ones 0.3);
  - a chunk scored by its best sentence: the first 20 ordered by their best sentence's cosine to the question,
    fused as a third list, or in place of the dense list (a fact said in one turn among others);
  - a chunk scored with its neighbours: the dense list ordered by each chunk's cosine plus 0.3 times the mean of
    its neighbours' cosines (a decision's turn said among turns on the same topic);
  - small to big: the next chunk handed with each of the first three passages, and both neighbours with
    every passage, as one passage each (what the budget then holds is fewer, longer passages; the latter is
    the engine's `context_chunks = 1`).

    python benchmarks/bench_transcripts.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path
from typing import Callable

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from app import LongDocQA
from app.evals.datasets import (
    CUAD_DIR,
    ECTSUM_DIR,
    QMSUM_FILE,
    EvalQuestion,
    EvalSet,
    load_cuad,
    load_ectsum,
    load_qmsum,
    require_dev_data,
)
from app.evals.recall import BUDGET_TOKENS, DEPTH, Ranking, budget_for, score_question, summarise, write_documents
from app.evidence import split_sentences
from index.retrieval import reciprocal_rank_fusion

OUT = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / "out" / "transcripts"
K = 5
CANDIDATES = 50  # each list is cut here before fusion, as index/retrieval.py does
# The frame of a question about talk or a document, not its subject.
FRAME_WORDS = frozenset("""
summarize summarise summary discuss discussed discussing discussion discussions talk talked talking think thought
opinion opinions say said mention mentioned propose proposed agree agreed disagree disagreed decide decided
decision decisions conclusion concluded conclude describe description explain elaborate elaborated contribute
contributed recommend recommended group team meeting members member general please what why how who which when
where did does do was were is are the a an about of on in to for with their his her they he she it its this that
there any
""".split())

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="two documents of each kind")
args = parser.parse_args()
require_dev_data(CUAD_DIR, QMSUM_FILE, ECTSUM_DIR)
logging.basicConfig(level=logging.WARNING)
console = Console(width=150)


def key_terms(question: str) -> str:
    kept = [w for w in re.findall(r"[A-Za-z0-9][\w'-]*", question) if w.lower() not in FRAME_WORDS]
    return " ".join(kept) or question


class Corpus:
    """One kind of document, ingested once (kept under WORK), with each question's dense and keyword lists."""

    def __init__(self, data: EvalSet) -> None:
        self.data = data
        folder = WORK / data.name / ("quick" if args.quick else "all")
        self.qa = LongDocQA(index_dir=folder / "index")
        self.qa.ingest(write_documents(data.documents, folder / "docs"), show_progress=True)
        store, embedder = self.qa.store, self.qa.embedder
        self.doc_ids = {d.name: store.get(d.name).doc_id for d in data.documents}
        self.chunks = {name: store.chunks(doc_id) for name, doc_id in self.doc_ids.items()}
        self.texts = {d.name: d.text for d in data.documents}
        vectors = embedder.embed_queries([q.question for q in data.questions])
        self.query_vectors = {q.id: v for q, v in zip(data.questions, vectors)}
        self.chunk_vectors = {name: store.vectors(doc_id) for name, doc_id in self.doc_ids.items()}
        self.dense, self.keyword, self.keyword_key = {}, {}, {}
        self.sentence_vectors: dict[tuple[str, int], np.ndarray] = {}
        for q, vector in zip(tqdm(data.questions, desc=f"{data.name} lists"), vectors):
            doc_id = self.doc_ids[q.doc]
            self.dense[q.id] = [c.index for c, _ in store.search(vector, CANDIDATES, doc_id)]
            self.keyword[q.id] = [c.index for c, _ in store.keyword_search(q.question, CANDIDATES, doc_id)]
            self.keyword_key[q.id] = [c.index for c, _ in store.keyword_search(key_terms(q.question), CANDIDATES,
                                                                                doc_id)]

    def ranking(self, q: EvalQuestion, order: list[int]) -> Ranking:
        chunks = self.chunks[q.doc]
        return [(chunks[i].char_start, chunks[i].char_end, chunks[i].text) for i in order[:DEPTH]]

    def fuse(self, q: EvalQuestion, lists: list[list[int]], weights: list[float] | None = None) -> list[int]:
        """The chunk indexes of `lists` (each cut at CANDIDATES) fused as the engine fuses them."""
        chunks = self.chunks[q.doc]
        fused = reciprocal_rank_fusion([[(chunks[i], 0.0) for i in ranked[:CANDIDATES]] for ranked in lists],
                                       k=CANDIDATES * len(lists), weights=weights)
        return [chunk.index for chunk, _ in fused]

    def plain(self, q: EvalQuestion) -> list[int]:
        return self.fuse(q, [self.dense[q.id], self.keyword[q.id]])

    def engine(self, pin: str, context_chunks: int = 0) -> Callable[[EvalQuestion], Ranking]:
        def rank(q: EvalQuestion) -> Ranking:
            return [(p.char_start, p.char_end, p.text) for p in self.qa.retrieve(
                q.question, q.doc, DEPTH, pin_opening=pin, context_chunks=context_chunks)]
        return rank

    def diverse(self, q: EvalQuestion, weight: float, first: int) -> list[int]:
        """Maximal marginal relevance over the fused ranking's first `first` chunks: after the best one, each next
        place goes to the chunk whose cosine to the question, less its closest cosine to a chunk already placed,
        is highest (weighted `weight` to `1 - weight`), so near-copies of a turn give way to other turns."""
        ranked, vectors, query = self.plain(q), self.chunk_vectors[q.doc], self.query_vectors[q.id]
        head, chosen = ranked[:first], ranked[:1]
        left = head[1:]
        while left:
            best = max(left, key=lambda i: weight * float(vectors[i] @ query)
                       - (1 - weight) * max(float(vectors[i] @ vectors[j]) for j in chosen))
            chosen.append(best)
            left.remove(best)
        return chosen + ranked[first:]

    def speaker_list(self, q: EvalQuestion) -> list[int]:
        chunks = self.chunks[q.doc]
        words = " " + re.sub(r"[^a-z0-9 ]", " ", q.question.lower()) + " "
        named = {s for c in chunks for s in c.speakers if f" {s.lower()} " in words}
        base = self.plain(q)
        if not named:
            return base
        return self.fuse(q, [base, [i for i in base if named & set(chunks[i].speakers)]])

    def sentence_list(self, q: EvalQuestion, first: int) -> list[int]:
        """The fused ranking's first `first` chunks ordered by their best sentence's cosine to the question (each
        chunk's sentences as the evidence step splits them, embedded once and kept)."""
        chunks, query = self.chunks[q.doc], self.query_vectors[q.id]
        head = self.plain(q)[:first]
        missing = [i for i in head if (q.doc, i) not in self.sentence_vectors]
        texts = [[t for _, _, t in split_sentences(chunks[i].text)] or [chunks[i].text] for i in missing]
        flat = self.qa.embedder.embed_documents([t for ts in texts for t in ts]) if missing else []
        at = 0
        for i, ts in zip(missing, texts):
            self.sentence_vectors[(q.doc, i)] = flat[at:at + len(ts)]
            at += len(ts)
        return sorted(head, key=lambda i: -float((self.sentence_vectors[(q.doc, i)] @ query).max()))

    def smoothed(self, q: EvalQuestion, weight: float) -> list[int]:
        """The document's chunks ordered by their cosine to the question plus `weight` times the mean of their
        neighbours' cosines (the first and last chunk stand in for the neighbour they lack)."""
        cosines = self.chunk_vectors[q.doc] @ self.query_vectors[q.id]
        padded = np.concatenate([cosines[:1], cosines, cosines[-1:]])
        scores = cosines + weight * (padded[:-2] + padded[2:]) / 2
        return [int(i) for i in np.argsort(-scores, kind="stable")[:CANDIDATES]]

    def with_neighbours(self, q: EvalQuestion, before: int, after: int, first: int) -> Ranking:
        """The fused ranking with each of its first `first` passages widened by neighbouring chunks (a chunk
        already handed out is not handed out again)."""
        chunks, text, used, out = self.chunks[q.doc], self.texts[q.doc], set(), []
        for n, i in enumerate(self.plain(q)):
            if i in used:
                continue
            lo, hi = i, i
            if n < first:
                while lo > max(0, i - before) and lo - 1 not in used:
                    lo -= 1
                while hi < min(len(chunks) - 1, i + after) and hi + 1 not in used:
                    hi += 1
            used.update(range(lo, hi + 1))
            out.append((chunks[lo].char_start, chunks[hi].char_end, text[chunks[lo].char_start:chunks[hi].char_end]))
        return out[:DEPTH]


sets = [load_cuad(quick=args.quick), load_qmsum(quick=args.quick), load_ectsum(quick=args.quick)]
corpora = [Corpus(data) for data in sets]
budget = budget_for(corpora[0].qa.settings, corpora[0].qa.embedder, "generator", BUDGET_TOKENS)

rows: dict[str, Callable[[Corpus], Callable[[EvalQuestion], Ranking]]] = {
    "the engine (pin_opening auto)": lambda c: c.engine("auto"),
    "pin_opening always": lambda c: c.engine("always"),
    "hybrid, no pin (pin_opening never)": lambda c: c.engine("never"),
    "no pin, keyword list weighted 0.7": lambda c: lambda q: c.ranking(
        q, c.fuse(q, [c.dense[q.id], c.keyword[q.id]], [1.0, 0.7])),
    "no pin, keyword query = the question's key terms": lambda c: lambda q: c.ranking(
        q, c.fuse(q, [c.dense[q.id], c.keyword_key[q.id]])),
    "no pin, + the named speaker's chunks as a third list": lambda c: lambda q: c.ranking(q, c.speaker_list(q)),
    "no pin, the first 10 reordered for diversity (MMR, 0.7)": lambda c: lambda q: c.ranking(q, c.diverse(q, 0.7, 10)),
    "no pin, + the first 20 by their best sentence as a third list": lambda c: lambda q: c.ranking(
        q, c.fuse(q, [c.dense[q.id], c.keyword[q.id], c.sentence_list(q, 20)])),
    "no pin, the first 20 by their best sentence in place of dense": lambda c: lambda q: c.ranking(
        q, c.fuse(q, [c.sentence_list(q, 20), c.keyword[q.id]])),
    "no pin, dense cosine + 0.3 x its neighbours' mean": lambda c: lambda q: c.ranking(
        q, c.fuse(q, [c.smoothed(q, 0.3), c.keyword[q.id]])),
    "no pin, + the next chunk of the first 3 passages": lambda c: lambda q: c.with_neighbours(q, 0, 1, 3),
    "no pin, + both neighbours of every passage (context_chunks 1)": lambda c: c.engine("never", context_chunks=1),
}
results: dict[str, dict[str, dict[str, float]]] = {}
started = time.perf_counter()
for name, make in rows.items():
    results[name] = {}
    for corpus in corpora:
        rank = make(corpus)
        scored = [score_question(q, rank(q), K, budget) for q in corpus.data.questions]
        results[name][corpus.data.name] = summarise(scored)
        short = [r for r in scored if r.short_answer]
        if corpus.data.name == "cuad":
            results[name]["cuad short-answer"] = summarise(short)

columns = ["cuad short-answer", "cuad", "qmsum", "ectsum"]
table = Table("ranking", *[f"{c} ({results[next(iter(rows))][c]['n']})\nR@{K} | MRR | R@{BUDGET_TOKENS} tok"
                           for c in columns],
              title=f"Evidence recall by kind of document, each question within its document (budget in {budget.name} tokens)")
for name, by_set in results.items():
    table.add_row(name, *[f"{by_set[c]['recall_at_k']:.3f} | {by_set[c]['mrr']:.3f} | {by_set[c]['recall_at_budget']:.3f}"
                          for c in columns])
console.print(table)
console.print(f"{time.perf_counter() - started:.0f} s ranking and scoring")
OUT.mkdir(parents=True, exist_ok=True)
path = OUT / f"bench_transcripts{'_quick' if args.quick else ''}.json"
path.write_text(json.dumps({"bench": "transcripts", "k": K, "budget": budget.name, "rows": results},
                           indent=2), encoding="utf-8")
console.print(f"wrote {path}")
