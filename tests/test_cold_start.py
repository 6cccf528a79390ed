"""A command loads only what it uses: `longdoc --help`, `docs`, `remove` and `settings` import no torch, transformers,
llama-index or sentence-transformers and load no model; `ingest` loads the embedder but not the generator.

Each check runs the commands in a new Python process, as a user's shell does, and reads its `sys.modules` after:
the tests' own process has long since imported everything. benchmarks/bench_cold_start.py times the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app import LongDocQA
from app.errors import LongDocError
from app.settings import Settings
from index.base import DocumentInfo, LibraryMeta, StoreError
from index.faiss_store import FaissStore
from ingest.types import Chunk

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "llama_index", "sentence_transformers")
MINILM_DIM = 384  # the default embedder's (all-MiniLM-L6-v2) vector size, as a library built with it records

# Runs `longdoc ARGS...` for each argv list given, in this one process, then prints what was imported.
SCRIPT = """
import json, sys
from app.cli import main
commands, heavy = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
codes = []
for argv in commands:
    sys.argv = ["longdoc", *argv]
    try:
        main()
    except SystemExit as exc:
        codes.append(exc.code)
loaded = sorted({name.split(".")[0] for name in sys.modules} & heavy)
app_modules = sorted(name for name in sys.modules if name.split(".")[0] in ("app", "index", "ingest"))
print("\\n" + json.dumps({"codes": codes, "heavy": loaded, "modules": app_modules}))
"""


def longdoc_in_new_process(*commands: list[str]) -> tuple[dict, str]:
    """The exit codes, the heavy packages imported and our modules loaded after running `commands` in one new
    process; and what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGDOC_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", COLUMNS="200")
    done = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(commands), json.dumps(HEAVY)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    *printed, last = done.stdout.rstrip("\n").split("\n")
    return json.loads(last), "\n".join(printed) + done.stderr


def library(index_dir: Path, names: list[str], dim: int = MINILM_DIM) -> Path:
    """An embedded library as `ingest` with the default embedder leaves it, with made-up vectors: no model runs."""
    store = FaissStore.open(index_dir, LibraryMeta(Settings().embedder, dim))
    rng = np.random.default_rng(0)
    for name in names:
        text = f"{name}: This Agreement shall be governed by the laws of the State of Delaware."
        doc_id = hashlib.sha256(text.encode()).hexdigest()[:16]
        chunk = Chunk(doc_id, name, 0, text, 0, len(text), len(text.split()))
        info = DocumentInfo(doc_id, name, "txt", f"/data/{name}", 1, 1, chunk.n_tokens, len(text),
                            "2026-01-01T00:00:00Z")
        vectors = rng.standard_normal((1, dim)).astype(np.float32)
        store.add(info, text, [chunk], vectors / np.linalg.norm(vectors))
    store.close()
    return index_dir


def test_help_docs_remove_and_settings_import_no_model_library(tmp_path: Path) -> None:
    full = str(library(tmp_path / "full", ["msa.txt", "call.txt"]))
    empty = str(library(tmp_path / "empty", []))
    result, printed = longdoc_in_new_process(
        ["--help"], ["docs", "--index", empty], ["docs", "--index", full], ["remove", "call.txt", "--index", full],
        ["remove", "nope.txt", "--index", full],  # an error: the CLI's error handling must stay light too
        ["ask", "Who?", "--doc", "nope.txt", "--index", full],  # a wrong document fails before a model loads
        ["chat", "--doc", "nope.txt", "--index", full],
        ["ask", "Who?", "--top-k", "0", "--index", full],  # and so does a bad option
        ["ask", " ", "--index", full],  # and an empty question
        ["index", "copy", "--to", str(tmp_path / "copy"), "--index", full], ["settings", "top_k"],
    )
    assert result["codes"] == [0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0], printed
    assert "The library is empty" in printed and "msa.txt" in printed and "removed call.txt (1 chunks)" in printed
    assert printed.count("no ingested document named 'nope.txt'") == 3 and "1 copied" in printed
    assert "top_k must be positive, got 0" in printed and "the question is empty" in printed
    assert "passages retrieved for a question" in printed
    assert result["heavy"] == [], f"imported {result['heavy']}"
    assert "app.llm.generator" not in result["modules"] and "app.engine" not in result["modules"]
    assert [d.name for d in LongDocQA(index_dir=full).documents()] == ["msa.txt"]


