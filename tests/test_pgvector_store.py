"""The PostgreSQL backend's own behaviour, against real servers: what a user sees when the server is unreachable,
refuses the login, lacks the database or pgvector, or goes away in the middle of an ingest; and the parts of
keyword and one-document search that only this backend has (IDF weighting in SQL, the query built from the
question's lexemes, the exact scan of one document). The shared contract is tests/test_store.py.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from engine_fixtures import new_postgres_library
from test_store import CONTRACT, DIM, EMBEDDER, add, make_doc, vector

import index.pgvector_store as pgvector_store
from app.local_engines import LocalEngine, free_port, start_postgres
from index.base import LibraryMeta, StoreError, unit_rows
from index.stores import open_store

META = LibraryMeta(EMBEDDER, DIM)


def with_url(url: str, **parts: str | int) -> str:
    """`url` with some of user, password, port, database replaced."""
    u = urlsplit(url)
    user, password = parts.get("user", u.username), parts.get("password", u.password)
    netloc = f"{user}:{password}@{u.hostname}:{parts.get('port', u.port)}"
    return f"postgresql://{netloc}/{parts.get('db', u.path.lstrip('/'))}"


def wait_for_logins(url: str, timeout_s: float = 30.0) -> None:
    """The port opens a moment before the server accepts logins ('the database system is starting up')."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            psycopg.connect(url).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def one_line_without(message: str, secret: str) -> bool:
    return "\n" not in message and secret not in message


@pytest.fixture
def library_url(postgres_engine: LocalEngine) -> str:  # noqa: F811
    return new_postgres_library(postgres_engine)


# ---- what a user sees when the library cannot be opened --------------------------------------------------


def test_wrong_password_is_refused_in_one_line_without_the_password(library_url: str) -> None:
    url = with_url(library_url, password="not-the-Password-42")
    with pytest.raises(StoreError, match=r"127\.0\.0\.1:\d+ refused the login of user 'longdoc'") as err:
        open_store(url, Path(), META)
    assert one_line_without(str(err.value), "not-the-Password-42")
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no psycopg traceback: it holds the password


def test_closed_port_says_which_server_could_not_be_reached(library_url: str) -> None:
    port = free_port()
    refused = rf"cannot reach PostgreSQL at 127\.0\.0\.1:{port} \(Connection refused\)"
    with pytest.raises(StoreError, match=refused) as err:
        open_store(with_url(library_url, port=port), Path(), META)
    assert one_line_without(str(err.value), urlsplit(library_url).password)


def test_missing_database_says_how_to_create_it(library_url: str) -> None:
    with pytest.raises(StoreError, match="has no database 'nowhere': create it \\(CREATE DATABASE nowhere;"):
        open_store(with_url(library_url, db="nowhere"), Path(), META)


def test_database_without_pgvector_says_a_superuser_must_create_it(postgres_engine: LocalEngine) -> None:
    import psycopg

    role, password, db = f"reader_{secrets.token_hex(4)}", secrets.token_hex(8), f"plain_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_engine.url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")  # not a superuser: pgvector is untrusted
        admin.execute(f"CREATE DATABASE {db} OWNER {role}")
    url = with_url(postgres_engine.url, user=role, password=password, db=db)
    with pytest.raises(StoreError, match=rf"not created in database '{db}'.*user '{role}' may not create it: have a "
                                         r"superuser run CREATE EXTENSION vector;") as err:
        open_store(url, Path(), META)
    assert one_line_without(str(err.value), password)

    with psycopg.connect(with_url(postgres_engine.url, db=db), autocommit=True) as admin:
        admin.execute("CREATE EXTENSION vector")  # what the message says to do
    store = open_store(url, Path(), META)  # the owner of the database may then create the tables
    add(store, "msa.txt", CONTRACT)
    assert len(store) == 3
    store.close()


# ---- the server going away ------------------------------------------------------------------------------


