"""Files in, text and chunks out: loaders per format, chunkers per strategy. Knows nothing of storage."""

from ingest.types import Chunk, IngestError, ParsedDocument, Span

__all__ = ["Chunk", "IngestError", "ParsedDocument", "Span"]
