"""Opening the index must not slow the models: faiss and torch share one OpenMP thread pool."""

import torch

from index.store import IndexStore


def test_opening_the_index_keeps_torch_threads(tmp_path):
    before = torch.get_num_threads()
    IndexStore.open(tmp_path / "index", "embedded:test", 8)
    assert torch.get_num_threads() == before
