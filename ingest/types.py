"""The shapes that leave `ingest/`: a parsed document with its structure, and the chunks cut from it.

Offsets always index `ParsedDocument.text`; for .txt and .md files that text is the file's content exactly,
so `text[chunk.char_start:chunk.char_end] == chunk.text` can be checked against the file itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ingest.layout import TextLayout


class IngestError(Exception):
    """A file that cannot be ingested. The message names the file and the reason, for one line of output."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class Span:
    """A labelled stretch of the document text: a page ("3"), a section ("12. Governing Law") or a speaker turn.

    `start`/`end` are character offsets into the document text; `meta` holds extra detail such as a
    transcript turn's timestamp ("00:01:02.000 --> 00:01:05.500").
    """

    start: int
    end: int
    label: str
    meta: str | None = None


@dataclass(frozen=True)
class ReadOptions:
    """How files are read; the `Settings` fields of the same names set them and say why each default.

    The defaults here are the settings' defaults (tests/test_settings.py checks that they agree), so a caller
    of `load_document` outside the app reads a file as the app would.
    """

    ocr: str = "auto"  # "auto": OCR the PDF pages without a text layer; "always": every page; "never": none
    ocr_languages: str = "eng"  # Tesseract's language names, joined by "+"
    ocr_dpi: int = 300
    ocr_timeout_s: float = 120.0  # one page
    ocr_min_confidence: float = 60.0  # pages read with a lower mean word confidence are named as low
    max_pdf_pages: int = 2000
    show_progress: bool = False  # a bar over the pages read by OCR


@dataclass(frozen=True)
class OcrSummary:
    """What OCR read of a document: how many pages, how sure it was, and which pages to check by eye.

    `confidence` is Tesseract's word confidence (0-100) averaged over every word it read; `low_pages` are the
    pages whose own mean is below `ReadOptions.ocr_min_confidence`, or on which it read nothing.
    """

    pages: int
    confidence: float
    low_pages: list[int] = field(default_factory=list)


@dataclass
class ParsedDocument:
    """A file turned into text plus the structure found in it."""

    name: str  # file name as the user knows it, e.g. "msa.pdf"
    source: Path
    doc_type: str  # "pdf", "docx", "html", "md", "txt", "vtt", "srt", "transcript"
    text: str
    pages: list[Span] = field(default_factory=list)  # label = 1-based page number as a string
    sections: list[Span] = field(default_factory=list)  # label = heading or numbered clause title
    turns: list[Span] = field(default_factory=list)  # label = speaker, meta = timestamp if known
    layout: TextLayout | None = None  # a PDF's words on their pages (ingest/layout.py)
    ocr: OcrSummary | None = None  # set when OCR read some of its pages


@dataclass
class Chunk:
    """One retrievable passage, with where it came from. `text == document_text[char_start:char_end]`."""

    doc_id: str  # content hash of the document
    doc_name: str
    index: int  # position of the chunk within its document, from 0
    text: str
    char_start: int
    char_end: int
    n_tokens: int  # in the embedder's tokenizer
    pages: list[int] = field(default_factory=list)
    section: str | None = None
    speakers: list[str] = field(default_factory=list)
    # the page rectangles of the words this chunk covers, `TextLayout.encode`d ("" for formats without pages)
    layout: str = field(default="", repr=False)

    @property
    def chunk_id(self) -> str:
        return f"{self.doc_id}:{self.index}"
