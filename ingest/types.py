"""The shapes that leave `ingest/`: a parsed document with its structure, and the chunks cut from it.

Offsets always index `ParsedDocument.text`; for .txt and .md files that text is the file's content exactly,
so `text[chunk.char_start:chunk.char_end] == chunk.text` can be checked against the file itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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

    @property
    def chunk_id(self) -> str:
        return f"{self.doc_id}:{self.index}"
