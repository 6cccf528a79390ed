"""The embedded backend (`vector_store = "faiss"`, the default): every document's text, chunk records and vectors
in one folder, and a manifest that says which are live.

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
- Names. A document's names (`DocumentInfo.name` and `aliases`) live in its manifest entry, so renaming is a
  manifest commit and touches no segment; chunk records keep the name they were ingested under and are given
  the current one when loaded.
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
from typing import TYPE_CHECKING, Iterable, Iterator

import faiss
import numpy as np
from filelock import FileLock

from index.base import (
    DocumentInfo,
    LibraryMeta,
    StoreError,
    VectorStore,
    WritePlan,
    no_such_id,
    plan_add,
    plan_add_name,
    plan_remove,
    renamed,
)
from ingest.types import Chunk

if TYPE_CHECKING:
    from index.keyword import KeywordIndex

logger = logging.getLogger(__name__)

MARKER_FILE = "longdoc-index.json"
MANIFEST_FILE = "MANIFEST.json"
SEGMENTS_DIR = "segments"
LOCK_FILE = ".lock"


class _DamagedSegment(Exception):
    """One document's files cannot be read; the message says what is wrong."""


@dataclass
class _Entry:
    """A live document in memory: its record, where its files are, and its vector id range."""

    info: DocumentInfo
    segment: str
    id_base: int  # chunk i has FAISS id id_base + i
    chunks: list[Chunk]
    damaged: str = ""  # why its files cannot be read (then no chunks and no vectors are in memory)


