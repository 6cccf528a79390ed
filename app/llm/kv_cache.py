"""A KV cache that grows by doubling instead of copying itself at every token.

transformers' `DynamicCache` appends each token's keys and values with ``torch.cat``, which copies the whole
cache: at an 11K-token context that is 500 MB of float32 moved per generated token. A `StaticCache` avoids the
copy but is sized up front and attends over its full length. This layer keeps a buffer with spare room, writes
new tokens into it and hands attention a view of the filled part; when the buffer is full it doubles, so
copies cost O(1) per token amortised (benchmarks/bench_kv_cache.py measures both caches). `crop` only moves the
end, which is what the prefix cache of `app.llm.generator` does after every question. A buffer never shrinks, so it
holds at most twice the tokens it has seen.

The buffer may also hold keys and values in bfloat16 while the model computes in float32: decoding at a long
context is bound by reading the cache, and half the bytes make attention about twice as fast on a CPU with
bfloat16 arithmetic (AVX-512 BF16 or AMX). Attention then needs a query of the cache's dtype, which
`cast_query_attention` supplies.

transformers has no such layer; `DynamicLayer` is subclassed so `DynamicCache` drives it. Its methods that
replace ``keys``/``values`` wholesale (beam reordering, batch selection, offloading) are followed by
`_adopt`, so the buffer is always the tensor the views come from.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

MIN_CAPACITY = 256  # tokens a fresh buffer holds before its first doubling


class GrowingLayer(DynamicLayer):
    """One layer's keys and values in a buffer with room to grow; `keys`/`values` are views of the filled part.

    `storage_dtype` (None: the model's own) is the dtype the keys and values are kept in.
    """

    def __init__(self, storage_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.storage_dtype = storage_dtype

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor | None = None) -> None:
        # Not super(): transformers 4.x and 5.x give this method different signatures.
        self.dtype, self.device = self.storage_dtype or key_states.dtype, key_states.device
        self._key_buffer = key_states[:, :, :0].to(self.dtype)
        self._value_buffer = (key_states if value_states is None else value_states)[:, :, :0].to(self.dtype)
        self._set_length(0)
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, end = self._length, self._length + key_states.shape[-2]
        if end > self._key_buffer.shape[-2]:
            self._grow(key_states, value_states, max(end, 2 * self._key_buffer.shape[-2], MIN_CAPACITY))
        self._key_buffer[:, :, start:end] = key_states
        self._value_buffer[:, :, start:end] = value_states
        self._set_length(end)
        return self.keys, self.values

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last ``-tokens_to_remove`` tokens (transformers' negative form; see `DynamicLayer.crop`)."""
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative count of tokens to drop, got {tokens_to_remove}")
        if tokens_to_remove and self.is_initialized:
            self._set_length(max(0, self._length + tokens_to_remove))

    def reset(self) -> None:
        super().reset()  # drops keys/values; the next update starts a fresh buffer
        self._key_buffer = self._value_buffer = None

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        self._adopt()

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self._adopt()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self._adopt()

    def offload(self) -> None:
        super().offload()
        self._adopt()

    def prefetch(self) -> None:
        super().prefetch()
        self._adopt()

    def _adopt(self) -> None:
        """Make the buffer the tensors an inherited method put in `keys`/`values` (no spare room until it grows)."""
        if self.is_initialized:
            self._key_buffer, self._value_buffer = self.keys.contiguous(), self.values.contiguous()
            self._set_length(self._key_buffer.shape[-2])

    def _grow(self, key_states: torch.Tensor, value_states: torch.Tensor, capacity: int) -> None:
        batch, heads, _, dim = key_states.shape
        keys = key_states.new_empty(batch, heads, capacity, dim, dtype=self.dtype)
        values = value_states.new_empty(batch, heads, capacity, value_states.shape[-1], dtype=self.dtype)
        keys[:, :, :self._length] = self.keys
        values[:, :, :self._length] = self.values
        self._key_buffer, self._value_buffer = keys, values

    def _set_length(self, length: int) -> None:
        self._length = length
        self.keys = self._key_buffer[:, :, :length]
        self.values = self._value_buffer[:, :, :length]


def growing_cache(config: Any, storage_dtype: torch.dtype | None = None) -> DynamicCache:
    """A `DynamicCache` for `config` whose layers are `GrowingLayer`s (Llama: full attention in every layer)."""
    cache = DynamicCache(config=config)
    if not all(type(layer) is DynamicLayer for layer in cache.layers):
        return cache  # sliding-window or other special layers: keep transformers' own
    cache.layers = [GrowingLayer(storage_dtype) for _ in cache.layers]
    return cache


CAST_QUERY_ATTENTION = "sdpa_cast_query"  # the name it is registered under in transformers' AttentionInterface


def cast_query_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """transformers' sdpa attention over a cache kept in another dtype than the model's.

    torch's attention kernels take one dtype for query, keys and values. A single decoding token is bound by
    reading the cache, so its query is cast to the cache's dtype (bfloat16: half the bytes; scores and softmax
    still accumulate in float32 inside the kernel) and the output back. A prefill chunk is bound by arithmetic,
    which is slower in bfloat16 on a CPU, so there the keys and values are cast up instead.
    """
    if query.shape[-2] > 1:
        return sdpa_attention_forward(module, query, key.to(query.dtype), value.to(query.dtype), attention_mask,
                                      **kwargs)
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.to(key.dtype)
    out, weights = sdpa_attention_forward(module, query.to(key.dtype), key, value, attention_mask, **kwargs)
    return out.to(query.dtype), weights


def use_cast_query_attention(model: torch.nn.Module) -> bool:
    """Register `cast_query_attention` with transformers and switch `model`'s attention to it, so its cache can
    hold another dtype. False, with the model untouched, where `growing_cache` would not give `GrowingLayer`s
    (the only layers that store another dtype); False too if the model would not switch (transformers only
    logs that, for models not written against its AttentionInterface).

    Its masks are sdpa's: transformers builds no mask at all for an attention name it has no mask function
    for, which would let a prefill chunk see its own future tokens.
    """
    if not all(isinstance(layer, GrowingLayer) for layer in growing_cache(model.config).layers):
        return False
    AttentionInterface.register(CAST_QUERY_ATTENTION, cast_query_attention)
    AttentionMaskInterface.register(CAST_QUERY_ATTENTION, sdpa_mask)
    model.set_attn_implementation(CAST_QUERY_ATTENTION)
    return model.config._attn_implementation == CAST_QUERY_ATTENTION
