"""Question sets with gold evidence, as character ranges into the exact text a document is ingested with.

Two adapters turn the dev sets (`../shared/data`, see its README) into one shape, `EvalSet`:

- CUAD: one contract per `.txt`; per category a Python-literal list of verbatim clause spans in
  `master_clauses_dev.csv`. The spans were copied from PDFs, so their whitespace differs from the text
  files: each piece (spans are split on `<omitted>`) is found after collapsing every whitespace run to one
  space on both sides, and the match is mapped back to exact offsets in the original text. Categories whose
  list is `[]` become *absent* questions (gold = []), for abstention tests.
- QMSum: each meeting written as one `Speaker: content` line per turn, the format the transcript loader
  (`ingest/loaders/transcript.py`) reads as speaker turns; a query's gold is the character range of its
  turns `[start_turn, end_turn]` (inclusive, as QMSum gives them).

Gold offsets index `EvalDocument.text`, which is written to a `.txt` file verbatim before ingestion, so they
index `LongDocQA.document_text(doc)` too (for .txt the document text is the file content exactly).
"""

from __future__ import annotations

import ast
import bisect
import csv
import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import LongDocError

logger = logging.getLogger(__name__)

# The dev data sits beside the repository (`../shared/data`); `--data PATH` points anywhere else. A plain
# clone has no such folder: the tests read the few files they need from `tests/fixtures/`, laid out alike.
DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"
CUAD_DIR = "cuad_dev"
DEV_CONTRACTS = DATA_ROOT / CUAD_DIR / "contracts"  # haystacks and prompts for the evals and benchmarks
CUAD_CLAUSES = "master_clauses_dev.csv"
CUAD_DESCRIPTIONS = "category_descriptions.csv"
QMSUM_FILE = Path("qmsum_dev") / "val.jsonl"
ECTSUM_DIR = "ectsum_dev"  # ects/<call>.txt (one sentence a line) and gt_summaries/<call>.txt (one bullet a line)
OMITTED = "<omitted>"
# `--quick` takes the two shortest documents of at least this many characters (about 4,000 tokens): long
# enough that retrieving 5 passages is a real choice, short enough to ingest in seconds.
QUICK_DOCS = 2
QUICK_MIN_CHARS = 20_000

# Categories whose answer is a name, a date, a law or a term: the ones a user asks about most, and the
# ones the short-answer recall figures are stated for. Their questions are written by hand, as a user would
# ask them; every other category is asked with its CUAD description, which is already a question.
SHORT_ANSWER_QUESTIONS = {
    "Document Name": "What is the name or title of this agreement?",
    "Parties": "Who are the parties to this agreement?",
    "Agreement Date": "On what date was the agreement made or signed?",
    "Effective Date": "On what date does the agreement become effective?",
    "Expiration Date": "When does the initial term of the agreement expire?",
    "Renewal Term": "Does the agreement renew after its initial term, and for how long?",
    "Notice Period To Terminate Renewal": "How much notice must a party give to stop the agreement from renewing?",
    "Governing Law": "Which state or country's law governs the contract?",
}
# The one description that is a statement, not a question.
QUESTION_OVERRIDES = {
    "Competitive Restriction Exception": (
        "What exceptions or carve-outs apply to the non-compete, exclusivity or no-solicit of customers restrictions?"
    ),
}


class DataMissing(LongDocError):
    """A question set's files are not where they were looked for: one line saying where, and what to do."""


def missing_data(path: Path, instead: str = "pass --data PATH") -> DataMissing:
    """The error for a file or folder of a question set that does not exist.

    The dev data is not part of the repository, so for a path under `DATA_ROOT` the message says where it
    belongs, and `instead` what a user can pass in its place ("" for nothing).
    """
    if not Path(path).is_relative_to(DATA_ROOT):
        return DataMissing(f"{path} does not exist")
    message = f"{path} does not exist: the dev data is not part of the repository; place it beside the checkout as " \
              "../shared/data"
    return DataMissing(message + (f", or {instead}" if instead else ""))


