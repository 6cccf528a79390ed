"""Small to big: each retrieved chunk handed on with the chunks around it in its document (`context_chunks`).

Why: a chunk is sized for the embedder (a few sentences, a few speaker turns), which is what makes it findable,
but the answer often sits just beside what the question matches: in a meeting, the turn after the discussion
("what was decided" matches the talk, the decision is the next turn); in a contract, the condition in the
sentence before the clause. With one chunk on each side, recall@5 rises from 0.831 to 0.911 on the dev meetings
and from 0.838 to 0.895 on the dev contracts, but the passages are 2.3 to 2.5 times as long, and within the same
2,000 prompt tokens the chunks alone find as much or more (`longdoc eval recall --context-chunks 1`;
docs/results/retrieval.md). So it is off by default, for a small model on a CPU whose every prompt token costs
time, and worth turning on for a model with a long window.

A widened passage stays one exact slice of its document: `char_start`/`char_end` and `text` cover the context,
`chunk_start`/`chunk_end` the retrieved chunk inside it, so quotes, evidence and the prompt map keep working on
document offsets. No chunk is handed out twice: a passage's context stops where a better passage's begins, and a
passage a better one holds as context is left out, so the passages never overlap.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import replace
from typing import Callable

from app.answer import Passage
from ingest.layout import TextLayout
from ingest.types import Chunk


def with_context(passages: list[Passage], n: int, k: int, chunks_of: Callable[[str], list[Chunk]],
                 text_of: Callable[[str], str]) -> list[Passage]:
    """The first `k` of `passages` (best first), each widened by up to `n` chunks on each side, ranked 1..k.

    In rank order, so a passage's context depends only on the passages ranked above it: a passage takes the
    neighbours no better passage holds, and a passage whose chunk a better one already holds as context is
    not handed out again (the caller retrieves enough passages for k to remain).

    Args:
        chunks_of: a document's chunks in order, by doc_id (the store's `chunks`).
        text_of: a document's text, by doc_id (the store's `document_text`).
    """
    if n <= 0:
        return passages[:k]
    chunks: dict[str, list[Chunk]] = {}
    texts: dict[str, str] = {}
    held: set[tuple[str, int]] = set()
    out = []
    for passage in passages:
        if len(out) == k:
            break
        if passage.doc_id not in chunks:
            chunks[passage.doc_id] = chunks_of(passage.doc_id)
        doc_chunks = chunks[passage.doc_id]
        i = _chunk_index(doc_chunks, passage)
        if i is None:  # not one of the document's chunks (cannot happen from retrieval): handed on as it is
            out.append(passage)
            continue
        if (passage.doc_id, i) in held:
            continue
        lo = hi = i
        while lo > max(0, i - n) and (passage.doc_id, lo - 1) not in held:
            lo -= 1
        while hi < min(len(doc_chunks) - 1, i + n) and (passage.doc_id, hi + 1) not in held:
            hi += 1
        held.update((passage.doc_id, j) for j in range(lo, hi + 1))
        if lo == hi:
            out.append(replace(passage))
            continue
        if passage.doc_id not in texts:
            texts[passage.doc_id] = text_of(passage.doc_id)
        out.append(_widened(passage, doc_chunks[lo:hi + 1], texts[passage.doc_id]))
    for rank, passage in enumerate(out, start=1):
        passage.rank = rank
    return out


def _chunk_index(chunks: list[Chunk], passage: Passage) -> int | None:
    i = bisect_right(chunks, passage.char_start, key=lambda c: c.char_start) - 1
    return i if i >= 0 and chunks[i].char_start == passage.char_start else None


def _widened(passage: Passage, span: list[Chunk], text: str) -> Passage:
    start, end = span[0].char_start, span[-1].char_end
    layout = TextLayout.concat([TextLayout.decode(c.layout) for c in span]) if passage.layout else None
    return replace(
        passage,
        char_start=start,
        char_end=end,
        text=text[start:end],
        chunk_start=passage.char_start,
        chunk_end=passage.char_end,
        page=next((c.pages[0] for c in span if c.pages), None),
        speakers=list(dict.fromkeys(s for c in span for s in c.speakers)),
        n_tokens=sum(c.n_tokens for c in span),
        boxes=layout.boxes(start, end) if layout else [],
        layout=layout.encode() if layout else "",
    )