class FaissStore(VectorStore):
    """Chunks, their vectors and their documents' texts, persisted under one directory and searched in memory."""

    def __init__(self, index_dir: Path, meta: LibraryMeta) -> None:
        super().__init__(meta, str(index_dir))
        self.index_dir = index_dir
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
        self._names: dict[str, str] = {}  # every name and alias -> doc_id
        self._by_fid: dict[int, Chunk] = {}
        self._fid: dict[str, int] = {}  # chunk_id -> FAISS id
        self._faiss = faiss.IndexIDMap2(faiss.IndexFlatIP(meta.dim))
        # No faiss.omp_set_num_threads here: faiss and torch share one OpenMP runtime, and capping faiss at
        # one thread silently capped the generator and the embedder too (prefill ran at half speed).
        self._keyword: KeywordIndex | None = None  # built on the first keyword search, then kept up to date

    @classmethod
    def open(cls, index_dir: Path, meta: LibraryMeta) -> "FaissStore":
        """Open the index in `index_dir`, creating it if missing.

        Raises:
            StoreError: the index was made by another embedder or precision, with another vector size, or by
                another version of longdoc-qa, or the directory holds something that is not an index.
        """
        index_dir = Path(index_dir).expanduser()
        try:
            index_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where the folder or one of its parents should be
            raise StoreError(f"{index_dir}: cannot hold a library ({exc.strerror}); a library is a folder") from None
        marker_path = index_dir / MARKER_FILE
        if not marker_path.exists():
            with FileLock(str(index_dir / LOCK_FILE)):
                if not marker_path.exists():
                    others = sorted(p.name for p in index_dir.iterdir() if p.name != LOCK_FILE)
                    if others:
                        raise StoreError(
                            f"{index_dir} is not empty ({', '.join(others[:5])}) and has no {MARKER_FILE}: it is not a "
                            "longdoc index. Choose an empty or new directory for --index."
                        )
                    _write_atomic(marker_path, json.dumps(meta.to_dict(), indent=2).encode())
                    logger.info("created index %s (embedder %s in %s, dim %d)", index_dir, meta.embedder,
                                meta.precision, meta.dim)
        try:
            found = json.loads(marker_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"{marker_path}: unreadable version marker ({exc})") from None
        if not isinstance(found, dict):
            raise StoreError(f"{marker_path}: unreadable version marker (not a JSON object)")
        meta.check(found, str(index_dir))
        store = cls(index_dir, meta)
        store._refresh()
        return store

    # ---- reading ----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._mutex:
            self._refresh()
            return self._faiss.ntotal

    def documents(self) -> list[DocumentInfo]:
        with self._mutex:
            self._refresh()
            return [entry.info for entry in self._docs.values()]

    def _by_id(self, doc_id: str) -> DocumentInfo | None:
        with self._mutex:
            self._refresh()
            entry = self._docs.get(doc_id)
            return entry.info if entry else None

    def _by_name(self, name: str) -> DocumentInfo | None:
        with self._mutex:
            self._refresh()
            doc_id = self._names.get(name)
            return self._docs[doc_id].info if doc_id else None

    def _by_id_prefix(self, prefix: str, limit: int) -> list[DocumentInfo]:
        with self._mutex:
            self._refresh()
            return [e.info for doc_id, e in self._docs.items() if doc_id.startswith(prefix)][:limit]

    def _text(self, doc_id: str) -> str:
        with self._mutex:
            self._refresh()
            entry = self._entry(doc_id)
            try:
                data = (self._segments_dir / entry.segment / "text.txt").read_bytes()
            except FileNotFoundError:  # another process replaced or removed it since the last refresh
                self._refresh(force=True)
                entry = self._entry(doc_id)
                try:
                    data = (self._segments_dir / entry.segment / "text.txt").read_bytes()
                except FileNotFoundError:  # lost on disk, as _load_segment finds lost chunks or vectors
                    raise self._unreadable(entry.info, "text.txt is missing") from None
        return data.decode("utf-8", errors="surrogatepass")

    def chunks(self, doc_id: str | None = None) -> list[Chunk]:
        with self._mutex:
            self._refresh()
            if doc_id is not None:
                return list(self._entry(doc_id).chunks)
            return [chunk for entry in self._docs.values() for chunk in entry.chunks]

    def vectors(self, doc_id: str) -> np.ndarray:
        with self._mutex:
            self._refresh()
            entry = self._entry(doc_id)
            ids = np.arange(entry.id_base, entry.id_base + len(entry.chunks), dtype=np.int64)
            return self._faiss.reconstruct_batch(ids)  # (chunks, dim)

    def search(self, query_vec: np.ndarray, k: int, doc_id: str | None = None) -> list[tuple[Chunk, float]]:
        """Exact: a flat index compares the query with every vector (or every vector of one document)."""
        query = self._check_query(query_vec).reshape(1, -1)  # (1, dim)
        with self._mutex:
            self._refresh()
            params = None
            available = self._faiss.ntotal
            if doc_id is not None:
                entry = self._entry(doc_id)
                selector = faiss.IDSelectorRange(entry.id_base, entry.id_base + len(entry.chunks))
                params = faiss.SearchParameters(sel=selector)
                available = len(entry.chunks)
            k = min(k, available)
            if k <= 0:
                return []
            scores, ids = self._faiss.search(query, k, params=params)  # (1, k) each
            return [(self._by_fid[int(i)], float(s)) for s, i in zip(scores[0], ids[0]) if i != -1]

    def keyword_search(self, query: str, k: int, doc_id: str | None = None) -> list[tuple[Chunk, float]]:
        """BM25 (index/keyword.py: bm25s's scores with llama-index's BM25Retriever's tokenisation), kept up to
        date document by document, so an upload costs the next search that document's tokens, not the library's.

        Neither llama-index's BM25Retriever nor bm25s is used to hold it: both build an index of the whole corpus
        at once, which every change would throw away (4.0 s at 52,680 chunks, a minute at a million).
        """
        with self._mutex:
            self._refresh()
            if doc_id is not None:
                self._entry(doc_id)
            if k <= 0 or not self._by_fid:
                return []
            hits = self._keyword_index().search(query, k, key=doc_id)
            return [(self._docs[key].chunks[position], score) for key, position, score in hits]

    def similarities(self, query_vec: np.ndarray, chunks: list[Chunk]) -> np.ndarray:
        query = self._check_query(query_vec)
        with self._mutex:
            self._refresh()
            if not chunks:
                return np.zeros(0, dtype=np.float32)
            missing = [c.chunk_id for c in chunks if c.chunk_id not in self._fid]
            if missing:  # removed or replaced by another process or thread since they were found
                raise StoreError(f"chunks {missing[:3]} are no longer in {self.where}; search again")
            ids = np.array([self._fid[c.chunk_id] for c in chunks], dtype=np.int64)
            return self._faiss.reconstruct_batch(ids) @ query  # (n, dim) @ (dim,)

    # ---- writing ----------------------------------------------------------------------------------------

    def _add(self, info: DocumentInfo, text: str, chunks: list[Chunk], vectors: np.ndarray) -> WritePlan:
        with self._writing():
            same_id = self._docs.get(info.doc_id)
            holder = self._docs.get(self._names.get(info.name, ""))
            plan = plan_add(info, same_id.info if same_id else None, holder.info if holder else None)
            segment = f"{self._next_id:012d}-{info.doc_id}"
            self._write_segment(segment, text, chunks, vectors)
            self._carry_out(plan, _Entry(plan.insert, segment, self._next_id, chunks), self._next_id + len(chunks))
        return plan

    def _add_name(self, doc_id: str, name: str) -> DocumentInfo:
        with self._writing():
            info = self._entry(doc_id).info
            holder = self._docs.get(self._names.get(name, ""))
            plan = plan_add_name(info, name, holder.info if holder else None)
            self._carry_out(plan, None, self._next_id)
        return plan.update[0]

    def _remove(self, name_or_id: str) -> DocumentInfo:
        with self._writing():
            info = self.require(name_or_id)
            self._carry_out(plan_remove(info, name_or_id), None, self._next_id)
        return info

    def _carry_out(self, plan: WritePlan, new: _Entry | None, next_id: int) -> None:
        """Commit the manifest that `plan` describes, then delete the segments it dropped."""
        updated = {info.doc_id: info for info in plan.update}
        gone = [self._docs[doc_id] for doc_id in plan.delete]
        kept = [
            _Entry(updated.get(e.info.doc_id, e.info), e.segment, e.id_base, e.chunks)
            for e in self._docs.values()
            if e.info.doc_id not in plan.delete
        ]
        self._commit(kept + ([new] if new else []), next_id=next_id)
        self._delete_segments(e.segment for e in gone)
        self._refresh(force=True)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold both locks, start from the manifest on disk, and clear what crashed writers left behind.

        A failure of the disk (full, read-only, permissions) becomes a StoreError: the manifest on disk is the
        one before the write, so nothing of it is committed.
        """
        with self._mutex, self._file_lock:
            self._refresh(force=True)
            try:
                self._collect_garbage()
                yield
            except OSError as exc:
                raise StoreError(f"{self.index_dir}: cannot write the index ({exc.strerror or exc}); "
                                 "nothing of this change was committed") from None

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

    def _delete_segments(self, segments: Iterable[str]) -> None:
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
            loaded, damaged = self._load_new(manifest)
            if damaged and _signature(self._manifest_path) != signature:
                continue  # a writer deleted a segment it had just replaced: the new manifest no longer names it
            for segment, reason in damaged.items():
                logger.warning("%s: %s; the rest of the library is served without it", segment, reason)
            self._apply(manifest, loaded, damaged)
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
            manifest = json.loads(data)
        except ValueError as exc:
            raise StoreError(f"{self._manifest_path}: not valid JSON ({exc})") from None
        documents = manifest.get("documents") if isinstance(manifest, dict) else None
        if (not isinstance(documents, list) or not all(isinstance(manifest.get(k), int) for k in ("generation", "next_id"))
                or not all(isinstance(d, dict) and {"segment", "id_base", "doc_id", "name"} <= d.keys()
                           for d in documents)):
            raise StoreError(f"{self._manifest_path}: not a longdoc manifest (its generation, next id or a "
                             "document's segment is missing); the library cannot be read")
        return signature, manifest

    def _load_new(self, manifest: dict) -> tuple[dict[str, tuple[list[Chunk], np.ndarray]], dict[str, str]]:
        """The segments `manifest` names that memory does not hold yet, loaded; and those that cannot be, with
        why. Everything is loaded before memory changes, so a failure leaves it as it was."""
        if manifest["generation"] == self._generation:
            return {}, {}
        current = {e.segment for e in self._docs.values()}
        loaded, damaged = {}, {}
        for d in manifest["documents"]:
            if d["segment"] not in current:
                try:
                    loaded[d["segment"]] = self._load_segment(d["segment"])
                except _DamagedSegment as exc:
                    damaged[d["segment"]] = str(exc)
        return loaded, damaged

    def _apply(self, manifest: dict, loaded: dict[str, tuple[list[Chunk], np.ndarray]], damaged: dict[str, str]) -> None:
        if manifest["generation"] == self._generation:
            return
        info_fields = [f.name for f in fields(DocumentInfo)]
        wanted = {d["segment"]: d for d in manifest["documents"]}
        current = {e.segment: e for e in self._docs.values()}
        for segment, entry in current.items():
            if segment not in wanted:
                self._faiss.remove_ids(faiss.IDSelectorRange(entry.id_base, entry.id_base + len(entry.chunks)))
                for i, chunk in enumerate(entry.chunks):
                    del self._by_fid[entry.id_base + i]
                    del self._fid[chunk.chunk_id]
                if self._keyword is not None and not entry.damaged:
                    self._keyword.remove(entry.info.doc_id)
        docs: dict[str, _Entry] = {}
        for segment, d in wanted.items():
            info = DocumentInfo(**{k: d[k] for k in info_fields if k in d})
            reason = damaged.get(segment) or (current[segment].damaged if segment in current else "")
            if reason:  # listed, so that it can be removed or ingested again; never searched
                docs[info.doc_id] = _Entry(info, segment, d["id_base"], [], reason)
                continue
            fresh = segment not in current
            if fresh:
                chunks, vectors = loaded[segment]
                ids = np.arange(d["id_base"], d["id_base"] + len(chunks), dtype=np.int64)
                self._faiss.add_with_ids(vectors, ids)
                if self._keyword is not None:  # built already, hence imported
                    from index.keyword import keyword_text

                    self._keyword.add(info.doc_id, [keyword_text(c) for c in chunks])
            else:
                chunks = current[segment].chunks
            if fresh or any(c.doc_name != info.name for c in chunks):  # new, or renamed since it was loaded
                chunks = renamed(chunks, info.name)
                for i, chunk in enumerate(chunks):
                    self._by_fid[d["id_base"] + i] = chunk
                    self._fid[chunk.chunk_id] = d["id_base"] + i
            docs[info.doc_id] = _Entry(info, segment, d["id_base"], chunks)
        logger.debug(
            "index %s: generation %d -> %d (+%d documents)",
            self.index_dir, self._generation, manifest["generation"], len(loaded),
        )
        self._docs = docs
        self._names = {name: doc_id for doc_id, e in docs.items() for name in e.info.names}
        self._generation = manifest["generation"]
        self._next_id = manifest["next_id"]

    def _load_segment(self, segment: str) -> tuple[list[Chunk], np.ndarray]:
        """One document's chunk records and vectors; _DamagedSegment saying what is wrong when they cannot be read
        (a file lost or spoiled on disk: never written so by a writer, which commits only complete segments)."""
        folder = self._segments_dir / segment
        try:
            lines = (folder / "chunks.jsonl").read_text(encoding="ascii").splitlines()
            chunks = [Chunk(**json.loads(line)) for line in lines]
            vectors = np.load(folder / "vectors.npy", allow_pickle=False)
        except FileNotFoundError as exc:
            raise _DamagedSegment(f"{Path(exc.filename).name} is missing") from None
        except (OSError, ValueError, TypeError) as exc:  # unreadable, not JSON or ASCII, not a chunk, not an array
            raise _DamagedSegment(f"its files cannot be read ({type(exc).__name__}: {exc})") from None
        if vectors.shape != (len(chunks), self.dim):
            raise _DamagedSegment(f"{len(chunks)} chunk records but vectors of shape {vectors.shape}")
        return chunks, np.ascontiguousarray(vectors, dtype=np.float32)

    def damaged(self) -> dict[str, str]:
        with self._mutex:
            self._refresh()
            return {doc_id: e.damaged for doc_id, e in self._docs.items() if e.damaged}

    def _keyword_index(self) -> KeywordIndex:
        """BM25 over all chunks, built on the first keyword search (so opening and ingesting pay nothing)."""
        if self._keyword is None:
            started = time.perf_counter()
            from index.keyword import KeywordIndex, keyword_text  # bm25s pulls in scipy (0.3 s): listing never does

            self._keyword = KeywordIndex()
            for doc_id, entry in self._docs.items():
                if not entry.damaged:
                    self._keyword.add(doc_id, [keyword_text(c) for c in entry.chunks])
            logger.debug("built BM25 over %d chunks in %.2f s", len(self._keyword), time.perf_counter() - started)
        return self._keyword

    def _entry(self, doc_id: str) -> _Entry:
        """A live, readable document's entry."""
        if doc_id not in self._docs:
            raise no_such_id(doc_id)
        entry = self._docs[doc_id]
        if entry.damaged:
            raise self._unreadable(entry.info, entry.damaged)
        return entry

    def _unreadable(self, info: DocumentInfo, reason: str) -> StoreError:
        return StoreError(f"{info.name} cannot be read from {self.index_dir} ({reason}): ingest its file again, or "
                          f"remove it (longdoc remove {info.name})")


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