def require_dev_data(*paths: str | Path) -> None:
    """For the benchmark scripts, which read the dev data: exit with one line naming the first missing path,
    rather than a traceback from deep inside a loader.

    Args:
        paths: relative to `DATA_ROOT` (`CUAD_DIR`, `QMSUM_FILE`) or absolute (`DEV_CONTRACTS`).

    Example:
        >>> require_dev_data(CUAD_DIR, QMSUM_FILE)  # doctest: +SKIP
    """
    for path in paths:
        if not (DATA_ROOT / path).exists():
            raise SystemExit(f"error: {missing_data(DATA_ROOT / path, instead='')}")


@dataclass(frozen=True)
class EvalDocument:
    """A document as it will be ingested: `text` is written verbatim to a file called `name`."""

    name: str
    text: str


@dataclass(frozen=True)
class EvalQuestion:
    """A question about one document, with the character ranges that hold its evidence (empty: absent)."""

    id: str
    doc: str  # EvalDocument.name
    question: str
    gold: list[tuple[int, int]]  # [start, end) into the document's text; any overlap counts as found
    category: str  # CUAD category, or "qmsum"
    short_answer: bool
    answer: str = ""  # CUAD's short normalised answer ("5/22/00", "Delaware"), where the category has one


@dataclass
class EvalSet:
    """Documents, the questions whose evidence they hold, and (CUAD) questions about clauses they lack."""

    name: str
    documents: list[EvalDocument]
    questions: list[EvalQuestion]
    absent: list[EvalQuestion] = field(default_factory=list)
    unlocated: int = 0  # gold pieces that could not be found in their document (logged, left out)

    def document(self, name: str) -> EvalDocument:
        return next(d for d in self.documents if d.name == name)


# ---- locating verbatim spans -------------------------------------------------------------------------------


class CollapsedText:
    """A text with every whitespace run collapsed to one space, and the way back to original offsets.

    Example:
        >>> c = CollapsedText("Governed by\\n  the laws of\\tDelaware.")
        >>> c.find("by the laws of")
        (9, 26)
    """

    def __init__(self, text: str) -> None:
        self.text = text
        words = list(re.finditer(r"\S+", text))
        self.orig_starts = [m.start() for m in words]
        self.collapsed_starts: list[int] = []
        pos = 0
        for m in words:
            self.collapsed_starts.append(pos)
            pos += len(m.group()) + 1
        self.collapsed = " ".join(m.group() for m in words)

    def _to_original(self, c: int) -> int:
        """Original offset of collapsed offset `c`, which must fall on a non-space character."""
        w = bisect.bisect_right(self.collapsed_starts, c) - 1
        return self.orig_starts[w] + (c - self.collapsed_starts[w])

    def find(self, piece: str, after: int = 0) -> tuple[int, int] | None:
        """[start, end) in the original text of the first match of `piece` (whitespace-insensitive) that
        starts at or after original offset `after`; None if there is none."""
        needle = " ".join(piece.split())
        if not needle:
            return None
        w = bisect.bisect_left(self.orig_starts, after)
        c = self.collapsed.find(needle, self.collapsed_starts[w] if w < len(self.collapsed_starts) else len(self.collapsed))
        if c < 0:
            return None
        return self._to_original(c), self._to_original(c + len(needle) - 1) + 1


def locate_spans(doc: CollapsedText, spans: list[str]) -> tuple[list[tuple[int, int]], int]:
    """Character ranges of CUAD spans in `doc`, and how many pieces were not found.

    A span is split on `<omitted>` and each piece located on its own. The master CSV carries no offsets, so a
    piece is taken at its first occurrence; a piece listed again is taken at its next occurrence.
    """
    found: list[tuple[int, int]] = []
    missing = 0
    resume: dict[str, int] = {}
    for span in spans:
        for piece in span.split(OMITTED):
            key = " ".join(piece.split())
            if not key:
                continue
            hit = doc.find(key, after=resume.get(key, 0))
            if hit is None and key in resume:  # listed more often than it occurs: the first occurrence again
                hit = doc.find(key)
            if hit is None:
                missing += 1
                logger.debug("span not found: %.80r", key)
                continue
            resume[key] = hit[1]
            found.append(hit)
    return sorted(set(found)), missing


# ---- CUAD --------------------------------------------------------------------------------------------------


def _key(name: str) -> str:
    """How the master CSV's PDF names map to the .txt files: no extension, case-insensitive, NFC."""
    return unicodedata.normalize("NFC", name).lower()


