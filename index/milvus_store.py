"""The Milvus backend (`vector_store = "milvus://HOST:PORT[/PREFIX]"`): the library in five collections on a
Milvus server, searched by the server. PREFIX (default `longdoc`) starts every collection's name, so several
libraries can share one Milvus.

    PREFIX_meta     one row: the LibraryMeta the library was built with (JSON), written when it is created
    PREFIX_names    the catalogue, one row per name a document answers to (primary key: the name): doc_id,
                    version (which chunk and text rows are the document's), stamp (which write wrote the row),
                    added (for listing order), pieces (of its text) and the DocumentInfo as JSON
    PREFIX_chunks   one row per chunk (key "DOC_ID.VERSION.I"): doc_id, version, the Chunk as JSON, its unit
                    vector (HNSW, metric IP: the cosine) and its words, which Milvus's BM25 function turns into a
                    sparse vector (SPARSE_INVERTED_INDEX, metric BM25)
    PREFIX_texts    each document's text in pieces of 10,000 characters (key "DOC_ID.VERSION.I"): a VARCHAR
                    holds at most 65,535 bytes
    PREFIX_writes   one row per write that is running, or over but not yet tidied up: the rows it adds, the
                    rows its commit frees, who writes it and until when (its lease)

Milvus wants a vector field in every collection; the four small ones carry a 2-dimensional placeholder.

Writing without transactions. Milvus applies one insert, upsert or delete request whole: its rows share the
request's timestamp, and a Strong-consistency read sees the collection as of one timestamp, so all of them or
none (the catalogue has one shard, so a commit is also one message in the engine's log). Nothing spans two
requests. So:

- An add writes its chunk and text rows under a fresh version (the clock in milliseconds, shifted left 20 bits,
  plus 20 random bits, so two writers do not pick the same one). Such rows count only while a name row points at
  their (doc_id, version): inserting them changes nothing a reader sees.
- The commit is one request to PREFIX_names: an upsert of the rows of every name the change touches (adding:
  each of the document's names, pointing at the new version; a name taken from another document now simply
  points elsewhere), or, for a remove, a delete of the rows of the names that go. A document's names are the
  rows that point at it (the newest row's record gives their order and everything else), so a name always
  belongs to exactly one document, even when two writers race for it.
- After the commit the writer deletes the rows the change freed: the replaced version, a document left without
  a name.

What a reader sees at every moment of a write: before the commit, the library as it was; from the commit on, the
new one. Searches over-fetch a few hits and drop those whose (doc_id, version) is not live, checked with one
query on PREFIX_names for the hits' doc_ids; reading one document (its chunks, its text) fetches the rows of its
live version by key and reads again if a write replaced it in between.

What a crash leaves: killed before its commit, a writer leaves rows of a version no name points at; killed after
it, the rows its commit freed. Its PREFIX_writes row, written before anything else, lists both. The next writer
deletes those that are not live once the dead writer is known to be gone: on this machine its process is no
longer running (or, in this process, the write failed); from another machine, its lease (renewed while it
writes) ran out ten minutes ago, which assumes no writer stalls that long between two of its requests.

Several writers. Milvus has no locks and no compare-and-set. A writer registers in PREFIX_writes before it reads
anything, and the rows a commit frees are deleted only when no write that may have read the library before that
commit is still running (else the last of those writes deletes them once it is done); so a writer working from a
stale read can at worst point a name back at rows that still exist, never at deleted ones. Writes to different
documents touch different rows, and both survive. Two writes to the same name at once both commit, and the one
that commits last holds the name: the other document keeps its other names, or goes (its rows deleted), the
outcome of running them one after the other. Two changes to one document's names at once (an alias added while
another is removed) can lose one: the later upsert wins, and nothing can detect it.

Keyword search is Milvus's own BM25 (k1 1.5 and b 0.75, bm25s's values, as in the embedded store) over words
analysed here: each chunk's section title and text, lower-cased, stop words out, Snowball English stems, exactly
as the embedded store's BM25 tokenises them, joined by spaces; a query is analysed the same way. The field's
analyzer (standard tokenizer, lowercase) only splits them again. Milvus's English analyzer is not used because
milvus-lite's analyzer (`\\w+`, lowercase, listed stop words) ignores the `stemmer` filter and reads
`_english_` as a literal stop word, so "governs" would not find "governed" there; analysing here gives the same
words on Milvus, on milvus-lite and in the embedded store.

Why pymilvus's MilvusClient and not llama-index's MilvusVectorStore: that store has one collection of nodes
(text, embedding, metadata) and deletes by ref_doc_id in a request of its own, so a replacement is seen half
done; it has no place for the catalogue of names, the document texts, versions or the writes in progress, and
its BM25 function analyses the node text with a Milvus analyzer (see above). Every collection here goes through
the one client instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import unquote, urlsplit

import grpc
import numpy as np
from pymilvus import DataType, Function, FunctionType, MilvusClient
from pymilvus.exceptions import MilvusException

from index.base import (
    MAX_NAME_BYTES,
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
from index.stores import redact
from ingest.types import Chunk

logger = logging.getLogger(__name__)
# Every engine error reaches the caller as a one-line StoreError with its reason; pymilvus would also log each
# failed request and each failed reconnection, with tracebacks, on its own handler.
logging.getLogger("pymilvus.decorators").setLevel(logging.CRITICAL)
logging.getLogger("pymilvus.client.connection_manager").setLevel(logging.ERROR)

DEFAULT_PORT = 19530
DEFAULT_PREFIX = "longdoc"
CONNECT_TIMEOUT_S = 3.0
# pymilvus pings an idle connection every 10 s; a gRPC server keeps its default minimum of 5 minutes between
# pings (milvus-lite does), answers faster pings with GOAWAY "too_many_pings", and the call in flight then fails
# as if the engine were unreachable. Pinging at the server default avoids that; calls keep their own timeouts.
GRPC_OPTIONS = {"grpc.keepalive_time_ms": 300_000}
RETRIES = 3  # pymilvus retries a failed request; its default (75 times, backing off to 3 s) takes minutes
ENGINE_ERRORS = (MilvusException, grpc.RpcError)

MAX_VARCHAR = 65_535  # bytes in one VARCHAR value
_SURROGATE = re.compile(r"[\ud800-\udfff]")
PIECE_CHARS = 10_000  # a character takes at most 6 bytes JSON-escaped, so a piece always fits a VARCHAR
MAX_WINDOW = 16_384  # Milvus's largest limit for one query or search
BATCH_ROWS = 256  # rows per insert request
ID_BATCH = 1_000  # keys per get or delete request
OVERFETCH = 16  # hits a search asks for beyond k, to make up for rows of versions that are not live
READ_ATTEMPTS = 5  # a document read again because a write replaced it meanwhile

HNSW = {"M": 16, "efConstruction": 200}
EF_MIN = 64  # HNSW's search breadth; Milvus wants at least the number of hits asked for
BM25 = {"bm25_k1": 1.5, "bm25_b": 0.75}  # bm25s.BM25()'s defaults, as the embedded store ranks
WORDS_ANALYZER = {"tokenizer": "standard", "filter": ["lowercase"]}  # the words come analysed (module docstring)

LEASE_MS = 10 * 60 * 1000  # a writer on another machine that has not renewed its row for this long is gone
CLOCK_SKEW_MS = 5_000  # allowed between two machines' clocks
PLACEHOLDER = [0.0, 0.0]  # the vector of collections that need no vector
KINDS = ("meta", "names", "chunks", "texts", "writes")  # meta first: a prefix without it is not a library
NAME_FIELDS = ["id", "doc_id", "version", "stamp", "added", "pieces", "info"]

_in_flight: set[str] = set()  # ids of the writes this process is running now
_version_lock = threading.Lock()
_last_version = 0


@dataclass(frozen=True)
class _Rows:
    """The chunk and text rows one add wrote for a document, keyed "DOC_ID.VERSION.I"."""

    doc_id: str
    version: int
    chunks: int
    pieces: int

    def key(self, i: int) -> str:
        return f"{self.doc_id}.{self.version:x}.{i}"

    def ids(self, kind: str) -> list[str]:
        return [self.key(i) for i in range(self.chunks if kind == "chunks" else self.pieces)]


@dataclass
class _Doc:
    """A live document as the catalogue has it: its record, its rows, and when it was added."""

    info: DocumentInfo
    rows: _Rows
    added: int


@dataclass
class _Write:
    """A write in progress, as its PREFIX_writes row records it."""

    version: int
    adds: list[_Rows]
    frees: list[_Rows] = field(default_factory=list)
    owner: dict = field(default_factory=dict)
    started: int = 0  # ms, the writer's clock: it registered, then read the library
    renewed: int = 0  # ms: when its lease was last renewed
    committed: int | None = None  # ms, once its commit returned
    committing: bool = False

    @property
    def id(self) -> str:
        return f"{self.version:x}"

    def to_row(self) -> dict:
        body = {
            "adds": [asdict(r) for r in self.adds],
            "frees": [asdict(r) for r in self.frees],
            "owner": self.owner,
            "started": self.started,
            "expires": self.renewed + LEASE_MS,
            "committed": self.committed,
        }
        return {"id": self.id, "body": json.dumps(body), "unused": PLACEHOLDER}

    @classmethod
    def from_row(cls, row: dict) -> _Write:
        body = json.loads(row["body"])
        return cls(
            int(row["id"], 16),
            [_Rows(**r) for r in body["adds"]],
            [_Rows(**r) for r in body["frees"]],
            body["owner"],
            body["started"],
            body["expires"] - LEASE_MS,
            body["committed"],
        )


class MilvusStore(VectorStore):
    """Documents, chunks, vectors and texts in collections on a Milvus server (module docstring)."""

    def __init__(self, client: MilvusClient, meta: LibraryMeta, where: str, prefix: str) -> None:
        super().__init__(meta, where)
        self._client = client
        self._collections = {kind: f"{prefix}_{kind}" for kind in KINDS}

    @classmethod
    def open(cls, location: str, meta: LibraryMeta) -> "MilvusStore":
        """Open the library `location` names (milvus://HOST:PORT[/PREFIX]), creating its collections if new.

        Raises:
            StoreError: Milvus cannot be reached, the collections are not a longdoc library, or the library was
                built with another embedder, precision or vector size.
        """
        host, port, prefix, token = _parse(location)
        try:
            client = MilvusClient(
                uri=f"http://{host}:{port}", token=token, timeout=CONNECT_TIMEOUT_S, dedicated=True,
                grpc_options=GRPC_OPTIONS,
            )
        except ENGINE_ERRORS as exc:
            raise StoreError(
                f"cannot reach Milvus at {host}:{port} ({_reason(exc)}); start it (`longdoc engine milvus`) "
                "or set vector_store to one that runs"
            ) from None
        store = cls(client, meta, redact(location), prefix)
        try:
            store._open_collections()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self._client.close()

    # ---- reading ----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._engine("counting chunks"):
            return sum(doc.info.chunks for doc in self._all_docs())

    def documents(self) -> list[DocumentInfo]:
        with self._engine("listing documents"):
            return [doc.info for doc in self._all_docs()]

    def _by_id(self, doc_id: str) -> DocumentInfo | None:
        with self._engine("looking up a document"):
            doc = self._docs([doc_id]).get(doc_id)
            return doc.info if doc else None

    def _by_name(self, name: str) -> DocumentInfo | None:
        with self._engine("looking up a name"):
            doc = self._doc_named(name)
            return doc.info if doc else None

    def _by_id_prefix(self, prefix: str, limit: int) -> list[DocumentInfo]:
        if not re.fullmatch(r"[0-9A-Za-z-]+", prefix):  # no doc_id has other characters (and `_` is LIKE's wildcard)
            return []
        with self._engine("looking up a document id"):
            rows = self._query("names", f'doc_id like "{prefix}%"', ["doc_id"])
            docs = self._docs({row["doc_id"] for row in rows})
            return [doc.info for doc in _in_order(docs.values())][:limit]

    def _text(self, doc_id: str) -> str:
        with self._engine("reading a document's text"):
            _, rows = self._live_rows(doc_id, "texts", ["text"])
            return "".join(json.loads(row["text"]) for row in rows)

    def chunks(self, doc_id: str | None = None) -> list[Chunk]:
        with self._engine("reading chunks"):
            if doc_id is not None:
                return self._doc_chunks(doc_id)
            chunks = []
            for doc in self._all_docs():
                try:
                    chunks.extend(self._doc_chunks(doc.info.doc_id))
                except _Gone:  # removed since the listing
                    continue
            return chunks

    def vectors(self, doc_id: str) -> np.ndarray:
        with self._engine("reading vectors"):
            _, rows = self._live_rows(doc_id, "chunks", ["vector"])
            return np.array([row["vector"] for row in rows], dtype=np.float32).reshape(len(rows), self.dim)

    def search(self, query_vec: np.ndarray, k: int, doc_id: str | None = None) -> list[tuple[Chunk, float]]:
        """Approximate (HNSW); the score is the inner product of unit vectors, the cosine."""
        query = self._check_query(query_vec).tolist()
        with self._engine("searching"):
            return self._ranked("vector", query, k, doc_id, _dense_params, float)

    def keyword_search(self, query: str, k: int, doc_id: str | None = None) -> list[tuple[Chunk, float]]:
        """Milvus's BM25 over the analysed words (module docstring)."""
        with self._engine("searching by keyword"):
            words = _words([query])[0]
            if not words:
                if doc_id is not None:
                    self._require_doc(doc_id)
                return []
            hits = self._ranked("sparse", words, k, doc_id, _bm25_params, _bm25_score)
            return [(chunk, score) for chunk, score in hits if score > 0]

    def similarities(self, query_vec: np.ndarray, chunks: list[Chunk]) -> np.ndarray:
        query = self._check_query(query_vec)
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        with self._engine("reading vectors"):
            docs = self._docs({c.doc_id for c in chunks})
            ids = [docs[c.doc_id].rows.key(c.index) if c.doc_id in docs else "" for c in chunks]
            found = self._get("chunks", [i for i in ids if i], ["vector"])
            missing = [c.chunk_id for c, i in zip(chunks, ids) if i not in found]
            if missing:
                raise StoreError(f"chunks {missing[:3]} are no longer in the library (their document was replaced "
                                 "or removed); ask again")
            vectors = np.array([found[i]["vector"] for i in ids], dtype=np.float32)  # (n, dim)
            return vectors @ query

    def _ranked(
        self,
        field_name: str,
        data: list[float] | str,
        k: int,
        doc_id: str | None,
        params: Callable[[int], dict],
        score: Callable[[float], float],
    ) -> list[tuple[Chunk, float]]:
        """The k best live chunks for `data` on `field_name`, best first, over the library or one document."""
        if doc_id is not None:
            return self._ranked_in(field_name, data, k, doc_id, params, score)
        if k <= 0:
            return []
        limit = min(k + OVERFETCH, MAX_WINDOW)
        while True:
            hits = self._search(field_name, data, limit, "", params(limit))
            live = self._docs({hit["entity"]["doc_id"] for hit in hits})
            kept = [hit for hit in hits if _is_live(hit["entity"], live)]
            if len(kept) >= k or len(hits) < limit or limit == MAX_WINDOW:
                return _scored(kept, live, score)[:k]
            limit = min(limit * 4, MAX_WINDOW)  # rows of versions not live crowded the live ones out

    def _ranked_in(
        self,
        field_name: str,
        data: list[float] | str,
        k: int,
        doc_id: str,
        params: Callable[[int], dict],
        score: Callable[[float], float],
    ) -> list[tuple[Chunk, float]]:
        """One document's best chunks: its live version is a filter, so every hit counts."""
        for _ in range(READ_ATTEMPTS):
            doc = self._require_doc(doc_id)
            limit = min(k, doc.info.chunks, MAX_WINDOW)
            if limit <= 0:
                return []
            where = f"doc_id == {_quote(doc_id)} and version == {doc.rows.version}"
            hits = self._search(field_name, data, limit, where, params(limit))
            if len(hits) == limit or self._docs([doc_id]).get(doc_id) == doc:  # short, but not from a replacement
                return _scored(hits, {doc_id: doc}, score)
        raise StoreError(f"document {doc_id} kept changing while being searched; try again")

    def _doc_chunks(self, doc_id: str) -> list[Chunk]:
        doc, rows = self._live_rows(doc_id, "chunks", ["record"])
        return renamed([_chunk(row["record"]) for row in rows], doc.info.name)

    def _live_rows(self, doc_id: str, kind: str, fields_: list[str]) -> tuple[_Doc, list[dict]]:
        """The document's rows of `kind`, in order, all of one live version: read again if a write replaced it."""
        for _ in range(READ_ATTEMPTS):
            doc = self._require_doc(doc_id)
            ids = doc.rows.ids(kind)
            found = self._get(kind, ids, fields_)
            if len(found) == len(ids):
                return doc, [found[i] for i in ids]
            if self._docs([doc_id]).get(doc_id) == doc:
                raise StoreError(
                    f"{self.where}: document {doc_id} lacks {len(ids) - len(found)} of its {kind} rows; the library "
                    "is damaged. Remove the document and ingest it again."
                )
        raise StoreError(f"document {doc_id} kept changing while being read; try again")

    # ---- the catalogue ----------------------------------------------------------------------------------

    def _docs(self, doc_ids: Iterable[str]) -> dict[str, _Doc]:
        """The live documents among `doc_ids` (one query per thousand), by doc_id."""
        rows = []
        for batch in _batches(sorted(set(doc_ids)), ID_BATCH):
            rows += self._query_all("names", NAME_FIELDS, f"doc_id in [{', '.join(map(_quote, batch))}]")
        return _catalogue(rows)

    def _all_docs(self) -> list[_Doc]:
        """Every live document, in the order they were added."""
        return _in_order(_catalogue(self._query_all("names", NAME_FIELDS)).values())

    def _doc_named(self, name: str) -> _Doc | None:
        """The document that answers to `name`: its name row says which, and that document's rows say the rest."""
        for _ in range(READ_ATTEMPTS):
            row = self._get("names", [name], ["doc_id"]).get(name)
            if row is None:
                return None
            doc = self._docs([row["doc_id"]]).get(row["doc_id"])
            if doc is not None and name in doc.info.names:
                return doc
        raise StoreError(f"the name {name!r} kept moving while being looked up; try again")

    def _require_doc(self, doc_id: str) -> _Doc:
        doc = self._docs([doc_id]).get(doc_id)
        if doc is None:
            raise _Gone(str(no_such_id(doc_id)))
        return doc

    # ---- writing ----------------------------------------------------------------------------------------

    def _add(self, info: DocumentInfo, text: str, chunks: list[Chunk], vectors: np.ndarray) -> WritePlan:
        _check_key(info.doc_id, "doc_id")
        version = _new_version()
        pieces = [_json(text[i : i + PIECE_CHARS]) for i in range(0, len(text), PIECE_CHARS)]
        rows = _Rows(info.doc_id, version, len(chunks), len(pieces))
        chunk_rows = _chunk_rows(rows, chunks, vectors)  # refuses an oversized chunk before anything is written
        with self._writing(f"adding {info.name}", f"{info.name} was not added", version, adds=[rows]) as write:
            same_id = self._docs([info.doc_id]).get(info.doc_id)
            holder = self._doc_named(info.name)
            plan = plan_add(info, same_id.info if same_id else None, holder.info if holder else None)
            known = _by_doc_id(same_id, holder)
            self._record_frees(write, plan, known)
            texts = [{"id": key, "text": piece, "unused": PLACEHOLDER} for key, piece in zip(rows.ids("texts"), pieces)]
            self._insert("texts", texts, write)
            self._insert("chunks", chunk_rows, write)
            self._commit(write, plan, known, _Doc(plan.insert, rows, added=version))
        return plan

    def _add_name(self, doc_id: str, name: str) -> DocumentInfo:
        with self._writing(f"adding the name {name}", f"the name {name} was not added", _new_version()) as write:
            doc = self._require_doc(doc_id)
            holder = self._doc_named(name)
            plan = plan_add_name(doc.info, name, holder.info if holder else None)
            known = _by_doc_id(doc, holder)
            self._record_frees(write, plan, known)
            self._commit(write, plan, known)
        return plan.update[0]

    def _remove(self, name_or_id: str) -> DocumentInfo:
        with self._writing(f"removing {name_or_id}", f"{name_or_id} was not removed", _new_version()) as write:
            info = self.require(name_or_id)
            doc = self._require_doc(info.doc_id)
            plan = plan_remove(doc.info, name_or_id)
            known = _by_doc_id(doc)
            self._record_frees(write, plan, known)
            self._commit(write, plan, known)
        return info

    @contextmanager
    def _writing(self, action: str, undone: str, version: int, adds: list[_Rows] | None = None) -> Iterator[_Write]:
        """Run one write: register it, clear what finished and dead writers left, let the body read, write its rows
        and commit, then delete what the commit freed. An engine error becomes one StoreError saying what happened.
        """
        write = _Write(version, adds or [], owner=_owner(), started=_now_ms())
        _in_flight.add(write.id)
        try:
            self._upsert("writes", [_renewed(write).to_row()])
            self._collect_garbage(write)
            yield write
        except ENGINE_ERRORS as exc:
            if write.committing:
                outcome = "it may or may not have been committed: `longdoc docs` shows the library as it is"
            else:
                self._abort(write)
                outcome = undone + (": its rows stay unseen, and the next write deletes them" if write.adds else "")
            raise StoreError(f"Milvus at {self.where} failed while {action} ({_reason(exc)}); {outcome}") from None
        except BaseException:
            if not write.committing:
                self._abort(write)
            raise
        finally:
            _in_flight.discard(write.id)
        try:
            self._collect_garbage(write)
        except ENGINE_ERRORS as exc:
            logger.warning("%s: committed, but Milvus failed while tidying up (%s); the next write does it",
                           action, _reason(exc))

    def _record_frees(self, write: _Write, plan: WritePlan, known: dict[str, _Doc]) -> None:
        """Write down the rows the commit will free before committing, so that a crash cannot lose track of them."""
        write.frees = [known[doc_id].rows for doc_id in plan.delete]
        if write.frees:
            self._upsert("writes", [_renewed(write).to_row()])

    def _insert(self, kind: str, rows: list[dict], write: _Write) -> None:
        """Insert in batches, renewing the write's lease now and then: a long ingest is not taken for a dead one."""
        for batch in _batches(rows, BATCH_ROWS):
            self._client.insert(self._collections[kind], batch, retry_times=RETRIES)
            if _now_ms() - write.renewed > LEASE_MS // 3:
                self._upsert("writes", [_renewed(write).to_row()])

    def _commit(self, write: _Write, plan: WritePlan, known: dict[str, _Doc], new: _Doc | None = None) -> None:
        """Make the plan visible with one request to the catalogue (module docstring)."""
        docs = [new] if new else []
        docs += [_Doc(info, known[info.doc_id].rows, known[info.doc_id].added) for info in plan.update]
        upserts = [_name_row(doc, name, write.version) for doc in docs for name in doc.info.names]
        before = [name for doc_id in plan.delete for name in known[doc_id].info.names]
        before += [name for info in plan.update for name in known[info.doc_id].info.names]
        gone = sorted(set(before) - {row["id"] for row in upserts})
        write.committing = True
        # A document's names are the rows that point at it: deleting the rows of the names that go is the whole of
        # a removal, and the upsert after it only brings the record the other rows keep up to date.
        if gone:
            self._delete("names", gone)
        if upserts:
            self._upsert("names", upserts)
        write.committed = _now_ms()

    def _collect_garbage(self, current: _Write) -> None:
        """Delete the rows that writes which are over (committed, or dead) list and that are not live.

        Not while a write that may have read the library before such a commit still runs (it registered before
        that commit ended): its plan may point a name back at those rows. The last of those writes to finish
        deletes them. `current` is this process's write: before its commit it does not hold others back (it reads
        the library after this), and once committed it is itself over.
        """
        now = _now_ms()
        records = [_Write.from_row(row) for row in self._query_all("writes", ["id", "body"])]
        records = [r for r in records if r.id != current.id] + ([current] if current.committed else [])
        running = [r for r in records if r.committed is None and _alive(r, now)]
        over = [(r, r.committed if r.committed is not None else now) for r in records if r not in running]
        done = [r for r, ended in over if all(r2.started > ended + _skew(r, r2) for r2 in running)]
        if done:
            self._delete_unless_live([rows for r in done for rows in r.adds + r.frees])
            self._delete("writes", [r.id for r in done])
            logger.debug("cleared after %d writes", len(done))
        if current.committed and current not in done:  # over, but others may still depend on its freed rows
            self._upsert("writes", [current.to_row()])

    def _delete_unless_live(self, row_sets: list[_Rows]) -> None:
        live = self._docs({rows.doc_id for rows in row_sets})
        dead = [r for r in row_sets if r.doc_id not in live or live[r.doc_id].rows.version != r.version]
        for kind in ("chunks", "texts"):
            self._delete(kind, [i for rows in dead for i in rows.ids(kind)])

    def _abort(self, write: _Write) -> None:
        """Take back what a write that never committed wrote. Its rows were never live, and only it could have made
        them live; if the engine is gone, the next writer does this."""
        try:
            for kind in ("chunks", "texts"):
                self._delete(kind, [i for rows in write.adds for i in rows.ids(kind)])
            self._delete("writes", [write.id])
        except ENGINE_ERRORS as exc:
            logger.info("could not take back write %s (%s); the next write does", write.id, _reason(exc))

    # ---- the collections --------------------------------------------------------------------------------

    def _open_collections(self) -> None:
        """Check the meta row of an existing library before touching anything else; create what is missing."""
        with self._engine("opening the library"):
            existing = set(self._client.list_collections())
            meta_name = self._collections["meta"]
            others = [name for kind, name in self._collections.items() if kind != "meta" and name in existing]
            if meta_name not in existing and others:
                raise StoreError(
                    f"{self.where}: collections {', '.join(others)} exist without {meta_name}, so they are not a "
                    "longdoc library. Choose another prefix: milvus://HOST:PORT/PREFIX."
                )
            found = None
            if meta_name in existing:
                self._client.load_collection(meta_name)  # a restarted Milvus has its collections released
                found = self._read_meta()
            if found is not None:
                self.meta.check(found, self.where)
            for kind, name in self._collections.items():
                if name not in existing:
                    self._create(kind)
                elif kind != "meta":
                    self._client.load_collection(name)
            if found is None:
                # Two processes creating one library at once both write this row; the check after it catches one
                # that lost with another embedder.
                row = {"id": "library", "value": json.dumps(self.meta.to_dict()), "unused": PLACEHOLDER}
                self._upsert("meta", [row])
                self.meta.check(self._read_meta() or {}, self.where)
                logger.info("created library %s (embedder %s in %s, dim %d)", self.where, self.meta.embedder,
                            self.meta.precision, self.meta.dim)

    def _read_meta(self) -> dict | None:
        row = self._get("meta", ["library"], ["value"]).get("library")
        return json.loads(row["value"]) if row else None

    def _create(self, kind: str) -> None:
        schema = MilvusClient.create_schema(auto_id=False)
        index = self._client.prepare_index_params()
        SCHEMAS[kind](schema, index, self.dim)
        name = self._collections[kind]
        try:
            # One shard for the catalogue: the rows of a commit then go to the engine's log as one message.
            shards = {"num_shards": 1} if kind == "names" else {}
            self._client.create_collection(name, schema=schema, consistency_level="Strong", **shards)
        except MilvusException:
            if not self._client.has_collection(name):
                raise
            self._wait_for_indexes(name, [i.field_name for i in index])  # another process is creating the library
        else:
            # The indexes of an empty collection are ready at once; pymilvus would poll for each every 0.5 s.
            self._client.create_index(name, index, sync=False)
        self._client.load_collection(name)

    def _wait_for_indexes(self, name: str, fields_: list[str], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not set(fields_) <= set(self._client.list_indexes(name)):
            if time.monotonic() > deadline:
                raise StoreError(f"{self.where}: collection {name} has no indexes on {', '.join(fields_)}; "
                                 "if no other process is creating this library, drop the collection and open it again")
            time.sleep(0.2)

    # ---- one request each -------------------------------------------------------------------------------

    def _query(self, kind: str, where: str, fields_: list[str], limit: int | None = None) -> list[dict]:
        return self._client.query(
            self._collections[kind], filter=where, output_fields=fields_, limit=limit or MAX_WINDOW,
            retry_times=RETRIES,
        )

    def _query_all(self, kind: str, fields_: list[str], where: str = "") -> list[dict]:
        """Every row that matches; past one window (16,384 rows), page through them by primary key."""
        rows = self._query(kind, where, fields_)
        if len(rows) < MAX_WINDOW:
            return rows
        rows = []
        pages = self._client.query_iterator(
            self._collections[kind], batch_size=ID_BATCH, filter=where, output_fields=fields_
        )
        try:
            while page := pages.next():
                rows += page
        finally:
            pages.close()
        return rows

    def _get(self, kind: str, ids: list[str], fields_: list[str]) -> dict[str, dict]:
        """Rows by primary key (those that exist), by key."""
        found = {}
        for batch in _batches(ids, ID_BATCH):
            for row in self._query(kind, f"id in [{', '.join(map(_quote, batch))}]", fields_, limit=len(batch)):
                found[row["id"]] = row
        return found

    def _search(self, field_name: str, data: list[float] | str, limit: int, where: str, params: dict) -> list[dict]:
        result = self._client.search(
            self._collections["chunks"], data=[data], anns_field=field_name, limit=limit, filter=where,
            output_fields=["doc_id", "version", "record"], search_params=params, retry_times=RETRIES,
        )
        return list(result[0])

    def _upsert(self, kind: str, rows: list[dict]) -> None:
        self._client.upsert(self._collections[kind], rows, retry_times=RETRIES)

    def _delete(self, kind: str, ids: list[str]) -> None:
        for batch in _batches(ids, ID_BATCH):
            self._client.delete(
                self._collections[kind], filter=f"id in [{', '.join(map(_quote, batch))}]", retry_times=RETRIES
            )

    @contextmanager
    def _engine(self, action: str) -> Iterator[None]:
        try:
            yield
        except ENGINE_ERRORS as exc:
            raise StoreError(f"Milvus at {self.where} failed while {action} ({_reason(exc)})") from None


class _Gone(StoreError):
    """The document is not (or no longer) in the library."""


# ---- schemas: one function per collection, all with one signature ---------------------------------------


def _key(schema, length: int) -> None:
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=length)


def _placeholder(schema, index) -> None:
    schema.add_field("unused", DataType.FLOAT_VECTOR, dim=len(PLACEHOLDER))
    index.add_index("unused", index_type="FLAT", metric_type="L2")


def _meta_schema(schema, index, dim: int) -> None:
    _key(schema, 64)
    schema.add_field("value", DataType.VARCHAR, max_length=MAX_VARCHAR)
    _placeholder(schema, index)


def _names_schema(schema, index, dim: int) -> None:
    _key(schema, MAX_NAME_BYTES)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=64)
    for name in ("version", "stamp", "added", "pieces"):
        schema.add_field(name, DataType.INT64)
    schema.add_field("info", DataType.VARCHAR, max_length=MAX_VARCHAR)
    index.add_index("doc_id", index_type="INVERTED")
    _placeholder(schema, index)


