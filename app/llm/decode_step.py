"""One decode step of a Llama on a CPU, written out: fused products with weights in 4 or 8 bits.

A decode step multiplies one token by every weight and reads the KV cache once, so on a CPU its time should be
the time to read those bytes. Through transformers' generic forward it was not: about a quarter of a 2K-context
step of SmolLM2-135M (int8 weights, torch profiler) went to some 50 small operations per layer (casts,
reshapes, the rotary embedding in pieces, masks, the cache's bookkeeping).
`torch.compile` would fuse them but cannot trace the growing cache (``aten.set_`` has no meta kernel) and takes
minutes to compile on 2 cores. So this module writes the Llama decoder out for a single token, about 15
operations per layer, with q/k/v and gate/up each fused into one product, and reads every weight in the fewest
bits that hold it:

- 4 bits in groups of 32 along the input, with a scale and a zero per group (torch's
  ``_weight_int4pack_mm_for_cpu``), for a matrix whose values already lie on such a grid. The embedded GGUF is
  Q4_1 (exactly that grid), so its layers are read in 4 bits, as llama.cpp reads them, in half the bytes of
  int8. They lose the rounding of each group's scale and zero to bfloat16 (llama.cpp keeps float16). Only on a
  CPU with AVX-512: on AVX2 this kernel was slower than the int8 one (44 against 27 us for a 576x576 product).
- int8 with one scale per output row (``_weight_int8pack_mm``) for any other matrix: the output layer (Q8_0 in
  the GGUF) and every layer of a float checkpoint.

Both kernels take bfloat16 activations and accumulate in float32; their float32-activation paths are not
vectorised. The residual stream, norms, rotary embedding and softmax stay float32, and the best logits are
recomputed from the float32 output layer, so greedy decoding picks float32's next token 98% of the time
(benchmarks/bench_decode_dtypes.py). The prefill keeps
transformers' forward and the float32 weights: for many tokens at once the product is bound by arithmetic,
where float32 BLAS is faster. Both write the same KV cache, so they interleave freely. tests/test_fast_decode.py
checks this step's logits against transformers' forward; benchmarks/bench_generation.py measures it.

torchao packages weight-only quantization too, but it is not installed here and pins torch versions; the
kernels are torch's own, so this module is only the arithmetic of a Llama layer around them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

GROUP = 32  # input columns per 4-bit scale and zero: Q4_0/Q4_1's block
_INT4_LEVELS = 15
_ON_GRID = 1e-3  # a value this far (in steps of its group's scale) from the 4-bit grid is not on it
REFINED_LOGITS = 16  # the best logits recomputed from the float32 output layer (see LlamaDecodeStep.__call__)


class QuantizedLinear:
    """Weight-only quantized ``x @ W.T`` for one row of bfloat16 activations, in float32; `bits` is 4 or 8.

    Built from one or more `nn.Linear`s sharing an input; their outputs are concatenated in the given order, so
    q/k/v (or gate/up) are one product. 4 bits are used where `int4` allows and the weights lie on a 4-bit grid.
    """

    def __init__(self, linears: list[torch.nn.Linear], int4: bool) -> None:
        weight = torch.cat([lin.weight.detach().float() for lin in linears])
        biases = [lin.bias for lin in linears]
        self.bias = None if all(b is None for b in biases) else torch.cat(
            [b.detach().float() if b is not None else weight.new_zeros(lin.out_features)
             for b, lin in zip(biases, linears)])
        packed = _int4_pack(weight) if int4 else None
        if packed is not None:
            self.bits, (self._qweight, self._scales_zeros) = 4, packed
        else:
            self.bits, (self._qweight, self._scales) = 8, _int8_rows(weight)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """`x` is (1, in_features) bfloat16; the result (1, out_features) is float32."""
        if self.bits == 4:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x, self._qweight, GROUP, self._scales_zeros)
        else:
            y = torch.ops.aten._weight_int8pack_mm(x, self._qweight, self._scales)
        return y.float() if self.bias is None else y.float() + self.bias


def int4_is_fast() -> bool:
    """Whether torch's 4-bit kernel beats its int8 one on this CPU: with AVX-512 it did, with AVX2 it did not."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def _int4_pack(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`weight` in torch's packed 4-bit layout with its (groups, out, 2) bfloat16 scales and zeros, or None if its
    values are not (up to float rounding) on a 4-bit grid per group of 32, where 4 bits would lose precision.

    Each group's grid is taken to run from its smallest value to its largest in 15 steps, as Q4_1 quantises.
    """
    rows, cols = weight.shape
    if cols % GROUP or rows % 16:  # torch's packing needs whole groups and outputs in 16s
        return None
    if _grid(weight[:16]) is None:  # most matrices that are off the grid show it in their first rows: skip the rest
        return None
    grid = _grid(weight)
    if grid is None:
        return None
    levels, scale, low = grid
    # the kernel computes (level - 8) * scale + zero
    zeros = low + 8 * scale
    scales_zeros = torch.cat([scale, zeros], -1).transpose(0, 1).contiguous().to(torch.bfloat16)
    qweight = torch.ops.aten._convert_weight_to_int4pack_for_cpu(levels.reshape(rows, cols).to(torch.int32), 1)
    return qweight, scales_zeros


def _grid(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Each group's 4-bit levels, scale and minimum, or None if a value lies off its group's grid."""
    rows, cols = weight.shape
    groups = weight.reshape(rows, cols // GROUP, GROUP)
    low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
    scale = ((high - low) / _INT4_LEVELS).clamp(min=torch.finfo(torch.float32).tiny)
    levels = ((groups - low) / scale).round().clamp(0, _INT4_LEVELS)
    if ((levels * scale + low - groups).abs() > _ON_GRID * scale).any():
        return None
    return levels, scale, low


def _int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`weight` as int8 with one bfloat16 scale per output row (symmetric, so no zero point)."""
    scale = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127
    qweight = (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
    return qweight, scale.to(torch.bfloat16)


@dataclass
class _Layer:
    input_norm: torch.Tensor
    qkv: QuantizedLinear
    o: QuantizedLinear
    post_norm: torch.Tensor
    gate_up: QuantizedLinear
    down: QuantizedLinear


class LlamaDecodeStep:
    """``step(token, cache)`` feeds one token after what `cache` holds and returns its next-token logits
    (1, vocab) in float32, as ``model(input_ids=[[token]], cache=cache, logits_to_keep=1)`` would."""

    def __init__(self, model: Any, int4: bool) -> None:
        config, decoder = model.config, model.model
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.intermediate = config.intermediate_size
        self.eps = config.rms_norm_eps
        self.scaling = self.head_dim ** -0.5
        self.rotary = decoder.rotary_emb  # carries the RoPE scaling (YaRN's attention factor is in its cos/sin)
        self.embed = decoder.embed_tokens.weight
        self.norm = decoder.norm.weight
        self.layers = [
            _Layer(
                input_norm=layer.input_layernorm.weight,
                qkv=QuantizedLinear([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj],
                                    int4),
                o=QuantizedLinear([layer.self_attn.o_proj], int4),
                post_norm=layer.post_attention_layernorm.weight,
                gate_up=QuantizedLinear([layer.mlp.gate_proj, layer.mlp.up_proj], int4),
                down=QuantizedLinear([layer.mlp.down_proj], int4),
            )
            for layer in decoder.layers
        ]
        self.head = QuantizedLinear([model.lm_head], int4)
        self.head_weight, self.head_bias = model.lm_head.weight, model.lm_head.bias  # float32, shared with the model
        products = [p for layer in self.layers for p in (layer.qkv, layer.o, layer.gate_up, layer.down)]
        self.weights = "+".join(sorted({f"int{p.bits}" for p in [*products, self.head]}))
        log.info("decoding with %s weights (%d of %d layer products in 4 bits)", self.weights,
                 sum(p.bits == 4 for p in products), len(products))

    @classmethod
    def for_model(cls, model: Any) -> "LlamaDecodeStep | None":
        """The step for `model`, or None (logged) where it is not a float32 CPU Llama this step writes out."""
        config = model.config
        param = next(model.parameters())
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        reasons = [
            f"model_type is {config.model_type}" if config.model_type != "llama" else "",
            f"weights are {param.dtype} on {param.device.type}" if (param.device.type, param.dtype) != (
                "cpu", torch.float32) else "",
            f"activation is {config.hidden_act}" if config.hidden_act != "silu" else "",
            # a quantization library's layers hold packed data, not weights this step could re-quantize
            "its linear layers are not plain float32" if not all(
                type(m) is torch.nn.Linear and m.weight.dtype == torch.float32 for m in linears) else "",
        ]
        reasons = [r for r in reasons if r]
        if reasons:
            log.info("decoding through transformers' forward: %s", "; ".join(reasons))
            return None
        return cls(model, int4=int4_is_fast())

    @torch.inference_mode()
    def __call__(self, token: int, cache: Any) -> torch.Tensor:
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        half, qk_width = dim // 2, (heads + kv_heads) * dim
        hidden = self.embed[token].view(1, -1)
        position = torch.tensor([[cache.get_seq_length()]])
        cos, sin = (t.view(1, dim) for t in self.rotary(hidden, position))
        for layer, kv in zip(self.layers, cache.layers, strict=True):  # a cache built for this model's config
            x = F.rms_norm(hidden, hidden.shape[-1:], layer.input_norm, self.eps).to(torch.bfloat16)
            qkv = layer.qkv(x)
            qk = qkv[:, :qk_width].view(heads + kv_heads, dim)  # queries and keys rotate together
            qk = qk * cos + torch.cat((-qk[:, half:], qk[:, :half]), dim=-1) * sin
            keys, values = kv.update(qk[heads:].view(1, kv_heads, 1, dim),
                                     qkv[:, qk_width:].view(1, kv_heads, 1, dim))
            # one query attends to every cached position: no mask; the query takes the cache's dtype
            query = qk[:heads].view(1, heads, 1, dim).to(keys.dtype)
            attended = F.scaled_dot_product_attention(query, keys, values, scale=self.scaling, enable_gqa=True)
            hidden = hidden + layer.o(attended.reshape(1, -1).to(torch.bfloat16))
            x = F.rms_norm(hidden, hidden.shape[-1:], layer.post_norm, self.eps).to(torch.bfloat16)
            gate, up = layer.gate_up(x).split(self.intermediate, dim=-1)
            hidden = hidden + layer.down((F.silu(gate) * up).to(torch.bfloat16))
        hidden = F.rms_norm(hidden, hidden.shape[-1:], self.norm, self.eps)
        logits = self.head(hidden.to(torch.bfloat16))
        # The kernels produce bfloat16 logits: 8 bits of mantissa, steps of 0.125 around 20, so the best two often
        # tie and greedy decoding would pick between them by index. The best few are recomputed in float32.
        best = logits[0].topk(REFINED_LOGITS).indices
        exact = self.head_weight[best] @ hidden[0]
        logits[0, best] = exact if self.head_bias is None else exact + self.head_bias[best]
        return logits
