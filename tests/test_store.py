"""The library on every backend (embedded FAISS, PostgreSQL + pgvector, Milvus): what goes in comes back with
exact offsets, survives a reopen, answers to every name it came under, and two processes can write at once.

One suite, parametrised over the backends (`library` and `open_library` from engine_fixtures): the engines are
real servers started by the tests. Tests of the embedded store's own files come last.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import re
from pathlib import Path

import numpy as np
import pytest

from index.base import DocumentInfo, LibraryMeta, StoreError, VectorStore
from index.copy import copy_library
from index.faiss_store import FaissStore
from index.retrieval import reciprocal_rank_fusion
from index.stores import open_store
from ingest.layout import TextLayout
from ingest.types import Chunk

DIM = 8
EMBEDDER = "fake:8"


def vector(seed: str) -> np.ndarray:
    """A unit vector fixed by `seed`: no model needed, and equal seeds give equal vectors."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "little"))
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def make_doc(name: str, paragraphs: list[str]) -> tuple[DocumentInfo, str, list[Chunk], np.ndarray]:
    """A document whose chunks are its paragraphs, with offsets into its text and one vector per paragraph."""
    text = "\n\n".join(paragraphs)
    doc_id = hashlib.sha256(text.encode()).hexdigest()[:16]
    chunks, start = [], 0
    for i, para in enumerate(paragraphs):
        end = start + len(para)
        chunks.append(Chunk(doc_id, name, i, para, start, end, len(para.split()), pages=[1], section="1. Terms"))
        start += len(para) + 2
    tokens = sum(c.n_tokens for c in chunks)
    info = DocumentInfo(doc_id, name, "txt", f"/data/{name}", 1, len(chunks), tokens, len(text), "2025-01-01T00:00:00Z")
    vectors = np.stack([vector(p) for p in paragraphs]) if paragraphs else np.zeros((0, DIM), np.float32)
    return info, text, chunks, vectors


def add(store: VectorStore, name: str, paragraphs: list[str]) -> DocumentInfo:
    info, text, chunks, vectors = make_doc(name, paragraphs)
    return store.add(info, text, chunks, vectors)


CONTRACT = [
    "This Agreement shall be governed by the laws of the State of Delaware.",
    "Payment is due within thirty days of the invoice date.",
    "Either party may terminate this Agreement upon ninety days written notice.",
]
CALL = [
    "Alice: revenue grew twelve percent in the third quarter.",
    "Bob: operating margin was flat compared with last year.",
]


@pytest.fixture
def store(open_library) -> VectorStore:
    return open_library()


def test_search_finds_the_chunk_whose_vector_matches(store: VectorStore) -> None:
    add(store, "msa.txt", CONTRACT)
    add(store, "call.txt", CALL)
    hits = store.search(vector(CONTRACT[1]), k=3)
    assert hits[0][0].text == CONTRACT[1]
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert len(store) == 5


def test_offsets_slice_back_to_chunk_text(store: VectorStore) -> None:
    add(store, "msa.txt", CONTRACT)
    text = store.document_text("msa.txt")
    for chunk in store.chunks():
        assert text[chunk.char_start : chunk.char_end] == chunk.text


def scanned_pdf() -> tuple[DocumentInfo, str, list[Chunk], np.ndarray]:
    """A PDF read by OCR: each chunk with its words' page rectangles (a line a chunk), the record with what OCR read."""
    info, text, chunks, vectors = make_doc("scan.pdf", CONTRACT)
    with_layout = []
    for chunk in chunks:
        words = [(m.start() + chunk.char_start, m.end() + chunk.char_start) for m in re.finditer(r"\S+", chunk.text)]
        top = 90.0 + 14 * chunk.index
        rects = [(72.0 + 30 * k, top, 100.0 + 30 * k, top + 12.5) for k in range(len(words))]
        layout = TextLayout.of_page(1, (612.0, 792.0), words, rects).encode()
        with_layout.append(dataclasses.replace(chunk, layout=layout))
    info = dataclasses.replace(info, doc_type="pdf", ocr_pages=1, ocr_confidence=91.5, ocr_low_pages=[1])
    return info, text, with_layout, vectors


