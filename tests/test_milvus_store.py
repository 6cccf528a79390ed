"""The Milvus backend's own promises, against real milvus-lite servers: one clear line when the engine cannot be
reached or goes away mid-write, rows of an unfinished write that no reader sees and the next write deletes, a
race for one name that leaves one holder, and texts longer than a Milvus field.

The suite every backend passes is tests/test_store.py; these look at the collections underneath too.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from engine_fixtures import new_milvus_library
from pymilvus import MilvusClient

from app.local_engines import LocalEngine, free_port, start_milvus
from index import milvus_store
from index.base import DocumentInfo, LibraryMeta, StoreError, VectorStore
from index.stores import open_store
from ingest.types import Chunk

REPO = Path(__file__).resolve().parents[1]
META = LibraryMeta("fake:8", 8)
CONTRACT = [
    "This Agreement shall be governed by the laws of the State of Delaware.",
    "Payment is due within thirty days of the invoice date.",
]
AMENDED = CONTRACT[:1] + ["This Agreement renews automatically each year."]
CALL = ["Alice: revenue grew twelve percent in the third quarter."]


def vector(seed: str) -> np.ndarray:
    digest = hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    v = rng.standard_normal(8).astype(np.float32)
    return v / np.linalg.norm(v)


def make_doc(name: str, paragraphs: list[str]) -> tuple[DocumentInfo, str, list[Chunk], np.ndarray]:
    """A document whose chunks are its paragraphs (as in test_store, but any text, lone surrogates included)."""
    text = "\n\n".join(paragraphs)
    doc_id = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    chunks, start = [], 0
    for i, para in enumerate(paragraphs):
        chunks.append(Chunk(doc_id, name, i, para, start, start + len(para), len(para.split()), section="1. Terms"))
        start += len(para) + 2
    info = DocumentInfo(doc_id, name, "txt", name, 1, len(chunks), len(chunks), len(text), "2025-01-01T00:00:00Z")
    return info, text, chunks, np.stack([vector(p) for p in paragraphs])


def add(store: VectorStore, name: str, paragraphs: list[str]) -> DocumentInfo:
    return store.add(*make_doc(name, paragraphs))


def rows(location: str, kind: str, where: str = "") -> list[dict]:
    """The rows of one of the library's collections, read past the store."""
    engine_url, prefix = location.rsplit("/", 1)
    client = MilvusClient(uri=engine_url.replace("milvus://", "http://"), dedicated=True)
    try:
        return client.query(f"{prefix}_{kind}", filter=where, output_fields=["id"], limit=16_384)
    finally:
        client.close()


def leftovers(location: str, doc_id: str) -> int:
    """Chunk and text rows of `doc_id`, live or not, and write records."""
    chunk_rows = rows(location, "chunks", f'doc_id == "{doc_id}"')
    text_rows = rows(location, "texts", f'id like "{doc_id}.%"')
    return len(chunk_rows) + len(text_rows)


@pytest.fixture
def location(milvus_engine: LocalEngine) -> str:  # noqa: F811
    return new_milvus_library(milvus_engine)


def test_unreachable_engine_is_one_line_naming_host_and_port() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(StoreError) as err:
        open_store(f"milvus://127.0.0.1:{port}/lib", Path("unused"), META)
    assert f"127.0.0.1:{port}" in str(err.value) and "\n" not in str(err.value)
    assert time.monotonic() - started < 60  # the retry policy (RETRIES), not a speed figure: pymilvus's default
    # retries take minutes


def test_collections_of_another_application_are_not_taken_for_a_library(location: str) -> None:
    engine_url, prefix = location.rsplit("/", 1)
    client = MilvusClient(uri=engine_url.replace("milvus://", "http://"), dedicated=True)
    client.create_collection(f"{prefix}_chunks", dimension=8)
    client.close()
    with pytest.raises(StoreError, match="not a longdoc library"):
        open_store(location, Path("unused"), META)


def test_engine_stopped_mid_ingest_adds_nothing_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, port = tmp_path / "milvus", free_port()
    engine = start_milvus(data, port)
    try:
        location = f"{engine.url}/lib"
        store = open_store(location, tmp_path, META)
        add(store, "msa.txt", CONTRACT)
        big = [f"paragraph {i} on quarterly revenue" for i in range(20)]
        monkeypatch.setattr(milvus_store, "BATCH_ROWS", 4)
        insert = store._client.insert

        def insert_then_stop(collection_name: str, data: list, **kwargs) -> dict:
            result = insert(collection_name, data, **kwargs)
            if collection_name.endswith("_chunks"):
                engine.stop()  # after the first batch of the document's chunks went in
            return result

        monkeypatch.setattr(store._client, "insert", insert_then_stop)
        started = time.monotonic()
        with pytest.raises(StoreError) as err:
            add(store, "big.txt", big)
        message = str(err.value)
        assert f"127.0.0.1:{port}" in message and "big.txt was not added" in message and "\n" not in message
        # a guard on the retry policy, not a speed figure: with pymilvus's default retries (75, backing off to
        # 3 s) the error takes minutes; with the store's RETRIES it comes in seconds, even on two busy cores
        assert time.monotonic() - started < 90
        store.close()

        engine = start_milvus(data, port)
        again = open_store(location, tmp_path, META)
        big_id = make_doc("big.txt", big)[0].doc_id
        assert [d.name for d in again.documents()] == ["msa.txt"] and len(again) == 2
        assert leftovers(location, big_id) > 0  # what got in before the engine stopped ...
        assert {c.doc_name for c, _ in again.keyword_search("quarterly revenue", k=10)} == set()  # ... is unseen
        add(again, "call.txt", CALL)
        assert leftovers(location, big_id) == 0 and rows(location, "writes") == []
        again.close()
    finally:
        engine.stop()


