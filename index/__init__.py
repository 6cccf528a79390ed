"""Embeddings, the FAISS store with its chunk records on disk, and retrieval. Knows nothing of files."""

from index.embedder import Embedder, EmbedderError
from index.retrieval import RetrievedChunk, reciprocal_rank_fusion, retrieve
from index.store import DocumentInfo, IndexStore, StoreError

__all__ = [
    "DocumentInfo",
    "Embedder",
    "EmbedderError",
    "IndexStore",
    "RetrievedChunk",
    "StoreError",
    "reciprocal_rank_fusion",
    "retrieve",
]