def test_a_pdf_keeps_its_page_rectangles_and_what_ocr_read(store: VectorStore) -> None:
    """A PDF's chunks come back with their words' page rectangles, from every read and search, and its record
    with how many pages OCR read, how sure it was and which pages to check."""
    info, text, chunks, vectors = scanned_pdf()
    store.add(info, text, chunks, vectors)
    [back] = store.documents()
    assert (back.ocr_pages, back.ocr_confidence, back.ocr_low_pages) == (1, 91.5, [1])
    assert store.chunks(info.doc_id) == chunks
    assert store.search(vector(CONTRACT[2]), k=1)[0][0] == chunks[2]
    assert store.keyword_search("governed Delaware", k=1)[0][0] == chunks[0]
    boxes = TextLayout.decode(chunks[0].layout).boxes(0, len("This Agreement"))
    assert [(b.page, b.x0, b.x1, b.page_height) for b in boxes] == [(1, 72.0, 130.0, 792.0)]


def test_a_library_copied_to_another_backend_keeps_page_rectangles_and_what_ocr_read(store, tmp_path) -> None:
    source = open_store("faiss", tmp_path / "source", LibraryMeta(EMBEDDER, DIM))
    info, text, chunks, vectors = scanned_pdf()
    source.add(info, text, chunks, vectors)
    assert len(copy_library(source, store).copied) == 1
    assert store.documents() == source.documents() and store.chunks(info.doc_id) == chunks


def test_k_larger_than_index_returns_every_chunk(store: VectorStore) -> None:
    add(store, "msa.txt", CONTRACT)
    assert len(store.search(vector("anything"), k=100)) == 3
    assert len(store.keyword_search("agreement", k=100)) == 2


def test_empty_index_returns_nothing(store: VectorStore) -> None:
    assert len(store) == 0
    assert store.documents() == []
    assert store.search(vector("q"), k=5) == []
    assert store.keyword_search("governing law", k=5) == []
    assert store.get("msa.txt") is None


def test_doc_filter_searches_one_document_only(store: VectorStore) -> None:
    msa = add(store, "msa.txt", CONTRACT)
    call = add(store, "call.txt", CALL)
    hits = store.search(vector(CALL[0]), k=10, doc_id=msa.doc_id)
    assert len(hits) == 3 and {c.doc_id for c, _ in hits} == {msa.doc_id}
    assert {c.doc_id for c, _ in store.keyword_search("revenue agreement", k=10, doc_id=call.doc_id)} == {call.doc_id}
    with pytest.raises(StoreError, match="no document"):
        store.search(vector("q"), k=3, doc_id="0123456789abcdef")


def test_keyword_search_ranks_by_shared_terms(store: VectorStore) -> None:
    add(store, "msa.txt", CONTRACT)
    add(store, "call.txt", CALL)
    hits = store.keyword_search("Which law governs the agreement?", k=5)
    assert hits[0][0].text == CONTRACT[0]  # "governed" stems like "governs"
    assert all(score > 0 for _, score in hits)
    assert store.keyword_search("the of and", k=5) == []  # stopwords only


def test_keyword_index_follows_changes(store: VectorStore) -> None:
    add(store, "msa.txt", CONTRACT)
    assert store.keyword_search("revenue", k=5) == []
    add(store, "call.txt", CALL)
    assert store.keyword_search("revenue", k=5)[0][0].doc_name == "call.txt"


def test_remove_takes_out_chunks_vectors_and_text(store: VectorStore) -> None:
    msa = add(store, "msa.txt", CONTRACT)
    add(store, "call.txt", CALL)
    assert store.remove("msa.txt") == msa
    assert not store.has(msa.doc_id)
    assert len(store) == 2
    assert {c.doc_name for c, _ in store.search(vector(CONTRACT[0]), k=10)} == {"call.txt"}
    with pytest.raises(StoreError, match="no document 'msa.txt'"):
        store.document_text("msa.txt")
    with pytest.raises(StoreError, match="no document"):
        store.remove("msa.txt")


