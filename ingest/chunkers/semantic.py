"""The `semantic` strategy (default): cut at the document's own seams, then where the topic shifts.

1. Seams: section starts, speaker turns and paragraph breaks ("\\n\\n") cut the text into pieces, so a
   chunk never runs from one clause or speaker into the next unless both are tiny.
2. A piece longer than `max_tokens` is split into sentences (llama-index's punkt tokenizer, used through
   its `span_tokenize` so offsets stay exact). It is cut where neighbouring sentences are least alike:
   first at every gap whose dissimilarity reaches the `breakpoint_percentile` of the piece's gaps (as
   llama-index's SemanticSplitterNodeParser does), then, while a part is still too long, at its most
   dissimilar gap. A single sentence longer than `max_tokens` is cut at token offsets.
3. Pieces under `min_tokens` join a neighbour in the same section if the pair still fits.

Sentence vectors for step 2 come from `embed_fn` when given (any `list[str] -> (n, d)` array of L2-normalised
rows: the embedder itself, or the cheap `mean_word_vectors` below), else from idf-weighted bags of the
embedder's word pieces, which need no model at all. Only sentences of oversized pieces are ever vectorised,
which is why this is several times faster than SemanticSplitterNodeParser, which embeds every sentence.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from llama_index.core.utils import globals_helper

from ingest.chunkers.base import CUT_RULES_VERSION, TokenPositions, build_chunks, strip_range, token_cuts
from ingest.types import Chunk, ParsedDocument

logger = logging.getLogger(__name__)

EmbedFn = Callable[[list[str]], np.ndarray]
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")


@dataclass(frozen=True)
class SemanticConfig:
    max_tokens: int  # the embedder's input limit without special tokens: no chunk is longer
    min_tokens: int = 128  # smaller pieces merge with a neighbour in the same section
    breakpoint_percentile: float = 90.0  # cut an oversized piece where sentence dissimilarity is this high
    buffer_size: int = 1  # sentences on each side averaged into a sentence's vector, as in llama-index

    def __post_init__(self) -> None:
        if not 0 <= self.min_tokens < self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) must be at least 0 and below max_tokens ({self.max_tokens})")
        if not 0.0 <= self.breakpoint_percentile <= 100.0:
            raise ValueError(f"breakpoint_percentile must be within 0-100, got {self.breakpoint_percentile}")


def mean_word_vectors(tokenizer: Any, word_embeddings: np.ndarray) -> EmbedFn:
    """An `embed_fn` from the embedder's static input embeddings (vocab, dim): the mean of a sentence's word
    piece vectors, L2-normalised. Far cheaper than running the transformer, and close enough to find where
    the vocabulary, hence the topic, changes."""
    matrix = np.asarray(word_embeddings, dtype=np.float32)

    def embed(texts: list[str]) -> np.ndarray:
        ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        rows = np.stack([matrix[i].mean(axis=0) if len(i) else np.zeros(matrix.shape[1], np.float32) for i in ids])
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)

    return embed


class SemanticChunker:
    """Structure first, then topic shifts; see the module docstring for the steps."""

    def __init__(self, tokenizer: Any, config: SemanticConfig, embed_fn: EmbedFn | None = None) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.embed_fn = embed_fn

    @property
    def signature(self) -> str:
        """What decides the cuts, stored with each document: another signature means its chunks are stale."""
        return f"semantic v{CUT_RULES_VERSION} {self.config}"

    def chunk(self, doc: ParsedDocument, doc_id: str) -> list[Chunk]:
        text, cfg = doc.text, self.config
        tokens = TokenPositions.of(self.tokenizer, text)
        pieces: list[tuple[int, int]] = []
        oversized: list[list[tuple[int, int]]] = []  # sentences of each piece that must be cut
        for start, end in self._seam_pieces(doc):
            if tokens.count(start, end) <= cfg.max_tokens:
                pieces.append((start, end))
            else:
                oversized.append(self._sentences(text, start, end, tokens))
        vectors = self._vectors(text, [s for sents in oversized for s in sents], tokens)
        offset = 0
        for sents in oversized:
            pieces.extend(self._cut(sents, vectors[offset : offset + len(sents)], tokens))
            offset += len(sents)
        pieces.sort()
        return build_chunks(doc, doc_id, self._merge_small(doc, pieces, tokens), self.tokenizer, cfg.max_tokens)

    def _seam_pieces(self, doc: ParsedDocument) -> list[tuple[int, int]]:
        """The text between consecutive seams, whitespace-stripped, empty pieces dropped."""
        seams = {0, len(doc.text)}
        seams.update(s.start for s in doc.sections)
        seams.update(p for t in doc.turns for p in (t.start, t.end))
        seams.update(m.end() for m in _PARAGRAPH_BREAK.finditer(doc.text))
        bounds = sorted(seams)
        pieces = (strip_range(doc.text, a, b) for a, b in zip(bounds, bounds[1:]))
        return [p for p in pieces if p[1] > p[0]]

    def _sentences(self, text: str, start: int, end: int, tokens: TokenPositions) -> list[tuple[int, int]]:
        """Sentence ranges of text[start:end]; a sentence over max_tokens is cut at token offsets."""
        spans = globals_helper.punkt_tokenizer.span_tokenize(text[start:end])
        sentences = []
        for a, b in spans:
            i, j = tokens.span(start + a, start + b)
            if j - i <= self.config.max_tokens:
                sentences.append((start + a, start + b))
                continue
            cuts = [i + c for c in token_cuts(tokens.starts[i:j], tokens.ends[i:j], self.config.max_tokens)]
            bounds = [start + a] + [int(tokens.starts[c]) for c in cuts] + [start + b]
            sentences.extend(zip(bounds, bounds[1:]))
        return sentences

    def _vectors(self, text: str, sentences: list[tuple[int, int]], tokens: TokenPositions) -> np.ndarray:
        """One L2-normalised row per sentence: from embed_fn, else idf-weighted bags of word-piece ids."""
        if not sentences:
            return np.zeros((0, 1), np.float32)
        if self.embed_fn is not None:
            return np.asarray(self.embed_fn([text[s:e] for s, e in sentences]), dtype=np.float32)
        bags = [Counter(tokens.ids[slice(*tokens.span(s, e))].tolist()) for s, e in sentences]
        vocab = {tid: k for k, tid in enumerate({tid for bag in bags for tid in bag})}
        rows = np.zeros((len(bags), max(1, len(vocab))), np.float32)
        for r, bag in enumerate(bags):
            for tid, n in bag.items():
                rows[r, vocab[tid]] = n
        df = (rows > 0).sum(axis=0)
        rows *= np.log((1 + len(bags)) / (1 + df)) + 1.0  # rare word pieces say more about the topic
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)

    def _cut(self, sentences: list[tuple[int, int]], vectors: np.ndarray, tokens: TokenPositions) -> list[tuple[int, int]]:
        """Group one oversized piece's sentences into parts of at most max_tokens, cutting at topic shifts."""
        cfg, n = self.config, len(sentences)
        if n == 0:
            return []
        # each sentence's vector averaged with its neighbours', so one odd sentence is not a topic shift
        cumsum = np.vstack([np.zeros((1, vectors.shape[1]), np.float32), np.cumsum(vectors, axis=0)])
        lo = np.maximum(np.arange(n) - cfg.buffer_size, 0)
        hi = np.minimum(np.arange(n) + cfg.buffer_size + 1, n)
        smoothed = cumsum[hi] - cumsum[lo]
        smoothed /= np.maximum(np.linalg.norm(smoothed, axis=1, keepdims=True), 1e-12)
        gaps = 1.0 - np.sum(smoothed[:-1] * smoothed[1:], axis=1)  # gaps[k]: between sentence k and k+1
        cut_after = set(np.flatnonzero(gaps >= np.percentile(gaps, cfg.breakpoint_percentile)).tolist()) if n > 1 else set()

        def size(a: int, b: int) -> int:  # tokens in sentences a..b-1
            return tokens.count(sentences[a][0], sentences[b - 1][1])

        groups, todo, a = [], [], 0
        for k in sorted(cut_after) + [n - 1]:
            todo.append((a, k + 1))
            a = k + 1
        while todo:  # an explicit stack, not recursion: a piece may hold thousands of sentences
            a, b = todo.pop()
            if b - a == 1 or size(a, b) <= cfg.max_tokens:
                groups.append((sentences[a][0], sentences[b - 1][1]))
                continue
            inner = range(a + 1, b)  # cut before sentence k
            balanced = [k for k in inner if size(a, k) >= cfg.min_tokens and size(k, b) >= cfg.min_tokens]
            k = max(balanced or inner, key=lambda k: (gaps[k - 1], -abs((a + b) / 2 - k)))
            todo.extend([(k, b), (a, k)])
        return groups

    def _merge_small(self, doc: ParsedDocument, pieces: list[tuple[int, int]], tokens: TokenPositions) -> list[tuple[int, int]]:
        """Join each piece under min_tokens (a heading, "Okay.", a signature line) to its neighbour in the
        same section when the two fit in max_tokens. A bare heading, a piece that is nothing but its section's
        title ("1. Services." before "1.1 Provision of Services. (a) ..."), joins the next section instead,
        so a heading is never left alone or glued to the clause above it. Turns are not a barrier here: a
        one-word turn retrieves nothing on its own, and the chunk lists every speaker it holds."""
        section_starts = np.asarray([s.start for s in doc.sections], dtype=np.int64)
        titles = {s.start: s.label for s in doc.sections}
        merged: list[tuple[int, int]] = []
        counts: list[int] = []
        bare: list[bool] = []  # merged[k] is only headings
        for start, end in pieces:
            n = tokens.count(start, end)
            is_bare = _is_title(doc.text[start:end], titles.get(start))
            if merged:
                same_section = np.searchsorted(section_starts, merged[-1][0], "right") == np.searchsorted(section_starts, start, "right")
                small = n < self.config.min_tokens or counts[-1] < self.config.min_tokens
                if (same_section and small) or bare[-1]:
                    joined = tokens.count(merged[-1][0], end)
                    if joined <= self.config.max_tokens:
                        merged[-1], counts[-1], bare[-1] = (merged[-1][0], end), joined, bare[-1] and is_bare
                        continue
            merged.append((start, end))
            counts.append(n)
            bare.append(is_bare)
        return merged


def _is_title(text: str, title: str | None) -> bool:
    """Whether `text` is nothing but the section title, whitespace aside (a title cut with "…" never is)."""
    return title is not None and " ".join(text.split()) == title
