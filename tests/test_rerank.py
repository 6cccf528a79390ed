"""The optional cross-encoder reranker, with a tiny cross-encoder this test builds and saves itself."""

import pytest
import torch
from sentence_transformers import CrossEncoder
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from app import LongDocQA
from app.errors import LongDocError
from index.embedder import _packaged_minilm

CLAUSES = [f"{n}. Clause {n}. The supplier shall deliver batch {n} to dock {n} within {n + 2} business days of each "
           f"order, and the buyer shall pay invoice {n} within thirty days." for n in range(1, 31)]


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    """One small BERT layer with a one-logit head and MiniLM's word pieces: random weights, real CrossEncoder."""
    folder = tmp_path_factory.mktemp("cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(_packaged_minilm())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=1)
    torch.manual_seed(0)  # the same random weights every run
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rerank")
    (folder / "supply.txt").write_text("\n\n".join(CLAUSES) + "\n", encoding="utf-8")
    return folder


def test_the_reranker_keeps_the_candidates_it_scores_highest(library, tiny_cross_encoder):
    question = "Within how many days must batch 7 be delivered?"
    plain = LongDocQA(index_dir=library / "index", pin_opening="never")
    assert plain.ingest([library / "supply.txt"]).ingested
    candidates = plain.retrieve(question, top_k=20)
    scores = CrossEncoder(str(tiny_cross_encoder)).predict([(question, p.text) for p in candidates])
    expected = [candidates[i].char_start for i in sorted(range(20), key=lambda i: -scores[i])[:3]]

    reranked = LongDocQA(index_dir=library / "index", pin_opening="never", reranker=str(tiny_cross_encoder),
                         rerank_candidates=20)
    passages = reranked.retrieve(question, top_k=3)
    assert [p.char_start for p in passages] == expected
    assert [p.rank for p in passages] == [1, 2, 3]
    assert expected != [p.char_start for p in candidates[:3]]  # the reranker did change what is kept


def test_a_reranker_that_cannot_be_loaded_is_named_in_the_error(library, tmp_path):
    qa = LongDocQA(index_dir=library / "index", reranker=str(tmp_path / "no-such-model"))
    with pytest.raises(LongDocError, match="no-such-model"):
        qa.retrieve("Who delivers?")