def test_ingest_loads_the_embedder_and_not_the_generator(tmp_path: Path) -> None:
    contract = tmp_path / "msa.txt"
    contract.write_text("1. Governing Law. This Agreement shall be governed by the laws of the State of Delaware.\n\n"
                        "2. Term. It ends two years after the Effective Date.\n", encoding="utf-8")
    result, printed = longdoc_in_new_process(["ingest", str(contract), "--index", str(tmp_path / "index")])
    assert result["codes"] == [0] and "1 ingested" in printed, printed
    assert "sentence_transformers" in result["heavy"]
    assert not {"app.llm.generator", "app.engine", "app.adapt"} & set(result["modules"]), result["modules"]


def test_a_library_opened_on_its_record_still_refuses_an_embedder_with_other_vectors(tmp_path: Path) -> None:
    """`docs` trusts the vector size the library records for this embedder; the model, once loaded for a
    question or an ingest, must give that size, or it is refused as it was at opening before."""
    qa = LongDocQA(index_dir=library(tmp_path / "index", ["msa.txt"], dim=8))
    assert [d.name for d in qa.documents()] == ["msa.txt"]
    with pytest.raises(StoreError, match=r"\(8 dimensions\).*\(384 dimensions\)"):
        qa.embedder
    with pytest.raises(StoreError, match="their vectors cannot be compared"):
        qa.ask("Which law governs?")


def test_ask_checks_its_options_as_the_settings_are_checked_before_the_generator_loads(tmp_path: Path) -> None:
    qa = LongDocQA(index_dir=library(tmp_path / "index", ["msa.txt"]))
    for options, message in (({"top_k": 0}, "top_k must be positive, got 0"),
                             ({"mode": "all"}, "mode='all' is not one of auto, rag, full_document, sections"),
                             ({"context_chunks": 9}, "context_chunks must be from 0 to 5, got 9")):
        with pytest.raises(LongDocError, match=re.escape(message)):
            qa.ask("Which law governs?", **options)
    assert qa.engine._generator is None


def test_a_batch_refuses_its_files_problems_before_a_model_loads_and_keeps_the_questions(tmp_path: Path) -> None:
    full = str(library(tmp_path / "full", ["msa.txt"]))
    questions = tmp_path / "questions.csv"
    questions.write_text("id,question\na,Who are the parties?\nb,Which law governs?\n", encoding="utf-8")
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("id,question\na,Who are the parties?\na,Which law governs?\n", encoding="utf-8")
    before = questions.read_bytes()
    result, printed = longdoc_in_new_process(
        ["batch", str(questions), "--out", str(questions), "--format", "csv", "--index", full],
        ["batch", str(questions), "--out", str(tmp_path), "--index", full],
        ["batch", str(repeated), "--out", str(tmp_path / "answers.jsonl"), "--index", full],
    )
    assert result["codes"] == [1, 1, 1], printed
    assert "is the question file itself: write the answers to another file" in printed
    assert "a folder; --out takes the answer file's path" in printed and "ids used more than once: a" in printed
    assert result["heavy"] == [], f"imported {result['heavy']}"
    assert questions.read_bytes() == before and not (tmp_path / "answers.jsonl").exists()


def test_index_copy_takes_its_source_folder_from_from(tmp_path: Path) -> None:
    full = str(library(tmp_path / "full", ["msa.txt"]))
    result, printed = longdoc_in_new_process(
        ["index", "copy", "--from", full, "--to", str(tmp_path / "copy")],
        ["index", "copy", "--from", full, "--index", full, "--to", str(tmp_path / "again")],
    )
    assert result["codes"] == [0, 1], printed
    assert "1 copied" in printed and "give the source folder once: --from FOLDER or --index FOLDER" in printed
    assert [d.name for d in LongDocQA(index_dir=tmp_path / "copy").documents()] == ["msa.txt"]
    assert result["heavy"] == [], f"imported {result['heavy']}"


@pytest.mark.parametrize("level, code", [("debug", 0), ("Info", 0), ("bogus", 1)])
def test_the_log_level_is_read_in_any_case_and_a_wrong_one_is_one_line(level: str, code: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGDOC_")} | {"LONGDOC_LOG_LEVEL": level}
    done = subprocess.run([sys.executable, "-c", "from app.cli import main; main()", "settings", "top_k"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    if code:
        assert "LONGDOC_LOG_LEVEL: 'bogus' is not one of debug, info, warning, error, critical" in done.stderr