def _chunks_schema(schema, index, dim: int) -> None:
    _key(schema, 128)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=64)
    schema.add_field("version", DataType.INT64)
    schema.add_field("record", DataType.VARCHAR, max_length=MAX_VARCHAR)
    schema.add_field("words", DataType.VARCHAR, max_length=MAX_VARCHAR, enable_analyzer=True,
                     analyzer_params=WORDS_ANALYZER)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["words"],
                                 output_field_names=["sparse"]))
    index.add_index("doc_id", index_type="INVERTED")
    index.add_index("vector", index_type="HNSW", metric_type="IP", params=HNSW)
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=BM25)


def _texts_schema(schema, index, dim: int) -> None:
    _key(schema, 128)
    schema.add_field("text", DataType.VARCHAR, max_length=MAX_VARCHAR)
    _placeholder(schema, index)


def _writes_schema(schema, index, dim: int) -> None:
    _key(schema, 32)
    schema.add_field("body", DataType.VARCHAR, max_length=MAX_VARCHAR)
    _placeholder(schema, index)


SCHEMAS = {
    "meta": _meta_schema,
    "names": _names_schema,
    "chunks": _chunks_schema,
    "texts": _texts_schema,
    "writes": _writes_schema,
}


# ---- rows -----------------------------------------------------------------------------------------------


