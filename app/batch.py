"""Batch answering: a file of questions in, one answer line out per question, appended as it is ready.

Each answer is written and flushed (and fsynced) the moment it exists, so a killed run loses nothing it
finished; `resume` drops a half-written last line and skips ids already answered. A question that fails
gets its `error` in its line and the rest go on. Questions about the same document run one after another,
so in `full_document` mode the engine prefills the document once and reuses its KV cache.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator

from app.answer import Answer
from app.errors import LongDocError, user_errors

log = logging.getLogger(__name__)

TIMINGS = ("retrieve_s", "prefill_s", "generate_s", "evidence_s", "total_s")  # the engine's `Answer.timings`
CSV_FIELDS = [
    "id", "question", "doc", "answer", "mode", "abstained", "error",
    "top_doc", "top_page", "top_section", "top_char_start", "top_char_end", "top_score", "top_text",
    "zones", "evidence", "quote", "quote_char_start", "quote_char_end", "generated",
    "prompt_tokens", "completion_tokens", *TIMINGS,
]


@dataclass
class Question:
    """One row of a question file. `error` is set when the row itself is unusable."""

    id: str
    question: str
    doc: str | None = None
    error: str | None = None


class QuestionFileError(LongDocError):
    """The question file as a whole cannot be read."""


def read_questions(path: Path) -> list[Question]:
    """Questions from .txt (one a line), .jsonl ({"id", "question", "doc"?}) or .csv (id,question[,doc])."""
    if not path.is_file():
        raise QuestionFileError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise QuestionFileError(f"{path}: not UTF-8 text") from None
    suffix = path.suffix.lower()
    if suffix == ".txt":
        questions = [Question(id=f"q{n}", question=line.strip()) for n, line in enumerate(text.splitlines(), 1)
                     if line.strip()]
    elif suffix == ".jsonl":
        questions = [_jsonl_row(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    elif suffix == ".csv":
        try:  # strict: an unclosed quote is an error, not a question swallowing the rest of the file
            rows = list(csv.DictReader(io.StringIO(text), strict=True))
        except csv.Error as exc:
            raise QuestionFileError(f"{path}: not valid CSV ({exc}: a quote opened and never closed?)") from None
        if rows and "question" not in rows[0]:
            raise QuestionFileError(f"{path}: the CSV header needs a 'question' column (id,question[,doc])")
        questions = [_csv_row(n, row) for n, row in enumerate(rows, 2)]
    else:
        raise QuestionFileError(f"{path}: question files are .txt, .jsonl or .csv, not {suffix or 'no extension'}")
    if not questions:  # said before a model is loaded, not as "0 answered"
        raise QuestionFileError(f"{path}: no questions in it")
    repeated = [qid for qid, n in Counter(q.id for q in questions).items() if n > 1]
    if repeated:  # a resume skips the ids already answered: a second question under one id would never be asked
        raise QuestionFileError(f"{path}: ids used more than once: {', '.join(repeated[:5])}"
                                f"{' ...' if len(repeated) > 5 else ''}; each question needs its own id")
    return questions


def _jsonl_row(n: int, line: str) -> Question:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        return Question(id=f"line{n}", question="", error=f"line {n}: not JSON ({exc.msg})")
    if not isinstance(row, dict):
        return Question(id=f"line{n}", question="", error=f"line {n}: expected an object")
    qid = f"q{n}" if row.get("id") in (None, "") else str(row["id"])
    question, doc = row.get("question"), row.get("doc")
    if not isinstance(question, str) or not question.strip():
        return Question(id=qid, question="", error=f"line {n}: no question")
    if doc is not None and not isinstance(doc, str):
        return Question(id=qid, question=question.strip(), error=f"line {n}: doc must be a document's name (a string)")
    return Question(id=qid, question=question.strip(), doc=doc or None)


def _csv_row(n: int, row: dict[str, str | None]) -> Question:
    qid = (row.get("id") or "").strip() or f"q{n}"
    question = (row.get("question") or "").strip()
    if not question:
        return Question(id=qid, question="", error=f"row {n}: no question")
    return Question(id=qid, question=question, doc=(row.get("doc") or "").strip() or None)


def expand_each_doc(questions: list[Question], docs: Iterable[str]) -> list[Question]:
    """Every question of every document, document by document (ids become `id@doc`)."""
    return [Question(id=f"{q.id}@{d}", question=q.question, doc=d, error=q.error) for d in docs for q in questions]


def group_by_doc(questions: list[Question]) -> list[Question]:
    """Questions about the same document next to each other, first-seen order kept, so a KV cache is reused."""
    order: dict[str | None, int] = {}
    for q in questions:
        order.setdefault(q.doc, len(order))
    return sorted(questions, key=lambda q: order[q.doc])


def flatten(answer: Answer, doc: str | None) -> dict[str, object]:
    """One CSV row: the answer, the top passage and its place, the zones, the evidence and timings."""
    top = answer.passages[0] if answer.passages else None
    by_rank = sorted(answer.passages, key=lambda p: p.rank)
    row: dict[str, object] = {
        "id": answer.id, "question": answer.question, "doc": doc, "answer": answer.answer, "mode": answer.mode,
        "abstained": answer.abstained, "error": answer.error,
        "zones": " ".join(f"{p.rank}:{p.prompt_zone}" for p in by_rank if p.prompt_zone),
        "evidence": " | ".join(e.text for e in answer.evidence),
        "quote": answer.quote.text if answer.quote else None,
        "quote_char_start": answer.quote.char_start if answer.quote else None,
        "quote_char_end": answer.quote.char_end if answer.quote else None,
        "generated": answer.generated,
        "prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
    }
    if top is not None:
        top = by_rank[0]
        row.update(top_doc=top.doc, top_page=top.page, top_section=top.section, top_char_start=top.char_start,
                   top_char_end=top.char_end, top_score=top.score, top_text=top.text)
    row.update({k: answer.timings.get(k) for k in TIMINGS})
    # One physical line per record, so a resume can trust line boundaries.
    return {k: " ".join(str(v).split()) if isinstance(v, str) else v for k, v in row.items()}


class AnswerWriter:
    """Appends answers to a .jsonl or .csv file, one durable line each, and knows which ids it already holds."""

    def __init__(self, path: Path, fmt: str, resume: bool) -> None:
        if fmt not in ("jsonl", "csv"):
            raise LongDocError(f"format {fmt!r} is not one of jsonl, csv")
        if path.is_dir():
            raise LongDocError(f"{path}: a folder; --out takes the answer file's path")
        self.path, self.fmt = path, fmt
        self.done: set[str] = set()
        try:
            if resume and path.exists():
                self._drop_partial_line()
                self.done = self._ids()
            elif path.exists():
                path.unlink()
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists() or path.stat().st_size == 0
            self._fh: IO[str] = path.open("a", encoding="utf-8", newline="")
        except OSError as exc:
            raise LongDocError(f"{path}: cannot write the answers there ({exc.strerror})") from None
        if fmt == "csv" and new:
            self._write_line(_csv_line(dict(zip(CSV_FIELDS, CSV_FIELDS))))

    def write(self, answer: Answer, doc: str | None) -> None:
        if self.fmt == "jsonl":
            line = json.dumps(answer.to_dict(), ensure_ascii=False) + "\n"
        else:
            line = _csv_line(flatten(answer, doc))
        self._write_line(line)
        if answer.id is not None:
            self.done.add(answer.id)

    def close(self) -> None:
        self._fh.close()

    def _write_line(self, line: str) -> None:
        self._fh.write(line)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def _drop_partial_line(self) -> None:
        """A run killed mid-write can leave a last line without its newline: cut it off."""
        data = self.path.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(keep)

    def _ids(self) -> set[str]:
        """The ids the file already answers; refused, with nothing written, when it is not this format's answers
        (resuming must not mix CSV rows into JSON lines, or skip questions on the word of a damaged file)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise LongDocError(f"{self.path}: not UTF-8 text, so not an answer file to resume") from None
        lines = text.splitlines()
        if self.fmt == "csv":
            if lines and lines[0] != ",".join(CSV_FIELDS):
                raise LongDocError(f"{self.path}: its first line is not the CSV answers' header: resume it with the "
                                   "format it was written in (--format jsonl?), or write to a new file")
            return {row["id"] for row in csv.DictReader(io.StringIO(text)) if row.get("id")}
        ids = set()
        for n, line in enumerate(lines, 1):
            try:
                row = json.loads(line) if line.strip() else {}
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                raise LongDocError(f"{self.path}, line {n}: not a JSON answer: resume it with the format it was "
                                   "written in (--format csv?), or mend or remove that line")
            if "id" in row:
                ids.add(str(row["id"]))
        return ids


def _csv_line(row: dict[str, object]) -> str:
    buf = io.StringIO()
    csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n").writerow(row)
    return buf.getvalue()


def answer_all(qa, questions: list[Question], mode: str | None = None, top_k: int | None = None,
               reorder: str | None = None, context_chunks: int | None = None) -> Iterator[Answer]:
    """Answer each question in turn; a failing one yields an Answer with `error` set and the rest go on.

    All questions are embedded first, in one batched call; each `ask` then finds its vector remembered.
    """
    qa.embedder.embed_queries([q.question for q in questions if not q.error])
    for q in questions:
        if q.error:
            yield Answer(question=q.question, id=q.id, error=q.error)
            continue
        try:
            yield qa.ask(q.question, doc=q.doc, top_k=top_k, reorder=reorder, mode=mode, context_chunks=context_chunks,
                         id=q.id)
        except user_errors() as exc:  # the tool's own: its message is the error
            yield Answer(question=q.question, id=q.id, error=str(exc))
        except Exception as exc:  # one broken question must not end a run of hundreds
            log.exception("question %s failed", q.id)
            yield Answer(question=q.question, id=q.id, error=f"{type(exc).__name__}: {exc}")
