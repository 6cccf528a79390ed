"""The `fixed` strategy: windows of a set number of tokens, overlapping, cut at token offsets.

The baseline to compare structure-aware chunking against; it knows nothing of sections or sentences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ingest.chunkers.base import CUT_RULES_VERSION, TokenPositions, build_chunks
from ingest.types import Chunk, ParsedDocument


@dataclass(frozen=True)
class FixedConfig:
    max_tokens: int  # the embedder's input limit without special tokens; the window is capped at it
    window: int = 512  # tokens per chunk before the cap
    overlap: int = 64  # tokens shared by neighbouring chunks

    @property
    def size(self) -> int:
        return min(self.window, self.max_tokens)

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.size:
            raise ValueError(
                f"overlap ({self.overlap}) must be at least 0 and smaller than the window "
                f"(min(window={self.window}, max_tokens={self.max_tokens}) = {self.size})"
            )


class FixedChunker:
    """Token windows of `min(window, max_tokens)` with `overlap`, e.g. 254/64 for all-MiniLM-L6-v2."""

    def __init__(self, tokenizer: Any, config: FixedConfig) -> None:
        self.tokenizer = tokenizer
        self.config = config

    @property
    def signature(self) -> str:
        """What decides the cuts, stored with each document: another signature means its chunks are stale."""
        return f"fixed v{CUT_RULES_VERSION} {self.config}"

    def chunk(self, doc: ParsedDocument, doc_id: str) -> list[Chunk]:
        tokens = TokenPositions.of(self.tokenizer, doc.text)
        size, step = self.config.size, self.config.size - self.config.overlap
        ranges = []
        for i in range(0, len(tokens.starts), step):
            j = min(i + size, len(tokens.starts))
            ranges.append((int(tokens.starts[i]), int(tokens.ends[j - 1])))
            if j == len(tokens.starts):
                break
        return build_chunks(doc, doc_id, ranges, self.tokenizer, self.config.max_tokens)
