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

# A sentence ends at . ! ? or ; (and any closing quote or bracket) followed by whitespace and a capital,
# digit or opening mark, or at a line break; a period inside "7.2" or "U.S.A" is not followed by whitespace and so does not end one.
# Hand-written because the library splitters (llama-index, nltk) return strings, not offsets, and re-finding
# them is ambiguous when a sentence repeats.
_BOUNDARY = re.compile(r"""[.!?;]["')\]]*\s+(?=[A-Z0-9"'(\[])|\n\s*""")
MIN_SENTENCE_CHARS = 20


def sentences_with_offsets(passage: Passage) -> list[tuple[int, int, str]]:
    """(char_start, char_end, text) in document coordinates for each sentence of the passage."""
    out = []
    start = 0
    text = passage.text
    for boundary in [*_BOUNDARY.finditer(text), None]:
        end = boundary.end() if boundary else len(text)
        raw = text[start:end]
        sentence = raw.strip()
        if len(sentence) >= MIN_SENTENCE_CHARS:
            offset = passage.char_start + start + raw.index(sentence)
            out.append((offset, offset + len(sentence), sentence))
        start = end
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
