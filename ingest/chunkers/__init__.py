"""Chunking strategies, chosen by name (the `chunker` setting): each cuts a ParsedDocument into Chunks whose
text slices back out of the document and fits the embedder's input limit.

Example:
    >>> chunker = make_chunker("semantic", tokenizer, max_tokens=254)
    >>> chunks = chunker.chunk(doc, doc_id="ab12")
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from ingest.chunkers.fixed import FixedChunker, FixedConfig
from ingest.chunkers.semantic import SemanticChunker, SemanticConfig, mean_word_vectors
from ingest.types import Chunk, ParsedDocument

# Below this a chunk cannot hold a clause, and one character's word pieces could exceed the limit.
MIN_MAX_TOKENS = 8


class Chunker(Protocol):
    @property
    def signature(self) -> str: ...

    def chunk(self, doc: ParsedDocument, doc_id: str) -> list[Chunk]: ...


def make_chunker(
    name: str,
    tokenizer: Any,
    max_tokens: int,
    *,
    min_tokens: int = SemanticConfig.min_tokens,
    window: int = FixedConfig.window,
    overlap: int = FixedConfig.overlap,
    breakpoint_percentile: float = SemanticConfig.breakpoint_percentile,
    embed_fn: Callable[[list[str]], np.ndarray] | None = None,
) -> Chunker:
    """The chunker called `name` ("semantic" or "fixed").

    Args:
        name: the strategy.
        tokenizer: the embedder's Hugging Face fast tokenizer (token counts and offsets come from it).
        max_tokens: the embedder's input limit without its special tokens (254 for all-MiniLM-L6-v2);
            no chunk is longer, since the embedder would silently drop the rest.
        min_tokens: semantic: smaller pieces merge with a neighbour.
        window, overlap: fixed: tokens per window (capped at max_tokens) and shared between windows.
        breakpoint_percentile: semantic: how dissimilar neighbouring sentences must be to cut between them.
        embed_fn: semantic: sentence vectors for cutting oversized pieces (default: word-piece bags).

    Raises:
        ValueError: an unknown name or a setting out of bounds, saying which.
    """
    if name not in CHUNKERS:
        raise ValueError(f"unknown chunker {name!r}; choose one of {', '.join(CHUNKERS)}")
    if max_tokens < MIN_MAX_TOKENS:
        raise ValueError(f"max_tokens must be at least {MIN_MAX_TOKENS}, got {max_tokens}")
    if name == "fixed":
        return FixedChunker(tokenizer, FixedConfig(max_tokens=max_tokens, window=window, overlap=overlap))
    config = SemanticConfig(max_tokens=max_tokens, min_tokens=min_tokens, breakpoint_percentile=breakpoint_percentile)
    return SemanticChunker(tokenizer, config, embed_fn=embed_fn)


CHUNKERS = ("semantic", "fixed")

__all__ = ["CHUNKERS", "Chunker", "FixedChunker", "FixedConfig", "SemanticChunker", "SemanticConfig", "make_chunker", "mean_word_vectors"]
