"""Question files in every format, bad rows, and the answer file's durability on resume."""

import csv
import io
import json

import pytest

from app.answer import Answer, Passage
from app.batch import AnswerWriter, QuestionFileError, expand_each_doc, group_by_doc, read_questions
from app.errors import LongDocError


def test_txt_questions_one_a_line(tmp_path):
    f = tmp_path / "q.txt"
    f.write_text("Who are the parties?\n\n  When does it end?  \n", encoding="utf-8")
    qs = read_questions(f)
    assert [(q.id, q.question) for q in qs] == [("q1", "Who are the parties?"), ("q3", "When does it end?")]


def test_jsonl_questions_with_doc_and_bad_rows(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text('{"id": "a", "question": "Q1?", "doc": "x.txt"}\nnot json\n{"id": "c"}\n[1]\n', encoding="utf-8")
    qs = read_questions(f)
    assert (qs[0].id, qs[0].question, qs[0].doc, qs[0].error) == ("a", "Q1?", "x.txt", None)
    assert "line 2: not JSON" in qs[1].error
    assert qs[2].id == "c" and "no question" in qs[2].error
    assert "expected an object" in qs[3].error


def test_csv_questions_with_optional_doc(tmp_path):
    f = tmp_path / "q.csv"
    f.write_text('id,question,doc\n1,"Which law, if any?",\n2,,x.txt\n', encoding="utf-8")
    qs = read_questions(f)
    assert (qs[0].question, qs[0].doc, qs[0].error) == ("Which law, if any?", None, None)
    assert "row 3: no question" in qs[1].error


def test_unusable_question_files_name_the_problem(tmp_path):
    with pytest.raises(QuestionFileError, match="no such file"):
        read_questions(tmp_path / "missing.txt")
    (tmp_path / "q.xlsx").write_bytes(b"PK")
    with pytest.raises(QuestionFileError, match=r"\.txt, \.jsonl or \.csv"):
        read_questions(tmp_path / "q.xlsx")
    (tmp_path / "q.csv").write_text("foo,bar\n1,2\n", encoding="utf-8")
    with pytest.raises(QuestionFileError, match="'question' column"):
        read_questions(tmp_path / "q.csv")
    for name, text in (("empty.txt", "\n \n"), ("header.csv", "id,question\n\n"), ("blank.jsonl", "")):
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(QuestionFileError, match=f"{name}: no questions in it"):
            read_questions(tmp_path / name)


def test_each_doc_and_grouping_keep_same_document_questions_together(tmp_path):
    f = tmp_path / "q.txt"
    f.write_text("A?\nB?\n", encoding="utf-8")
    rows = expand_each_doc(read_questions(f), ["x", "y"])
    assert [q.id for q in rows] == ["q1@x", "q2@x", "q1@y", "q2@y"]
    mixed = [rows[0], rows[2], rows[1], rows[3]]
    assert [q.id for q in group_by_doc(mixed)] == ["q1@x", "q2@x", "q1@y", "q2@y"]


def answer(i: int) -> Answer:
    p = Passage(rank=1, score=0.5, doc="d.txt", doc_id="x", char_start=0, char_end=4, text="line\nbreak",
                prompt_index=0, prompt_zone="start")
    return Answer(question=f"Q{i}?", id=f"q{i}", answer=f"answer\n{i}", passages=[p])


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_resume_drops_a_partial_last_line_and_skips_done_ids(tmp_path, fmt):
    out = tmp_path / f"a.{fmt}"
    w = AnswerWriter(out, fmt, resume=False)
    for i in range(3):
        w.write(answer(i), "d.txt")
    w.close()
    with out.open("a", encoding="utf-8") as fh:  # a kill in the middle of a write
        fh.write('{"id": "q3", "ques' if fmt == "jsonl" else "q3,Q3?,d.tx")
    w = AnswerWriter(out, fmt, resume=True)
    assert w.done == {"q0", "q1", "q2"}
    w.write(answer(3), "d.txt")
    w.close()
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == (4 if fmt == "jsonl" else 5)  # csv has a header
    if fmt == "jsonl":
        assert [json.loads(line)["id"] for line in lines] == ["q0", "q1", "q2", "q3"]


def test_csv_rows_carry_every_timing_the_engine_records(tmp_path):
    out = tmp_path / "a.csv"
    a = answer(0)
    a.timings = {"retrieve_s": 0.1, "prefill_s": 1.0, "generate_s": 2.0, "evidence_s": 0.4, "total_s": 3.6}
    w = AnswerWriter(out, "csv", resume=False)
    w.write(a, "d.txt")
    w.close()
    (row,) = csv.DictReader(io.StringIO(out.read_text(encoding="utf-8")))
    assert {k: float(row[k]) for k in a.timings} == a.timings


def test_without_resume_the_answer_file_starts_over(tmp_path):
    out = tmp_path / "a.jsonl"
    out.write_text('{"id": "old"}\n', encoding="utf-8")
    w = AnswerWriter(out, "jsonl", resume=False)
    w.write(answer(0), None)
    w.close()
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["q0"]


def test_rows_with_odd_ids_or_docs_and_repeated_ids(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text('{"id": 0, "question": "Zero?"}\n{"question": "Listed?", "doc": ["a.txt", "b.txt"]}\n'
                 '{"question": "Numbered?", "doc": 5}\n', encoding="utf-8")
    qs = read_questions(f)
    assert qs[0].id == "0" and qs[0].error is None  # an id of 0 is an id, not a missing one
    assert [q.error for q in qs[1:]] == [f"line {n}: doc must be a document's name (a string)" for n in (2, 3)]
    f.write_text('{"id": "a", "question": "One?"}\n{"id": "a", "question": "Two?"}\n', encoding="utf-8")
    with pytest.raises(QuestionFileError, match="q.jsonl: ids used more than once: a; each question needs its own"):
        read_questions(f)


def test_a_csv_quote_never_closed_is_refused_not_read_as_one_long_question(tmp_path):
    f = tmp_path / "q.csv"
    f.write_text('id,question\nq1,"What is the term?\nq2,Who signed?\nq3,Which law?\n', encoding="utf-8")
    with pytest.raises(QuestionFileError, match="q.csv: not valid CSV .*a quote opened and never closed"):
        read_questions(f)


@pytest.mark.parametrize("fmt, other", [("jsonl", "csv"), ("csv", "jsonl")])
def test_resuming_a_file_of_the_other_format_or_a_damaged_one_is_refused_and_it_is_left_as_it_was(tmp_path, fmt,
                                                                                                   other):
    out = tmp_path / "answers"
    w = AnswerWriter(out, other, resume=False)
    w.write(answer(0), "d.txt")
    w.close()
    before = out.read_bytes()
    with pytest.raises(LongDocError, match="resume it with the format it was written in"):
        AnswerWriter(out, fmt, resume=True)
    assert out.read_bytes() == before
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(b'{"id": "q0"}\n[1]\n')
    with pytest.raises(LongDocError, match=r"damaged.jsonl, line 2: not a JSON answer"):
        AnswerWriter(damaged, "jsonl", resume=True)
    damaged.write_bytes(b'{"id": "q0"}\n\xff\n')
    with pytest.raises(LongDocError, match="damaged.jsonl: not UTF-8 text"):
        AnswerWriter(damaged, "jsonl", resume=True)


def test_an_answer_file_that_cannot_be_written_says_where_and_why(tmp_path):
    with pytest.raises(LongDocError, match="a folder; --out takes the answer file's path"):
        AnswerWriter(tmp_path, "jsonl", resume=False)
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    with pytest.raises(LongDocError, match=r"out.jsonl: cannot write the answers there \(File exists\)"):
        AnswerWriter(tmp_path / "afile" / "out.jsonl", "jsonl", resume=False)
