"""Synthetic contract documents for the benchmarks that need a large library (bench_keyword, bench_pgvector,
bench_library_scale): real contract text, as many documents as asked, each bringing new terms.

Document n is made of the sentences of three dev contracts (CUAD, `../shared/data/cuad_dev/contracts`) drawn at
random, shuffled, each digit replaced by a random one (so each document brings new dates, amounts and clause
numbers, as real contracts do), then cut into chunks of a fixed number of words. Common contract words
('agreement', 'party', 'law') thus sit in a large share of all chunks, as in a real library of contracts.
The same n and seed always give the same document, in any process.

`noisy_vectors` gives a document's chunks vectors with a real embedder's geometry without embedding them: real
embeddings of other real chunk texts, jittered (bench_library_scale.py says how and why).
"""

from __future__ import annotations

import hashlib
import random
import re
from functools import cache

import numpy as np

from app.evals.datasets import DEV_CONTRACTS, require_dev_data
from index.base import DocumentInfo
from ingest.types import Chunk

CONTRACTS_PER_DOC = 3


@cache
def contract_sentences() -> tuple[list[str], ...]:
    """The sentences of each dev contract (split after '.', ';' or ':'), whitespace collapsed."""
    require_dev_data(DEV_CONTRACTS)
    contracts = [p.read_text(encoding="utf-8-sig") for p in sorted(DEV_CONTRACTS.glob("*.txt"))]
    return tuple([s for s in re.split(r"(?<=[.;:])\s+", " ".join(c.split())) if s] for c in contracts)


def synthetic_document(n: int, chunks: int, words_per_chunk: int, seed: int = 0) -> list[str]:
    """Document n: shuffled sentences of three contracts, digits made up, cut into `chunks` chunks of
    `words_per_chunk` words."""
    sentences = contract_sentences()
    rng = random.Random(seed * 1_000_003 + n)
    pool = [s for c in rng.sample(range(len(sentences)), CONTRACTS_PER_DOC) for s in sentences[c]]
    words: list[str] = []
    while len(words) < chunks * words_per_chunk:
        sentence = re.sub(r"\d", lambda _: str(rng.randrange(10)), rng.choice(pool))
        words.extend(sentence.split())
    return [" ".join(words[i:i + words_per_chunk]) for i in range(0, chunks * words_per_chunk, words_per_chunk)]


def as_document(name: str, paragraphs: list[str], words_per_chunk: int) -> tuple[DocumentInfo, str, list[Chunk]]:
    """A store's view of the paragraphs as one document named `name`: its record, its text (the paragraphs
    joined by blank lines) and one chunk per paragraph (section "i. Section", exact offsets)."""
    text = "\n\n".join(paragraphs)
    doc_id = hashlib.sha256(text.encode()).hexdigest()[:16]
    chunks, start = [], 0
    for i, paragraph in enumerate(paragraphs):
        chunks.append(Chunk(doc_id, name, i, paragraph, start, start + len(paragraph), words_per_chunk, [1],
                            f"{i + 1}. Section"))
        start += len(paragraph) + 2
    info = DocumentInfo(doc_id, name, "txt", name, 1, len(chunks), words_per_chunk * len(chunks), len(text),
                        "2026-01-01T00:00:00Z")
    return info, text, chunks


def noisy_vectors(pool: np.ndarray, n: int, chunks: int, noise: float, seed: int = 0) -> np.ndarray:
    """Vectors for document n's chunks: each a row of `pool` (real embeddings of real chunk texts) drawn at random,
    plus Gaussian noise of standard deviation `noise` in every dimension, scaled back to unit length.

    Returns float32 (chunks, dim); the same n and seed always give the same vectors.
    """
    rng = np.random.default_rng([seed, n])
    picked = pool[rng.integers(len(pool), size=chunks)]  # (chunks, dim)
    vectors = picked + rng.normal(0.0, noise, size=picked.shape)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
