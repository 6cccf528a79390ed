"""Word documents via python-docx: paragraphs and table rows in body order, headings become sections."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table

from ingest.loaders.text import find_sections, short_title, spans_from_starts
from ingest.types import IngestError, ParsedDocument, ReadOptions

PARAGRAPH_SEPARATOR = "\n\n"
CELL_SEPARATOR = " | "


def load_docx(path: Path, data: bytes, name: str, options: ReadOptions) -> ParsedDocument:
    """Paragraphs joined by a blank line; "Heading N"/"Title" styles start sections. Without styled headings,
    numbered clauses in the text are used, as for plain text."""
    try:
        document = docx.Document(io.BytesIO(data))
        blocks: list[tuple[str, bool]] = []  # (text, is_heading)
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                for row in item.rows:
                    cells = [" ".join(cell.text.split()) for cell in row.cells]
                    blocks.append((CELL_SEPARATOR.join(c for c in cells if c), False))
            else:
                style = item.style.name if item.style is not None else ""
                blocks.append((item.text, style.startswith("Heading") or style == "Title"))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise IngestError(path, f"corrupt or not a .docx file ({type(exc).__name__}: {exc})") from None
    parts: list[str] = []
    headings: list[tuple[int, str]] = []
    pos = 0
    for block_text, is_heading in blocks:
        if not block_text.strip():
            continue
        if is_heading:
            headings.append((pos, short_title(block_text)))
        parts.append(block_text)
        pos += len(block_text) + len(PARAGRAPH_SEPARATOR)
    text = PARAGRAPH_SEPARATOR.join(parts)
    if not text.strip():
        raise IngestError(path, "no text in the document")
    sections = spans_from_starts(headings, len(text)) if headings else find_sections(text)
    return ParsedDocument(name=name, source=path, doc_type="docx", text=text, sections=sections)