def test_changed_file_replaces_its_old_chunks(store: VectorStore) -> None:
    old = add(store, "msa.txt", CONTRACT)
    new = add(store, "msa.txt", CONTRACT[:2] + ["This Agreement renews automatically each year."])
    assert [d.doc_id for d in store.documents()] == [new.doc_id]
    assert len(store) == 3
    assert not store.has(old.doc_id)
    assert "renews automatically" in store.document_text("msa.txt")
    assert {c.doc_id for c, _ in store.search(vector(CONTRACT[2]), k=10)} == {new.doc_id}


def test_same_content_added_again_is_stored_once(store: VectorStore) -> None:
    add(store, "msa.txt", CONTRACT)
    add(store, "msa.txt", CONTRACT)
    assert len(store.documents()) == 1 and len(store) == 3


def test_get_by_name_id_or_unique_prefix(store: VectorStore) -> None:
    msa = add(store, "msa.txt", CONTRACT)
    assert store.get("msa.txt") == msa
    assert store.get(msa.doc_id) == msa
    assert store.get(msa.doc_id[:6]) == msa
    assert store.get(msa.doc_id[:2]) is None  # too short to be taken for an id
    assert store.get("nothing.txt") is None


def test_library_survives_reopening(open_library) -> None:
    first = open_library()
    msa = add(first, "msa.txt", CONTRACT)
    add(first, "call.txt", CALL)
    first.remove("call.txt")
    first.close()
    again = open_library()
    assert again.documents() == [msa]
    assert again.chunks(msa.doc_id) == make_doc("msa.txt", CONTRACT)[2]
    assert again.search(vector(CONTRACT[2]), k=1)[0][0].text == CONTRACT[2]
    assert again.document_text(msa.doc_id) == "\n\n".join(CONTRACT)


def test_reader_sees_another_stores_writes(open_library) -> None:
    writer, reader = open_library(), open_library()
    add(writer, "msa.txt", CONTRACT)
    assert len(reader) == 3
    assert reader.keyword_search("governed", k=3)[0][0].text == CONTRACT[0]
    writer.remove("msa.txt")
    assert reader.search(vector(CONTRACT[0]), k=3) == []
    assert reader.keyword_search("governed", k=3) == []


# ---- the same bytes under two names ----------------------------------------------------------------------


def test_same_bytes_under_a_second_name_is_one_document_answering_to_both(store: VectorStore) -> None:
    signed = add(store, "msa_signed.txt", CONTRACT)
    final = store.add_name(signed.doc_id, "msa_final.txt")
    assert final.names == ["msa_signed.txt", "msa_final.txt"]
    assert store.documents() == [final] and len(store) == 3
    assert store.get("msa_signed.txt") == store.get("msa_final.txt") == final
    assert store.document_text("msa_final.txt") == store.document_text("msa_signed.txt")
    assert {c.doc_name for c, _ in store.search(vector(CONTRACT[0]), k=3)} == {"msa_signed.txt"}


def test_removing_one_name_keeps_the_document_under_the_other(store: VectorStore) -> None:
    signed = add(store, "msa_signed.txt", CONTRACT)
    store.add_name(signed.doc_id, "msa_final.txt")
    store.remove("msa_signed.txt")
    assert [d.names for d in store.documents()] == [["msa_final.txt"]]
    assert store.get("msa_signed.txt") is None
    assert {c.doc_name for c in store.chunks(signed.doc_id)} == {"msa_final.txt"}
    assert store.search(vector(CONTRACT[1]), k=1)[0][0].doc_name == "msa_final.txt"
    assert store.keyword_search("payment", k=1)[0][0].doc_name == "msa_final.txt"
    store.remove("msa_final.txt")
    assert store.documents() == [] and len(store) == 0


