"""The index on disk: every document's text, chunk records and vectors, and a manifest that says which are live.

Layout of an index directory:

    longdoc-index.json        version marker: format version, embedder name and precision, vector dimension (written once)
    MANIFEST.json             generation number, next vector id, and one entry per live document
    segments/<id>-<doc_id>/   one folder per document, never modified after the manifest names it:
        text.txt              the extracted text that chunk offsets index (UTF-8, newlines kept)
        chunks.jsonl          one `Chunk` per line (JSON: nothing here is loaded with pickle)
        vectors.npy           float32 (n_chunks, dim), L2-normalised (loaded with allow_pickle=False)
    .lock                     the cross-process write lock

Why this shape:

- Crash safety. A write puts a document's files in a new segment folder, fsyncs them, then writes the next
  manifest to a temporary file, fsyncs it and `os.replace`s it over the old one. The rename is the commit:
  a process killed at any moment leaves either the old manifest or the new one, each naming only complete
  segments. Segments no manifest names (a write killed half-way, a replaced document) are deleted by the next
  writer, under the lock.
- Cost. Adding a document writes that document's files and a small manifest, not the whole index, so ingesting
  n documents costs O(n) disk writes rather than O(n^2).
- Search. The vectors are loaded into one in-memory FAISS `IndexIDMap2(IndexFlatIP)`. A flat index is exactly
  these vectors, so building it is a copy, and inner product over unit vectors is cosine similarity.
  `IndexIDMap2` lets a removed or replaced document's vectors be taken out by id; llama-index's
  `FaissVectorStore` cannot delete, which is why it is not used here. Each document's vectors get a
  contiguous id range, so a search restricted to one document is an `IDSelectorRange`, not a Python filter.
- Several processes (the CLI and the UI) may share one index. Writers take a file lock and always start from
  the manifest on disk; readers take no lock, see the last committed manifest, and pick up another process's
  writes on their next call (one `stat` of the manifest decides whether anything changed).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import faiss
import numpy as np
from filelock import FileLock

from ingest.types import Chunk

if TYPE_CHECKING:
    import bm25s
    import Stemmer

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MARKER_FILE = "longdoc-index.json"
MANIFEST_FILE = "MANIFEST.json"
SEGMENTS_DIR = "segments"
LOCK_FILE = ".lock"
MIN_ID_PREFIX = 4  # shorter strings are more likely a mistyped name than a document id
# The same tokenisation llama-index's BM25Retriever uses, so keyword scores match what it would give.
BM25_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
BM25_STOPWORDS = "en"


class StoreError(Exception):
    """The index cannot do what was asked; the message says what is wrong and what to do about it."""


@dataclass
class DocumentInfo:
    """One ingested document, as `longdoc docs` lists it."""

    doc_id: str  # sha256 of the file bytes, first 16 hex digits
    name: str  # file name as the user knows it
    doc_type: str
    source: str
    pages: int
    chunks: int
    tokens: int
    chars: int
    ingested_at: str  # ISO-8601 UTC
    chunking: str = ""  # the chunker's signature; ingesting with another one re-chunks ("" from older indexes)


@dataclass
class _Entry:
    """A live document in memory: its record, where its files are, and its vector id range."""

    info: DocumentInfo
    segment: str
    id_base: int  # chunk i has FAISS id id_base + i
    chunks: list[Chunk]


@dataclass
class _KeywordIndex:
    """BM25 over every chunk, in store order; `ranges` maps a doc_id to its slice of that order."""

    bm25: bm25s.BM25
    stemmer: Stemmer.Stemmer
    chunks: list[Chunk]
    ranges: dict[str, tuple[int, int]]


class IndexStore:
    """Chunks, their vectors and their documents' texts, persisted under one directory.

    Example:
        >>> store = IndexStore.open(Path("/tmp/idx"), "embedded:all-MiniLM-L6-v2", 384)
        >>> store.add(info, text, chunks, vectors)          # vectors: float32 (len(chunks), 384)
        >>> [(c.doc_name, c.char_start, round(s, 2)) for c, s in store.search(query_vec, k=3)]
        [('msa.pdf', 40211, 0.83), ...]
    """

    def __init__(self, index_dir: Path, embedder_name: str, dim: int) -> None:
        self.index_dir = index_dir
        self.embedder_name = embedder_name
        self.dim = dim
        self._manifest_path = index_dir / MANIFEST_FILE
        self._segments_dir = index_dir / SEGMENTS_DIR
        self._file_lock = FileLock(str(index_dir / LOCK_FILE))
        # One store object is shared by the UI's sessions: searches and the refresh that mutates the FAISS
        # index must not interleave.
        self._mutex = threading.RLock()
        self._signature: tuple[int, ...] | None = None
        self._generation = 0  # a missing manifest is generation 0: the empty index
        self._next_id = 0
        self._docs: dict[str, _Entry] = {}
        self._by_fid: dict[int, Chunk] = {}
        self._fid: dict[str, int] = {}  # chunk_id -> FAISS id
        self._faiss = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        # No faiss.omp_set_num_threads here: faiss and torch share one OpenMP runtime, and capping faiss at
        # one thread silently capped the generator and the embedder too (prefill ran at half speed).
        self._keyword: _KeywordIndex | None = None

    @classmethod
    def open(cls, index_dir: Path, embedder_name: str, dim: int, precision: str = "float32") -> "IndexStore":
        """Open the index in `index_dir`, creating it if missing.

        `precision` is the embedder's ("float32" or "int8"): the same model quantized gives other vectors.

        Raises:
            StoreError: the index was made by another embedder or precision, with another vector size, or by
                another version of longdoc-qa, or the directory holds something that is not an index.
        """
        index_dir = Path(index_dir).expanduser()
        index_dir.mkdir(parents=True, exist_ok=True)
        marker_path = index_dir / MARKER_FILE
        wanted = {"format": FORMAT_VERSION, "embedder": embedder_name, "dim": dim, "precision": precision}
        if not marker_path.exists():
            with FileLock(str(index_dir / LOCK_FILE)):
                if not marker_path.exists():
                    others = sorted(p.name for p in index_dir.iterdir() if p.name != LOCK_FILE)
                    if others:
                        raise StoreError(
                            f"{index_dir} is not empty ({', '.join(others[:5])}) and has no {MARKER_FILE}: it is not a "
                            "longdoc index. Choose an empty or new directory for --index."
                        )
                    _write_atomic(marker_path, json.dumps(wanted, indent=2).encode())
                    logger.info("created index %s (embedder %s in %s, dim %d)", index_dir, embedder_name, precision, dim)
        try:
            found = json.loads(marker_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"{marker_path}: unreadable version marker ({exc})") from None
        _check_marker(index_dir, found, wanted)
        store = cls(index_dir, embedder_name, dim)
        store._refresh()
        return store

    # ---- reading ----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of chunks."""
        with self._mutex:
            self._refresh()
            return self._faiss.ntotal

    def documents(self) -> list[DocumentInfo]:
        """Every live document, in the order they were added."""
        with self._mutex:
            self._refresh()
            return [entry.info for entry in self._docs.values()]

    def has(self, doc_id: str) -> bool:
        with self._mutex:
            self._refresh()
            return doc_id in self._docs

    def get(self, name_or_id: str) -> DocumentInfo | None:
        """A document by doc_id, by name, or by a unique doc_id prefix (at least 4 characters).

        Raises:
            StoreError: the prefix matches several documents.
        """
        with self._mutex:
            self._refresh()
            entry = self._find(name_or_id)
            return entry.info if entry else None

    def document_text(self, name_or_id: str) -> str:
        """The extracted text that the document's chunk offsets index."""
        with self._mutex:
            self._refresh()
            entry = self._require(name_or_id)
            try:
                data = (self._segments_dir / entry.segment / "text.txt").read_bytes()
            except FileNotFoundError:  # another process replaced or removed it since the last refresh
                self._refresh(force=True)
                entry = self._require(name_or_id)
                data = (self._segments_dir / entry.segment / "text.txt").read_bytes()
        return data.decode("utf-8", errors="surrogatepass")

    def chunks(self, doc_id: str | None = None) -> list[Chunk]:
        """All chunks in store order, or one document's in document order."""
        with self._mutex:
            self._refresh()
            if doc_id is not None:
                return list(self._require_id(doc_id).chunks)
            return [chunk for entry in self._docs.values() for chunk in entry.chunks]

    def search(self, query_vec: np.ndarray, k: int, doc_id: str | None = None) -> list[tuple[Chunk, float]]:
        """The k chunks most similar to `query_vec` (unit length, shape (dim,)), best first, with cosine similarity.

        Fewer than k come back when the index (or the document) holds fewer chunks.
        """
        query = np.ascontiguousarray(query_vec, dtype=np.float32).reshape(1, -1)  # (1, dim)
        if query.shape[1] != self.dim:
            raise ValueError(f"query vector has {query.shape[1]} dimensions; this index holds {self.dim}")
        with self._mutex:
            self._refresh()
            params = None
            available = self._faiss.ntotal
            if doc_id is not None:
                entry = self._require_id(doc_id)
                selector = faiss.IDSelectorRange(entry.id_base, entry.id_base + len(entry.chunks))
                params = faiss.SearchParameters(sel=selector)
                available = len(entry.chunks)
            k = min(k, available)
            if k <= 0:
                return []
            scores, ids = self._faiss.search(query, k, params=params)  # (1, k) each
            return [(self._by_fid[int(i)], float(s)) for s, i in zip(scores[0], ids[0]) if i != -1]

    def keyword_search(self, query: str, k: int, doc_id: str | None = None) -> list[tuple[Chunk, float]]:
        """The k chunks with the highest BM25 score for `query`, best first; chunks sharing no term are left out.

        bm25s is used directly rather than llama-index's BM25Retriever, with the retriever's tokenisation:
        the retriever fixes its document filter and k when it is built (so a per-question `doc_id` would mean
        rebuilding it or mutating a shared object), raises on an empty corpus, and turns every hit back into
        a node through a metadata dict. `get_scores` gives the whole score vector, and one document is a slice.
        """
        with self._mutex:
            self._refresh()
            if doc_id is not None:
                self._require_id(doc_id)
            if k <= 0 or not self._by_fid:
                return []
            keyword = self._keyword_index()
            import bm25s  # already imported by _keyword_index

            tokens = bm25s.tokenize(
                [query],
                stopwords=BM25_STOPWORDS,
                stemmer=keyword.stemmer,
                token_pattern=BM25_TOKEN_PATTERN,
                return_ids=False,
                show_progress=False,
            )[0]
            tokens = [t for t in tokens if t in keyword.bm25.vocab_dict]
            if not tokens:
                return []
            scores = keyword.bm25.get_scores(tokens)  # (n_chunks,)
            lo, hi = keyword.ranges[doc_id] if doc_id is not None else (0, len(scores))
            window = scores[lo:hi]
            hits = np.flatnonzero(window > 0)
            best = hits[np.argsort(-window[hits], kind="stable")[:k]]
            return [(keyword.chunks[lo + i], float(window[i])) for i in best]

    def similarities(self, query_vec: np.ndarray, chunks: list[Chunk]) -> np.ndarray:
        """Cosine similarity of `query_vec` to each chunk's stored vector, shape (len(chunks),).

        Lets a chunk found by keyword alone carry the same relevance measure as a dense hit.
        """
        query = np.asarray(query_vec, dtype=np.float32).reshape(-1)  # (dim,)
        with self._mutex:
            self._refresh()
            if not chunks:
                return np.zeros(0, dtype=np.float32)
            ids = np.array([self._fid[c.chunk_id] for c in chunks], dtype=np.int64)
            return self._faiss.reconstruct_batch(ids) @ query  # (n, dim) @ (dim,)

    # ---- writing ----------------------------------------------------------------------------------------

    def add(self, info: DocumentInfo, text: str, chunks: list[Chunk], vectors: np.ndarray) -> None:
        """Store a document, its text, chunks and their vectors; committed to disk before this returns.

        A live document with the same doc_id or the same name is replaced: its chunks, vectors and text go.

        Raises:
            ValueError: vectors do not match the chunks or the index dimension, or chunks name another document.
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(chunks), self.dim):
            raise ValueError(f"vectors have shape {vectors.shape}; expected ({len(chunks)}, {self.dim})")
        if info.chunks != len(chunks):
            raise ValueError(f"info.chunks is {info.chunks} but {len(chunks)} chunks were given")
        strays = [c.chunk_id for c in chunks if (c.doc_id, c.doc_name) != (info.doc_id, info.name)]
        if strays:
            raise ValueError(f"chunks {strays[:3]} do not belong to document {info.name} ({info.doc_id})")
        # Cosine similarity is an inner product only between unit vectors; renormalising costs nothing.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (n, 1)
        vectors = vectors / np.where(norms > 0, norms, 1.0)

        started = time.perf_counter()
        with self._writing():
            replaced = [e for e in self._docs.values() if info.doc_id == e.info.doc_id or info.name == e.info.name]
            segment = f"{self._next_id:012d}-{info.doc_id}"
            self._write_segment(segment, text, chunks, vectors)
            gone = {e.segment for e in replaced}
            kept = [e for e in self._docs.values() if e.segment not in gone]
            self._commit(kept + [_Entry(info, segment, self._next_id, chunks)], next_id=self._next_id + len(chunks))
            self._delete_segments(e.segment for e in replaced)
            self._refresh(force=True)
        logger.info(
            "added %s (%s, %d chunks)%s in %.3f s",
            info.name, info.doc_id, len(chunks),
            f", replacing {', '.join(e.info.doc_id for e in replaced)}" if replaced else "",
            time.perf_counter() - started,
        )

    def remove(self, name_or_id: str) -> DocumentInfo:
        """Remove a document (by name, doc_id or unique prefix) with its chunks, vectors and text.

        Raises:
            StoreError: no such document.
        """
        with self._writing():
            entry = self._require(name_or_id)
            self._commit([e for e in self._docs.values() if e.segment != entry.segment], next_id=self._next_id)
            self._delete_segments([entry.segment])
            self._refresh(force=True)
        logger.info("removed %s (%s)", entry.info.name, entry.info.doc_id)
        return entry.info

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold both locks, start from the manifest on disk, and clear what crashed writers left behind."""
        with self._mutex, self._file_lock:
            self._refresh(force=True)
            self._collect_garbage()
            yield

    def _write_segment(self, segment: str, text: str, chunks: list[Chunk], vectors: np.ndarray) -> None:
        folder = self._segments_dir / segment
        folder.mkdir(parents=True)
        # surrogatepass: a loader may have kept undecodable bytes as lone surrogates; they must round-trip.
        _write_durable(folder / "text.txt", text.encode("utf-8", errors="surrogatepass"))
        lines = "".join(json.dumps(asdict(c)) + "\n" for c in chunks)  # ensure_ascii escapes surrogates
        _write_durable(folder / "chunks.jsonl", lines.encode("ascii"))
        with open(folder / "vectors.npy", "wb") as f:
            np.save(f, vectors, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(folder)
        _fsync_dir(self._segments_dir)

    def _commit(self, entries: list[_Entry], next_id: int) -> None:
        """Switch to a new manifest: the single step that makes a write visible, to this and every process."""
        manifest = {
            "generation": self._generation + 1,
            "next_id": next_id,
            "documents": [{**asdict(e.info), "segment": e.segment, "id_base": e.id_base} for e in entries],
        }
        _write_atomic(self._manifest_path, json.dumps(manifest, indent=1).encode())

    def _delete_segments(self, segments) -> None:
        for segment in segments:
            shutil.rmtree(self._segments_dir / segment, ignore_errors=True)

    def _collect_garbage(self) -> None:
        """Delete segments and temporary files no manifest names: leftovers of writers that were killed."""
        live = {e.segment for e in self._docs.values()}
        if self._segments_dir.is_dir():
            for path in self._segments_dir.iterdir():
                if path.name not in live:
                    logger.info("deleting %s, left by an interrupted write", path)
                    shutil.rmtree(path, ignore_errors=True)
        for path in self.index_dir.glob("*.tmp-*"):
            path.unlink(missing_ok=True)

    # ---- keeping up with the disk -----------------------------------------------------------------------

    def _refresh(self, force: bool = False) -> None:
        """Bring memory up to the manifest on disk, loading only documents that appeared since last time.

        Called at the start of every method, so another process's writes show up on the next call. A reader
        takes no lock, so a writer may delete a segment the manifest it just read still names; the manifest
        has then moved on, and reading it again resolves it.
        """
        if not force and _signature(self._manifest_path) == self._signature:
            return
        for _ in range(10):
            signature, manifest = self._read_manifest()
            try:
                self._apply(manifest)
            except FileNotFoundError:
                if _signature(self._manifest_path) == signature:
                    raise StoreError(
                        f"{self.index_dir}: the manifest names files that are missing; the index is damaged. "
                        "Remove the directory and ingest the documents again."
                    ) from None
                continue
            self._signature = signature
            return
        raise StoreError(f"{self.index_dir}: the index kept changing while being read; try again")

    def _read_manifest(self) -> tuple[tuple[int, ...] | None, dict]:
        try:
            with open(self._manifest_path, "rb") as f:
                signature = _stat_signature(os.fstat(f.fileno()))
                data = f.read()
        except FileNotFoundError:
            return None, {"generation": 0, "next_id": 0, "documents": []}
        try:
            return signature, json.loads(data)
        except ValueError as exc:
            raise StoreError(f"{self._manifest_path}: not valid JSON ({exc})") from None

    def _apply(self, manifest: dict) -> None:
        if manifest["generation"] == self._generation:
            return
        info_fields = [f.name for f in fields(DocumentInfo)]
        wanted = {d["segment"]: d for d in manifest["documents"]}
        current = {e.segment: e for e in self._docs.values()}
        # Load everything new first, so a missing file leaves memory untouched.
        loaded = {
            segment: self._load_segment(segment)
            for segment, d in wanted.items()
            if segment not in current
        }
        for segment, entry in current.items():
            if segment not in wanted:
                self._faiss.remove_ids(faiss.IDSelectorRange(entry.id_base, entry.id_base + len(entry.chunks)))
                for i, chunk in enumerate(entry.chunks):
                    del self._by_fid[entry.id_base + i]
                    del self._fid[chunk.chunk_id]
        docs: dict[str, _Entry] = {}
        for segment, d in wanted.items():
            if segment in current:
                docs[d["doc_id"]] = current[segment]
                continue
            chunks, vectors = loaded[segment]
            ids = np.arange(d["id_base"], d["id_base"] + len(chunks), dtype=np.int64)
            self._faiss.add_with_ids(vectors, ids)
            for fid, chunk in zip(ids.tolist(), chunks):
                self._by_fid[fid] = chunk
                self._fid[chunk.chunk_id] = fid
            docs[d["doc_id"]] = _Entry(DocumentInfo(**{k: d[k] for k in info_fields if k in d}), segment, d["id_base"], chunks)
        logger.debug(
            "index %s: generation %d -> %d (+%d documents)",
            self.index_dir, self._generation, manifest["generation"], len(loaded),
        )
        self._docs = docs
        self._generation = manifest["generation"]
        self._next_id = manifest["next_id"]
        self._keyword = None

    def _load_segment(self, segment: str) -> tuple[list[Chunk], np.ndarray]:
        folder = self._segments_dir / segment
        lines = (folder / "chunks.jsonl").read_text(encoding="ascii").splitlines()
        chunks = [Chunk(**json.loads(line)) for line in lines]
        vectors = np.load(folder / "vectors.npy", allow_pickle=False)
        if vectors.shape != (len(chunks), self.dim):
            raise StoreError(
                f"{folder}: {len(chunks)} chunk records but vectors of shape {vectors.shape}; the index is damaged. "
                "Remove the directory and ingest the documents again."
            )
        return chunks, np.ascontiguousarray(vectors, dtype=np.float32)

    def _keyword_index(self) -> _KeywordIndex:
        """BM25 over all chunks, built on first keyword search after a change (so ingesting pays nothing)."""
        if self._keyword is None:
            started = time.perf_counter()
            chunks, ranges = [], {}
            for doc_id, entry in self._docs.items():
                ranges[doc_id] = (len(chunks), len(chunks) + len(entry.chunks))
                chunks.extend(entry.chunks)
            # The section title joins the text: a clause deep inside "12. Governing Law" is still about it.
            texts = [f"{c.section}\n{c.text}" if c.section else c.text for c in chunks]
            # Imported here, not at the top: bm25s pulls in scipy (0.3 s), which listing or ingesting never needs.
            import bm25s
            import Stemmer

            logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets itself to DEBUG on import
            stemmer = Stemmer.Stemmer("english")
            tokens = bm25s.tokenize(
                texts,
                stopwords=BM25_STOPWORDS,
                stemmer=stemmer,
                token_pattern=BM25_TOKEN_PATTERN,
                show_progress=False,
            )
            bm25 = bm25s.BM25()
            bm25.index(tokens, show_progress=False)
            self._keyword = _KeywordIndex(bm25, stemmer, chunks, ranges)
            logger.debug("built BM25 over %d chunks in %.2f s", len(chunks), time.perf_counter() - started)
        return self._keyword

    def _find(self, name_or_id: str) -> _Entry | None:
        if name_or_id in self._docs:
            return self._docs[name_or_id]
        for entry in self._docs.values():
            if entry.info.name == name_or_id:
                return entry
        if len(name_or_id) < MIN_ID_PREFIX:
            return None
        matches = [e for doc_id, e in self._docs.items() if doc_id.startswith(name_or_id)]
        if len(matches) > 1:
            names = ", ".join(f"{e.info.name} ({e.info.doc_id})" for e in matches)
            raise StoreError(f"{name_or_id!r} matches several documents: {names}; give more of the id or the name")
        return matches[0] if matches else None

    def _require(self, name_or_id: str) -> _Entry:
        entry = self._find(name_or_id)
        if entry is None:
            raise StoreError(f"no document {name_or_id!r} in the index; `longdoc docs` lists them")
        return entry

    def _require_id(self, doc_id: str) -> _Entry:
        if doc_id not in self._docs:
            raise StoreError(f"no document with id {doc_id!r} in the index; `longdoc docs` lists them")
        return self._docs[doc_id]


def _check_marker(index_dir: Path, found: dict, wanted: dict) -> None:
    """Refuse an index this code or this embedder cannot use, saying what differs and what to do."""
    if found.get("format") != wanted["format"]:
        raise StoreError(
            f"{index_dir} has index format {found.get('format')}, this longdoc-qa reads format {wanted['format']}. "
            "Use a longdoc-qa version that matches it, or ingest the documents again into a new --index directory."
        )
    found = {"precision": "float32", **found}  # indexes from before int8 embedding have no precision: float32
    keys = ("embedder", "dim", "precision")
    if tuple(found.get(k) for k in keys) != tuple(wanted[k] for k in keys):
        raise StoreError(
            f"{index_dir} was built with embedder {found.get('embedder')!r} in {found['precision']} "
            f"({found.get('dim')} dimensions), but the embedder now is {wanted['embedder']!r} in "
            f"{wanted['precision']} ({wanted['dim']} dimensions); their vectors cannot be compared. "
            f"Set embedder = {found.get('embedder')!r} and embed_int8 = {str(found['precision'] == 'int8').lower()}, "
            "or use a new --index directory and ingest again."
        )


def _stat_signature(st: os.stat_result) -> tuple[int, ...]:
    # os.replace gives the manifest a new inode; mtime and size catch the rare reuse of an inode number.
    return (st.st_ino, st.st_dev, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def _signature(path: Path) -> tuple[int, ...] | None:
    try:
        return _stat_signature(os.stat(path))
    except FileNotFoundError:
        return None


def _write_durable(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a folder's entries (new files, renames) durable, not only the files' contents."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` so that a reader or a crash sees the old content or the new, never a mix."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    _write_durable(tmp, data)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