def test_server_stopped_mid_ingest_leaves_whole_documents_and_the_store_reconnects(tmp_path: Path) -> None:
    password = secrets.token_hex(8)
    port = free_port()
    engine = start_postgres(tmp_path / "pg", port, password)
    try:
        store = open_store(engine.url, Path(), META)
        confirmed: list[str] = []
        errors: list[StoreError] = []
        started = threading.Event()

        def ingest() -> None:
            for i in range(10_000):
                paragraphs = [f"document {i} paragraph {j} about the governing law" for j in range(400)]
                try:
                    add(store, f"doc-{i}.txt", paragraphs)
                except StoreError as exc:
                    errors.append(exc)
                    return
                confirmed.append(f"doc-{i}.txt")
                started.set()

        writer = threading.Thread(target=ingest)
        writer.start()
        assert started.wait(60)
        engine.stop()  # fast shutdown: open transactions are rolled back, connections cut
        writer.join(60)
        assert not writer.is_alive() and len(errors) == 1
        message = str(errors[0])
        assert f"127.0.0.1:{port}" in message and "during a write" in message
        assert one_line_without(message, password)
        with pytest.raises(StoreError, match=f"cannot reach PostgreSQL at 127.0.0.1:{port}"):
            store.documents()

        engine = start_postgres(tmp_path / "pg", port, password)
        wait_for_logins(engine.url)
        docs = store.documents()  # the same store object: the lost connection is opened again
        assert [d.name for d in docs][: len(confirmed)] == confirmed and len(docs) <= len(confirmed) + 1
        for info in docs:
            chunks = store.chunks(info.doc_id)
            text = store.document_text(info.doc_id)
            assert len(chunks) == info.chunks == 400
            assert all(text[c.char_start : c.char_end] == c.text for c in chunks)
        assert len(store) == 400 * len(docs)
        store.close()
    finally:
        engine.stop()


# ---- keyword search in SQL ------------------------------------------------------------------------------


@pytest.fixture
def store(library_url: str):
    store = open_store(library_url, Path(), META)
    yield store
    store.close()


def test_rare_terms_outweigh_common_ones(store) -> None:
    common = [f"The parties to this agreement agree that the agreement binds each party, clause {i}." for i in range(8)]
    add(store, "many.txt", common)
    add(store, "law.txt", ["This agreement is governed by the laws of Delaware."])
    hits = store.keyword_search("Which party agreement Delaware?", k=3)
    assert hits[0][0].doc_name == "law.txt"  # one rare term beats three occurrences of two common ones
    assert [score for _, score in hits] == sorted((score for _, score in hits), reverse=True)


@pytest.mark.parametrize("question", [
    "Is it O'Brien's & Smith's | (affiliates)!?", "a:* <-> b", "back\\slash 'quoted' \"double\"",
    "NUL\x00byte and lone \ud800 surrogate", "!!! ||| &&& ::: ((( )))", "",
])
def test_no_question_breaks_the_keyword_query(store, question: str) -> None:
    add(store, "msa.txt", CONTRACT + ["O'Brien's affiliates and Smith's back\\slash remain bound."])
    hits = store.keyword_search(question, k=5)
    assert all(score > 0 for _, score in hits)


def test_question_terms_are_ored_not_anded(store) -> None:
    add(store, "msa.txt", CONTRACT)
    hits = store.keyword_search("Which law governs payment of invoices?", k=5)  # no chunk holds every term
    assert {c.text for c, _ in hits} == {CONTRACT[0], CONTRACT[1]}


def test_common_terms_only_score_the_rare_terms_candidates(store, monkeypatch) -> None:
    """Past the budget, candidates come from the rarest terms, plus chunks holding every commoner term."""
    monkeypatch.setattr(pgvector_store, "CANDIDATE_BUDGET", 2)
    add(store, "pay.txt", [f"Payment terms, schedule {i}." for i in range(5)]
                          + ["Payment is due to the escrow agent.", "The escrow agent holds the deposit."])
    hits = store.keyword_search("payment escrow", k=10)
    # 'escrow' (2 chunks) fits the budget and selects; 'payment' (6 chunks) does not, so chunks holding only it
    # are candidates only through the common part (every common term), which adds at most the budget.
    assert hits[0][0].text == "Payment is due to the escrow agent."
    assert {c.text for c, _ in hits[:2]} == {"Payment is due to the escrow agent.",
                                             "The escrow agent holds the deposit."}
    assert len(hits) <= 2 + 2


def test_unstorable_characters_become_one_replacement_character_each(store) -> None:
    info, text, chunks, vectors = make_doc("odd.txt", ["Clause one# with a NUL.", "Clause two, a lone # surrogate."])
    odd = {"#": "\x00"}, {"#": "\udc80"}  # a loader may keep undecodable bytes as lone surrogates
    text = text.replace("#", "\x00", 1).replace("#", "\udc80", 1)
    chunks = [dataclasses.replace(c, text=c.text.translate(str.maketrans(o))) for c, o in zip(chunks, odd)]
    store.add(info, text, chunks, vectors)
    stored = store.document_text("odd.txt")
    assert len(stored) == len(text) and "\x00" not in stored and stored.count("\ufffd") == 2
    assert all(stored[c.char_start : c.char_end] == c.text for c in store.chunks(info.doc_id))


# ---- dense search over one document ----------------------------------------------------------------------