def _chunk_rows(rows: _Rows, chunks: list[Chunk], vectors: np.ndarray) -> list[dict]:
    """The chunks' rows, keyed by their index (so reading them back by key gives document order)."""
    from index.keyword import keyword_text

    words = _words([keyword_text(c) for c in chunks])
    out = []
    for key, chunk, vector, chunk_words in zip(rows.ids("chunks"), chunks, vectors, words):
        record = _json(asdict(chunk))
        if len(record.encode()) > MAX_VARCHAR:
            raise ValueError(
                f"chunk {chunk.chunk_id} takes {len(record.encode()):,} bytes; a Milvus field holds at most "
                f"{MAX_VARCHAR:,}: use a smaller chunk size"
            )
        out.append({"id": key, "doc_id": rows.doc_id, "version": rows.version, "record": record,
                    "words": chunk_words, "vector": vector.tolist()})
    return out


def _name_row(doc: _Doc, name: str, stamp: int) -> dict:
    return {"id": name, "doc_id": doc.info.doc_id, "version": doc.rows.version, "stamp": stamp, "added": doc.added,
            "pieces": doc.rows.pieces, "info": _json(asdict(doc.info)), "unused": PLACEHOLDER}


def _catalogue(rows: list[dict]) -> dict[str, _Doc]:
    """The documents that name rows describe. A document's names are the rows pointing at it, in the order its
    newest row's record gives (rows that record does not know come after, by name); the rest of the record,
    and which version is live, come from that newest row."""
    by_doc: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_doc[row["doc_id"]].append(row)
    docs = {}
    for doc_id, doc_rows in by_doc.items():
        newest = max(doc_rows, key=lambda row: (row["stamp"], row["id"]))
        info = _info(json.loads(newest["info"]))
        held = {row["id"] for row in doc_rows}
        names = [n for n in info.names if n in held] + sorted(held - set(info.names))
        info = dataclasses.replace(info, name=names[0], aliases=names[1:])
        docs[doc_id] = _Doc(info, _Rows(doc_id, newest["version"], info.chunks, newest["pieces"]), newest["added"])
    return docs


