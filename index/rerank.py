"""Second-stage reranking: a cross-encoder reads the question and each retrieved candidate together.

A sentence embedder scores the question and a chunk apart, so it cannot see that "who may terminate" and
"either party may end this agreement" answer each other; a cross-encoder (sentence-transformers
`CrossEncoder`) reads them as one input and scores relevance directly. It is slower (one forward pass per
candidate), so it re-scores the first `rerank_candidates` of retrieval and keeps the best `top_k`.

Off by default (`reranker = ""`): no cross-encoder ships inside a PyPI package, so one must be on disk (a
directory saved by `CrossEncoder.save` or `save_pretrained`) or in the local Hugging Face cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from index.retrieval import RetrievedChunk


class RerankerError(Exception):
    """The reranker named in the settings cannot be loaded."""


@dataclass
class Reranker:
    """A loaded cross-encoder and the name it was loaded from."""

    name: str
    model: object  # sentence_transformers.CrossEncoder

    @classmethod
    def load(cls, name: str) -> "Reranker":
        from sentence_transformers import CrossEncoder

        try:
            model = CrossEncoder(name, device="cpu")
        except (OSError, ValueError) as exc:
            raise RerankerError(f"reranker={name!r} could not be loaded as a cross-encoder: {exc}") from None
        return cls(name, model)

    def scores(self, question: str, texts: Sequence[str]) -> list[float]:
        """The cross-encoder's relevance of each text to the question (higher is more relevant)."""
        if not texts:
            return []
        return [float(s) for s in self.model.predict([(question, t) for t in texts], show_progress_bar=False)]

    def rerank(self, question: str, hits: Sequence[RetrievedChunk], k: int) -> list[RetrievedChunk]:
        """The k best of `hits` by the cross-encoder, best first; ties keep retrieval's order."""
        scores = self.scores(question, [h.chunk.text for h in hits])
        order = sorted(range(len(hits)), key=lambda i: -scores[i])  # sorted() is stable: ties keep their rank
        return [hits[i] for i in order[:k]]
