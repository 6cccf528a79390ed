"""PDF: pages joined by a blank line, one span per page, sections found in the extracted text, every word's
rectangle on its page (ingest/layout.py), and pages without a text layer read by OCR (ingest/loaders/ocr.py).

A page's text comes from pypdf, as it always has, so a page with a text layer reads exactly as it did before
OCR existed, whatever the rest of the file holds. pdfium (pypdfium2) supplies what pypdf cannot: where each
character sits on the page, and the page images Tesseract reads. pdfium's own text differs from pypdf's in
its spacing and sometimes in its line order, so its characters are matched to pypdf's (`align`) before their
boxes are used; a character pdfium does not have simply has no box.

`ReadOptions.ocr` says which pages OCR reads: "auto" those whose text layer is empty (scans, faxes, image
exhibits), "always" every page (a text layer not to be trusted), "never" none (such pages stay empty, and a
file with no text at all is refused).
"""

from __future__ import annotations

import io
import logging
import re
import threading
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image
from pypdf import PdfReader
from pypdf.errors import PdfReadError
from tqdm.auto import tqdm

from ingest.layout import TextLayout
from ingest.loaders.ocr import OcrFailed, OcrPage, check_languages, read_page
from ingest.loaders.text import find_sections
from ingest.types import IngestError, OcrSummary, ParsedDocument, ReadOptions, Span

logger = logging.getLogger(__name__)

PAGE_SEPARATOR = "\n\n"  # a page break is a paragraph break, so the chunker treats it as a seam
# pdfium is not thread-safe and keeps global state: every call into it, from ingestion and from the UI drawing
# a page while another user's upload is read, takes this lock. Tesseract runs outside it, in its own process.
PDFIUM_LOCK = threading.Lock()
# Runs of at least this many characters that the in-order match left unpaired are looked for anywhere in
# pdfium's text: pdfium sometimes reads lines in another order than pypdf (rotated pages, some columns).
MIN_REORDERED_RUN = 4
_WORD = re.compile(r"\w+|[^\w\s]+")  # letters and digits, or a run of punctuation


