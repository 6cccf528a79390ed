"""What makes decoding cheaper on a CPU: the growing KV cache gives the same logits as transformers' DynamicCache
without reallocating at every token, the written-out decode step with 4-bit and int8 weights predicts like the
float32 model, and so does a KV cache kept in bfloat16."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import DynamicCache

from app.llm import generator as generator_module
from app.llm.decode_step import LlamaDecodeStep, QuantizedLinear, int4_is_fast
from app.llm.generator import Generator
from app.llm.kv_cache import MIN_CAPACITY, GrowingLayer, growing_cache
from app.llm.rope import apply_rope, build_rope
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
    return Generator.load(Settings.load(quantized_decode=False, kv_cache_dtype="float32").generator_config())


@pytest.fixture(scope="module")
def quantized():
    return Generator.load(Settings.load(kv_cache_dtype="float32").generator_config())


@pytest.fixture(scope="module")
def tokens(fp32):
    ids = fp32.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) > MIN_CAPACITY + 40
    return ids


@torch.inference_mode()
def _feed(gen: Generator, cache, ids: list[int]) -> torch.Tensor:
    return gen.model(input_ids=torch.tensor([ids]), use_cache=True, **{gen._cache_kw: cache}).logits[0]


@torch.inference_mode()
def _teacher_forced(gen: Generator, ids: list[int], prompt: int, step=None) -> torch.Tensor:
    """Logits of each next token after `prompt` tokens, fed one at a time through `step` (default: the
    generator's own decode step)."""
    step = step or gen.step
    cache = gen._new_cache()
    rows = [_feed(gen, cache, ids[:prompt])[-1]]
    rows += [step(token, cache)[-1] for token in ids[prompt:-1]]
    return torch.stack(rows)


def _agreement_and_perplexities(a: torch.Tensor, b: torch.Tensor, ids: list[int], prompt: int):
    targets = torch.tensor(ids[prompt:])
    agreement = float((a.argmax(-1) == b.argmax(-1)).float().mean())
    ppl_a = float(torch.nn.functional.cross_entropy(a.float(), targets).exp())
    ppl_b = float(torch.nn.functional.cross_entropy(b.float(), targets).exp())
    return agreement, ppl_a, ppl_b


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


def test_quantized_linear_uses_4_bits_only_for_weights_on_a_4_bit_grid():
    torch.manual_seed(0)
    grid = torch.nn.Linear(576, 192, bias=False)
    levels = torch.randint(0, 16, (192, 576 // 32, 32)).float()
    levels[..., 0], levels[..., 1] = 0, 15  # Q4_1 spans each block's min to max: both ends are used
    scale, low = torch.rand(192, 18, 1) / 50 + 1e-3, -torch.rand(192, 18, 1) / 5
    grid.weight.data = (levels * scale + low).reshape(192, 576)  # what a Q4_1 GGUF dequantises to
    dense = torch.nn.Linear(576, 96, bias=True)
    x = torch.randn(1, 576)
    fused = QuantizedLinear([grid, dense], int4=True)  # one product, outputs in the given order
    four = QuantizedLinear([grid], int4=True)
    assert (four.bits, QuantizedLinear([grid], int4=False).bits, QuantizedLinear([dense], int4=True).bits) == (4, 8, 8)
    assert fused.bits == 8
    with torch.inference_mode():
        expected = torch.cat([grid(x), dense(x)], dim=-1)
        for product, reference in ((four, grid(x)), (fused, expected)):
            got = product(x.to(torch.bfloat16)).float()
            assert got.shape == reference.shape
            assert float((got - reference).norm() / reference.norm()) < 1e-2


def test_default_generator_decodes_the_gguf_layers_in_4_bits_where_that_is_fast(quantized, fp32):
    step = quantized.decode_step
    assert step is not None and fp32.decode_step is None
    products = [p for layer in step.layers for p in (layer.qkv, layer.o, layer.gate_up, layer.down)]
    assert len(products) == 4 * quantized.model.config.num_hidden_layers
    bits = 4 if int4_is_fast() else 8  # AVX-512 or not
    assert all(p.bits == bits for p in products)  # the embedded GGUF is Q4_1: every layer lies on the grid
    assert step.head.bits == 8  # its output layer is Q8_0, not a 4-bit grid
    expected = "int4+int8" if bits == 4 else "int8"
    assert (quantized.info.decode_weights, fp32.info.decode_weights) == (expected, "float32")


def test_decode_step_is_only_built_for_a_float32_llama(fp32, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="app.llm.decode_step")
    monkeypatch.setattr(fp32.model.config, "model_type", "mistral")
    assert LlamaDecodeStep.for_model(fp32.model) is None
    assert "model_type is mistral" in caplog.text


@pytest.mark.parametrize("int4", [True, False], ids=["int4 layers (AVX-512)", "int8 layers (AVX2)"])
def test_decode_step_predicts_like_the_float32_forward(fp32, tokens, int4):
    step = LlamaDecodeStep(fp32.model, int4=int4)  # either kernel runs on any CPU; each is the default on one
    assert step.weights == ("int4+int8" if int4 else "int8")
    ids = tokens[:MIN_CAPACITY + 40]  # the steps cross the cache buffer's first doubling
    a, b = _teacher_forced(fp32, ids, 40, step), _teacher_forced(fp32, ids, 40)
    agreement, ppl_step, ppl_fp32 = _agreement_and_perplexities(a, b, ids, 40)
    assert agreement >= 0.9, agreement  # with the rotation's sign flipped it was 0.37
    assert abs(ppl_step / ppl_fp32 - 1) < 0.05, (ppl_step, ppl_fp32)


@pytest.mark.parametrize("scaling", ["none", "linear", "dynamic", "yarn"])
def test_decode_step_follows_the_forward_of_any_llama_shape(scaling):
    """A small random Llama unlike SmolLM2: biases, head_dim not hidden/heads, 2 queries per key head, and each
    RoPE scaling past its 16-position original window (where dynamic NTK starts to stretch)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=32, attention_bias=True,
                         mlp_bias=True, max_position_embeddings=16, tie_word_embeddings=True)
    apply_rope(config, build_rope(scaling, 4.0, 16, 10000.0))
    model = LlamaForCausalLM(config).eval()
    for module in model.modules():  # random biases: the default initialisation leaves them zero
        if isinstance(module, torch.nn.Linear) and module.bias is not None:
            torch.nn.init.normal_(module.bias, std=0.5)
    for layer in model.model.layers:  # sharp, loud attention, so a wrong scale or rotation shows in the logits
        attention = layer.self_attn
        for projection, gain in ((attention.q_proj, 16), (attention.k_proj, 16), (attention.v_proj, 4),
                                 (attention.o_proj, 4)):
            projection.weight.data *= gain
    step = LlamaDecodeStep.for_model(model)
    assert step is not None and step.weights == "int8"  # random weights lie on no 4-bit grid
    ids = torch.randint(0, 96, (40,)).tolist()
    theirs, ours = growing_cache(config), growing_cache(config)
    errors = []
    with torch.inference_mode():
        for cache in (theirs, ours):
            model(input_ids=torch.tensor([ids[:8]]), use_cache=True, cache=cache)
        for token in ids[8:]:
            expected = model(input_ids=torch.tensor([[token]]), use_cache=True, cache=theirs).logits[:, -1]
            got = step(token, ours)
            errors.append(float((got - expected).norm() / expected.norm()))
    assert max(errors) < 4e-2, max(errors)  # 0.014 with no scaling; a 1.5x attention scale gave 0.11


def test_decode_step_writes_the_cache_the_forward_reads(quantized, fp32, tokens):
    """Decoded tokens' keys and values must be what the prefill would have written, so a later prompt can
    extend a cache the step filled (the prefix cache does)."""
    ids = tokens[:80]
    cache = quantized._new_cache()
    with torch.inference_mode():
        _feed(quantized, cache, ids[:40])
        for token in ids[40:70]:
            quantized.step(token, cache)
        after = _feed(quantized, cache, ids[70:])
    reference = _feed(fp32, fp32._new_cache(), ids)[70:]
    assert cache.get_seq_length() == 80
    assert float((after.argmax(-1) == reference.argmax(-1)).float().mean()) >= 0.9


def test_bfloat16_kv_cache_stores_half_the_bytes_and_predicts_like_float32(fp32, tokens):
    bf16 = Generator.load(Settings.load(quantized_decode=False, kv_cache_dtype="bfloat16").generator_config())
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
    agreement, ppl_bf16, ppl_fp32 = _agreement_and_perplexities(a, b, ids, 40)
    assert agreement >= 0.9, agreement
    assert abs(ppl_bf16 / ppl_fp32 - 1) < 0.05, (ppl_bf16, ppl_fp32)


def test_decode_step_over_a_bfloat16_cache_predicts_like_float32(fp32, tokens):
    # the default on a CPU with bfloat16 arithmetic
    gen = Generator.load(Settings.load(kv_cache_dtype="bfloat16").generator_config())
    assert gen.decode_step is not None
    ids = tokens[:200]
    a, b = _teacher_forced(gen, ids, 40), _teacher_forced(fp32, ids, 40)
    agreement, ppl_step, ppl_fp32 = _agreement_and_perplexities(a, b, ids, 40)
    assert agreement >= 0.9, agreement
    assert abs(ppl_step / ppl_fp32 - 1) < 0.05, (ppl_step, ppl_fp32)


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
    gen = Generator.load(Settings.load(quantized_decode=False, kv_cache_dtype="bfloat16").generator_config())
    assert gen.kv_dtype == torch.float32 and gen.info.kv_cache_dtype == "float32"
    assert "cannot keep its KV cache in torch.bfloat16" in caplog.text
    assert gen._new_cache().layers[0].storage_dtype is torch.float32
