"""`longdoc ingest / ask / docs / remove / index copy` with the library on each backend, as a user meets them:
`LONGDOC_VECTOR_STORE` set to a real engine's URL (started by the tests), the same commands, the same answers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from engine_fixtures import BACKENDS, new_milvus_library, new_postgres_library
from typer.testing import CliRunner

from app import LongDocQA
from app.cli import app

SAMPLES = Path(__file__).resolve().parents[1] / "sample_docs"
CONTRACT = SAMPLES / "ediets_co-branding_agreement.txt"
MEETING = SAMPLES / "ami_remote_control_design_meeting.txt"
runner = CliRunner()


def longdoc(library: tuple[str, Path], *args: str, **env: str):
    location, index_dir = library
    result = runner.invoke(app, [*args, "--index", str(index_dir)],
                           env={"LONGDOC_VECTOR_STORE": location, "LONGDOC_MAX_NEW_TOKENS": "24", "COLUMNS": "200", **env})
    assert "Traceback" not in result.output
    return result


@pytest.mark.slow
def test_ingest_ask_docs_remove(library) -> None:
    ingested = longdoc(library, "ingest", str(CONTRACT), str(MEETING))
    assert ingested.exit_code == 0 and "2 ingested" in ingested.output, ingested.output

    listed = longdoc(library, "docs")
    assert CONTRACT.name in listed.output and MEETING.name in listed.output

    asked = longdoc(library, "ask", "Which state's law governs the agreement?", "--json", "--mode", "rag",
                    "--doc", CONTRACT.name)
    assert asked.exit_code == 0, asked.output
    answer = json.loads(asked.stdout)  # progress bars go to stderr
    text = CONTRACT.read_text(encoding="utf-8")
    assert answer["passages"] and all(p["doc"] == CONTRACT.name for p in answer["passages"])
    assert all(text[p["char_start"]:p["char_end"]] == p["text"] for p in answer["passages"])
    assert any("governed by" in p["text"].lower() for p in answer["passages"])

    removed = longdoc(library, "remove", MEETING.name)
    assert removed.exit_code == 0 and f"removed {MEETING.name}" in removed.output
    assert MEETING.name not in longdoc(library, "docs").output


def test_same_bytes_under_two_names_is_stored_once_and_answers_to_both(library, tmp_path: Path) -> None:
    signed, final = tmp_path / "msa_signed.txt", tmp_path / "msa_final.txt"
    shutil.copy(CONTRACT, signed)
    shutil.copy(CONTRACT, final)
    result = longdoc(library, "ingest", str(signed), str(final))
    assert result.exit_code == 0, result.output
    assert "1 ingested" in result.output and "1 duplicate" in result.output
    assert "msa_signed.txt: the same content as msa_final.txt" in result.output or \
        "msa_final.txt: the same content as msa_signed.txt" in result.output

    qa = LongDocQA(index_dir=library[1], vector_store=library[0])
    (info,) = qa.documents()
    assert sorted(info.names) == ["msa_final.txt", "msa_signed.txt"]
    for name in info.names:
        passages = qa.retrieve("Which state's law governs the agreement?", doc=name)
        assert passages and {p.doc_id for p in passages} == {info.doc_id}
    qa.store.close()

    again = longdoc(library, "ingest", str(signed), str(final))
    assert "0 ingested" in again.output and "2 unchanged" in again.output


def test_two_files_of_one_name_in_one_ingest_keep_the_first_and_skip_the_second_with_why(library, tmp_path) -> None:
    files = tmp_path / "files"
    first, second = files / "sub1" / "contract.txt", files / "sub2" / "contract.txt"
    for path, source in ((first, CONTRACT), (second, MEETING)):
        path.parent.mkdir(parents=True)
        path.write_text(source.read_text(encoding="utf-8")[:2000], encoding="utf-8")
    result = longdoc(library, "ingest", str(files))
    assert result.exit_code == 0 and "1 ingested" in result.output and "1 skipped" in result.output, result.output
    assert "another file named contract.txt comes first in this ingest" in " ".join(result.output.split())
    qa = LongDocQA(index_dir=library[1], vector_store=library[0])
    (info,) = qa.documents()
    assert qa.document_text(info.name) == first.read_text(encoding="utf-8")  # the second did not replace it
    qa.store.close()


def test_a_document_answers_to_the_path_it_was_ingested_from(library, tmp_path: Path) -> None:
    meeting = tmp_path / MEETING.name
    shutil.copy(MEETING, meeting)
    assert longdoc(library, "ingest", str(CONTRACT), str(meeting)).exit_code == 0
    qa = LongDocQA(index_dir=library[1], vector_store=library[0])
    passages = qa.retrieve("Which state's law governs the agreement?", doc=str(CONTRACT))
    assert passages and {p.doc for p in passages} == {CONTRACT.name}
    qa.store.close()

    meeting.write_text(meeting.read_text(encoding="utf-8") + "\nOne more line.\n", encoding="utf-8")
    changed = longdoc(library, "remove", str(meeting))
    assert changed.exit_code == 1 and f"{meeting} is not in the library as it is now" in changed.output
    meeting.write_bytes(MEETING.read_bytes())
    shutil.copy(MEETING, tmp_path / "meeting_copy.txt")  # the same bytes under a second name
    assert "1 duplicate" in longdoc(library, "ingest", str(tmp_path / "meeting_copy.txt")).output
    removed = longdoc(library, "remove", str(meeting))
    assert removed.exit_code == 0 and f"removed {MEETING.name}" in removed.output, removed.output
    listed = longdoc(library, "docs").output  # the file's document went, under both its names
    assert MEETING.name not in listed and "meeting_copy.txt" not in listed, listed


@pytest.mark.parametrize("engine", [b for b in BACKENDS if b != "faiss"])
def test_index_copy_moves_a_library_to_an_engine_and_back(engine: str, request, tmp_path: Path) -> None:
    """Nothing is embedded again: the vectors travel, so the same question finds the same passages."""
    make_url, server = {"postgresql": (new_postgres_library, "postgres_engine"),
                        "milvus": (new_milvus_library, "milvus_engine")}[engine]
    url = make_url(request.getfixturevalue(server))
    home, back = tmp_path / "home", tmp_path / "back"
    assert longdoc(("faiss", home), "ingest", str(CONTRACT), str(MEETING)).exit_code == 0
    shutil.copy(CONTRACT, tmp_path / "alias.txt")
    assert "1 duplicate" in longdoc(("faiss", home), "ingest", str(tmp_path / "alias.txt")).output

    there = longdoc(("faiss", home), "index", "copy", "--to", url)
    assert there.exit_code == 0 and "2 copied" in there.output, there.output
    twice = longdoc(("faiss", home), "index", "copy", "--to", url)
    assert "0 copied" in twice.output and "2 already there" in twice.output
    returned = longdoc(("faiss", back), "index", "copy", "--from", url, "--to", str(back))
    assert returned.exit_code == 0 and "2 copied" in returned.output, returned.output

    found = {}
    for location, index_dir in (("faiss", home), (url, tmp_path / "unused"), ("faiss", back)):
        qa = LongDocQA(index_dir=index_dir, vector_store=location)
        query = qa.embedder.embed_queries(["Who may terminate the agreement?"])[0]
        found[location, str(index_dir)] = (
            [(d.names, d.chunks, d.chunking) for d in qa.documents()],
            [(c.doc_name, c.char_start, c.char_end, round(score, 4)) for c, score in qa.store.search(query, k=5)],
        )
        qa.store.close()
    first, *others = found.values()
    assert all(other == first for other in others), found


@pytest.mark.parametrize("kind", ["postgres", "milvus"])
def test_engine_command_serves_a_library_on_localhost_until_ctrl_c(kind: str, tmp_path: Path) -> None:
    """`longdoc engine` prints the URL to use; a library opens there; Ctrl-C stops the engine's process."""
    import os
    import re
    import signal
    import subprocess
    import sys

    from app.local_engines import free_port
    from index.base import LibraryMeta
    from index.stores import open_store

    port = free_port()
    shell = subprocess.Popen(
        [sys.executable, "-c", "from app.cli import main; main()", "engine", kind, "--data-dir", str(tmp_path), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "LONGDOC_ENGINE_PASSWORD": "pw-for-test"},
    )
    lines = [shell.stdout.readline() for _ in range(2)]
    url = re.search(r"LONGDOC_VECTOR_STORE=(\S+)", lines[1]).group(1)
    pid = int(re.search(r"\(pid (\d+)\)", lines[0]).group(1))
    assert f"127.0.0.1:{port}" in url and "pw-for-test" not in "".join(lines)
    store = open_store(url.replace("***", "pw-for-test"), tmp_path / "unused", LibraryMeta("fake:8", 8))
    assert store.documents() == []
    store.close()
    shell.send_signal(signal.SIGINT)
    assert shell.wait(60) == 0
    with pytest.raises(ProcessLookupError):  # the engine's own process went with it
        os.kill(pid, 0)


