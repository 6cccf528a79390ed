"""Finding the passages for a question: dense (FAISS), or hybrid (dense + BM25 fused by reciprocal rank).

Dense retrieval finds paraphrases ("which law applies" -> "governed by the laws of"); BM25 finds exact terms
that a small embedder blurs (party names, defined terms, section numbers, figures). Reciprocal rank fusion
combines the two without calibrating one score against the other: only ranks count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from index.base import VectorStore
from index.embedder import Embedder
from ingest.types import Chunk

RRF_K = 60  # Cormack, Clarke & Buettcher (SIGIR 2009): damps the weight of the very top ranks
CANDIDATES = 50  # each ranking is cut here before fusion: fusion needs more than the k it returns


@dataclass
class RetrievedChunk:
    """A retrieved chunk and why it was retrieved.

    `score` orders the results of the method that ran; `similarity` is the same measure under either method
    (the cosine of question and chunk vectors), so a relevance threshold should be applied to `similarity`.
    """

    chunk: Chunk
    score: float  # in [0, 1], higher is better: dense = cosine (floored at 0); hybrid = fused / best possible fused
    similarity: float  # cosine similarity of the question and this chunk, from the stored vector
    fused: float | None  # reciprocal-rank-fusion score; None for dense retrieval
    dense_rank: int | None  # 1-based rank in the dense list; None if not in it
    keyword_rank: int | None  # 1-based rank in the BM25 list; None if not in it (or dense retrieval)


def reciprocal_rank_fusion(
    rankings: list[list[tuple[Chunk, float]]], k: int, rrf_k: int = RRF_K, weights: list[float] | None = None
) -> list[tuple[Chunk, float]]:
    """Fuse ranked lists: each chunk scores the sum over lists of weight / (rrf_k + rank); the top k, best first.

    Scores inside the lists are ignored, which is the point: cosine and BM25 live on different scales.
    Ties keep the order in which the chunks were first met (earlier lists, higher ranks first). Every list
    weighs 1 unless `weights` says otherwise (benchmarks/bench_transcripts.py measures other weights).

    Example:
        >>> fused = reciprocal_rank_fusion([[(a, 0.9), (b, 0.8)], [(b, 12.0), (c, 7.0)]], k=2)
        >>> [(ch.chunk_id, round(s, 4)) for ch, s in fused]   # b: 1/62 + 1/61
        [('d:1', 0.0325), ('d:0', 0.0164)]
    """
    scores: dict[str, float] = {}
    chunks: dict[str, Chunk] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings)):
        seen: set[str] = set()
        for rank, (chunk, _) in enumerate(ranking, start=1):
            cid = chunk.chunk_id
            if cid in seen:  # a list naming a chunk twice counts it once, at its best rank
                continue
            seen.add(cid)
            scores[cid] = scores.get(cid, 0.0) + weight / (rrf_k + rank)
            chunks.setdefault(cid, chunk)
    order = sorted(scores, key=lambda cid: -scores[cid])  # stable: ties stay in first-met order
    return [(chunks[cid], scores[cid]) for cid in order[: max(k, 0)]]


def _dense(store: VectorStore, query_vec: np.ndarray, query: str, k: int, doc_id: str | None) -> list[RetrievedChunk]:
    return [
        RetrievedChunk(chunk, score=_unit(sim), similarity=sim, fused=None, dense_rank=rank, keyword_rank=None)
        for rank, (chunk, sim) in enumerate(store.search(query_vec, k, doc_id), start=1)
    ]


def _hybrid(store: VectorStore, query_vec: np.ndarray, query: str, k: int, doc_id: str | None) -> list[RetrievedChunk]:
    depth = max(k, CANDIDATES)
    dense = store.search(query_vec, depth, doc_id)
    keyword = store.keyword_search(query, depth, doc_id)
    fused = reciprocal_rank_fusion([dense, keyword], k)
    dense_rank = {chunk.chunk_id: rank for rank, (chunk, _) in enumerate(dense, start=1)}
    keyword_rank = {chunk.chunk_id: rank for rank, (chunk, _) in enumerate(keyword, start=1)}
    similarity = store.similarities(query_vec, [chunk for chunk, _ in fused])  # (len(fused),)
    best_possible = 2.0 / (RRF_K + 1)  # first in both lists
    return [
        RetrievedChunk(
            chunk,
            score=min(score / best_possible, 1.0),
            similarity=float(sim),
            fused=score,
            dense_rank=dense_rank.get(chunk.chunk_id),
            keyword_rank=keyword_rank.get(chunk.chunk_id),
        )
        for (chunk, score), sim in zip(fused, similarity)
    ]


# One function per method, all with one signature; the `retriever` setting picks the key.
RETRIEVAL_METHODS = {
    "hybrid": _hybrid,
    "dense": _dense,
}


def retrieve(
    store: VectorStore,
    embedder: Embedder,
    query: str,
    k: int,
    method: str = "hybrid",
    doc_id: str | None = None,
) -> list[RetrievedChunk]:
    """The k chunks that best answer `query`, best first, optionally from one document only.

    Args:
        store: the index to search.
        embedder: the embedder the index was built with.
        query: the question as the user typed it (BM25 reads the words, the embedder the meaning).
        k: how many chunks; fewer come back if the index (or the document) holds fewer.
        method: `"hybrid"` (dense + BM25, reciprocal rank fusion) or `"dense"`.
        doc_id: restrict to this document.

    Example:
        >>> hits = retrieve(store, embedder, "Which law governs the agreement?", k=5)
        >>> hits[0].chunk.section, round(hits[0].similarity, 2), hits[0].dense_rank, hits[0].keyword_rank
        ('12. Governing Law', 0.71, 1, 2)
    """
    if method not in RETRIEVAL_METHODS:
        raise ValueError(f"method={method!r} is not one of {', '.join(RETRIEVAL_METHODS)}")
    query_vec = embedder.embed_queries([query])[0]  # (dim,)
    return RETRIEVAL_METHODS[method](store, query_vec, query, k, doc_id)


def _unit(similarity: float) -> float:
    """Cosine into [0, 1]: opposite-meaning vectors are as useless as unrelated ones."""
    return min(max(similarity, 0.0), 1.0)
