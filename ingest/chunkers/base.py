"""What every chunker shares: token positions in the document, and turning character ranges into Chunks.

A chunker only decides where to cut, as (char_start, char_end) ranges. `build_chunks` does the rest once:
moves offsets past surrounding whitespace (the text itself is never edited, so
`doc.text[c.char_start:c.char_end] == c.text` holds), re-tokenizes every chunk exactly as the embedder will
and splits any that would exceed `max_tokens` (the embedder silently drops word pieces past its limit), and
attaches pages, section and speakers from the document's spans, and the page rectangles of its words from the
document's layout (a PDF's).
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingest.types import Chunk, ParsedDocument, Span

logger = logging.getLogger(__name__)

# Part of every chunker's `signature`: raise it when the rules for where to cut or how chunks are labelled
# change, so that ingesting a document again re-chunks it instead of keeping chunks made by the old rules.
# 2: inline clause headings. 3: a numbered paragraph without a title is labelled by its number and parent clause.
CUT_RULES_VERSION = 3

# When a range must be cut between tokens, look this many tokens back for the start of a word, so a word
# is not split into "##"-pieces that re-tokenize differently.
WORD_START_LOOKBACK = 16


@dataclass(frozen=True)
class TokenPositions:
    """The document tokenized once, without special tokens: ids and character offsets of every token."""

    ids: np.ndarray  # (n,) int
    starts: np.ndarray  # (n,) char offset where each token starts
    ends: np.ndarray  # (n,) char offset where each token ends

    @classmethod
    def of(cls, tokenizer: Any, text: str) -> "TokenPositions":
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        return cls(np.asarray(enc["input_ids"], dtype=np.int64), offsets[:, 0], offsets[:, 1])

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Index range [i, j) of the tokens lying wholly inside characters [start, end)."""
        i = int(np.searchsorted(self.starts, start, side="left"))
        j = int(np.searchsorted(self.ends, end, side="right"))
        return i, max(i, j)

    def count(self, start: int, end: int) -> int:
        i, j = self.span(start, end)
        return j - i


def token_cuts(starts: np.ndarray, ends: np.ndarray, max_tokens: int) -> list[int]:
    """Token indices at which to cut n tokens into equal parts of at most `max_tokens`, each moved back to
    the start of a word where one lies within WORD_START_LOOKBACK tokens (a gap before the token)."""
    n = len(starts)
    parts = -(-n // max_tokens)
    cuts = []
    for k in range(1, parts):
        target = k * n // parts
        floor = max(cuts[-1] + 1 if cuts else 1, target - WORD_START_LOOKBACK)
        cut = next((i for i in range(target, floor - 1, -1) if starts[i] > ends[i - 1]), target)
        cuts.append(cut)
    return cuts


def strip_range(text: str, start: int, end: int) -> tuple[int, int]:
    """Move `start`/`end` inward past whitespace; (x, x) when the range holds only whitespace."""
    piece = text[start:end]
    stripped = piece.lstrip()
    start += len(piece) - len(stripped)
    return start, start + len(stripped.rstrip())


def _fit(tokenizer: Any, text: str, ranges: list[tuple[int, int]], max_tokens: int) -> list[tuple[int, int, int]]:
    """(start, end, n_tokens) for each range, tokenized on its own as the embedder will see it; a range
    over `max_tokens` is cut at its own token offsets and the parts are checked again."""
    done: list[tuple[int, int, int]] = []
    todo = [r for r in (strip_range(text, s, e) for s, e in ranges) if r[1] > r[0]]
    while todo:
        enc = tokenizer(
            [text[s:e] for s, e in todo], add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        again = []
        for (s, e), ids, offsets in zip(todo, enc["input_ids"], enc["offset_mapping"]):
            if len(ids) <= max_tokens:
                done.append((s, e, len(ids)))
                continue
            if e - s == 1:  # one character the tokenizer expands past the limit: cannot be embedded whole
                logger.warning("dropping character %d (%r): %d tokens", s, text[s], len(ids))
                continue
            offs = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
            bounds = [0] + [int(offs[c, 0]) for c in token_cuts(offs[:, 0], offs[:, 1], max_tokens)] + [e - s]
            parts = [p for p in (strip_range(text, s + a, s + b) for a, b in zip(bounds, bounds[1:])) if p[1] > p[0]]
            if len(parts) < 2:  # several tokens from one character: cut by characters so the loop progresses
                mid = s + (e - s) // 2
                parts = [p for p in (strip_range(text, s, mid), strip_range(text, mid, e)) if p[1] > p[0]]
            again.extend(parts)
        todo = again
    done.sort()
    return done


def _overlapping(spans: list[Span], starts: list[int], start: int, end: int) -> list[Span]:
    """Spans (sorted by start, not overlapping each other) that share at least one character with [start, end)."""
    i = max(0, bisect.bisect_right(starts, start) - 1)
    found = []
    while i < len(spans) and spans[i].start < end:
        if spans[i].end > start:
            found.append(spans[i])
        i += 1
    return found


def build_chunks(
    doc: ParsedDocument, doc_id: str, ranges: list[tuple[int, int]], tokenizer: Any, max_tokens: int
) -> list[Chunk]:
    """Chunks for the character `ranges` of `doc`, in document order, each within `max_tokens`."""
    page_starts = [p.start for p in doc.pages]
    section_starts = [s.start for s in doc.sections]
    turn_starts = [t.start for t in doc.turns]
    chunks: list[Chunk] = []
    for start, end, n_tokens in _fit(tokenizer, doc.text, ranges, max_tokens):
        if n_tokens == 0:  # only characters the tokenizer drops (control, zero-width): nothing to embed
            logger.debug("%s: skipping characters %d-%d with no tokens", doc.name, start, end)
            continue
        i = bisect.bisect_right(section_starts, start) - 1
        section = doc.sections[i].label if i >= 0 and doc.sections[i].end > start else None
        speakers = [t.label for t in _overlapping(doc.turns, turn_starts, start, end) if t.label]
        chunks.append(
            Chunk(
                doc_id=doc_id,
                doc_name=doc.name,
                index=len(chunks),
                text=doc.text[start:end],
                char_start=start,
                char_end=end,
                n_tokens=n_tokens,
                pages=[int(p.label) for p in _overlapping(doc.pages, page_starts, start, end)],
                section=section,
                speakers=list(dict.fromkeys(speakers)),
                layout=doc.layout.within(start, end).encode() if doc.layout is not None else "",
            )
        )
    return chunks
