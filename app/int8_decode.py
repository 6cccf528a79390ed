"""Int8 weights for decoding on a CPU: a quarter of the bytes per generated token, the same perplexity.

A decode step multiplies one token's activations by every weight matrix, so its time is the time to read the
weights from memory: 540 MB a token for SmolLM2-135M in float32 (benchmarks/bench_decode_dtypes.py). torch
ships a weight-only int8 matrix-vector kernel (``aten._weight_int8pack_mm``: int8 weights with one scale per
output row, activations in bfloat16, accumulation in float32) that is vectorised for AVX2; it reads 4x fewer
bytes. Its float32-activation path is not vectorised (slower than float32 BLAS here), hence bfloat16 activations.
Nothing else in the model changes: norms and attention stay float32 (the KV cache too, unless `kv_cache_dtype`
keeps it in bfloat16; `app.kv_cache`).

The embedded model's weights were already 4-bit (the GGUF is Q4_1, blocks of 32), so an 8-bit grid per row
adds little error: perplexity is unchanged within noise and 93% of next-token argmaxes are float32's
(bench_decode_dtypes.py). The prefill keeps the float32 weights: for many tokens at once the product is bound by
arithmetic, where this kernel is far slower than float32 BLAS. (The output layer sees one row even in the
prefill, since only the last position's logits are computed, so the first answer token already comes from int8.)
Keeping both copies costs 25% more weight memory (135 MB for the 135M model).

torchao offers the same idea as a library, but it is not installed here and pins torch versions; the kernel
itself is torch's own, so this module is only the few lines that choose when to call it.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


class Int8DecodeLinear(torch.nn.Module):
    """A `torch.nn.Linear` that multiplies a single token with int8 weights and anything larger in float32."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.weight = linear.weight  # shared, not copied: tied weights (lm_head = embeddings) stay tied
        self.bias = linear.bias
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127
        self.register_buffer("qweight", (weight / scale[:, None]).round().clamp(-127, 127).to(torch.int8),
                             persistent=False)
        self.register_buffer("qscale", scale.to(torch.bfloat16), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[:-1].numel() != 1:
            return torch.nn.functional.linear(x, self.weight, self.bias)
        y = torch.ops.aten._weight_int8pack_mm(x.reshape(1, -1).to(torch.bfloat16), self.qweight, self.qscale)
        y = y.to(x.dtype).reshape(*x.shape[:-1], -1)
        return y if self.bias is None else y + self.bias


def use_int8_decode(model: torch.nn.Module) -> int:
    """Swap every `nn.Linear` in `model` for an `Int8DecodeLinear`, in place; return how many were swapped."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, Int8DecodeLinear(child))
                swapped += 1
    log.info("decoding with int8 weights in %d linear layers", swapped)
    return swapped


def int8_decode_available(device: torch.device, dtype: torch.dtype) -> bool:
    """The kernel is used on CPU for float32 models, the case where decoding is bound by reading weights."""
    return device.type == "cpu" and dtype == torch.float32