def test_a_file_the_library_cannot_name_is_skipped_and_the_rest_go_in(library, tmp_path: Path) -> None:
    """A file name that is not valid UTF-8 (bytes from another system) fails alone, with its reason."""
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(CONTRACT, folder / "good.txt")
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), "wb") as f:
        f.write(MEETING.read_bytes())
    result = longdoc(library, "ingest", str(folder))
    assert result.exit_code == 0, result.output
    assert "1 ingested" in result.output and "1 skipped" in result.output
    assert "not valid UTF-8" in result.output


def test_index_copy_brings_names_the_target_lacks(tmp_path: Path) -> None:
    from test_store import CONTRACT as PARAGRAPHS
    from test_store import add

    from index.base import LibraryMeta
    from index.copy import copy_library
    from index.faiss_store import FaissStore

    meta = LibraryMeta("fake:8", 8)
    source, target = FaissStore.open(tmp_path / "a", meta), FaissStore.open(tmp_path / "b", meta)
    first = add(source, "a.txt", PARAGRAPHS)
    copy_library(source, target)
    source.add_name(first.doc_id, "b.txt")
    source.remove("a.txt")
    report = copy_library(source, target)
    assert report.present and target.get("b.txt") == target.get("a.txt")
    assert target.get("b.txt").names == ["a.txt", "b.txt"]


@pytest.mark.parametrize(("url", "module", "client"), [("postgresql://u:pw@127.0.0.1:1/db", "pgvector", "psycopg"),
                                                        ("milvus://127.0.0.1:1", "milvus", "pymilvus")])
def test_an_engine_without_its_client_installed_says_what_to_install(url, module, client, monkeypatch, tmp_path) -> None:
    import sys

    from index.base import LibraryMeta, StoreError
    from index.stores import open_store

    monkeypatch.delitem(sys.modules, f"index.{module}_store", raising=False)
    monkeypatch.setitem(sys.modules, client, None)  # as if it were not installed
    with pytest.raises(StoreError, match=rf"\({client} is not installed\): pip install 'longdoc-qa\[{module}\]'"):
        open_store(url, tmp_path, LibraryMeta("fake:8", 8))


def test_engine_refuses_a_port_another_server_listens_on(tmp_path: Path) -> None:
    import socket

    from app.errors import LongDocError
    from app.local_engines import start_milvus

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(LongDocError, match=f"127.0.0.1:{port} is in use"):
            start_milvus(tmp_path / "milvus", port)
