"""PDF via pypdf: pages joined by a blank line, one span per page, sections found in the extracted text."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import PdfReadError

from ingest.loaders.text import find_sections
from ingest.types import IngestError, ParsedDocument, Span

logger = logging.getLogger(__name__)

PAGE_SEPARATOR = "\n\n"  # a page break is a paragraph break, so the chunker treats it as a seam


def load_pdf(path: Path, data: bytes, name: str) -> ParsedDocument:
    """Extract each page's text layer; refuse encrypted PDFs and PDFs without any text (scans)."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):  # many "encrypted" PDFs open with an empty password
            raise IngestError(path, "encrypted PDF (a password is needed to read it)")
        page_texts = [page.extract_text() or "" for page in reader.pages]
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # pypdf reports broken files through many exception types; all mean "not a readable PDF"
        raise IngestError(path, f"corrupt or unreadable PDF ({type(exc).__name__}: {exc})") from None
    if not page_texts:
        raise IngestError(path, "PDF has no pages")
    if not any(t.strip() for t in page_texts):
        raise IngestError(path, f"no text layer in {len(page_texts)} page(s): an image-only (scanned) PDF; run OCR first")
    pages: list[Span] = []
    pos = 0
    for number, page_text in enumerate(page_texts, start=1):
        pages.append(Span(pos, pos + len(page_text), str(number)))
        pos += len(page_text) + len(PAGE_SEPARATOR)
    text = PAGE_SEPARATOR.join(page_texts)
    logger.debug("%s: %d pages, %d characters", path, len(pages), len(text))
    return ParsedDocument(name=name, source=path, doc_type="pdf", text=text, pages=pages, sections=find_sections(text))
