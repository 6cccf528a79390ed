"""A library folder whose files were spoiled on disk (a lost file, a bad copy): the documents whose own files are
readable are still served, the spoiled one is listed as such and mended by ingesting it again or removing it; a
spoiled manifest is one clear error. Nothing here is a writer's doing: writers commit only complete segments
(test_crash_safety.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from app.cli import app
from index.base import DocumentInfo, LibraryMeta, StoreError
from index.faiss_store import MANIFEST_FILE, SEGMENTS_DIR, FaissStore
from ingest.types import Chunk

DIM = 8
runner = CliRunner()


def add(store: FaissStore, name: str) -> DocumentInfo:
    text = f"{name}: This Agreement shall be governed by the laws of the State of Delaware."
    doc_id = hashlib.sha256(name.encode()).hexdigest()[:16]
    chunk = Chunk(doc_id, name, 0, text, 0, len(text), len(text.split()))
    info = DocumentInfo(doc_id, name, "txt", name, 1, 1, chunk.n_tokens, len(text), "2026-01-01T00:00:00Z")
    vector = np.zeros((1, DIM), dtype=np.float32)
    vector[0, len(store.documents())] = 1.0  # each document its own direction
    return store.add(info, text, [chunk], vector)


def segment_of(index_dir: Path, info: DocumentInfo) -> Path:
    (folder,) = (index_dir / SEGMENTS_DIR).glob(f"*-{info.doc_id}")
    return folder


def test_a_spoiled_document_is_listed_never_searched_and_mended_the_rest_served(tmp_path: Path) -> None:
    meta = LibraryMeta("test-embedder", DIM)
    store = FaissStore.open(tmp_path, meta)
    lost, spoiled = add(store, "lost.txt"), add(store, "spoiled.txt")
    add(store, "fine.txt")
    (segment_of(tmp_path, lost) / "vectors.npy").unlink()
    (segment_of(tmp_path, spoiled) / "chunks.jsonl").write_text("not json\n", encoding="ascii")

    store = FaissStore.open(tmp_path, meta)  # a new process opening it
    assert [d.name for d in store.documents()] == ["lost.txt", "spoiled.txt", "fine.txt"]
    damaged = store.damaged()
    assert damaged[lost.doc_id] == "vectors.npy is missing"
    assert damaged[spoiled.doc_id].startswith("its files cannot be read (JSONDecodeError")
    everything = np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)
    assert [c.doc_name for c, _ in store.search(everything, 10)] == ["fine.txt"]
    assert [c.doc_name for c, _ in store.keyword_search("Delaware", 10)] == ["fine.txt"]
    with pytest.raises(StoreError, match="lost.txt cannot be read from .* ingest its file again, or remove it"):
        store.search(everything, 10, doc_id=lost.doc_id)

    (segment_of(tmp_path, store.require("fine.txt")) / "text.txt").unlink()
    with pytest.raises(StoreError, match=r"fine.txt cannot be read from .* \(text.txt is missing\)"):
        store.document_text("fine.txt")
    store.remove("lost.txt")  # mended by removing it
    readded = store.add(spoiled, "spoiled.txt: again", [Chunk(spoiled.doc_id, "spoiled.txt", 0, "again", 0, 5, 1)],
                        np.eye(DIM, dtype=np.float32)[:1])  # or by writing it again
    assert store.damaged() == {} and [d.name for d in store.documents()] == ["fine.txt", "spoiled.txt"]
    assert {c.doc_name for c, _ in store.search(everything, 10)} == {"spoiled.txt", "fine.txt"}
    assert readded.doc_id == spoiled.doc_id and not list((tmp_path / SEGMENTS_DIR).glob(f"*-{lost.doc_id}"))


@pytest.mark.parametrize("manifest", ["[]", "{}", '{"generation": 1, "next_id": 1, "documents": [{"name": "x"}]}'])
def test_a_spoiled_manifest_is_one_clear_error(tmp_path: Path, manifest: str) -> None:
    FaissStore.open(tmp_path, LibraryMeta("test-embedder", DIM))
    (tmp_path / MANIFEST_FILE).write_text(manifest, encoding="utf-8")
    with pytest.raises(StoreError, match="not a longdoc manifest"):
        FaissStore.open(tmp_path, LibraryMeta("test-embedder", DIM))


def test_docs_names_the_spoiled_document_and_ingesting_it_again_mends_it(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    for name, law in (("msa.txt", "Delaware"), ("nda.txt", "New York")):
        (files / name).write_text(f"1. Governing Law. This Agreement is governed by the laws of {law}.\n",
                                  encoding="utf-8")
    index = str(tmp_path / "index")
    assert runner.invoke(app, ["ingest", str(files), "--index", index]).exit_code == 0
    info = json.loads((tmp_path / "index" / MANIFEST_FILE).read_text(encoding="utf-8"))["documents"][0]
    (tmp_path / "index" / SEGMENTS_DIR / info["segment"] / "vectors.npy").unlink()

    listed = runner.invoke(app, ["docs", "--index", index], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "msa.txt" in listed.stdout and "nda.txt" in listed.stdout
    assert f"cannot be read: {info['name']} (vectors.npy is missing): ingest its file again" in listed.output
    again = runner.invoke(app, ["ingest", str(files), "--index", index])
    assert "1 ingested" in again.output and "1 unchanged" in again.output, again.output
    assert "cannot be read" not in runner.invoke(app, ["docs", "--index", index]).output