def cuad_questions(root: Path) -> dict[str, tuple[str, bool]]:
    """Category -> (question, short_answer), for every category in the descriptions file."""
    questions: dict[str, tuple[str, bool]] = {}
    by_lower = {k.lower(): k for k in (*SHORT_ANSWER_QUESTIONS, *QUESTION_OVERRIDES)}
    with (root / CUAD_DESCRIPTIONS).open(encoding="utf-8-sig", newline="") as fh:
        for row in csv.DictReader(fh):
            category = row["Category (incl. context and answer)"].removeprefix("Category:").strip()
            description = " ".join(row["Description"].removeprefix("Description:").split())
            canonical = by_lower.get(category.lower(), category)
            if canonical in SHORT_ANSWER_QUESTIONS:
                questions[category.lower()] = (SHORT_ANSWER_QUESTIONS[canonical], True)
            else:
                questions[category.lower()] = (QUESTION_OVERRIDES.get(canonical, description), False)
    return questions


def quick_pick(items: list, text_of) -> list:
    """The QUICK_DOCS shortest items whose text has at least QUICK_MIN_CHARS (the shortest overall if too few)."""
    ordered = sorted(items, key=lambda item: len(text_of(item)))
    long_enough = [item for item in ordered if len(text_of(item)) >= QUICK_MIN_CHARS]
    return (long_enough if len(long_enough) >= QUICK_DOCS else ordered)[:QUICK_DOCS]


def load_cuad(root: Path | None = None, quick: bool = False) -> EvalSet:
    """The CUAD dev contracts and one question per (contract, category).

    Args:
        root: the `cuad_dev` folder (holding `contracts/`, the master CSV and the descriptions); default: the
            one in `DATA_ROOT`.
        quick: keep two contracts (`quick_pick`).

    Raises:
        DataMissing: one of those three is not there.
    """
    root = Path(root) if root else DATA_ROOT / CUAD_DIR
    for needed in (root / "contracts", root / CUAD_CLAUSES, root / CUAD_DESCRIPTIONS):
        if not needed.exists():
            raise missing_data(needed)
    files = {_key(p.stem): p for p in sorted((root / "contracts").glob("*.txt"))}
    asked = cuad_questions(root)
    with (root / CUAD_CLAUSES).open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    categories = [c for c in rows[0] if c != "Filename" and not c.rstrip().endswith("Answer")] if rows else []
    # "<Cat>-Answer", once "<Cat>- Answer" in the CSV
    answer_columns = {re.sub(r"\s*-\s*Answer$", "", c): c for c in (rows[0] if rows else []) if c.rstrip().endswith("Answer")}
    unknown = [c for c in categories if c.lower() not in asked]
    if unknown:
        raise ValueError(f"{root / CUAD_CLAUSES}: categories without a description: {', '.join(unknown)}")

    picked = []
    for row in rows:
        path = files.get(_key(Path(row["Filename"]).stem))
        if path is None:
            logger.warning("CUAD: no contract text for %s; skipped", row["Filename"])
            continue
        # utf-8-sig: the loader drops a byte-order mark too, so offsets agree with the ingested text
        picked.append((path, row, path.read_bytes().decode("utf-8-sig")))
    if quick:
        picked = quick_pick(picked, lambda p: p[2])

    documents, questions, absent, unlocated = [], [], [], 0
    for d, (path, row, text) in enumerate(picked):
        doc = EvalDocument(path.name, text)
        documents.append(doc)
        collapsed = CollapsedText(text)
        for category in categories:
            question, short = asked[category.lower()]
            spans = ast.literal_eval(row[category]) if row[category].strip() else []
            qid = f"cuad-{d:02d}-{re.sub(r'[^a-z0-9]+', '-', category.lower()).strip('-')}"
            if not spans:
                absent.append(EvalQuestion(qid, doc.name, question, [], category, short))
                continue
            gold, missing = locate_spans(collapsed, spans)
            unlocated += missing
            if gold:
                answer = row.get(answer_columns.get(category, ""), "") or ""
                questions.append(EvalQuestion(qid, doc.name, question, gold, category, short, answer.strip()))
    if unlocated:
        logger.warning("CUAD: %d gold span pieces not found in their contracts; left out", unlocated)
    logger.info("CUAD: %d contracts, %d questions with evidence, %d absent", len(documents), len(questions), len(absent))
    return EvalSet("cuad", documents, questions, absent, unlocated)


