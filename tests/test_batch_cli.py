"""`longdoc batch` end to end: exit codes, errors per question, and a real SIGKILL mid-run followed by --resume.

The document is small and the mode `full_document`, so the batch prefills it once and each question costs
only its own tokens; that keeps a dozen real answers from the real model within seconds.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every batch answers with the generator

ROOT = Path(__file__).resolve().parents[1]
LONGDOC = [sys.executable, "-c", "from app.cli import main; main()"]
QUESTIONS = [
    "Who are the parties?", "What is the governing law?", "When does the agreement start?",
    "How can it be terminated?", "What notice is required?", "Who pays the fees?",
    "Is there a non-compete clause?", "What is the term?", "Can the agreement be assigned?",
    "What happens on breach?", "Where are disputes settled?", "Who signed it?",
]


def run(*args: str, env: dict[str, str], check_rc: int | None = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([*LONGDOC, *args], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    if check_rc is not None:
        assert result.returncode == check_rc, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """An index holding the opening of a sample contract, and settings that keep each answer short.

    `min_relevance=0` so that every question is really answered by the model, not abstained on.
    """
    home = tmp_path_factory.mktemp("batch")
    contract = ROOT / "sample_docs" / "ediets_co-branding_agreement.txt"
    doc = home / "short_contract.txt"
    doc.write_text(contract.read_text(encoding="utf-8")[:3000], encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGDOC_")}
    env |= {"LONGDOC_INDEX_DIR": str(home / "index"), "LONGDOC_MAX_NEW_TOKENS": "6", "LONGDOC_MODE": "full_document",
            "LONGDOC_MIN_RELEVANCE": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run("ingest", str(doc), env=env)
    return env


def questions_file(tmp_path: Path, extra: list[dict] = ()) -> Path:
    path = tmp_path / "questions.jsonl"
    rows = [{"id": f"q{i:02d}", "question": q} for i, q in enumerate(QUESTIONS)] + list(extra)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_failed_question_is_recorded_and_the_exit_code_says_so(env, tmp_path):
    bad = [{"id": "nodoc", "question": "Who are the parties?", "doc": "no_such_file.pdf"}, {"id": "empty", "question": ""}]
    out = tmp_path / "answers.jsonl"
    result = run("batch", str(questions_file(tmp_path, bad)), "--out", str(out), env=env, check_rc=1)
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_id = {line["id"]: line for line in lines}
    assert len(lines) == len(QUESTIONS) + 2
    assert "no_such_file.pdf" in by_id["nodoc"]["error"]
    assert by_id["empty"]["error"]
    assert all(not by_id[f"q{i:02d}"].get("error") for i in range(len(QUESTIONS)))
    assert "12 answered, 0 abstained, 2 failed" in result.stdout


def test_killed_batch_resumes_without_losing_or_repeating_answers(env, tmp_path):
    questions, out = questions_file(tmp_path), tmp_path / "answers.jsonl"
    proc = subprocess.Popen([*LONGDOC, "batch", str(questions), "--out", str(out)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_file() and out.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the batch finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines() if line.endswith("}")]
    assert 3 <= len(done_before) < len(QUESTIONS)

    result = run("batch", str(questions), "--out", str(out), "--resume", env=env)
    lines = out.read_text(encoding="utf-8").splitlines()
    ids = [json.loads(line)["id"] for line in lines]  # every line whole: a torn last line would not parse
    assert sorted(ids) == [f"q{i:02d}" for i in range(len(QUESTIONS))]
    assert ids[:len(done_before)] == done_before
    assert f"{len(done_before)} already done" in result.stdout
