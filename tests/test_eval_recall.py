"""The recall evaluation: gold evidence lands on the right characters, and `longdoc eval recall` writes its files.

The gold checks run on the fixtures (`tests/fixtures/`: three CUAD contracts with their rows of the master CSV, and
two QMSum meetings), laid out like the dev data, so they run in a plain clone.
"""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from app.evals.cli import eval_app
from app.evals.datasets import (
    CUAD_CLAUSES,
    CUAD_DIR,
    DATA_ROOT,
    OMITTED,
    QMSUM_FILE,
    CollapsedText,
    DataMissing,
    load_cuad,
    load_ectsum,
    load_eval_set,
    load_qmsum,
    missing_data,
    require_dev_data,
    transcript_text,
)
from conftest import FIXTURES
from ingest.loaders.transcript import looks_like_speaker_lines, parse_speaker_lines

CUAD = FIXTURES / CUAD_DIR
QMSUM = FIXTURES / QMSUM_FILE


def collapse(s: str) -> str:
    return " ".join(s.split())


def test_collapsed_search_maps_back_to_exact_offsets():
    text = "12. Governing Law.\n  This Agreement shall be governed by\n\tthe laws of  Delaware."
    start, end = CollapsedText(text).find("governed by the laws of Delaware.")
    assert text[start:end] == "governed by\n\tthe laws of  Delaware."
    assert CollapsedText(text).find("the laws of Texas") is None


def test_cuad_gold_spans_slice_back_to_the_annotated_clauses():
    cuad = load_cuad(CUAD)
    with (CUAD / CUAD_CLAUSES).open(encoding="utf-8", newline="") as fh:
        rows = {Path(r["Filename"]).stem.lower(): r for r in csv.DictReader(fh)}
    # every row of the master CSV found its contract, and every contract has its row
    assert cuad.unlocated == 0 and len(cuad.documents) == len(rows) == len(list((CUAD / "contracts").glob("*.txt")))
    for q in cuad.questions:
        row = rows[Path(q.doc).stem.lower()]
        pieces = {collapse(p) for span in ast.literal_eval(row[q.category]) for p in span.split(OMITTED) if p.strip()}
        text = cuad.document(q.doc).text
        found = {collapse(text[s:e]) for s, e in q.gold}
        assert found == pieces, q.id
        for s, e in q.gold:  # offsets are tight: no leading or trailing whitespace
            assert text[s:e] == text[s:e].strip()
    assert all(not q.gold for q in cuad.absent)
    assert {q.category for q in cuad.questions if q.short_answer} >= {"Parties", "Governing Law", "Agreement Date"}


def test_qmsum_gold_covers_exactly_the_query_turns():
    qmsum = load_qmsum(QMSUM)
    meetings = [json.loads(line) for line in QMSUM.open(encoding="utf-8")]
    assert len(qmsum.questions) == sum(len(m["specific_query_list"]) for m in meetings)  # every query has its gold
    for q in qmsum.questions:
        i, j = (int(x) for x in q.id.split("-")[1:])
        turns = meetings[i]["meeting_transcripts"]
        text = qmsum.document(q.doc).text
        spans = meetings[i]["specific_query_list"][j]["relevant_text_span"]
        for (s, e), (first, last) in zip(q.gold, sorted(spans, key=lambda p: int(p[0]))):
            lines = text[s:e].split("\n")
            assert len(lines) == int(last) - int(first) + 1
            assert lines[0] == f"{collapse(turns[int(first)]['speaker'])}: {collapse(turns[int(first)]['content'])}"
            assert lines[-1].endswith(collapse(turns[int(last)]["content"]))


def test_meeting_text_is_read_back_as_the_same_speaker_turns():
    turns = [{"speaker": "Project Manager", "content": "Let us start .  Budget first ."},
             {"speaker": "Grad B", "content": "The {disfmarker} remote costs twelve euros ."},
             {"speaker": "Project Manager", "content": "OK ."}]
    text, ranges = transcript_text(turns)
    assert looks_like_speaker_lines(text)
    parsed = parse_speaker_lines(Path("m.txt"), text, "m.txt")
    assert [(t.start, t.label) for t in parsed.turns] == [(s, t["speaker"]) for (s, _), t in zip(ranges, turns)]
    assert text[ranges[1][0]:ranges[1][1]] == "Grad B: The {disfmarker} remote costs twelve euros ."


