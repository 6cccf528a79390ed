"""One loader per format, chosen by file extension; `load_document` is the only way in.

Every loader is a function `(path, data, name, options) -> ParsedDocument` in the `LOADERS` registry; `options`
(`ReadOptions`) says how to read what needs choices (OCR for PDFs), and formats that need none ignore it.
The checks every format shares (missing, empty, too large) run once here, and anything a parser library throws
that a loader did not already turn into an IngestError is turned into one here: a bad file must cost one line
of output, never the batch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from ingest.loaders.docx import load_docx
from ingest.loaders.html import load_html
from ingest.loaders.pdf import load_pdf
from ingest.loaders.text import decode_text, load_text, text_document
from ingest.loaders.transcript import load_subtitles, looks_like_speaker_lines, parse_speaker_lines
from ingest.types import IngestError, ParsedDocument, ReadOptions

logger = logging.getLogger(__name__)

Loader = Callable[[Path, bytes, str, ReadOptions], ParsedDocument]


def _load_txt(path: Path, data: bytes, name: str, options: ReadOptions) -> ParsedDocument:
    """Plain text, unless its lines read as "Speaker: text" turns: then it is a transcript."""
    text = decode_text(path, data)
    if looks_like_speaker_lines(text):
        return parse_speaker_lines(path, text, name)
    return text_document(path, text, name)


# To support a format, add its extension(s) and a loader function here.
LOADERS: dict[str, Loader] = {
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".html": load_html,
    ".htm": load_html,
    ".md": load_text,
    ".markdown": load_text,
    ".txt": _load_txt,
    ".vtt": load_subtitles,
    ".srt": load_subtitles,
}
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(LOADERS)
# Raise a format's number when what its loader reads from the same bytes changes, so that ingesting the file
# again reads it anew. PDF 2: pages without a text layer read by OCR, and the words' page rectangles.
READER_VERSIONS = {".pdf": 2}


def reading_signature(path: Path, options: ReadOptions) -> str:
    """What decides the text read from `path` besides its bytes: the reader's version and the options it uses
    ("" for formats with neither). Stored with the chunker's signature, so that a PDF stored before OCR (its
    scanned pages empty) or read with other OCR settings is read again when it is ingested again."""
    suffix = path.suffix.lower()
    if suffix != ".pdf":
        return ""
    return f"pdf v{READER_VERSIONS[suffix]} ocr={options.ocr} {options.ocr_languages} {options.ocr_dpi} dpi"


def load_document(
    path: Path, max_bytes: int | None = None, name: str | None = None, options: ReadOptions = ReadOptions()
) -> ParsedDocument:
    """Read one file into text plus page/section/turn spans.

    Args:
        path: the file; its extension picks the loader.
        max_bytes: refuse files larger than this (None: no limit).
        name: the name to show for the document (default: the file name), e.g. an upload's original name.
        options: how to read it (OCR of PDF pages without a text layer, page limit, progress bar).

    Returns:
        The ParsedDocument; offsets in its spans index its `text`.

    Raises:
        IngestError: naming the file and the reason; no other exception escapes.

    Example:
        >>> load_document(Path("sample_docs/ediets_co-branding_agreement.txt")).doc_type
        'txt'
    """
    path = Path(path)
    name = name or path.name
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise IngestError(path, f"unsupported file type {path.suffix or '(no extension)'!r}; supported: {', '.join(sorted(LOADERS))}")
    try:
        if not path.is_file():
            raise IngestError(path, "no such file" if not path.exists() else "not a regular file")
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise IngestError(path, f"too large ({size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB)")
        if size == 0:
            raise IngestError(path, "empty file")
        data = path.read_bytes()
        doc = loader(path, data, name, options)
    except IngestError:
        raise
    except OSError as exc:
        raise IngestError(path, f"cannot read the file ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - the contract: a parser bug in a library is one skipped file
        logger.warning("%s: unexpected %s while parsing", path, type(exc).__name__, exc_info=True)
        raise IngestError(path, f"could not parse the file ({type(exc).__name__}: {exc})") from None
    logger.debug("%s: %s, %d characters", path, doc.doc_type, len(doc.text))
    return doc


__all__ = ["LOADERS", "SUPPORTED_EXTENSIONS", "load_document", "reading_signature"]
