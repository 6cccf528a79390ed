"""The `longdoc` command end to end, on the shipped sample documents, as a new user meets it."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app import LongDocQA
from app.cli import app

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_docs"
runner = CliRunner()


def sample_files() -> list[Path]:
    return sorted(p for p in SAMPLES.iterdir() if p.name != "SOURCES.md")


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """An index holding the sample documents plus a folder of bad files."""
    index = tmp_path_factory.mktemp("index")
    bad = tmp_path_factory.mktemp("bad")
    (bad / "empty.txt").write_bytes(b"")
    (bad / "binary.txt").write_bytes(bytes(range(256)) * 40)
    (bad / "latin1.txt").write_bytes("Le contrat est régi par le droit français. Préavis de trente jours.".encode("cp1252"))
    (bad / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage")
    (bad / "slides.pptx").write_bytes(b"PK\x03\x04")
    result = runner.invoke(app, ["ingest", *map(str, sample_files()), str(bad), "--index", str(index)])
    assert result.exit_code == 0, result.output
    return index, result.output


def test_ingest_reports_each_bad_file_and_keeps_the_rest(index):
    _, output = index
    for name in ("empty.txt", "binary.txt", "broken.pdf", "slides.pptx"):
        lines = [line for line in output.splitlines() if name in line]
        assert len(lines) == 1 and "skipped" in lines[0], output
    assert "Traceback" not in output
    assert f"{len(sample_files()) + 1} ingested" in output  # the cp1252 file is decoded, not refused


def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path):
    result = runner.invoke(app, ["ingest", "", "--index", str(tmp_path / "index")])
    assert result.exit_code == 2 and "an empty path was given" in result.output, result.output
    assert not (tmp_path / "index").exists()


def test_ingesting_again_changes_nothing(index):
    idx, _ = index
    result = runner.invoke(app, ["ingest", *map(str, sample_files()), "--index", str(idx)])
    assert result.exit_code == 0
    assert "0 ingested" in result.output and "unchanged" in result.output


def test_ingesting_with_another_chunker_rechunks_and_an_old_index_still_loads(tmp_path):
    """A document keeps the signature of the chunking that cut it: changing `chunker` (or upgrading to new cut
    rules) and ingesting again re-chunks it, where the same chunking leaves it alone."""
    sample = str(sample_files()[0])
    first = runner.invoke(app, ["ingest", sample, "--index", str(tmp_path)])
    again = runner.invoke(app, ["ingest", sample, "--index", str(tmp_path)])
    fixed = runner.invoke(app, ["ingest", sample, "--index", str(tmp_path)], env={"LONGDOC_CHUNKER": "fixed"})
    assert (first.exit_code, again.exit_code, fixed.exit_code) == (0, 0, 0)
    assert "1 ingested" in first.output and "0 ingested" in again.output and "1 ingested" in fixed.output
    (info,) = LongDocQA(index_dir=tmp_path).documents()
    assert info.chunking.startswith("fixed v")

    manifest = tmp_path / "MANIFEST.json"  # an index written before documents recorded their chunking
    data = json.loads(manifest.read_text(encoding="utf-8"))
    for entry in data["documents"]:
        del entry["chunking"]
    manifest.write_text(json.dumps(data), encoding="utf-8")
    (old,) = LongDocQA(index_dir=tmp_path).documents()
    assert old.chunking == "" and old.chunks == info.chunks
    redo = runner.invoke(app, ["ingest", sample, "--index", str(tmp_path)], env={"LONGDOC_CHUNKER": "fixed"})
    assert redo.exit_code == 0 and "1 ingested" in redo.output


def test_docs_lists_every_ingested_document(index):
    idx, _ = index
    result = runner.invoke(app, ["docs", "--index", str(idx)], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert "latin1.txt" in result.output
    lines = result.output.splitlines()
    for d in LongDocQA(index_dir=idx).documents():  # whole, however narrow the terminal: --doc takes them
        assert d.name in lines and any(line.strip().startswith(d.doc_id) for line in lines), result.output


@pytest.mark.slow  # asks: loads the generator
def test_ask_json_follows_the_answer_contract(index):
    idx, _ = index
    result = runner.invoke(app, ["ask", "Which state's law governs the agreement?", "--json", "--mode", "rag",
                                 "--index", str(idx)])
    assert result.exit_code == 0, result.output
    a = json.loads(result.stdout)  # progress bars go to stderr; stdout is the JSON alone
    assert a["mode"] == "rag" and a["error"] is None
    assert a["model"]["rope_scaling"]["rope_type"] == "yarn" and a["model"]["context_window"] == 32768
    assert [p["rank"] for p in a["passages"]][:1] and a["passages"][0]["prompt_zone"] in ("start", "middle", "end")
    qa = LongDocQA(index_dir=idx)
    for p in a["passages"] + a["evidence"]:
        assert qa.document_text(p["doc"])[p["char_start"]:p["char_end"]] == p["text"]
    for key in ("retrieve_s", "prefill_s", "generate_s", "evidence_s", "total_s"):
        assert key in a["timings"]
    t = a["timings"]
    assert t["retrieve_s"] + t["prefill_s"] + t["generate_s"] + t["evidence_s"] <= t["total_s"]
    q = a["quote"]  # inside a passage the prompt held, exact in its document
    assert qa.document_text(q["doc"])[q["char_start"]:q["char_end"]] == q["text"]
    assert any(p["doc"] == q["doc"] and p["char_start"] <= q["char_start"] and q["char_end"] <= p["char_end"]
               for p in a["passages"])


@pytest.mark.slow
def test_extractive_answer_is_the_quote_with_the_models_sentence_beside_it(index):
    idx, _ = index
    result = runner.invoke(app, ["ask", "Which state's law governs the agreement?", "--json", "--mode", "rag",
                                 "--doc", "ediets_co-branding_agreement.txt", "--index", str(idx)],
                           env={"LONGDOC_ANSWER_STYLE": "extractive"})
    assert result.exit_code == 0, result.output
    a = json.loads(result.stdout)
    assert a["answer"] == a["quote"]["text"] and a["generated"] and a["generated"] != a["answer"]
    assert "California" in a["answer"]  # the clause itself: the contract is governed by California law


@pytest.mark.slow
def test_ask_prints_the_relevance_the_support_check_and_the_quote_from_the_named_agreement(index):
    idx, _ = index
    result = runner.invoke(app, ["ask", "Which state's law governs the co-branding agreement?", "--mode", "rag",
                                 "--index", str(idx)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "relevance " in out and "of the question's words found" in out
    assert "support " in out  # the verdict; any sentence it does not support is listed with the reason
    quote = out[out.index("quote "):]
    assert quote.startswith("quote ediets_co-branding_agreement.txt") and "California" in quote


@pytest.mark.slow
def test_ask_with_context_shows_each_passage_span_and_its_chunk(index):
    idx, _ = index
    result = runner.invoke(app, ["ask", "Which state's law governs the co-branding agreement?", "--mode", "rag",
                                 "--context-chunks", "1", "--index", str(idx)])
    assert result.exit_code == 0, result.output
    assert "(chunk " in " ".join(result.stdout.split())
    refused = runner.invoke(app, ["ask", "Who?", "--context-chunks", "9", "--index", str(idx)])
    assert refused.exit_code == 1 and "context_chunks must be from 0 to 5, got 9" in refused.output
    assert "Traceback" not in refused.output


@pytest.mark.slow
def test_chat_answers_a_follow_up_from_the_document_in_focus_and_goes_on_after_a_bad_command(index):
    idx, _ = index
    lines = ["Who are the parties to the eDiets co-branding agreement?", "/doc nope.txt", "/docs",
             "When does it expire?", "/all please", "/quit now", "Never read."]
    result = runner.invoke(app, ["chat", "--index", str(idx)], input="\n".join(lines) + "\n")
    out = " ".join(result.output.split())
    assert result.exit_code == 1, result.output  # two commands failed; the conversation went on after each
    assert "no ingested document named 'nope.txt'" in out and "unknown command '/docs'" in out
    assert "Searched ediets_co-branding_agreement.txt for “Who are the parties to the agreement?”" in out
    assert "Searched ediets_co-branding_agreement.txt (the document in focus)" in out  # the follow-up
    assert out.count("mode: rag · ediets_co-branding_agreement.txt") == 2 and "searching the whole library" in out
    assert "Never read" not in out and "Traceback" not in out


def test_unknown_document_is_one_clear_line(index):
    idx, _ = index
    result = runner.invoke(app, ["ask", "Who?", "--doc", "nope.pdf", "--index", str(idx)])
    assert result.exit_code == 1
    assert "no ingested document named 'nope.pdf'" in result.output
    assert "Traceback" not in result.output


def test_remove_takes_a_document_out(index):
    idx, _ = index
    assert runner.invoke(app, ["remove", "latin1.txt", "--index", str(idx)]).exit_code == 0
    assert "latin1.txt" not in runner.invoke(app, ["docs", "--index", str(idx)]).output
    result = runner.invoke(app, ["remove", "latin1.txt", "--index", str(idx)])
    assert result.exit_code == 1 and "latin1.txt" in result.output


def test_bad_option_value_is_refused_with_the_choices(index):
    idx, _ = index
    result = runner.invoke(app, ["ask", "Who?", "--reorder", "random", "--index", str(idx)])
    assert result.exit_code == 1
    assert "important_first_last" in result.output


def test_reading_a_library_that_is_not_there_says_to_ingest_first_and_makes_none(tmp_path):
    missing = tmp_path / "typo"
    for command in (["ask", "Who are the parties?"], ["docs"], ["remove", "x.txt"], ["chat"]):
        result = runner.invoke(app, [*command, "--index", str(missing)])
        assert result.exit_code == 1, result.output
        assert f"no library at {missing} yet: `longdoc ingest PATH --index {missing}` makes one" in " ".join(
            result.output.split()) and "Traceback" not in result.output
    assert not missing.exists()
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    for where in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        result = runner.invoke(app, ["ingest", str(SAMPLES / "SOURCES.md"), "--index", str(where)])
        assert result.exit_code == 1 and "cannot hold a library" in result.output and "a library is a folder" in \
            result.output and "Traceback" not in result.output


def test_an_int8_index_is_used_with_int8_and_refused_in_float32_with_the_setting_to_change(tmp_path):
    sample = str(sample_files()[0])
    int8 = {"LONGDOC_EMBED_INT8": "true"}
    assert runner.invoke(app, ["ingest", sample, "--index", str(tmp_path)], env=int8).exit_code == 0
    assert [d.name for d in LongDocQA(index_dir=tmp_path, embed_int8=True).documents()] == [Path(sample).name]
    refused = runner.invoke(app, ["docs", "--index", str(tmp_path)])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "in int8" in refused.output and "embed_int8 = true" in refused.output