KILLED_WRITER = r"""
import os, signal, sys
from pathlib import Path
from index.base import LibraryMeta
from index.milvus_store import MilvusStore
from index.stores import open_store
from test_milvus_store import AMENDED, add

location, when = sys.argv[1], sys.argv[2]
commit = MilvusStore._commit

def killed(self, *args, **kwargs):
    if when == "after":
        commit(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

MilvusStore._commit = killed
add(open_store(location, Path("unused"), LibraryMeta("fake:8", 8)), "msa.txt", AMENDED)
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_killed_writer_leaves_rows_no_reader_sees_and_the_next_write_deletes(location: str, when: str) -> None:
    store = open_store(location, Path("unused"), META)
    old = add(store, "msa.txt", CONTRACT)
    new_id = make_doc("msa.txt", AMENDED)[0].doc_id
    child = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, location, when], cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"},
    )
    assert child.returncode == -signal.SIGKILL

    live_id, dead_id = (old.doc_id, new_id) if when == "before" else (new_id, old.doc_id)
    assert [d.doc_id for d in store.documents()] == [live_id] and len(store) == 2
    assert {c.doc_id for c, _ in store.search(vector(AMENDED[1]), k=10)} == {live_id}
    assert {c.doc_id for c, _ in store.keyword_search("agreement", k=10)} == {live_id}
    assert leftovers(location, dead_id) > 0 and len(rows(location, "writes")) == 1

    add(store, "call.txt", CALL)  # the next write, from any process
    assert leftovers(location, dead_id) == 0 and rows(location, "writes") == []
    assert len(store.chunks(live_id)) == 2
    store.close()


def _same_name_writer(location: str, tag: str, n: int) -> None:
    store = open_store(location, Path("unused"), META)
    for i in range(n):
        add(store, "shared.txt", [f"{tag} version {i} paragraph {j}" for j in range(3)])
    store.close()


def test_two_writers_racing_for_one_name_leave_it_one_document(location: str) -> None:
    store = open_store(location, Path("unused"), META)
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_same_name_writer, args=(location, tag, 8)) for tag in ("cli", "ui")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    [shared] = store.documents()
    assert shared.names == ["shared.txt"] and len(store.chunks(shared.doc_id)) == 3
    add(store, "call.txt", CALL)  # whatever the losers left, the next write has deleted
    assert len(rows(location, "chunks")) == 3 + 1 and len(rows(location, "texts")) == 2
    assert rows(location, "writes") == []
    store.close()


def test_text_longer_than_a_milvus_field_comes_back_exactly(location: str) -> None:
    store = open_store(location, Path("unused"), META)
    paragraphs = [f"Paragraphe {i}: déjà vu, naïve café, 東京 ✓ " * 100 for i in range(40)]
    paragraphs[7] += "undecodable byte kept as \udc80 by a loader"
    info = add(store, "long.txt", paragraphs)
    text = store.document_text("long.txt")
    assert len(text.encode("utf-8", "surrogatepass")) > 3 * 65_535
    assert text == "\n\n".join(paragraphs)
    assert all(text[c.char_start : c.char_end] == c.text for c in store.chunks(info.doc_id))
    assert store.keyword_search("naive cafe", k=1) == []  # accents are letters: no match without them
    assert store.keyword_search("naïve", k=1)[0][0].doc_id == info.doc_id
    store.close()


def test_catalogue_longer_than_one_query_window_is_read_whole(location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(location, Path("unused"), META)
    for i in range(5):
        add(store, f"doc-{i}.txt", [f"document {i} paragraph {j}" for j in range(2)])
    store.add_name(store.get("doc-0.txt").doc_id, "doc-0-signed.txt")
    monkeypatch.setattr(milvus_store, "MAX_WINDOW", 3)  # as if the library had more names than one query returns
    assert [d.name for d in store.documents()] == [f"doc-{i}.txt" for i in range(5)] and len(store) == 10
    assert store.get("doc-0-signed.txt").names == ["doc-0.txt", "doc-0-signed.txt"]
    store.close()