def load_pdf(path: Path, data: bytes, name: str, options: ReadOptions) -> ParsedDocument:
    """Each page's text layer, or its OCR reading; refuse encrypted PDFs, absurd page counts, and PDFs in
    which nothing readable is found."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):  # many "encrypted" PDFs open with an empty password
            raise IngestError(path, "encrypted PDF (a password is needed to read it)")
        n_pages = len(reader.pages)
        if n_pages > options.max_pdf_pages:
            raise IngestError(path, f"{n_pages:,} pages, more than max_pdf_pages = {options.max_pdf_pages:,}: "
                                    "split the file, or raise the setting")
        from_layer = options.ocr != "always"
        page_texts = [(page.extract_text() or "") if from_layer else "" for page in reader.pages]
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # pypdf reports broken files through many exception types; all mean "not a readable PDF"
        raise IngestError(path, f"corrupt or unreadable PDF ({type(exc).__name__}: {exc})") from None
    if not page_texts:
        raise IngestError(path, "PDF has no pages")
    to_read = [] if options.ocr == "never" else [i for i, text in enumerate(page_texts) if not text.strip()]
    if not to_read and not any(t.strip() for t in page_texts):
        raise IngestError(path, f"no text layer in {n_pages} page(s): an image-only (scanned) PDF; "
                                "set ocr = auto to read it by OCR")
    try:
        with PDFIUM_LOCK:
            document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if to_read:
            raise IngestError(path, f"pdfium cannot open the PDF to render its pages for OCR ({exc})") from None
        logger.warning("%s: pdfium cannot open it (%s); its passages will have no page rectangles", path, exc)
        document = None
    layouts: dict[int, TextLayout] = {}
    readings: dict[int, OcrPage] = {}
    if document is not None:
        try:
            layouts, readings = _place_and_read(document, page_texts, to_read, name, options)
        except OcrFailed as exc:
            raise IngestError(path, str(exc)) from None
        finally:
            with PDFIUM_LOCK:
                document.close()
    if not any(t.strip() for t in page_texts):
        raise IngestError(path, f"no readable text: {len(to_read)} page(s) without a text layer, and OCR read "
                                "no text on them")
    pages: list[Span] = []
    shifted: list[TextLayout] = []
    pos = 0
    for number, page_text in enumerate(page_texts, start=1):
        pages.append(Span(pos, pos + len(page_text), str(number)))
        if number - 1 in layouts:
            shifted.append(layouts[number - 1].shifted(pos))
        pos += len(page_text) + len(PAGE_SEPARATOR)
    text = PAGE_SEPARATOR.join(page_texts)
    ocr = summarize(readings, options.ocr_min_confidence) if readings else None
    logger.debug("%s: %d pages (%d by OCR), %d characters", path, len(pages), len(readings), len(text))
    return ParsedDocument(name=name, source=path, doc_type="pdf", text=text, pages=pages, sections=find_sections(text),
                          layout=TextLayout.concat(shifted) if document is not None else None, ocr=ocr)


def _place_and_read(document: pdfium.PdfDocument, page_texts: list[str], to_read: list[int], name: str,
                    options: ReadOptions) -> tuple[dict[int, TextLayout], dict[int, OcrPage]]:
    """Each page's words with their rectangles (by page index), the pages in `to_read` read by OCR first, their
    text put into `page_texts`; and the OCR readings.

    Raises:
        OcrFailed: Tesseract is missing, lacks a language, fails or times out on a page (the page is named).
    """
    layouts: dict[int, TextLayout] = {}
    readings: dict[int, OcrPage] = {}
    unread = set(range(len(page_texts))) - set(to_read)
    for i in sorted(unread):
        with PDFIUM_LOCK:
            layouts[i] = text_layer_layout(document[i], i + 1, page_texts[i])
    if to_read:
        check_languages(options.ocr_languages)
    for i in tqdm(to_read, desc=f"OCR {name}", unit="page", disable=not options.show_progress):
        with PDFIUM_LOCK:
            page = document[i]
            size = page.get_size()
            image = render(page, options.ocr_dpi)
        try:
            readings[i] = read_page(image, options.ocr_dpi, options.ocr_languages, options.ocr_timeout_s)
        except OcrFailed as exc:
            raise OcrFailed(f"OCR of page {i + 1}: {exc}") from None
        page_texts[i] = readings[i].text
        layouts[i] = TextLayout.of_page(i + 1, size, readings[i].spans, readings[i].rects)
    return layouts, readings


def summarize(readings: dict[int, OcrPage], min_confidence: float) -> OcrSummary:
    """Pages read, mean confidence over every word read, and the pages to check: low confidence or nothing read."""
    confidences = [c for reading in readings.values() for c in reading.confidences]
    low = [i + 1 for i, reading in sorted(readings.items())
           if not reading.confidences or reading.confidence < min_confidence]
    return OcrSummary(len(readings), round(sum(confidences) / len(confidences), 1) if confidences else 0.0, low)


def render(page: pdfium.PdfPage, dpi: float) -> Image.Image:
    """The page as a greyscale image at `dpi`, as a viewer shows it (crop box, rotation). Call under PDFIUM_LOCK."""
    return page.render(scale=dpi / 72, grayscale=True).to_pil()


def render_page(path: Path, page_number: int, dpi: float) -> Image.Image:
    """Page `page_number` (1-based) of the PDF at `path`, in colour, for showing it.

    Raises:
        IngestError: the file cannot be opened, or has no such page.
    """
    with PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(str(path))
        except (pdfium.PdfiumError, OSError) as exc:
            raise IngestError(path, f"cannot open the PDF ({exc})") from None
        try:
            if not 1 <= page_number <= len(document):
                raise IngestError(path, f"has no page {page_number} (it has {len(document)})")
            return document[page_number - 1].render(scale=dpi / 72).to_pil()
        finally:
            document.close()


def text_layer_layout(page: pdfium.PdfPage, number: int, text: str) -> TextLayout:
    """The words of `text` (pypdf's text of this page) with pdfium's boxes of their characters, one rectangle per
    word (or per part, for a word pdfium places on two lines). Punctuation is a word of its own, so that a quote
    ending at "Delaware" in "Delaware." ends at the right edge. Call under PDFIUM_LOCK."""
    textpage = page.get_textpage()
    try:
        n = textpage.count_chars()
        chars = "".join(chr(pdfium_c.FPDFText_GetUnicode(textpage.raw, i)) for i in range(n))
        # loose boxes span the font's whole line height, as a highlight should; tight ones hug each glyph
        boxes = np.array([textpage.get_charbox(i, loose=True) for i in range(n)], np.float64).reshape(-1, 4)
    finally:
        textpage.close()
    where = align(text, chars)
    spans: list[tuple[int, int]] = []
    runs: list[np.ndarray] = []  # (left, bottom, right, top) of each run, in PDF user space
    for word in _WORD.finditer(text):
        # the word's characters that pdfium placed, cut where one does not share the line of the one before;
        # lines are told apart in user space, where text runs along x even on a page shown turned
        placed = [k for k in range(word.start(), word.end()) if where[k] >= 0]
        first = 0
        for i in range(1, len(placed) + 1):
            if i == len(placed) or not _same_line(boxes[where[placed[i - 1]]], boxes[where[placed[i]]]):
                part = boxes[where[placed[first:i]]]
                spans.append((placed[first], placed[i - 1] + 1))
                runs.append(np.array([part[:, 0].min(), part[:, 1].min(), part[:, 2].max(), part[:, 3].max()]))
                first = i
    rects = displayed(np.array(runs).reshape(-1, 4), page.get_cropbox(), page.get_rotation())
    return TextLayout.of_page(number, page.get_size(), spans, rects.tolist())


def _same_line(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two (left, bottom, right, top) boxes share a line: their heights overlap by half the smaller."""
    return min(a[3], b[3]) - max(a[1], b[1]) > 0.5 * min(a[3] - a[1], b[3] - b[1])


def displayed(boxes: np.ndarray, cropbox: tuple[float, float, float, float], rotation: int) -> np.ndarray:
    """pdfium's (left, bottom, right, top) boxes in PDF user space as (x0, y0, x1, y1) from the top-left corner of
    the page as displayed: crop box origin, /Rotate (clockwise) applied, y down. Shape (n, 4) both."""
    left, bottom, right, top = cropbox
    width, height = right - left, top - bottom
    x0, x1 = boxes[:, 0] - left, boxes[:, 2] - left  # unrotated, y down
    y0, y1 = top - boxes[:, 3], top - boxes[:, 1]
    turned = {
        0: (x0, y0, x1, y1),
        90: (height - y1, x0, height - y0, x1),
        180: (width - x1, height - y1, width - x0, height - y0),
        270: (y0, width - x1, y1, width - x0),
    }[rotation % 360]
    return np.stack(turned, axis=1)


def align(a: str, b: str) -> np.ndarray:
    """For each character of `a`, the index of the same character in `b`, or -1; whitespace is never paired.

    The non-space characters are matched in order (difflib: longest common blocks first), then runs of `a` left
    unpaired are looked for among `b`'s unpaired characters in any order. Shape (len(a),).
    """
    a_at = [i for i, c in enumerate(a) if not c.isspace()]
    b_at = [j for j, c in enumerate(b) if not c.isspace()]
    a_chars, b_chars = "".join(a[i] for i in a_at), "".join(b[j] for j in b_at)
    pairs = np.full(len(a_chars), -1, np.int64)  # index into b_chars
    if a_chars == b_chars:
        pairs[:] = np.arange(len(b_chars))
    else:
        for block in SequenceMatcher(None, a_chars, b_chars, autojunk=False).get_matching_blocks():
            pairs[block.a : block.a + block.size] = np.arange(block.b, block.b + block.size)
        used = np.zeros(len(b_chars), bool)
        used[pairs[pairs >= 0]] = True
        for start, end in _unpaired_runs(pairs):
            if end - start < MIN_REORDERED_RUN:
                continue
            at = b_chars.find(a_chars[start:end])
            while at >= 0 and used[at : at + end - start].any():
                at = b_chars.find(a_chars[start:end], at + 1)
            if at >= 0:
                pairs[start:end] = np.arange(at, at + end - start)
                used[at : at + end - start] = True
    out = np.full(len(a), -1, np.int64)
    b_index = np.asarray(b_at, np.int64)
    paired = pairs >= 0
    out[np.asarray(a_at, np.int64)[paired]] = b_index[pairs[paired]]
    return out


def _unpaired_runs(pairs: np.ndarray) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, j in enumerate(pairs.tolist() + [0]):
        if j < 0 and start is None:
            start = i
        elif j >= 0 and start is not None:
            runs.append((start, i))
            start = None
    return runs