def _info(record: dict) -> DocumentInfo:
    known = {f.name for f in fields(DocumentInfo)}
    return DocumentInfo(**{k: v for k, v in record.items() if k in known})


def _chunk(record: str) -> Chunk:
    return Chunk(**json.loads(record))


def _in_order(docs: Iterable[_Doc]) -> list[_Doc]:
    return sorted(docs, key=lambda doc: (doc.added, doc.info.doc_id))


def _by_doc_id(*docs: _Doc | None) -> dict[str, _Doc]:
    return {doc.info.doc_id: doc for doc in docs if doc is not None}


def _is_live(entity: dict, live: dict[str, _Doc]) -> bool:
    doc = live.get(entity["doc_id"])
    return doc is not None and doc.rows.version == entity["version"]


def _scored(hits: list[dict], live: dict[str, _Doc], score: Callable[[float], float]) -> list[tuple[Chunk, float]]:
    scored = [
        (renamed([_chunk(hit["entity"]["record"])], live[hit["entity"]["doc_id"]].info.name)[0], score(hit["distance"]))
        for hit in hits
    ]
    return sorted(scored, key=lambda pair: -pair[1])  # stable: the engine's order among equal scores


def _dense_params(limit: int) -> dict:
    return {"metric_type": "IP", "params": {"ef": max(EF_MIN, limit)}}