# ---- QMSum -------------------------------------------------------------------------------------------------


def transcript_text(turns: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """A meeting as `Speaker: content` lines, and each turn's [start, end) (the line, without its newline)."""
    lines, ranges, pos = [], [], 0
    for turn in turns:
        line = f"{' '.join(turn['speaker'].split())}: {' '.join(turn['content'].split())}"
        lines.append(line)
        ranges.append((pos, pos + len(line)))
        pos += len(line) + 1
    return "\n".join(lines) + "\n", ranges


def load_qmsum(path: Path | None = None, quick: bool = False) -> EvalSet:
    """QMSum meetings and their specific queries, gold = the character ranges of the queries' turns.

    Args:
        path: the `val.jsonl` file (one meeting a line); default: the one in `DATA_ROOT`.
        quick: keep two meetings (`quick_pick`).

    Raises:
        DataMissing: the file is not there.
    """
    path = Path(path) if path else DATA_ROOT / QMSUM_FILE
    if not path.is_file():
        raise missing_data(path)
    with path.open(encoding="utf-8") as fh:
        meetings = [json.loads(line) for line in fh if line.strip()]
    built = [(i, *transcript_text(m["meeting_transcripts"]), m) for i, m in enumerate(meetings)]
    if quick:
        built = quick_pick(built, lambda b: b[1])

    documents, questions = [], []
    for i, text, turns, meeting in built:
        doc = EvalDocument(f"qmsum_{path.stem}_{i:03d}.txt", text)
        documents.append(doc)
        for j, query in enumerate(meeting.get("specific_query_list", [])):
            gold = []
            for start, end in query["relevant_text_span"]:
                s, e = int(start), min(int(end), len(turns) - 1)
                if s > e:
                    logger.warning("QMSum %s: turn range %s-%s outside the meeting; skipped", doc.name, start, end)
                    continue
                gold.append((turns[s][0], turns[e][1]))
            if gold:
                questions.append(EvalQuestion(f"qmsum-{i:03d}-{j:02d}", doc.name, query["query"], sorted(gold), "qmsum", False))
    logger.info("QMSum: %d meetings, %d queries", len(documents), len(questions))
    return EvalSet("qmsum", documents, questions)


@dataclass(frozen=True)
class GeneralQuery:
    """A QMSum general query ("Summarize the whole meeting.") and its gold summary; no evidence spans."""

    doc: str  # EvalDocument.name, as `load_qmsum` names the meeting
    question: str
    answer: str


def load_qmsum_general(path: Path | None = None) -> tuple[list[EvalDocument], list[GeneralQuery]]:
    """QMSum meetings (named and written as `load_qmsum` does) and their general queries with gold summaries.

    Raises:
        DataMissing: the file is not there.
    """
    path = Path(path) if path else DATA_ROOT / QMSUM_FILE
    if not path.is_file():
        raise missing_data(path)
    documents, queries = [], []
    with path.open(encoding="utf-8") as fh:
        for i, meeting in enumerate(json.loads(line) for line in fh if line.strip()):
            doc = EvalDocument(f"qmsum_{path.stem}_{i:03d}.txt", transcript_text(meeting["meeting_transcripts"])[0])
            documents.append(doc)
            queries += [GeneralQuery(doc.name, q["query"], q["answer"]) for q in meeting.get("general_query_list", [])]
    return documents, queries


# ---- ECTSum ------------------------------------------------------------------------------------------------

# A figure as a bullet or a transcript line writes it: "452.2", "$1.82", "2.5", "225"; a thousands comma is read
# away ("1,250" is "1250"). Years and quarter or fiscal-year labels ("2021", "q3", "fy") are not figures a
# question asks for: every line of a call names the year.
_FIGURE = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\w])")
_YEAR = re.compile(r"(?:19|20)\d\d")
MAX_GOLD_LINES = 3  # a figure said on more lines than this locates nothing: the bullet is not asked


def figures(text: str) -> list[tuple[int, int, str]]:
    """(start, end, normal form) of every figure in `text` that is not a year, in order."""
    out = []
    for m in _FIGURE.finditer(text):
        value = m.group().rstrip(",").replace(",", "")
        if not _YEAR.fullmatch(value):
            out.append((m.start(), m.start() + len(m.group().rstrip(",")), value))
    return out


