"""Reordering strategies: where each retrieved passage goes in the prompt.

Models read the start and the end of a long context best and the middle worst (Liu et al., "Lost in the
Middle", arXiv 2307.03172). Each strategy is a small pure function `fn(passages) -> passages` taking
passages best first (by retrieval rank) and returning them in prompt order; `REORDERERS` maps the setting's
name to it, and `--reorder` takes its choices from the keys.

llama-index's `LongContextReorder` is not used: it puts the best passage first only when the count is odd.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

from app.answer import Passage

P = TypeVar("P", bound=Passage)


def important_first_last(passages: Sequence[P]) -> list[P]:
    """Best first, second best last, third second, fourth second to last, ...: the weakest end in the middle.

    For ranks 1..5 the prompt order is 1, 3, 5, 4, 2.
    """
    front: list[P] = []
    back: list[P] = []
    for i, passage in enumerate(passages):
        (front if i % 2 == 0 else back).append(passage)
    return front + back[::-1]


def reverse_rank(passages: Sequence[P]) -> list[P]:
    """Weakest first, best last: the best passage sits right before the question, where recency helps most."""
    return list(passages)[::-1]


def document_order(passages: Sequence[P]) -> list[P]:
    """In reading order (document, then offset): keeps a clause next to the one it continues."""
    return sorted(passages, key=lambda p: (p.doc, p.char_start))


def no_reorder(passages: Sequence[P]) -> list[P]:
    """Retrieval order, best first: the baseline the others are measured against."""
    return list(passages)


REORDERERS: dict[str, Callable[[Sequence[Passage]], list[Passage]]] = {
    "important_first_last": important_first_last,
    "reverse_rank": reverse_rank,
    "document_order": document_order,
    "none": no_reorder,
}
