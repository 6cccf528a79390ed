"""RoPE scaling: the registry's pure functions, and the scaling really active in the loaded embedded model."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from app.llm.rope import (
    ROPE_SCALINGS,
    ROPE_VALIDATORS,
    RopeError,
    apply_rope,
    attention_factor,
    build_rope,
    default_inv_freq,
    effective_window,
    verify_rotary,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_every_scaling_has_a_builder_and_a_validator():
    assert set(ROPE_SCALINGS) == set(ROPE_VALIDATORS) == {"none", "linear", "dynamic", "yarn"}


@pytest.mark.parametrize(
    "scaling, window, rope_type",
    [("none", 8192, "default"), ("linear", 32768, "linear"), ("dynamic", 32768, "dynamic"), ("yarn", 32768, "yarn")],
)
def test_window_follows_the_scaling(scaling, window, rope_type):
    spec = build_rope(scaling, 4.0, 8192, 100000.0)
    assert spec.context_window == effective_window(scaling, 4.0, 8192) == window
    assert spec.parameters["rope_type"] == rope_type
    assert spec.parameters["rope_theta"] == 100000.0


def test_yarn_parameters_carry_the_original_window_and_sharpen_attention():
    spec = build_rope("yarn", 4.0, 8192, 100000.0)
    assert spec.parameters["original_max_position_embeddings"] == 8192
    assert attention_factor("yarn", 4.0) == pytest.approx(0.1 * math.log(4) + 1) == pytest.approx(1.1386, abs=1e-4)
    assert attention_factor("linear", 4.0) == attention_factor("none", 4.0) == 1.0
    assert spec.public() == {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}
    assert build_rope("none", 4.0, 8192, 100000.0).public() is None


def test_validators_name_what_is_wrong():
    with pytest.raises(RopeError, match="original_max_position_embeddings"):
        ROPE_VALIDATORS["yarn"]({"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e5})
    with pytest.raises(RopeError, match="at least 1.0"):
        build_rope("linear", 0.5, 8192, 100000.0)
    with pytest.raises(RopeError, match="not one of"):
        build_rope("ntk-by-parts", 4.0, 8192, 100000.0)


def test_apply_rope_writes_both_transformers_layouts():
    spec = build_rope("yarn", 4.0, 8192, 100000.0)
    v5 = SimpleNamespace(rope_parameters={"rope_type": "default", "rope_theta": 1e5}, max_position_embeddings=8192)
    apply_rope(v5, spec)
    assert v5.rope_parameters["rope_type"] == "yarn" and v5.max_position_embeddings == 32768
    v4 = SimpleNamespace(rope_scaling=None, rope_theta=1e4, max_position_embeddings=8192)
    apply_rope(v4, spec)
    assert v4.rope_scaling == {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}
    assert v4.rope_theta == 100000.0
    dynamic = SimpleNamespace(rope_parameters={}, max_position_embeddings=8192)
    apply_rope(dynamic, build_rope("dynamic", 4.0, 8192, 100000.0))
    assert dynamic.max_position_embeddings == 8192  # NTK grows its base past this, so it stays the original


def _tiny_llama(spec) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=spec.original_max_position)
    apply_rope(config, spec)
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("scaling", ["none", "linear", "dynamic", "yarn"])
def test_verify_rotary_accepts_each_scaling_as_loaded(scaling):
    spec = build_rope(scaling, 4.0, 256, 100000.0)
    verify_rotary(_tiny_llama(spec), spec)


def test_verify_rotary_refuses_a_silent_fallback_to_plain_rope():
    model = _tiny_llama(build_rope("none", 4.0, 256, 100000.0))
    with pytest.raises(RopeError, match="refusing to run"):
        verify_rotary(model, build_rope("yarn", 4.0, 256, 100000.0))


def test_linear_divides_every_frequency_by_the_factor():
    spec = build_rope("linear", 4.0, 256, 100000.0)
    rotary = _tiny_llama(spec).model.rotary_emb
    assert torch.allclose(rotary.inv_freq, default_inv_freq(100000.0, 16) / 4.0)


@pytest.mark.slow
@pytest.mark.parametrize("scaling, window, scale", [("yarn", 32768, 1.1386), ("none", 8192, 1.0)])
def test_embedded_model_loads_with_the_requested_scaling_active(scaling, window, scale):
    from app.llm.generator import Generator
    from app.settings import Settings

    gen = Generator.load(Settings.load(rope_scaling=scaling).generator_config())
    rotary = gen.model.model.rotary_emb
    assert gen.context_window == window
    assert rotary.attention_scaling == pytest.approx(scale, abs=1e-4)
    if scaling == "yarn":
        assert rotary.rope_type == "yarn"
        params = getattr(gen.model.config, "rope_parameters", None) or gen.model.config.rope_scaling  # 5.x or 4.x
        assert params["factor"] == 4.0
        assert gen.info.rope_scaling == {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192}
    else:
        assert rotary.rope_type == "default"
        assert gen.info.rope_scaling is None
    assert gen.info.attn_implementation == "sdpa"