def test_removing_by_id_removes_every_name(store: VectorStore) -> None:
    signed = add(store, "msa_signed.txt", CONTRACT)
    store.add_name(signed.doc_id, "msa_final.txt")
    store.remove(signed.doc_id)
    assert store.documents() == [] and store.get("msa_final.txt") is None


def test_new_content_under_an_alias_takes_only_that_name(store: VectorStore) -> None:
    signed = add(store, "msa_signed.txt", CONTRACT)
    store.add_name(signed.doc_id, "msa_final.txt")
    amended = add(store, "msa_final.txt", CONTRACT[:2] + ["This Agreement renews automatically each year."])
    assert [(d.doc_id, d.names) for d in store.documents()] == [
        (signed.doc_id, ["msa_signed.txt"]), (amended.doc_id, ["msa_final.txt"])]
    assert "renews automatically" in store.document_text("msa_final.txt")
    assert "renews automatically" not in store.document_text("msa_signed.txt")
    assert len(store) == 6


def test_a_name_moved_to_new_content_takes_its_last_document_away(store: VectorStore) -> None:
    old = add(store, "msa.txt", CONTRACT)
    add(store, "msa.txt", CALL)
    assert not store.has(old.doc_id) and len(store) == 2


# ---- what a library refuses ------------------------------------------------------------------------------


def test_other_embedder_is_refused_with_what_differs(open_library) -> None:
    open_library()
    expected = r"built with embedder 'fake:8' in float32 \(8 dimensions\).*'other' in float32 \(384 dimensions\).*new library"
    with pytest.raises(StoreError, match=expected):
        open_library("other", 384)


def test_same_embedder_in_another_precision_is_refused(open_library) -> None:
    open_library(precision="int8")
    with pytest.raises(StoreError, match=r"in int8 .* in float32 .*Set embedder = 'fake:8' and embed_int8 = true"):
        open_library()
    assert len(open_library(precision="int8")) == 0


def test_vectors_that_do_not_match_are_refused(store: VectorStore) -> None:
    info, text, chunks, vectors = make_doc("msa.txt", CONTRACT)
    with pytest.raises(ValueError, match="expected \\(3, 8\\)"):
        store.add(info, text, chunks, vectors[:2])
    assert len(store) == 0


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    a, b, c = (Chunk("d", "d.txt", i, t, 0, 1, 1) for i, t in enumerate("abc"))
    fused = reciprocal_rank_fusion([[(a, 0.9), (b, 0.8)], [(b, 12.0), (c, 7.0)]], k=3)
    assert [ch.text for ch, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    assert len(reciprocal_rank_fusion([[(a, 1.0)], []], k=5)) == 1


def test_a_lighter_list_counts_less_in_the_fusion() -> None:
    a, b = (Chunk("d", "d.txt", i, t, 0, 1, 1) for i, t in enumerate("ab"))
    lists = [[(a, 0.9), (b, 0.8)], [(b, 12.0), (a, 7.0)]]
    assert [ch.text for ch, _ in reciprocal_rank_fusion(lists, k=2)] == ["a", "b"]  # a tie: first met first
    weighted = reciprocal_rank_fusion(lists, k=2, weights=[0.5, 1.0])
    assert [ch.text for ch, _ in weighted] == ["b", "a"]
    assert weighted[0][1] == pytest.approx(0.5 / 62 + 1 / 61)


# ---- two processes on one library ------------------------------------------------------------------------


def _writer(location: str, index_dir: str, tag: str, n: int) -> None:
    store = open_store(location, Path(index_dir), LibraryMeta(EMBEDDER, DIM))
    for i in range(n):
        add(store, f"{tag}-{i}.txt", [f"{tag} document {i} paragraph {j}" for j in range(3)])
    store.close()


def test_two_processes_writing_at_once_both_survive(library, open_library) -> None:
    open_library()
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(library[0], str(library[1]), tag, 25)) for tag in ("cli", "ui")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    store = open_library()
    names = sorted(d.name for d in store.documents())
    assert names == sorted(f"{tag}-{i}.txt" for tag in ("cli", "ui") for i in range(25))
    assert len(store) == 150
    assert len({c.chunk_id for c in store.chunks()}) == 150


