"""The Python API refuses a wrong argument with the tool's own error, naming what is wrong, before any model loads.

The library here records an embedder that does not exist: had a call reached for a model before checking its
arguments, it would fail loading it (EmbedderError), not with the message asserted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app import LongDocQA
from app.batch import Question
from app.errors import DocumentNotFound, EmptyQuestion, LongDocError
from app.settings import Settings, SettingsError
from index.base import DocumentInfo, LibraryMeta
from index.faiss_store import FaissStore
from ingest.types import Chunk

NO_MODEL = "/nonexistent/embedder"  # loading it fails: any model load shows up as another error
TEXT = "1. Governing Law. This Agreement shall be governed by the laws of the State of Delaware."


@pytest.fixture
def qa(tmp_path: Path) -> LongDocQA:
    store = FaissStore.open(tmp_path / "index", LibraryMeta(NO_MODEL, 4))
    chunk = Chunk("0123456789abcdef", "msa.txt", 0, TEXT, 0, len(TEXT), 16)
    store.add(DocumentInfo("0123456789abcdef", "msa.txt", "txt", "/data/msa.txt", 1, 1, 16, len(TEXT),
                           "2026-01-01T00:00:00Z"), TEXT, [chunk], np.eye(4, dtype=np.float32)[:1])
    store.close()
    return LongDocQA(index_dir=tmp_path / "index", embedder=NO_MODEL)


@pytest.mark.parametrize("question, error, message", [
    (None, LongDocError, "the question must be text, got NoneType"),
    (5, LongDocError, "the question must be text, got int"),
    ("  ", EmptyQuestion, "the question is empty"),
    ("?!.,;", EmptyQuestion, r"the question '\?!\.,;' has no words to search for"),
])
def test_what_is_not_a_question_is_refused_by_every_way_of_asking(qa, question, error, message) -> None:
    for call in (qa.ask, qa.retrieve, qa.stream, lambda q: list(qa.ask_many([q]))):
        with pytest.raises(error, match=message):
            call(question)


def test_a_document_is_a_name_an_id_or_a_path_and_nothing_else(qa, tmp_path: Path) -> None:
    for doc in (5, ["msa.txt"], None):
        with pytest.raises(DocumentNotFound, match="a document is given by its name, id or file path, not"):
            qa.document_text(doc)
    with pytest.raises(DocumentNotFound, match="a document is given by its name, id or file path, not int 5"):
        qa.ask("Which law governs?", doc=5)
    with pytest.raises(DocumentNotFound, match="no ingested document named 'nope.txt'"):
        qa.remove(Path("nope.txt"))
    copy = tmp_path / "copy_of_msa.txt"
    copy.write_text("other bytes", encoding="utf-8")
    with pytest.raises(DocumentNotFound, match="is not in the library as it is now"):  # a Path is a file's path
        qa.retrieve("Which law governs?", doc=copy)
    assert qa.document_text("msa.txt") == TEXT


@pytest.mark.parametrize("options, message", [
    ({"top_k": 5.5}, "top_k: expected int, got 5.5"),
    ({"top_k": -1}, "top_k must be positive, got -1"),
    ({"mode": "bogus"}, "mode='bogus' is not one of"),
    ({"context_chunks": "many"}, "context_chunks: expected int, got 'many'"),
])
def test_answer_options_are_checked_as_settings_by_every_way_of_asking(qa, options, message) -> None:
    for call in (lambda: qa.ask("Which law?", **options), lambda: qa.stream("Which law?", **options),
                 lambda: qa.chat(**options), lambda: qa.ask_many(["Which law?"], **options)):
        with pytest.raises(SettingsError, match=message):
            call()
    if "mode" not in options:
        with pytest.raises(SettingsError, match=message):
            qa.retrieve("Which law?", **options)


def test_unknown_options_and_wrongly_shaped_arguments_say_what_the_call_takes(qa) -> None:
    with pytest.raises(LongDocError, match="unknown option.s. bogus; this call takes doc, id, on_progress, top_k"):
        qa.stream("Which law?", bogus=1)
    with pytest.raises(LongDocError, match="unknown option.s. bogus; this call takes on_progress, top_k"):
        qa.chat(bogus=1)
    with pytest.raises(LongDocError, match="ask_many takes several questions"):
        qa.ask_many("Which law governs?")
    with pytest.raises(LongDocError, match="questions must be a list of questions, not NoneType"):
        qa.ask_many(None)
    with pytest.raises(DocumentNotFound, match="no ingested document named 'nope.txt'"):
        qa.ask_many([Question("a", "Which law?")], doc="nope.txt")
    for paths in (None, 5, b"sample_docs", [None]):
        with pytest.raises(LongDocError, match="paths are files or folders"):
            qa.ingest(paths)
    for page, dpi in ((0, 100), ("1", 100), (1.5, 100), (1, 0), (1, -5), (1, 10_000), (1, "100")):
        with pytest.raises(LongDocError, match="page is a page number from 1|dpi must be a number above 0"):
            qa.page_image("msa.txt", page, dpi)
    with pytest.raises(SettingsError, match="settings must be an app.settings.Settings, not dict"):
        LongDocQA(settings={"top_k": 3})
    with pytest.raises(SettingsError, match="top_k: expected int, got 'x'"):
        LongDocQA(settings=Settings(), top_k="x")