def test_one_document_search_is_exact_and_does_not_walk_the_hnsw_graph(store) -> None:
    near = [f"near {i}" for i in range(300)]
    big = add(store, "big.txt", near)
    small = add(store, "small.txt", [f"far {i}" for i in range(30)])
    query = vector("near 0")
    hits = store.search(query, k=30, doc_id=small.doc_id)
    assert len(hits) == 30 and {c.doc_id for c, _ in hits} == {small.doc_id}
    assert len(store.search(query, k=5, doc_id=big.doc_id)) == 5

    with store._session() as conn, conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")  # make the planner choose between the two indexes
        plan = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN " + pgvector_store.DENSE_ONE_DOCUMENT_SQL,
            {"query": pgvector_store._vector_literal(query), "doc_id": small.doc_id, "k": 30},
        ))
        assert "longdoc_chunks_embedding" not in plan and "longdoc_chunks_pkey" in plan
        whole = "\n".join(row[0] for row in conn.execute(
            "EXPLAIN " + pgvector_store.DENSE_SQL, {"query": pgvector_store._vector_literal(query), "k": 30}))
        assert "longdoc_chunks_embedding" in whole  # the library-wide search does use it


def test_one_store_shared_by_threads(store) -> None:
    add(store, "msa.txt", CONTRACT)
    failures: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(10):
                assert store.search(vector(CONTRACT[0]), k=1)[0][0].text == CONTRACT[0]
                assert store.keyword_search("governed", k=1)[0][0].text == CONTRACT[0]
                add(store, f"t{i}-{j}.txt", [f"thread {i} note {j}"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and len(store.documents()) == 41


def test_vectors_come_back_as_stored(store) -> None:
    info, text, chunks, vectors = make_doc("msa.txt", CONTRACT)
    store.add(info, text, chunks, vectors)
    assert np.array_equal(store.vectors(info.doc_id), unit_rows(vectors))  # exactly as stored
    assert store.similarities(vectors[1], chunks) == pytest.approx(vectors @ vectors[1], abs=1e-6)


def test_a_library_from_before_page_rectangles_opens_and_gains_them(library_url: str) -> None:
    """A library created before OCR and page rectangles existed lacks their columns: the first open adds them, its
    documents read as having neither, and new documents keep both."""
    import psycopg

    store = open_store(library_url, Path(), META)
    old, text, chunks, vectors = make_doc("old.txt", CONTRACT)
    store.add(old, text, chunks, vectors)
    store.close()
    with psycopg.connect(library_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE longdoc_chunks DROP COLUMN layout; ALTER TABLE longdoc_documents DROP COLUMN "
                     "ocr_pages, DROP COLUMN ocr_confidence, DROP COLUMN ocr_low_pages")
    store = open_store(library_url, Path(), META)
    try:
        assert store.get("old.txt") == old and store.chunks(old.doc_id) == chunks
        new, text, chunks, vectors = make_doc("scan.pdf", ["Governed by the laws of Texas.", "Net thirty days."])
        chunks = [dataclasses.replace(c, layout="1:stored as given") for c in chunks]
        store.add(dataclasses.replace(new, ocr_pages=2, ocr_confidence=88.0), text, chunks, vectors)
        assert store.get("scan.pdf").ocr_pages == 2 and store.chunks(new.doc_id) == chunks
    finally:
        store.close()


def test_keyword_vectors_stay_in_the_chunk_row(library_url: str) -> None:
    """A chunk of a real library (a 384-dimension vector, 150 words) is too big for one heap row; its tsvector,
    which keyword search reads for thousands of candidate rows, stays in the row while the vector and text move
    out. A library made before the setting gains it on its first open (for the rows written from then on)."""
    import psycopg

    rng = np.random.default_rng(7)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    paragraphs = [" ".join("".join(rng.choice(letters, 7)) for _ in range(150)) for _ in range(6)]  # new words
    meta = LibraryMeta("fake:384", 384)
    info, text, chunks, _ = make_doc("big.txt", paragraphs)
    vectors = unit_rows(rng.standard_normal((len(chunks), 384)).astype(np.float32))
    in_row = ("SELECT count(*), count(pg_column_toast_chunk_id(tsv)), count(pg_column_toast_chunk_id(embedding)) "
              "FROM longdoc_chunks")
    store = open_store(library_url, Path(), meta)
    try:
        store.add(info, text, chunks, vectors)
    finally:
        store.close()
    with psycopg.connect(library_url, autocommit=True) as conn:
        assert conn.execute(in_row).fetchone() == (6, 0, 6)  # the vector went out of the row, the tsvector did not
        conn.execute("ALTER TABLE longdoc_chunks ALTER COLUMN tsv SET STORAGE EXTENDED")  # as libraries were made
    store = open_store(library_url, Path(), meta)
    try:
        assert store.keyword_search(paragraphs[2].split()[5], k=2)[0][0].index == 2
    finally:
        store.close()
    with psycopg.connect(library_url, autocommit=True) as conn:
        assert conn.execute(pgvector_store._TSV_IN_LINE).fetchone() == (1,)
