"""The packaged embedder loads offline and gives what the chunkers and the store rely on."""

from __future__ import annotations

import os

import numpy as np
import pytest

from index.base import DocumentInfo, LibraryMeta
from index.embedder import Embedder, EmbedderError
from index.faiss_store import FaissStore
from index.retrieval import retrieve
from ingest.types import Chunk

PACKAGED = "embedded:all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    assert os.environ.get("HF_HUB_OFFLINE") == "1", "run the tests with HF_HUB_OFFLINE=1: nothing may be downloaded"
    return Embedder.load(PACKAGED)


def test_packaged_embedder_loads_offline_with_its_limits(embedder: Embedder) -> None:
    assert embedder.name == PACKAGED
    assert embedder.dim == 384
    assert embedder.max_tokens == 254  # 256 word pieces less [CLS] and [SEP]


def test_vectors_are_unit_length_float32(embedder: Embedder) -> None:
    docs = embedder.embed_documents(["The governing law is Delaware.", "Payment is due in thirty days.", "x"])
    queries = embedder.embed_queries(["Which law governs?"])
    assert docs.shape == (3, 384) and queries.shape == (1, 384)
    assert docs.dtype == queries.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    assert embedder.embed_documents([]).shape == (0, 384)


def test_batches_come_back_in_input_order(embedder: Embedder) -> None:
    texts = ["short", "a much longer sentence about the termination of this agreement " * 4, "medium length text"]
    together = embedder.embed_documents(texts)
    alone = np.stack([embedder.embed_documents([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_batching_by_word_pieces_keeps_input_order(embedder: Embedder) -> None:
    # numbers cut into many word pieces per character, prose into few: the two length orders disagree
    texts = [f"{'9' * 3 * i} payment" if i % 2 else "the party shall notify " * i for i in range(1, 3 * embedder.batch_size)]
    n_tokens = [embedder.count_tokens(t) for t in texts]
    assert np.argsort(n_tokens).tolist() != np.argsort([len(t) for t in texts]).tolist()
    by_pieces = embedder.embed_documents(texts, n_tokens=n_tokens)
    alone = np.stack([embedder.embed_documents([t])[0] for t in texts])
    np.testing.assert_allclose(by_pieces, alone, atol=1e-5)


def test_count_tokens_excludes_special_tokens(embedder: Embedder) -> None:
    assert embedder.count_tokens("hello world") == 2
    assert embedder.count_tokens("word " * 1000) == 1000  # long texts are counted, not truncated


def test_int8_embedder_quantizes_the_linear_layers_and_keeps_the_ranking(embedder: Embedder) -> None:
    int8 = Embedder.load(PACKAGED, int8=True)
    assert (embedder.precision, int8.precision) == ("float32", "int8")
    linear = [type(m) for m in int8.model.modules() if type(m).__name__ == "Linear"]
    assert len(linear) == 37  # 6 layers x (query, key, value, attention output, FFN in, FFN out), BERT's pooler
    assert all(t.__module__.startswith("torch.ao.nn.quantized.dynamic") for t in linear), set(linear)
    clauses = [
        "This Agreement shall be governed by the laws of the State of Delaware.",
        "Payment is due within thirty days of the invoice date.",
        "Either party may terminate this Agreement upon ninety days written notice.",
        "The Supplier shall maintain insurance of at least one million dollars.",
    ]
    questions = ["Which state's law governs?", "When must invoices be paid?", "How can the agreement be terminated?"]
    exact, quantized = embedder.embed_documents(clauses), int8.embed_documents(clauses)
    cosine = (exact * quantized).sum(axis=1)
    assert not np.allclose(exact, quantized, atol=1e-4)  # the int8 kernels really ran
    assert cosine.min() > 0.95, cosine
    np.testing.assert_allclose(np.linalg.norm(quantized, axis=1), 1.0, atol=1e-5)
    assert list((int8.embed_queries(questions) @ quantized.T).argmax(axis=1)) == [0, 1, 2]
    with pytest.raises(EmbedderError, match="CPU only"):
        Embedder.load(PACKAGED, int8=True, device="cuda")


def test_unknown_embedder_says_what_to_use() -> None:
    with pytest.raises(EmbedderError, match="embedded:all-MiniLM-L6-v2"):
        Embedder.load("embedded:no-such-model")
    with pytest.raises(EmbedderError, match="not in the local Hugging Face cache"):
        Embedder.load("no-such-org/no-such-model-xyz")


def test_hybrid_retrieval_finds_the_clause_and_reports_similarity(embedder: Embedder, tmp_path) -> None:
    paragraphs = [
        "This Agreement shall be governed by the laws of the State of Delaware.",
        "Payment is due within thirty days of the invoice date.",
        "Either party may terminate this Agreement upon ninety days written notice.",
    ]
    text = "\n".join(paragraphs)
    chunks, start = [], 0
    for i, p in enumerate(paragraphs):
        chunks.append(Chunk("d1", "msa.txt", i, p, start, start + len(p), embedder.count_tokens(p)))
        start += len(p) + 1
    store = FaissStore.open(tmp_path / "index", LibraryMeta(embedder.name, embedder.dim))
    info = DocumentInfo("d1", "msa.txt", "txt", "msa.txt", 1, 3, 30, len(text), "2025-01-01T00:00:00+00:00")
    store.add(info, text, chunks, embedder.embed_documents(paragraphs))
    for method in ("dense", "hybrid"):
        hits = retrieve(store, embedder, "Which state's law governs the agreement?", k=3, method=method)
        assert hits[0].chunk.index == 0, method
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert all(0.0 <= h.score <= 1.0 for h in hits)
    dense = retrieve(store, embedder, "Which state's law governs the agreement?", k=3, method="dense")
    hybrid = retrieve(store, embedder, "Which state's law governs the agreement?", k=3, method="hybrid")
    # The same chunk has the same similarity under both methods, so one threshold fits both.
    def similarity(hits):
        return {h.chunk.chunk_id: round(h.similarity, 5) for h in hits}

    assert similarity(dense) == similarity(hybrid)
    assert hybrid[0].dense_rank == 1 and hybrid[0].keyword_rank is not None and hybrid[0].fused is not None
    with pytest.raises(ValueError, match="hybrid, dense"):
        retrieve(store, embedder, "q", k=3, method="sparse")


def test_questions_are_embedded_once_and_remembered(embedder: Embedder, monkeypatch) -> None:
    questions = ["Who are the parties?", "What is the governing law?", "Who are the parties?"]
    fresh = embedder.embed_queries(questions)
    calls = []
    monkeypatch.setattr(embedder, "_encode", lambda *a: calls.append(a) or np.zeros((0, embedder.dim)))
    again = embedder.embed_queries(list(reversed(questions)))
    assert calls == []
    np.testing.assert_array_equal(again, fresh[::-1])
    assert embedder.embed_queries([]).shape == (0, embedder.dim)
