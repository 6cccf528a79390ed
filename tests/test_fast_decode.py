"""What makes decoding cheaper on a CPU: the growing KV cache gives the same logits as transformers' DynamicCache
without reallocating at every token, int8 decode weights predict like the float32 model, and so does a KV cache
kept in bfloat16."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from app import generator as generator_module
from app.generator import Generator
from app.int8_decode import Int8DecodeLinear, use_int8_decode
from app.kv_cache import MIN_CAPACITY, GrowingLayer, growing_cache
from app.settings import Settings

pytestmark = pytest.mark.slow

TEXT = (
    "This Master Services Agreement is made between Acme Corp, a Delaware corporation (the Customer), and Globex "
    "Ltd (the Supplier). The Supplier shall provide the services described in each Statement of Work. The Customer "
    "shall pay all undisputed invoices within thirty days of receipt. Either party may terminate this Agreement "
    "for convenience on ninety days' written notice. This Agreement is governed by the laws of the State of New "
    "York, and the parties submit to the exclusive jurisdiction of its courts. "
) * 8


@pytest.fixture(scope="module")
def fp32():
    return Generator.load(Settings.load(int8_decode=False, kv_cache_dtype="float32"))


@pytest.fixture(scope="module")
def int8():
    return Generator.load(Settings.load())


@pytest.fixture(scope="module")
def tokens(fp32):
    ids = fp32.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) > MIN_CAPACITY + 40
    return ids


@torch.inference_mode()
def _feed(gen: Generator, cache, ids: list[int]) -> torch.Tensor:
    return gen.model(input_ids=torch.tensor([ids]), use_cache=True, **{gen._cache_kw: cache}).logits[0]


@torch.inference_mode()
def _teacher_forced(gen: Generator, ids: list[int], prompt: int) -> torch.Tensor:
    """Logits of each next token after `prompt` tokens, fed one at a time as in decoding."""
    cache = gen._new_cache()
    rows = [_feed(gen, cache, ids[:prompt])[-1]]
    rows += [_feed(gen, cache, [token])[-1] for token in ids[prompt:-1]]
    return torch.stack(rows)


def test_growing_cache_gives_dynamic_cache_logits_across_growth_and_crop(fp32, tokens):
    prompt = MIN_CAPACITY - 6  # the decode steps below cross the first buffer's end
    ours, theirs = growing_cache(fp32.model.config), DynamicCache(config=fp32.model.config)
    assert all(isinstance(layer, GrowingLayer) for layer in ours.layers)
    torch.testing.assert_close(_feed(fp32, ours, tokens[:prompt]), _feed(fp32, theirs, tokens[:prompt]))
    buffers = set()
    for token in tokens[prompt:prompt + 30]:
        torch.testing.assert_close(_feed(fp32, ours, [token]), _feed(fp32, theirs, [token]))
        buffers.add(ours.layers[0]._key_buffer.data_ptr())
    assert len(buffers) == 2  # one doubling in 30 tokens, not a copy per token
    assert ours.get_seq_length() == theirs.get_seq_length() == prompt + 30

    ours.crop(-20)
    theirs.crop(-20)
    assert ours.get_seq_length() == prompt + 10
    other = tokens[:5]  # a different continuation after the crop overwrites the dropped positions
    torch.testing.assert_close(_feed(fp32, ours, other), _feed(fp32, theirs, other))


def test_growing_layer_follows_inherited_methods_that_replace_keys(fp32, tokens):
    """Batch expansion and selection swap `keys` wholesale; the next tokens must land after them."""
    ours, theirs = growing_cache(fp32.model.config), DynamicCache(config=fp32.model.config)
    two = torch.tensor([tokens[20:23], tokens[30:33]])
    logits = []
    with torch.inference_mode():
        for cache in (ours, theirs):
            _feed(fp32, cache, tokens[:20])
            cache.batch_repeat_interleave(2)
            wide = fp32.model(input_ids=two, use_cache=True, **{fp32._cache_kw: cache}).logits
            cache.batch_select_indices(torch.tensor([1]))
            logits.append((wide, _feed(fp32, cache, tokens[40:42])))
    assert ours.get_seq_length() == 25
    torch.testing.assert_close(logits[0], logits[1])
    ours.reset()
    assert ours.get_seq_length() == 0


def test_int8_linear_matches_float32_for_one_token_and_is_float32_for_many():
    torch.manual_seed(0)
    linear = torch.nn.Linear(576, 1536, bias=True)
    int8 = Int8DecodeLinear(linear)
    one, many = torch.randn(1, 1, 576), torch.randn(1, 7, 576)
    with torch.inference_mode():
        expected = linear(one)
        error = (int8(one) - expected).abs().max() / expected.abs().max()
        assert error < 2e-2
        assert int8(one).shape == expected.shape
        assert torch.equal(int8(many), linear(many))


def test_default_generator_decodes_with_int8_and_keeps_tied_weights(int8, fp32):
    linears = sum(type(m) is torch.nn.Linear for m in fp32.model.modules())
    assert linears > 0 and sum(isinstance(m, Int8DecodeLinear) for m in int8.model.modules()) == linears
    assert not any(type(m) is torch.nn.Linear for m in int8.model.modules())
    assert not any(isinstance(m, Int8DecodeLinear) for m in fp32.model.modules())
    assert int8.model.lm_head.weight is int8.model.model.embed_tokens.weight
    assert use_int8_decode(int8.model) == 0  # already swapped: nothing left to swap


def test_int8_decoding_predicts_like_float32(int8, fp32, tokens):
    ids = tokens[:200]
    a, b = _teacher_forced(int8, ids, 40), _teacher_forced(fp32, ids, 40)
    targets = torch.tensor(ids[40:])
    agreement = float((a.argmax(-1) == b.argmax(-1)).float().mean())
    ppl_int8 = float(torch.nn.functional.cross_entropy(a.float(), targets).exp())
    ppl_fp32 = float(torch.nn.functional.cross_entropy(b.float(), targets).exp())
    assert agreement >= 0.8, agreement  # 92.7% on 1,024 tokens in bench_decode_dtypes; wrong scales give ~0
    assert abs(ppl_int8 / ppl_fp32 - 1) < 0.05, (ppl_int8, ppl_fp32)


def test_bfloat16_kv_cache_stores_half_the_bytes_and_predicts_like_float32(fp32, tokens):
    bf16 = Generator.load(Settings.load(int8_decode=False, kv_cache_dtype="bfloat16"))
    assert (bf16.kv_dtype, bf16.info.kv_cache_dtype, bf16.info.attn_implementation) == (torch.bfloat16, "bfloat16", "sdpa")
    assert fp32.info.kv_cache_dtype == "float32"
    ids = tokens[:200]
    cache = bf16._new_cache()
    _feed(bf16, cache, ids[:60])
    second = _feed(bf16, cache, ids[60:120])  # a chunk after cached tokens: its mask must hide each token's future
    assert cache.layers[0].keys.dtype == torch.bfloat16
    reference = _feed(fp32, fp32._new_cache(), ids[:120])[60:]
    assert float((second.argmax(-1) == reference.argmax(-1)).float().mean()) >= 0.9
    a, b = _teacher_forced(bf16, ids, 40), _teacher_forced(fp32, ids, 40)
    targets = torch.tensor(ids[40:])
    agreement = float((a.argmax(-1) == b.argmax(-1)).float().mean())
    ppl_bf16 = float(torch.nn.functional.cross_entropy(a.float(), targets).exp())
    ppl_fp32 = float(torch.nn.functional.cross_entropy(b.float(), targets).exp())
    assert agreement >= 0.9, agreement
    assert abs(ppl_bf16 / ppl_fp32 - 1) < 0.05, (ppl_bf16, ppl_fp32)


def test_auto_kv_cache_dtype_is_bfloat16_only_for_a_float32_cpu_model_with_bfloat16_arithmetic(monkeypatch):
    cpu, cuda, f32, bf16 = torch.device("cpu"), torch.device("cuda"), torch.float32, torch.bfloat16
    kv = generator_module._kv_dtype
    monkeypatch.setattr(generator_module, "_cpu_has_bf16", lambda: True)
    assert kv("auto", cpu, f32, "sdpa") == bf16
    assert kv("float32", cpu, f32, "sdpa") == f32
    assert kv("auto", cpu, f32, "eager") == f32  # only sdpa attention has the casting wrapper
    assert kv("auto", cuda, bf16, "flash_attention_2") == bf16 and kv("bfloat16", cuda, f32, "sdpa") == f32
    monkeypatch.setattr(generator_module, "_cpu_has_bf16", lambda: False)
    assert kv("auto", cpu, f32, "sdpa") == f32
    assert kv("bfloat16", cpu, f32, "sdpa") == bf16  # asked for explicitly: kept, even where it is slower


def test_a_model_that_cannot_switch_attention_keeps_a_float32_cache(monkeypatch, caplog):
    monkeypatch.setattr(generator_module, "use_cast_query_attention", lambda model: False)
    gen = Generator.load(Settings.load(int8_decode=False, kv_cache_dtype="bfloat16"))
    assert gen.kv_dtype == torch.float32 and gen.info.kv_cache_dtype == "float32"
    assert "cannot keep its KV cache in torch.bfloat16" in caplog.text
    assert gen._new_cache().layers[0].storage_dtype is torch.float32
