"""Evidence: the sentences in the used passages that best support the answer, located in their documents.

A small local model can answer badly with the right clause in front of it; the evidence lets the user check
the answer against the document itself. Sentences are scored by embedding similarity to the question and,
when there is one, to the answer; offsets are the passage's offsets plus the sentence's place in it.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from app.answer import Evidence, Passage
from index.embedder import Embedder

# A sentence ends at . ! ? or ; followed by space, or at a line break. Hand-written because the
# library splitters (llama-index, nltk) return strings, not offsets, and re-finding them is ambiguous
# when a sentence repeats.
_SENTENCE = re.compile(r"[^\n.!?;]+(?:[.!?;]+(?=\s|$)|(?=\n)|$)|[^\n]+")
MIN_SENTENCE_CHARS = 20


def sentences_with_offsets(passage: Passage) -> list[tuple[int, int, str]]:
    """(char_start, char_end, text) in document coordinates for each sentence of the passage."""
    out = []
    for match in _SENTENCE.finditer(passage.text):
        raw = match.group()
        text = raw.strip()
        if len(text) < MIN_SENTENCE_CHARS:
            continue
        start = match.start() + raw.index(text)
        out.append((passage.char_start + start, passage.char_start + start + len(text), text))
    return out


def select_evidence(
    embedder: Embedder,
    question: str,
    answer: str,
    passages: Sequence[Passage],
    max_sentences: int = 2,
) -> list[Evidence]:
    """The best-supported sentences, best first. An empty list when the passages have no sentences."""
    candidates = [(p, s) for p in passages for s in sentences_with_offsets(p)]
    if not candidates:
        return []
    probes = [question] + ([answer] if answer.strip() else [])
    vectors = embedder.embed_documents([s[2] for _, s in candidates])
    probe_vectors = embedder.embed_queries(probes)
    scores = (vectors @ probe_vectors.T).mean(axis=1)
    best = np.argsort(-scores)[:max_sentences]
    return [
        Evidence(doc=candidates[i][0].doc, char_start=candidates[i][1][0], char_end=candidates[i][1][1],
                 text=candidates[i][1][2], score=round(float(scores[i]), 4))
        for i in best
    ]
