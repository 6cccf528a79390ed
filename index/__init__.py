"""Embeddings, the library (one interface over the embedded FAISS store and the engines), and retrieval.
Knows nothing of files."""

from index.base import DocumentInfo, LibraryMeta, StoreError, VectorStore
from index.embedder import Embedder, EmbedderError
from index.retrieval import RetrievedChunk, reciprocal_rank_fusion, retrieve
from index.stores import open_store

__all__ = [
    "DocumentInfo",
    "Embedder",
    "EmbedderError",
    "LibraryMeta",
    "RetrievedChunk",
    "StoreError",
    "VectorStore",
    "open_store",
    "reciprocal_rank_fusion",
    "retrieve",
]