def _bm25_params(limit: int) -> dict:
    return {"metric_type": "BM25"}


def _bm25_score(distance: float) -> float:
    """A BM25 hit's score, higher is better and > 0 for a chunk sharing a word with the query.

    Milvus returns the score itself as the hit's distance; milvus-lite 3.2 returns it negated (it sorts every
    metric ascending). The magnitude is the score on both.
    """
    return abs(distance)


def _words(texts: list[str]) -> list[str]:
    """Each text's words as the embedded store's BM25 sees them (lower-cased, stop words out, English stems),
    joined by spaces for Milvus's BM25 function (module docstring)."""
    if not texts:
        return []
    import Stemmer

    from index.keyword import stems  # imported here: bm25s pulls in scipy, which opening or listing never needs

    return [_fit(" ".join(words)) for words in stems(texts, Stemmer.Stemmer("english"))]  # a Stemmer per call


def _fit(words: str) -> str:
    """Words cut at a space to fit a VARCHAR (only a chunk far larger than any chunker makes comes near it)."""
    data = words.encode()
    if len(data) <= MAX_VARCHAR:
        return words
    return data[:MAX_VARCHAR].decode(errors="ignore").rsplit(" ", 1)[0]


def _json(value: object) -> str:
    """JSON that is valid UTF-8, as gRPC requires: characters as they are, lone surrogates (a loader's
    undecodable bytes) as \\uXXXX escapes so that they come back. No character takes more than 6 bytes."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False))


# ---- expressions, versions, writers ---------------------------------------------------------------------


def _quote(value: str) -> str:
    """A string literal for a Milvus filter expression."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + escaped.replace("\t", "\\t") + '"'


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_key(value: str, what: str) -> None:
    if not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", value):
        raise ValueError(f"{what} {value!r} must be 1 to 64 letters, digits, '-' or '_'")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _new_version() -> int:
    """A write's number: the clock in ms and 20 random bits (two writers do not pick the same one), increasing
    within this process, so documents list in the order they were added."""
    global _last_version
    with _version_lock:
        _last_version = max((_now_ms() << 20) | secrets.randbits(20), _last_version + 1)
        return _last_version