def cloze(bullet: str, lines: list[tuple[int, int, set[str]]]) -> tuple[str, list[tuple[int, int]]] | None:
    """The bullet with its first figure that the call states on 1 to MAX_GOLD_LINES lines masked as "___", and
    those lines' [start, end) as gold; None when no figure of it is stated there (ECTSum's bullets are often
    rounded or computed: "rose 2.5 percent" from two revenue figures). `lines`: each line's [start, end) and
    the normal forms of its figures."""
    for start, end, value in figures(bullet):
        gold = [(s, e) for s, e, stated in lines if value in stated]
        if 1 <= len(gold) <= MAX_GOLD_LINES:
            return bullet[:start] + "___" + bullet[end:], gold
    return None


def load_ectsum(root: Path | None = None, quick: bool = False) -> EvalSet:
    """ECTSum earnings calls and cloze questions built from their Reuters-style bullets.

    Each bullet ("q3 revenue rose 2.5 percent to $452.2 million.") becomes a question with one figure masked
    ("q3 revenue rose 2.5 percent to $___ million."), and its gold is the transcript line(s) that state the
    masked figure (`cloze`): a user reading the bullet asks where the call says it. Bullets with no figure the
    call states are left out (logged).

    Raises:
        DataMissing: the folder or its `ects/` is not there.
    """
    root = Path(root) if root else DATA_ROOT / ECTSUM_DIR
    calls = root / "ects"
    if not calls.is_dir():
        raise missing_data(calls)
    built = [(path, path.read_text(encoding="utf-8")) for path in sorted(calls.glob("*.txt"))]
    if quick:
        built = quick_pick(built, lambda b: b[1])
    documents, questions, left_out = [], [], 0
    for path, text in built:
        doc = EvalDocument(f"ectsum_{path.stem}.txt", text)
        documents.append(doc)
        lines = [(m.start(), m.end(), {v for _, _, v in figures(m.group())}) for m in re.finditer(r"[^\n]+", text)]
        summary = root / "gt_summaries" / path.name
        bullets = summary.read_text(encoding="utf-8").splitlines() if summary.is_file() else []
        for j, bullet in enumerate(b.strip() for b in bullets):
            found = cloze(bullet, lines) if bullet else None
            if found is None:
                left_out += bool(bullet)
                continue
            question, gold = found
            questions.append(EvalQuestion(f"ectsum-{path.stem}-{j:02d}", doc.name, question, gold, "ectsum", True,
                                          answer=bullet))
    logger.info("ECTSum: %d calls, %d cloze questions, %d bullets with no figure stated in the call",
                len(documents), len(questions), left_out)
    return EvalSet("ectsum", documents, questions)


def load_eval_set(data: str, quick: bool = False) -> EvalSet:
    """`cuad`, `qmsum`, or a path: a folder laid out like `cuad_dev`, or a QMSum-style `.jsonl` file.

    `quick` keeps two documents of moderate length, so a run takes well under a minute on 2 cores.

    Raises:
        DataMissing: `cuad` or `qmsum` and the dev data is not beside the repository.
        ValueError: a path that is neither kind of question set.
    """
    if data == "cuad":
        return load_cuad(quick=quick)
    if data == "qmsum":
        return load_qmsum(quick=quick)
    if data == "ectsum":
        return load_ectsum(quick=quick)
    path = Path(data).expanduser()
    try:  # a user's own file or folder: one line naming it, whatever is wrong inside
        if path.is_dir() and (path / CUAD_CLAUSES).is_file():
            return load_cuad(path, quick=quick)
        if path.is_file() and path.suffix == ".jsonl":
            return load_qmsum(path, quick=quick)
        if path.is_dir() and (path / "ects").is_dir():
            return load_ectsum(path, quick=quick)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"--data {data}: not a question set of that kind ({type(exc).__name__}: {exc})") from None
    raise ValueError(
        f"--data {data!r}: expected cuad, qmsum, ectsum, a folder laid out like ectsum_dev (ects/), a folder holding {CUAD_CLAUSES}, contracts/ and "
        f"{CUAD_DESCRIPTIONS}, or a QMSum-style .jsonl file"
    )
