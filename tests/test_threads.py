"""Opening the index must not slow the models: faiss and torch share one OpenMP thread pool."""

import torch

from index.base import LibraryMeta
from index.faiss_store import FaissStore


def test_opening_the_index_keeps_torch_threads(tmp_path):
    before = torch.get_num_threads()
    FaissStore.open(tmp_path / "index", LibraryMeta("embedded:test", 8))
    assert torch.get_num_threads() == before