def _renewed(write: _Write) -> _Write:
    write.renewed = _now_ms()
    return write


@cache
def _machine() -> str:
    """This machine (and PID namespace), so that a writer's process can be looked for only where it ran."""
    parts = [socket.gethostname()]
    for read in (lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
                 lambda: str(os.stat("/proc/self/ns/pid").st_ino)):
        try:
            parts.append(read())
        except OSError:
            pass
    return "/".join(parts)


def _process_start(pid: int) -> str | None:
    """When process `pid` started (so that a reused pid is not taken for it), or None if it is not running."""
    if not os.path.exists("/proc/self/stat"):  # not Linux: whether the pid exists is all there is to know
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"
    try:
        after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if after_name[0] == "Z" else after_name[19]  # a zombie is killed already; field 22 is starttime


def _owner() -> dict:
    return {"machine": _machine(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def _alive(write: _Write, now: int) -> bool:
    """Whether the writer of a write that has not committed may still commit it."""
    owner = write.owner
    if owner.get("machine") != _machine():
        return now < write.renewed + LEASE_MS + CLOCK_SKEW_MS
    if owner["pid"] == os.getpid() and owner["start"] == _process_start(os.getpid()):
        return write.id in _in_flight  # this process's write that failed is over
    return _process_start(owner["pid"]) == owner["start"]


def _skew(a: _Write, b: _Write) -> int:
    return 0 if a.owner.get("machine") == b.owner.get("machine") else CLOCK_SKEW_MS


def _reason(exc: BaseException) -> str:
    """An engine error in a few words."""
    code = exc.code() if isinstance(exc, grpc.RpcError) else getattr(exc, "code", None)
    text = exc.details() if isinstance(exc, grpc.RpcError) else getattr(exc, "message", "") or str(exc)
    text = " ".join(str(text).split())
    if code == grpc.StatusCode.UNAVAILABLE or "UNAVAILABLE" in text or "server unavailable" in text:
        return "it is not answering: stopped, or unreachable"
    return text[:300]


def _parse(location: str) -> tuple[str, int, str, str]:
    """(host, port, prefix, token) from milvus://[USER:PASSWORD@]HOST[:PORT][/PREFIX]."""
    parts = urlsplit(location)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        port = 0
    prefix = parts.path.strip("/") or DEFAULT_PREFIX
    if not parts.hostname or not port:
        raise StoreError(f"vector_store={redact(location)!r}: expected milvus://HOST:PORT[/PREFIX]")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", prefix):
        raise StoreError(
            f"vector_store={redact(location)!r}: the prefix {prefix!r} must be letters, digits and '_', "
            "not starting with a digit (it begins Milvus collection names)"
        )
    token = f"{unquote(parts.username)}:{unquote(parts.password or '')}" if parts.username else ""
    return parts.hostname, port, prefix, token
