"""Evidence: the sentences in the used passages that best support the answer, located in their documents.

A small local model can answer badly with the right clause in front of it; the evidence lets the user check
the answer against the document itself. Sentences are scored by embedding similarity to the question and,
when there is one, to the answer; offsets are the passage's offsets plus the sentence's place in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
# A period after these ends no sentence: "Section No. 258", "U.S. Bank", "Mr. Smith" (nor after an initial: "John
# A. Smith"); after a company suffix only when a bracket or quote follows: "Acme, Inc. (the Company)".
ABBREVIATIONS = frozenset("mr mrs ms dr prof st no nos sec secs art arts para vs u.s u.k e.g i.e approx dept".split())
COMPANY_SUFFIXES = frozenset("inc corp co ltd llc l.l.c lp l.p plc n.a s.a ag gmbh bv nv pty".split())
_LAST_WORD = re.compile(r"([A-Za-z][A-Za-z.]*)\.$")


def split_sentences(text: str, min_chars: int = MIN_SENTENCE_CHARS) -> list[tuple[int, int, str]]:
    """(start, end, sentence) of each sentence of `text` at least `min_chars` long, offsets into `text`."""
    out = []
    start = 0
    for boundary in [*_BOUNDARY.finditer(text), None]:
        if boundary is not None and _after_abbreviation(text, boundary):
            continue
        end = boundary.end() if boundary else len(text)
        raw = text[start:end]
        sentence = raw.strip()
        if len(sentence) >= min_chars:
            offset = start + raw.index(sentence)
            out.append((offset, offset + len(sentence), sentence))
        start = end
    return out


def _after_abbreviation(text: str, boundary: re.Match) -> bool:
    """Whether the boundary is the period of an abbreviation or an initial rather than a sentence's end."""
    if not boundary.group().startswith("."):
        return False
    word = _LAST_WORD.search(text, 0, boundary.start() + 1)
    if word is None:
        return False
    token, following = word.group(1).lower().rstrip("."), text[boundary.end():boundary.end() + 1]
    return (token in ABBREVIATIONS or (len(token) == 1 and word.group(1).isupper())
            or (token in COMPANY_SUFFIXES and following in "(\"'“"))


def sentences_with_offsets(passage: Passage) -> list[tuple[int, int, str]]:
    """(char_start, char_end, text) in document coordinates for each sentence of the passage."""
    return [(passage.char_start + s, passage.char_start + e, t) for s, e, t in split_sentences(passage.text)]


@dataclass
class ScoredSentences:
    """The passages' sentences with their mean embedding similarity to the question and the answer.

    Computed once per answer and read by both the evidence and the quote (`app.quote`), so the sentences are
    embedded once.
    """

    sentences: list[tuple[Passage, tuple[int, int, str]]]  # (passage, (char_start, char_end, text))
    vectors: np.ndarray  # (len(sentences), dim), unit length
    similarity: np.ndarray  # (len(sentences),)


def score_sentences(embedder: Embedder, question: str, answer: str, passages: Sequence[Passage],
                    embedded: ScoredSentences | None = None) -> ScoredSentences:
    """Every sentence of `passages`, scored by embedding similarity to the question and, if any, the answer.

    `embedded`: sentences scored before (the abstention step scores the retrieved passages against the question
    alone); those of `passages` are not embedded again.
    """
    sentences = [(p, s) for p in passages for s in sentences_with_offsets(p)]
    if not sentences:
        return ScoredSentences([], np.zeros((0, embedder.dim), dtype=np.float32), np.zeros(0, dtype=np.float32))
    keys = [(p.doc_id, s[0]) for p, s in sentences]  # a sentence is known by its document and offset
    known = {(p.doc_id, s[0]): v for (p, s), v in zip(embedded.sentences, embedded.vectors)} if embedded else {}
    missing = [s[2] for key, (_, s) in zip(keys, sentences) if key not in known]
    fresh = iter(embedder.embed_documents(missing) if missing else [])
    vectors = np.stack([known[key] if key in known else next(fresh) for key in keys])
    probes = [question] + ([answer] if answer.strip() else [])
    return ScoredSentences(sentences, vectors, (vectors @ embedder.embed_queries(probes).T).mean(axis=1))


def select_evidence(scored: ScoredSentences, max_sentences: int = 2) -> list[Evidence]:
    """The best-supported sentences, best first. An empty list when the passages have no sentences."""
    best = np.argsort(-scored.similarity)[:max_sentences]
    return [
        Evidence(doc=scored.sentences[i][0].doc, char_start=scored.sentences[i][1][0],
                 char_end=scored.sentences[i][1][1], text=scored.sentences[i][1][2],
                 score=round(float(scored.similarity[i]), 4))
        for i in best
    ]
