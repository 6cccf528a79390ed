"""The generator: deterministic greedy answers that stop at <|im_end|>, streaming, the window guard, prefix KV
reuse and the safetensors cold-start cache. The model is converted once into a temporary cache for the module."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from app.errors import PromptTooLong
from app.llm.generator import Generator
from app.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow

SYSTEM = "You are a concise assistant."
DOCUMENT = (
    "MASTER SERVICES AGREEMENT. This Agreement is made between Acme Corp (the Customer) and Globex Ltd (the "
    "Supplier). 1. Term. The Agreement starts on 1 March 2021 and lasts three years. 2. Fees. The Customer pays "
    "the Supplier 12,000 dollars a month, invoiced monthly. 3. Governing law. This Agreement is governed by the "
    "laws of the State of New York. 4. Termination. Either party may terminate with ninety days' written notice."
)


@pytest.fixture(scope="module")
def loads(tmp_path_factory):
    """(cold generator, its conversion logs, cached generator, its conversion logs), from one fresh cache directory.

    The cache is checked by what each load did (converted the GGUF or not), not by how long it took: a
    timing would fail on a busy machine and is a benchmark's job.
    """
    settings = Settings.load(cache_dir=tmp_path_factory.mktemp("cache"), max_new_tokens=24)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("app.llm.generator")
    logger.addHandler(handler)
    try:
        cold = Generator.load(settings.generator_config())
        cold_logs = [r.getMessage() for r in records]
        records.clear()
        cached = Generator.load(settings.generator_config())
        cached_logs = [r.getMessage() for r in records]
    finally:
        logger.removeHandler(handler)
    return cold, cold_logs, cached, cached_logs


@pytest.fixture(scope="module")
def gen(loads):
    return loads[2]


def test_second_load_reads_cached_weights_without_converting_and_equal(loads):
    cold, cold_logs, cached, cached_logs = loads
    assert any(m.startswith("converting ") for m in cold_logs), cold_logs
    assert not any(m.startswith("converting ") for m in cached_logs), cached_logs
    cold_sd, cached_sd = cold.model.state_dict(), cached.model.state_dict()
    assert cold_sd.keys() == cached_sd.keys()
    assert all(torch.equal(cold_sd[k], cached_sd[k]) for k in cold_sd)


def test_greedy_generation_is_deterministic_and_stops_at_im_end(gen):
    ids = gen.chat_ids(SYSTEM, "What is the capital of France? Answer in one sentence.")
    first = gen.generate(ids, max_new_tokens=48)
    second = gen.generate(ids, max_new_tokens=48)
    assert first.text == second.text
    assert "Paris" in first.text
    assert first.completion_tokens < 48  # stopped by <|im_end|>, not by the limit
    assert "<|im_end|>" not in first.text
    assert first.prompt_tokens == len(ids)


def test_stream_pieces_join_to_the_generated_text(gen):
    ids = gen.chat_ids(SYSTEM, "Name three colours.")
    pieces = list(gen.stream(ids))
    assert len(pieces) > 1
    assert "".join(pieces) == gen.last_stats.text == gen.generate(ids).text


def test_too_long_prompt_raises_instead_of_truncating(gen):
    room = gen.context_window - gen.config.max_new_tokens
    with pytest.raises(PromptTooLong, match=f"only {room} fit"):
        gen.generate([1] * (room + 1))


def test_prefix_cache_reuse_answers_like_the_full_prompt(gen):
    """Reused or not, the cache holds the same keys and values, up to float32 rounding: the prompt is split into
    other chunks. A bfloat16 cache would round those differences up to its own step, enough to part two greedy
    paths at a near-tie, so this compares exactly with a float32 cache."""
    gen = Generator.load(gen.config.replace(kv_cache_dtype="float32"))
    prefix = gen.prefill(gen.chat_ids(SYSTEM, DOCUMENT))
    held = prefix.cache.get_seq_length()
    for question in ("Which law governs the agreement?", "How much does the Customer pay each month?"):
        ids = gen.chat_ids(SYSTEM, f"{DOCUMENT}\n\nQuestion: {question}")
        reused = gen.generate(ids, past=prefix)
        assert reused.reused_tokens > 0.8 * held
        assert reused.text == gen.generate(ids).text
    assert prefix.cache.get_seq_length() <= held  # cropped back, ready for the next question


def test_chunked_perplexity_scoring_matches_the_models_own_loss(gen, monkeypatch):
    from app.llm import perplexity

    monkeypatch.setattr(perplexity, "LOGIT_CHUNK", 64)  # several vocabulary chunks on a short text
    ids = gen.tokenizer(DOCUMENT * 3, add_special_tokens=False)["input_ids"][:300]
    nll = perplexity.token_nll(gen, ids)
    with torch.inference_mode():
        loss = gen.model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss
    assert nll.shape == (len(ids) - 1,)
    assert nll.mean().item() == pytest.approx(loss.item(), rel=1e-4)
