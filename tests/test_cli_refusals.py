"""The model, server and evaluation commands refuse a wrong argument in one line, before any work starts: a
results folder that cannot be written is said before hours of evaluation, not after, and a server is never
announced on a port it cannot have."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app

SAMPLES = Path(__file__).resolve().parents[1] / "sample_docs"
CONTRACT = SAMPLES / "ediets_co-branding_agreement.txt"
runner = CliRunner()


def refused(args: list[str], message: str, code: int = 1) -> None:
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    out = " ".join(result.output.split())
    assert result.exit_code == code, result.output
    assert message in out and "Traceback" not in out, result.output


@pytest.fixture
def taken_port():
    """A port something listens on, for as long as the test runs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_evaluations_check_their_output_folder_and_options_first(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x", encoding="utf-8")
    for command in (["eval", "recall", "--quick"], ["eval", "niah", "--quick"], ["eval", "position", "--quick"]):
        refused([*command, "--out", str(afile)], "cannot be the results folder (File exists)", code=2)
    refused(["eval", "recall", "--budget-tokenizer", "bogus"], "'bogus' is not one of generator, embedder", code=2)
    refused(["eval", "niah", "--depths", "1.5", "--out", str(tmp_path)], "whole numbers separated by commas", code=2)
    refused(["eval", "position", "--k", "abc", "--out", str(tmp_path)], "whole numbers separated by commas", code=2)
    refused(["eval", "niah", "--haystack", str(tmp_path / "nowhere"), "--out", str(tmp_path)],
            "nowhere: no such file or folder")


def test_evaluations_name_the_data_file_that_is_not_a_question_set(tmp_path: Path) -> None:
    other, blank = tmp_path / "other.jsonl", tmp_path / "blank.jsonl"
    other.write_text('{"a": 1}\n', encoding="utf-8")
    blank.write_text("\n", encoding="utf-8")
    refused(["eval", "recall", "--data", str(other), "--out", str(tmp_path)],
            "not a question set of that kind (KeyError: 'meeting_transcripts')", code=2)
    refused(["eval", "recall", "--data", str(blank), "--out", str(tmp_path)], "no questions with gold evidence")
    refused(["eval", "position", "--data", str(other), "--out", str(tmp_path)],
            "line 1: not a question of the NQ oracle file (KeyError: 'ctxs')")
    refused(["eval", "position", "--data", str(blank), "--out", str(tmp_path)], "line 1: not a question of the NQ")


def test_ppl_and_adapt_check_where_they_write_before_scoring_or_training(tmp_path: Path) -> None:
    refused(["ppl", str(CONTRACT), "--out", str(tmp_path / "plot.txt")], "the plot is a file ending in .png, .svg, .pdf")
    refused(["ppl", str(CONTRACT), "--out", str(tmp_path)], "the plot is a file ending in")
    refused(["ppl", str(CONTRACT), "--scaling", "none,bogus"], "rope scaling 'bogus' is not one of")
    refused(["ppl", str(CONTRACT), "--adapter", str(tmp_path)], "not a LoRA adapter (no adapter_config.json)")
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    refused(["adapt", str(CONTRACT), "--out", str(tmp_path / "afile")], "a file; the adapter goes in a folder")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x", encoding="utf-8")
    refused(["adapt", str(CONTRACT), "--out", str(tmp_path / "notes")], "holds other files: the adapter goes in a new")
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["todo.txt"]


def test_servers_refuse_a_port_they_cannot_have_before_announcing_it(tmp_path: Path, taken_port: int) -> None:
    for command in (["serve"], ["ui"]):
        refused([*command, "--port", "70000"], "Invalid value for '--port': Input should be less than or equal to 65535", code=2)
        refused([*command, "--port", str(taken_port)], f"port {taken_port} on 127.0.0.1 is not free")
    refused(["engine", "postgres", "--port", "1"], "Invalid value for '--port': Input should be greater than or equal to 1024", code=2)
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model")
    refused(["serve", str(fake), "--port", "18081"], "not a GGUF model file")
    refused(["serve", str(tmp_path)], "a folder, not GGUF file")
    refused(["serve", "--rope-factor", "0.5"], "Invalid value for '--rope-factor': Input should be greater than or equal to 1", code=2)
    (tmp_path / "data").write_text("x", encoding="utf-8")
    refused(["engine", "milvus", "--data-dir", str(tmp_path / "data")], "a file; the engine keeps its data in a folder")
    refused(["engine", "bogus"], "engine 'bogus': choose postgres or milvus")
    refused(["index", "copy", "--to", " "], "an empty library location: give a folder or an engine's URL")
