"""Each reorder strategy's exact prompt order, for 1 to 10 passages."""

import pytest

from app.answer import Passage
from app.reorder import REORDERERS, document_order, important_first_last, no_reorder, reverse_rank


def ranked(n: int) -> list[Passage]:
    # char_start descending with rank, so document order is the reverse of rank order
    return [Passage(rank=r, score=1 - r / 100, doc="d", doc_id="x", char_start=1000 - r, char_end=1001 - r, text="t")
            for r in range(1, n + 1)]


EXPECTED_FIRST_LAST = {
    1: [1], 2: [1, 2], 3: [1, 3, 2], 4: [1, 3, 4, 2], 5: [1, 3, 5, 4, 2], 6: [1, 3, 5, 6, 4, 2],
    7: [1, 3, 5, 7, 6, 4, 2], 8: [1, 3, 5, 7, 8, 6, 4, 2], 9: [1, 3, 5, 7, 9, 8, 6, 4, 2],
    10: [1, 3, 5, 7, 9, 10, 8, 6, 4, 2],
}


@pytest.mark.parametrize("n", range(1, 11))
def test_reorder_puts_best_passages_at_both_ends(n):
    order = [p.rank for p in important_first_last(ranked(n))]
    assert order == EXPECTED_FIRST_LAST[n]
    assert order[0] == 1
    if n > 1:
        assert order[-1] == 2  # unlike llama-index's LongContextReorder, also for even counts
    if n >= 3:
        assert order.index(n) not in (0, n - 1)  # the weakest sits inside, never at an end


@pytest.mark.parametrize("n", range(1, 11))
def test_reverse_rank_ends_with_the_best_passage(n):
    assert [p.rank for p in reverse_rank(ranked(n))] == list(range(n, 0, -1))


@pytest.mark.parametrize("n", range(1, 11))
def test_document_order_follows_offsets(n):
    assert [p.rank for p in document_order(ranked(n))] == list(range(n, 0, -1))


@pytest.mark.parametrize("n", range(1, 11))
def test_none_keeps_retrieval_order(n):
    assert [p.rank for p in no_reorder(ranked(n))] == list(range(1, n + 1))


@pytest.mark.parametrize("name", REORDERERS)
def test_every_strategy_keeps_every_passage_once(name):
    passages = ranked(7)
    out = REORDERERS[name](passages)
    assert sorted(p.rank for p in out) == list(range(1, 8))
    assert [p.rank for p in passages] == list(range(1, 8))  # input untouched
