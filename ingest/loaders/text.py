"""Plain text and Markdown: the text is the file's content exactly, so offsets can be checked against the file.

Also home to the two helpers every text-bearing loader shares: turning bytes into a `str` safely (refusing
binary data and undecodable encodings with a reason) and finding section headings (Markdown `#` lines and
numbered clauses such as "12.3 Termination", "ARTICLE IV", "Section 5.") in extracted text.
"""

from __future__ import annotations

import codecs
import logging
import re
from pathlib import Path

from charset_normalizer import from_bytes

from ingest.types import IngestError, ParsedDocument, ReadOptions, Span

logger = logging.getLogger(__name__)

# Above this share of control characters a "text" file is binary data with a text extension.
MAX_CONTROL_SHARE = 0.05
# Only this many leading bytes are handed to charset-normalizer: detection on a whole 200 MB file is slow
# and the first megabyte decides the encoding as well as the rest does.
DETECT_SAMPLE_BYTES = 1 << 20

_UTF16_32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd]")

# A heading is a whole line: Markdown `#`, "ARTICLE IV ...", "Section 5. ...", or a clause number
# ("12.", "12.3", "4.1.2") followed by a capitalised word. Numbers are 1-3 digits so years ("1999 ...")
# and amounts do not count. No library finds numbered clauses in contract text; hence this pattern.
_HEADING = re.compile(
    r"^[ \t]*(?:"
    r"(?P<md>#{1,6})[ \t]+(?P<mdtitle>\S[^\n]*)"
    r"|(?P<clause>(?:ARTICLE|Article|SECTION|Section)[ \t]+(?:[IVXLC]+|\d{1,3}(?:\.\d{1,3})*)\b\.?[^\n]*)"
    r"|(?P<num>\d{1,3}(?:\.\d{1,3})*\.?[ \t]+[A-Z][^\n]*)"
    r")$",
    re.MULTILINE,
)
# The same clause heading run inline, as in text extracted without line breaks (all of CUAD's contracts):
# "... as follows: 1. Services. 1.1 Provision of Services. (a) Provider agrees ...". It must follow the end of
# a sentence and be a short title-case phrase closed by a full stop, so a numbered sentence ("2. The Company
# shall pay ...") or a reference ("under Section 3.2") is not a heading. Without it, a chunk cut inside such a
# paragraph could end with the next clause's heading and leave that clause headless.
_INLINE_HEADING = re.compile(
    r"(?<=[.;:])[ \t]+"
    r"(?P<inline>\d{1,2}(?:\.\d{1,2})*\.?[ \t]+"
    r"[A-Z][\w'’&/,;-]*(?:[ \t]+(?:[A-Z][\w'’&/,;-]*|of|and|or|the|to|for|in|on|by|with|a|an)){0,9}\.)"
    r"(?=\s|$)"
)
MAX_TITLE_CHARS = 80
# A clause's heading part with more words than this is its first sentence, not a title.
MAX_TITLE_WORDS = 10
_CLAUSE_NUMBER = re.compile(r"^(\d{1,3}(?:\.\d{1,3})*)\.?(?:[ \t]|$)")


def decode_text(path: Path, data: bytes) -> str:
    """Decode a text file's bytes, or raise IngestError saying why it is not text.

    UTF-8 first (a UTF-8 BOM is not content and is dropped), UTF-16/32 only with a BOM, then whatever
    charset-normalizer detects. NUL bytes or a high share of control characters mean binary data.
    """
    if data.startswith(_UTF16_32_BOMS):
        try:
            text = data.decode("utf-32" if data[:4] in _UTF16_32_BOMS[:2] else "utf-16")
        except UnicodeDecodeError as exc:
            raise IngestError(path, f"starts with a UTF-16/32 byte-order mark but does not decode ({exc.reason})") from None
    elif b"\x00" in data:
        raise IngestError(path, "binary file (contains NUL bytes), not text")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = _decode_detected(path, data)
    control = len(_CONTROL.findall(text))
    if text and control / len(text) > MAX_CONTROL_SHARE:
        raise IngestError(path, f"binary data, not text ({control} of {len(text)} characters are control characters)")
    return text