def test_reader_sees_only_complete_documents_while_another_process_writes(library, open_library) -> None:
    reader = open_library()
    writer = multiprocessing.get_context("spawn").Process(target=_writer, args=(library[0], str(library[1]), "cli", 30))
    writer.start()
    checks = 0
    while writer.is_alive() or checks == 0:
        for info in reader.documents():
            assert len(reader.chunks(info.doc_id)) == info.chunks == 3
            checks += 1
    writer.join()
    assert writer.exitcode == 0 and len(reader) == 90


# ---- the embedded store's own files ----------------------------------------------------------------------


def open_faiss(index_dir: Path, embedder: str = EMBEDDER, dim: int = DIM, precision: str = "float32") -> FaissStore:
    return FaissStore.open(index_dir, LibraryMeta(embedder, dim, precision))


def test_removed_documents_leave_no_segment(tmp_path: Path) -> None:
    store = open_faiss(tmp_path / "index")
    add(store, "msa.txt", CONTRACT)
    add(store, "call.txt", CALL)
    store.remove("msa.txt")
    segments = [p.name for p in (tmp_path / "index" / "segments").iterdir()]
    assert [s.split("-")[1] for s in segments] == [d.doc_id for d in store.documents()]


def test_index_from_before_precision_was_recorded_opens_as_float32(tmp_path: Path) -> None:
    open_faiss(tmp_path / "index")
    marker = tmp_path / "index" / "longdoc-index.json"
    old = json.loads(marker.read_text())
    del old["precision"]
    marker.write_text(json.dumps(old))
    open_faiss(tmp_path / "index")
    with pytest.raises(StoreError, match="embed_int8 = false"):
        open_faiss(tmp_path / "index", precision="int8")


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    open_faiss(tmp_path / "index")
    marker = tmp_path / "index" / "longdoc-index.json"
    marker.write_text(marker.read_text().replace('"format": 1', '"format": 99'))
    with pytest.raises(StoreError, match="index format 99, this longdoc-qa reads format 1"):
        open_faiss(tmp_path / "index")


def test_directory_that_is_not_an_index_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a longdoc index"):
        open_faiss(tmp_path)


def test_nothing_is_pickled(tmp_path: Path) -> None:
    store = open_faiss(tmp_path / "index")
    add(store, "msa.txt", CONTRACT)
    files = [p for p in (tmp_path / "index").rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in {".pkl", ".pickle"}]
    for npy in (tmp_path / "index").rglob("*.npy"):
        np.load(npy, allow_pickle=False)


def test_index_written_before_aliases_opens_with_its_names(tmp_path: Path) -> None:
    store = open_faiss(tmp_path / "index")
    msa = add(store, "msa.txt", CONTRACT)
    manifest_path = tmp_path / "index" / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["documents"][0]["aliases"]
    manifest["generation"] += 1
    manifest_path.write_text(json.dumps(manifest))
    assert open_faiss(tmp_path / "index").get("msa.txt") == msa


# ---- what every backend refuses the same way -------------------------------------------------------------


def test_a_name_no_engine_can_hold_is_refused_before_anything_is_stored(store: VectorStore) -> None:
    for name, reason in (("bad\udcff.txt", "not valid UTF-8"), ("x" * 1025 + ".txt", "1 to 1024 bytes")):
        info, text, chunks, vectors = make_doc(name, CONTRACT)
        with pytest.raises(StoreError, match=reason):
            store.add(info, text, chunks, vectors)
    assert store.documents() == [] and len(store) == 0
    msa = add(store, "msa.txt", CONTRACT)
    with pytest.raises(StoreError, match="not valid UTF-8"):
        store.add_name(msa.doc_id, "copy\udcff.txt")
    assert store.get("msa.txt").names == ["msa.txt"]
