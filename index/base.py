"""The seam between the app and where the library lives: one interface, three backends.

A library holds documents (their extracted text and a record each), their chunks (with exact offsets into
that text) and one vector per chunk. `VectorStore` is everything the app asks of it, and each backend keeps
the same contract:

- `faiss` (index/faiss_store.py): files in one folder, loaded into this process; the embedded default.
- `postgresql://...` (index/pgvector_store.py): tables in PostgreSQL with pgvector, searched by the server.
- `milvus://...` (index/milvus_store.py): collections in Milvus, searched by the server.

What every backend guarantees, and tests/test_store.py checks on all three:

- A document is its content: `doc_id` is the hash of the file's bytes. Adding the same doc_id again replaces
  its chunks; a reader sees the old document or the new one, never a mix.
- A document answers to every name it was ingested under. Two files with the same bytes (a signed and a final
  copy) are stored once; the second name becomes an alias (`DocumentInfo.aliases`), and `doc="<either name>"`
  finds it. A name points at one document: ingesting new content under a name moves the name to it, and the
  document that held the name before keeps its other names, or goes if it had none. Removing a name removes
  only that name while the document has others; removing by doc_id removes the document. The rules are
  written once, in `plan_add`, `plan_add_name` and `plan_remove`; the backends only carry the plans out.
- Chunks come back with `doc_name` set to the document's current name, so an alias promoted after its first
  name was removed shows everywhere at once.
- A library records the embedder, its precision and the vector size it was built with, and refuses to open
  with another (`LibraryMeta.check`): vectors of two embedders cannot be compared.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from ingest.types import Chunk

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MIN_ID_PREFIX = 4  # shorter strings are more likely a mistyped name than a document id
MAX_NAME_BYTES = 1_024  # in UTF-8; every backend keeps names up to this (Milvus keys are VARCHARs)


class StoreError(Exception):
    """The library cannot do what was asked; the message says what is wrong and what to do about it."""


def no_such_id(doc_id: str) -> StoreError:
    return StoreError(f"no document with id {doc_id!r} in the index; `longdoc docs` lists them")


def check_name(name: str) -> None:
    """The names every backend can keep: 1 to MAX_NAME_BYTES bytes of UTF-8 (a file name that is not valid
    UTF-8 reaches Python with lone surrogates, which no engine's text type holds).

    Raises:
        StoreError: saying what is wrong with the name.
    """
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise StoreError(f"the name {name!r} is not valid UTF-8: rename the file") from None
    if not 0 < size <= MAX_NAME_BYTES:
        raise StoreError(f"a document name must be 1 to {MAX_NAME_BYTES} bytes long, not {size}: {name[:80]!r}")


@dataclass
class DocumentInfo:
    """One ingested document, as `longdoc docs` lists it."""

    doc_id: str  # sha256 of the file bytes, first 16 hex digits
    name: str  # file name as the user knows it (the first one, when the same bytes came under several)
    doc_type: str
    source: str
    pages: int
    chunks: int
    tokens: int
    chars: int
    ingested_at: str  # ISO-8601 UTC
    # the chunker's signature, and for a PDF how it was read (`ingest.loaders.reading_signature`); ingesting with
    # another one reads and chunks again ("" from older indexes)
    chunking: str = ""
    aliases: list[str] = field(default_factory=list)  # other names of the same bytes, in the order they came
    # pages whose text OCR read (a PDF's pages without a text layer), Tesseract's mean word confidence over them
    # (0-100), and those of them whose own mean is low or on which nothing was read: the pages to check by eye
    ocr_pages: int = 0
    ocr_confidence: float | None = None
    ocr_low_pages: list[int] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [self.name, *self.aliases]

    @property
    def ocr_note(self) -> str:
        """What OCR read, for a listing: "2 pages read by OCR, mean confidence 94; low on p. 3"; "" for none."""
        if not self.ocr_pages:
            return ""
        low = f"; low on p. {', '.join(map(str, self.ocr_low_pages))}" if self.ocr_low_pages else ""
        pages = f"{self.ocr_pages} page{'s' * (self.ocr_pages != 1)}"
        return f"{pages} read by OCR, mean confidence {self.ocr_confidence:.0f}{low}"

    def without_name(self, name: str) -> DocumentInfo | None:
        """This document once `name` no longer points at it; None when that was its only name."""
        rest = [n for n in self.names if n != name]
        if not rest:
            return None
        return dataclasses.replace(self, name=rest[0], aliases=rest[1:])

    def with_name(self, name: str) -> DocumentInfo:
        if name in self.names:
            return self
        return dataclasses.replace(self, aliases=[*self.aliases, name])


@dataclass
class WritePlan:
    """One atomic change to a library: documents to delete, records to rewrite, at most one document to insert.

    `delete` names doc_ids whose chunks, vectors and text go; `update` holds records whose names changed (their
    chunks stay); `insert` is the new document whose chunks the caller passes along.
    """

    delete: list[str] = field(default_factory=list)
    update: list[DocumentInfo] = field(default_factory=list)
    insert: DocumentInfo | None = None


def _release_name(name: str, holder: DocumentInfo | None, plan: WritePlan) -> None:
    """The document that held `name` gives it up: it is renamed, or deleted when it has no other name."""
    if holder is None:
        return
    rest = holder.without_name(name)
    if rest is None:
        plan.delete.append(holder.doc_id)
    else:
        plan.update.append(rest)


def plan_add(new: DocumentInfo, same_id: DocumentInfo | None, name_holder: DocumentInfo | None) -> WritePlan:
    """Adding `new`: it takes its name from whichever other document held it, and replaces the document with
    its doc_id (keeping that one's names, the first still first).

    Args:
        same_id: the live document with `new.doc_id`, if any.
        name_holder: the live document named `new.name`, if any.
    """
    plan = WritePlan()
    if name_holder is not None and name_holder.doc_id != new.doc_id:
        _release_name(new.name, name_holder, plan)
    if same_id is not None:
        plan.delete.append(same_id.doc_id)
        new = dataclasses.replace(new, name=same_id.name, aliases=list(same_id.aliases)).with_name(new.name)
    plan.insert = new
    return plan


def plan_add_name(info: DocumentInfo, name: str, name_holder: DocumentInfo | None) -> WritePlan:
    """The same bytes came again under `name`: the document answers to it too, and no other document does."""
    plan = WritePlan(update=[info.with_name(name)])
    if name_holder is not None and name_holder.doc_id != info.doc_id:
        _release_name(name, name_holder, plan)
    return plan


def plan_remove(info: DocumentInfo, name_or_id: str) -> WritePlan:
    """Removing by one of several names drops that name; by the last name or by doc_id, the document."""
    if name_or_id in info.names and len(info.names) > 1:
        return WritePlan(update=[info.without_name(name_or_id)])
    return WritePlan(delete=[info.doc_id])


@dataclass(frozen=True)
class LibraryMeta:
    """What a library was built with; vectors from another embedder or precision cannot be compared."""

    embedder: str
    dim: int
    precision: str = "float32"  # or "int8": the same model quantized gives other vectors
    format: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self, found: dict, where: str) -> None:
        """Refuse a library this code or this embedder cannot use, saying what differs and what to do.

        Args:
            found: the meta the library holds.
            where: the library as the user named it (a folder, or an engine URL without its password).
        """
        if found.get("format") != self.format:
            raise StoreError(
                f"{where} has index format {found.get('format')}, this longdoc-qa reads format {self.format}. "
                "Use a longdoc-qa version that matches it, or ingest the documents again into a new library."
            )
        found = {"precision": "float32", **found}  # libraries from before int8 embedding have no precision
        keys = ("embedder", "dim", "precision")
        if tuple(found.get(k) for k in keys) != (self.embedder, self.dim, self.precision):
            raise StoreError(
                f"{where} was built with embedder {found.get('embedder')!r} in {found['precision']} "
                f"({found.get('dim')} dimensions), but the embedder now is {self.embedder!r} in "
                f"{self.precision} ({self.dim} dimensions); their vectors cannot be compared. "
                f"Set embedder = {found.get('embedder')!r} and embed_int8 = {str(found['precision'] == 'int8').lower()}, "
                "or use a new library (another --index directory or database) and ingest again."
            )


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1: cosine similarity is an inner product only between unit vectors.

    Rows already of unit length are left as they are, so vectors copied between libraries stay bit for bit.
    """
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (n, 1)
    scale = np.where((norms > 0) & (np.abs(norms - 1.0) > 1e-6), norms, 1.0)
    return (vectors / scale).astype(np.float32)


def renamed(chunks: list[Chunk], name: str) -> list[Chunk]:
    """Chunks carrying the document's current name (a chunk record keeps the name it was ingested under)."""
    return [c if c.doc_name == name else dataclasses.replace(c, doc_name=name) for c in chunks]


class VectorStore(ABC):
    """A library of documents, chunks and vectors, wherever it is kept.

    Backends implement the abstract methods; name resolution, argument checks and the naming rules live here,
    once. Every method sees the writes of other processes and other `VectorStore` objects on the same library.

    Example:
        >>> store = open_store("faiss", index_dir, LibraryMeta("embedded:all-MiniLM-L6-v2", 384))  # index.stores
        >>> store.add(info, text, chunks, vectors)          # vectors: float32 (len(chunks), 384)
        >>> [(c.doc_name, c.char_start, round(s, 2)) for c, s in store.search(query_vec, k=3)]
        [('msa.pdf', 40211, 0.83), ...]
    """

    def __init__(self, meta: LibraryMeta, where: str) -> None:
        self.meta = meta
        self.where = where  # for messages: a folder, or an engine URL without its password

    @property
    def dim(self) -> int:
        return self.meta.dim

    # ---- reading --------------------------------------------------------------------------------------

    @abstractmethod
    def __len__(self) -> int:
        """Number of chunks in the library."""

    @abstractmethod
    def documents(self) -> list[DocumentInfo]:
        """Every document, in the order they were added (a replaced document counts from its replacement)."""

    def damaged(self) -> dict[str, str]:
        """Documents listed but unreadable, by doc_id, with what is wrong: a library folder whose files of one
        document were lost or spoiled keeps serving the others (embedded store; an engine keeps its own)."""
        return {}

    @abstractmethod
    def _by_id(self, doc_id: str) -> DocumentInfo | None: ...

    @abstractmethod
    def _by_name(self, name: str) -> DocumentInfo | None:
        """The document that answers to `name` (its first name or an alias)."""

    @abstractmethod
    def _by_id_prefix(self, prefix: str, limit: int) -> list[DocumentInfo]: ...

    @abstractmethod
    def _text(self, doc_id: str) -> str: ...

    @abstractmethod
    def chunks(self, doc_id: str | None = None) -> list[Chunk]:
        """One document's chunks in document order, or (reading the whole library) all, document by document."""

    @abstractmethod
    def vectors(self, doc_id: str) -> np.ndarray:
        """One document's stored vectors in chunk order, float32 (chunks, dim): a library is copied to another
        backend with them, without embedding again."""

    @abstractmethod
    def search(self, query_vec: np.ndarray, k: int, doc_id: str | None = None) -> list[tuple[Chunk, float]]:
        """The k chunks most similar to `query_vec` (unit length, shape (dim,)), best first, with cosine similarity.

        Fewer than k come back when the library (or the document) holds fewer chunks. An engine's approximate
        index may miss a few of the exact k; `doc_id` restricts the search to one document.

        Raises:
            StoreError: no document `doc_id`.
        """

    @abstractmethod
    def keyword_search(self, query: str, k: int, doc_id: str | None = None) -> list[tuple[Chunk, float]]:
        """The k chunks that best match the words of `query` (BM25 or the engine's full-text rank), best first;
        chunks sharing no word with it are left out."""

    @abstractmethod
    def similarities(self, query_vec: np.ndarray, chunks: list[Chunk]) -> np.ndarray:
        """Cosine similarity of `query_vec` to each chunk's stored vector, shape (len(chunks),).

        Lets a chunk found by keyword alone carry the same relevance measure as a dense hit.
        """

    def get(self, name_or_id: str) -> DocumentInfo | None:
        """A document by doc_id, by any of its names, or by a unique doc_id prefix (at least 4 characters).

        Raises:
            StoreError: the prefix matches several documents.
        """
        info = self._by_id(name_or_id) or self._by_name(name_or_id)
        if info is not None or len(name_or_id) < MIN_ID_PREFIX:
            return info
        matches = self._by_id_prefix(name_or_id, limit=2)
        if len(matches) > 1:
            names = ", ".join(f"{m.name} ({m.doc_id})" for m in matches)
            raise StoreError(f"{name_or_id!r} matches several documents: {names}; give more of the id or the name")
        return matches[0] if matches else None

    def has(self, doc_id: str) -> bool:
        return self._by_id(doc_id) is not None

    def require(self, name_or_id: str) -> DocumentInfo:
        info = self.get(name_or_id)
        if info is None:
            raise StoreError(f"no document {name_or_id!r} in the index; `longdoc docs` lists them")
        return info

    def document_text(self, name_or_id: str) -> str:
        """The extracted text that the document's chunk offsets index."""
        return self._text(self.require(name_or_id).doc_id)

    def _require_id(self, doc_id: str) -> DocumentInfo:
        info = self._by_id(doc_id)
        if info is None:
            raise no_such_id(doc_id)
        return info

    def _check_query(self, query_vec: np.ndarray) -> np.ndarray:
        query = np.ascontiguousarray(query_vec, dtype=np.float32).reshape(-1)  # (dim,)
        if query.shape[0] != self.dim:
            raise ValueError(f"query vector has {query.shape[0]} dimensions; this index holds {self.dim}")
        return query

    # ---- writing --------------------------------------------------------------------------------------

    def add(self, info: DocumentInfo, text: str, chunks: list[Chunk], vectors: np.ndarray) -> DocumentInfo:
        """Store a document, its text, chunks and vectors in one atomic step, committed before this returns.

        The live document with the same doc_id is replaced (its names kept); `info.name` moves to this document.

        Returns:
            The stored record (with the names it answers to).

        Raises:
            ValueError: vectors do not match the chunks or the index dimension, or chunks name another document,
                or are not numbered 0, 1, ... in order.
            StoreError: the name cannot be stored, or the backend failed (nothing of the document is stored).
        """
        check_name(info.name)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(chunks), self.dim):
            raise ValueError(f"vectors have shape {vectors.shape}; expected ({len(chunks)}, {self.dim})")
        if info.chunks != len(chunks):
            raise ValueError(f"info.chunks is {info.chunks} but {len(chunks)} chunks were given")
        strays = [c.chunk_id for c in chunks if (c.doc_id, c.doc_name) != (info.doc_id, info.name)]
        if strays:
            raise ValueError(f"chunks {strays[:3]} do not belong to document {info.name} ({info.doc_id})")
        if [c.index for c in chunks] != list(range(len(chunks))):
            raise ValueError(f"chunks of {info.name} must come in order, numbered from 0")
        started = time.perf_counter()
        plan = self._add(info, text, chunks, unit_rows(vectors))
        logger.info(
            "added %s (%s, %d chunks) to %s%s in %.3f s", info.name, info.doc_id, len(chunks), self.where,
            f", replacing {', '.join(plan.delete)}" if plan.delete else "", time.perf_counter() - started,
        )
        return plan.insert

    @abstractmethod
    def _add(self, info: DocumentInfo, text: str, chunks: list[Chunk], vectors: np.ndarray) -> WritePlan:
        """Carry out `plan_add` for `info` atomically, made from the state under the backend's write lock;
        return the plan carried out."""

    def add_name(self, doc_id: str, name: str) -> DocumentInfo:
        """The document `doc_id` answers to `name` too (the same bytes under another file name); no re-embedding.

        Returns:
            The updated record.
        """
        check_name(name)
        info = self._add_name(doc_id, name)
        logger.info("%s (%s) answers to %s too", info.name, doc_id, name)
        return info

    @abstractmethod
    def _add_name(self, doc_id: str, name: str) -> DocumentInfo:
        """Carry out `plan_add_name` atomically; return the updated record."""

    def remove(self, name_or_id: str) -> DocumentInfo:
        """Remove a name (the document stays while it has others) or, by doc_id or last name, the document.

        Returns:
            The record as it was before the removal.

        Raises:
            StoreError: no such document.
        """
        info = self._remove(name_or_id)
        logger.info("removed %s from %s (%s)", name_or_id, info.name, info.doc_id)
        return info

    @abstractmethod
    def _remove(self, name_or_id: str) -> DocumentInfo:
        """Carry out `plan_remove` atomically, for the document found under the write lock; return its record."""

    def close(self) -> None:
        """Release connections; the library stays as committed."""