def _decode_detected(path: Path, data: bytes) -> str:
    best = from_bytes(data[:DETECT_SAMPLE_BYTES]).best()
    if best is None or best.encoding is None:
        raise IngestError(path, "not UTF-8 and no text encoding could be detected; save it as UTF-8")
    try:
        text = data.decode(best.encoding)
    except (UnicodeDecodeError, LookupError):
        raise IngestError(path, f"not UTF-8 and does not decode as the detected {best.encoding}; save it as UTF-8") from None
    logger.info("%s: not UTF-8, decoded as %s", path, best.encoding)
    return text


def find_sections(text: str, base: int = 0) -> list[Span]:
    """Headings and numbered clauses in `text`, on their own lines or inline after a sentence, each section
    running to the next heading (offsets + `base`)."""
    starts: dict[int, str] = {}
    for m in _HEADING.finditer(text):
        title = m.group("mdtitle") or m.group("clause") or m.group("num")
        starts[m.start() + len(m.group(0)) - len(m.group(0).lstrip())] = short_title(title)
    for m in _INLINE_HEADING.finditer(text):
        starts.setdefault(m.start("inline"), short_title(m.group("inline")))
    return spans_from_starts(_label_untitled_clauses(sorted(starts.items())), len(text), base)


def _label_untitled_clauses(starts: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """A numbered paragraph that opens with a sentence instead of a title ("11.3 By virtue of this Agreement,
    each party hereto may ...") is labelled by its number and the title of the clause it belongs to ("11.3
    (Confidentiality)"), or by its number alone: the sentence is in the passage already, the clause is not."""
    titles: dict[str, str] = {}  # clause number -> title, for numbered headings that have one
    labelled = []
    for start, label in starts:
        m = _CLAUSE_NUMBER.match(label)
        if m:
            number, head = m.group(1), label[m.end() :].rstrip(".").strip()
            if len(head.split()) <= MAX_TITLE_WORDS and not head.endswith("…"):  # "…": cut at MAX_TITLE_CHARS
                titles[number] = head
            else:
                parents = [number.rsplit(".", n)[0] for n in range(1, number.count(".") + 1)]
                parent = next((titles[p] for p in parents if titles.get(p)), "")
                label = f"{number} ({parent})" if parent else number
        labelled.append((start, label))
    return labelled


def spans_from_starts(starts: list[tuple[int, str]], end: int, base: int = 0) -> list[Span]:
    """Sections from (start, title) pairs: each runs until the next one starts, the last to `end`."""
    bounds = [s for s, _ in starts[1:]] + [end]
    return [Span(base + s, base + e, title) for (s, title), e in zip(starts, bounds) if e > s]


_NUMBER_PREFIX = re.compile(r"^(?:(?:ARTICLE|Article|SECTION|Section) \S+|\d[\d.]*) ?")


def short_title(line: str) -> str:
    """A clause line often carries its whole first sentence ("2.1 Engagement. Owner hereby ..."): keep the
    heading part, up to the first ". " after the clause number, capped at MAX_TITLE_CHARS on a word boundary."""
    line = " ".join(line.split()).strip("# ")
    prefix = _NUMBER_PREFIX.match(line)
    cut = line.find(". ", prefix.end() if prefix else 0)
    title = line[: cut + 1] if cut >= 0 else line
    if len(title) > MAX_TITLE_CHARS:
        title = title[:MAX_TITLE_CHARS].rsplit(" ", 1)[0] + "…"
    return title


def load_text(path: Path, data: bytes, name: str, options: ReadOptions) -> ParsedDocument:
    """A .txt or .md file: content kept exactly (newlines included), sections from headings and clauses."""
    return text_document(path, decode_text(path, data), name)


def text_document(path: Path, text: str, name: str) -> ParsedDocument:
    """The ParsedDocument for already decoded text; refuses text that is only whitespace."""
    if not text.strip():
        raise IngestError(path, "no text (the file holds only whitespace)")
    doc_type = "md" if path.suffix.lower() in {".md", ".markdown"} else "txt"
    return ParsedDocument(name=name, source=path, doc_type=doc_type, text=text, sections=find_sections(text))