def _tiny_meetings(path: Path) -> None:
    topics = [
        ("Marketing", "the remote control should be fancy and shaped like a banana"),
        ("Industrial Designer", "the battery lasts two years with a kinetic charger"),
        ("User Interface", "voice recognition costs too much for a twelve euro budget"),
        ("Project Manager", "we meet again on Thursday to finalise the prototype"),
    ]
    with path.open("w", encoding="utf-8") as fh:
        for m in range(2):
            transcript = [
                {"speaker": speaker, "content": f"In meeting {m}, I think {fact} . " + "Okay , agreed . " * 30}
                for _ in range(3) for speaker, fact in topics
            ]
            queries = [{"query": "What did the group say about the battery?", "answer": "", "relevant_text_span": [["1", "1"]]},
                       {"query": "When is the next meeting?", "answer": "", "relevant_text_span": [["3", "4"]]}]
            fh.write(json.dumps({"meeting_transcripts": transcript, "specific_query_list": queries}) + "\n")


def test_eval_recall_quick_writes_json_and_png(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "meetings.jsonl"
    _tiny_meetings(data)
    root = typer.Typer()
    root.add_typer(eval_app, name="eval")
    out = tmp_path / "out"
    result = CliRunner().invoke(root, ["eval", "recall", "--quick", "--data", str(data), "--chunker", "fixed",
                                       "--retriever", "dense", "--k", "3", "--budget-tokenizer", "embedder",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "recall_qmsum_fixed_dense.json").read_text(encoding="utf-8"))
    assert (report["chunker"], report["retriever"], report["k"], report["documents"]) == ("fixed", "dense", 3, 2)
    assert report["budget_tokenizer"].startswith("embedder:")
    assert report["questions"] == len(report["results"]) == 4
    for key in ("recall_at_k", "mrr", "recall_at_budget"):
        assert 0.0 <= report["groups"]["all"][key] <= 1.0
    assert {"id", "first_hit_rank", "hit_at_k", "hit_in_budget"} <= set(report["results"][0])
    assert (out / "recall_qmsum_fixed_dense.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_data_is_one_line_saying_where_the_dev_data_belongs(tmp_path):
    """The dev data is not in the repository: `longdoc eval` and the benchmarks say so in one line."""
    message = str(missing_data(DATA_ROOT / CUAD_DIR))
    assert "\n" not in message and "../shared/data" in message and message.endswith("or pass --data PATH")
    with pytest.raises(DataMissing, match=r"contracts does not exist$"):
        load_cuad(tmp_path / CUAD_DIR)
    with pytest.raises(DataMissing, match=r"val\.jsonl does not exist$"):
        load_qmsum(tmp_path / QMSUM_FILE)
    with pytest.raises(SystemExit, match=r"^error: .*nowhere does not exist$"):
        require_dev_data(tmp_path / "nowhere")


CALL = ("Good morning and welcome to the third quarter call.\n"
        "For the third quarter, total revenues were $452.2 million compared with $441 million a year ago.\n"
        "On a non-GAAP basis, diluted earnings per share were $0.83, up from $0.71.\n"
        "We now expect full-year revenues of between $1.82 billion and $1.83 billion.\n"
        "Capital spending was 12 million in the quarter, 12 million in the second and 12 million in the first, "
        "and 12 million in 2020.\n")
BULLETS = ("q3 revenue rose 2.5 percent to $452.2 million.\n"
           "q3 non-gaap earnings per share $0.83.\n"
           "sees fy revenue $1.82 billion to $1.83 billion.\n"
           "capex fell 40 percent.\n"  # a figure the call never states: not asked
           "capital spending of $12 million in 2021.\n")  # 12 is on one line said four times: locates that line


def _calls(root: Path) -> None:
    (root / "ects").mkdir(parents=True)
    (root / "gt_summaries").mkdir()
    (root / "ects" / "XYZ_q3_2021.txt").write_text(CALL, encoding="utf-8")
    (root / "gt_summaries" / "XYZ_q3_2021.txt").write_text(BULLETS, encoding="utf-8")


def test_earnings_call_cloze_masks_a_figure_the_call_states_and_points_at_its_line(tmp_path):
    _calls(tmp_path / "calls")
    data = load_eval_set(str(tmp_path / "calls"))
    assert data.name == "ectsum" and [d.name for d in data.documents] == ["ectsum_XYZ_q3_2021.txt"]
    text = data.documents[0].text
    asked = {q.question: [text[s:e] for s, e in q.gold] for q in data.questions}
    assert asked == {
        # 2.5 is not in the call: the next figure, 452.2, is masked
        "q3 revenue rose 2.5 percent to $___ million.": [CALL.splitlines()[1]],
        "q3 non-gaap earnings per share $___.": [CALL.splitlines()[2]],
        "sees fy revenue $___ billion to $1.83 billion.": [CALL.splitlines()[3]],
        "capital spending of $___ million in 2021.": [CALL.splitlines()[4]],  # 2021, a year, is never masked
    }
    assert all(q.short_answer and q.category == "ectsum" for q in data.questions)
    with pytest.raises(DataMissing, match=r"ects does not exist$"):
        load_ectsum(tmp_path / "nowhere")
