"""Where the words of a document lie on its pages: what lets a quote be shown highlighted on its page.

A PDF's loader records every word of the extracted text (on a page with a text layer, a run of letters and
digits or of punctuation, on one line; on a page read by OCR, Tesseract's word) with its page and its
rectangle: from pdfium's character boxes, or from Tesseract's word boxes. The offsets are those of the
document text, so any span that offsets name (a chunk, a quote, an evidence sentence) finds its rectangles
with `TextLayout.boxes(start, end)`.

Coordinates are PDF points (1/72 inch) from the top-left corner of the page as a viewer shows it (crop box,
/Rotate applied), x to the right and y down: the frame of a rendered page image, scaled by dpi / 72.

Why each chunk keeps the words it covers (`Chunk.layout`, this module's compact encoding) rather than the
document keeping one record for all of them: a chunk record is what every backend already stores, returns
with each search hit, replaces atomically with its document, cleans up after a crash and copies between
libraries, so the geometry gets all of that with no new store verb and no extra read per answer (the
embedded and Milvus stores keep chunk records as JSON and needed nothing; PostgreSQL has one more column,
added to an older library when it is opened). A quote lies inside a passage, so the passage's own words are
all it needs. The cost is that words in the overlap of two chunks are kept twice (none with the semantic
chunker, an eighth with the fixed one), and about 1.2 bytes a character of text (1.3 KB for a chunk of 256
tokens; sample_docs/cerence_ip_agreement.pdf). Recomputing the boxes from the PDF when asked was the other
choice: it needs the file to still be where it was ingested (often not so for a team library on PostgreSQL or
Milvus), and OCR pages would be read again (seconds a page) with no promise that Tesseract reads them the
same way, which would break the offsets.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass

import numpy as np

FORMAT = "1"  # first part of an encoded layout; change it when the encoding changes
SCALE = 10  # coordinates are kept in tenths of a point: finer than any highlight needs
# Two words are on one line when their heights overlap by at least this share of the smaller one ...
SAME_LINE_OVERLAP = 0.5
# ... and one rectangle when the gap between them is at most this many line heights (a wider gap is a table
# column or a tab stop, and one rectangle across it would mark blank paper).
MAX_GAP_HEIGHTS = 2.0


@dataclass(frozen=True)
class Box:
    """A rectangle of text on a page, in PDF points from the page's top-left corner as displayed (y down).

    The page's own size comes with it, so a caller can scale the rectangle onto any rendering of the page:
    pixel = point * image_width / page_width.
    """

    page: int  # 1-based
    x0: float
    y0: float
    x1: float
    y1: float
    page_width: float
    page_height: float


@dataclass
class TextLayout:
    """The words of a text with their page and rectangle, in text order.

    `spans[i]` is word i's [start, end) in the document text, `pages[i]` its page (1-based), `rects[i]` its
    (x0, y0, x1, y1) in points; `sizes` gives each page's (width, height) in points. Words do not overlap and
    come in text order, so both columns of `spans` increase and a range of text is found by bisection.
    """

    sizes: dict[int, tuple[float, float]]
    spans: np.ndarray  # (n, 2) int64
    pages: np.ndarray  # (n,) int64
    rects: np.ndarray  # (n, 4) float64

    @classmethod
    def empty(cls) -> TextLayout:
        return cls({}, np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros((0, 4), np.float64))

    @classmethod
    def of_page(cls, page: int, size: tuple[float, float], spans: list[tuple[int, int]],
                rects: list[tuple[float, float, float, float]]) -> TextLayout:
        """One page's words; `spans` index that page's text (`shifted` moves them into the document's)."""
        return cls({page: size}, np.asarray(spans, np.int64).reshape(-1, 2), np.full(len(spans), page, np.int64),
                   np.asarray(rects, np.float64).reshape(-1, 4))

    @classmethod
    def concat(cls, layouts: list[TextLayout]) -> TextLayout:
        """Layouts of consecutive pages (already shifted into the document text) as one; at least one."""
        sizes = {page: size for layout in layouts for page, size in layout.sizes.items()}
        return cls(sizes, np.concatenate([lay.spans for lay in layouts]),
                   np.concatenate([lay.pages for lay in layouts]), np.concatenate([lay.rects for lay in layouts]))

    def __len__(self) -> int:
        return len(self.spans)

    def shifted(self, offset: int) -> TextLayout:
        return TextLayout(self.sizes, self.spans + offset, self.pages, self.rects)

    def _overlapping(self, start: int, end: int) -> slice:
        """The words that share at least one character with [start, end)."""
        first = int(np.searchsorted(self.spans[:, 1], start, side="right"))  # first word ending after start
        return slice(first, max(first, int(np.searchsorted(self.spans[:, 0], end, side="left"))))

    def within(self, start: int, end: int) -> TextLayout:
        """The words that share at least one character with [start, end), and the sizes of their pages."""
        keep = self._overlapping(start, end)
        pages = self.pages[keep]
        return TextLayout({int(p): self.sizes[int(p)] for p in np.unique(pages)}, self.spans[keep], pages,
                          self.rects[keep])

    def boxes(self, start: int, end: int) -> list[Box]:
        """The rectangles of the text in [start, end), one per stretch of a line, in text order.

        A word the span covers only in part is cut in proportion to its characters (exact for the even
        spacing of most body text, close otherwise; punctuation is a word of its own on text-layer pages);
        words next to each other on a line join into one rectangle. On a page shown turned (/Rotate 90),
        whose lines run down the page, each word keeps its own rectangle and a cut word is cut across.

        Example:
            >>> layout.boxes(quote.char_start, quote.char_end)[0]
            Box(page=3, x0=72.0, y0=140.3, x1=412.6, y1=152.1, page_width=612.0, page_height=792.0)
        """
        lines: list[list[float]] = []  # [page, x0, y0, x1, y1]
        keep = self._overlapping(start, end)
        for (s, e), page, (x0, y0, x1, y1) in zip(self.spans[keep], self.pages[keep], self.rects[keep]):
            width = (x1 - x0) / (e - s)
            x0, x1 = x0 + width * max(0, start - s), x1 - width * max(0, e - end)
            last = lines[-1] if lines else None
            if last is not None and last[0] == page and _same_line(last, y0, y1) and \
                    last[1] <= x0 and x0 - last[3] <= MAX_GAP_HEIGHTS * max(last[4] - last[2], y1 - y0):
                last[2], last[3], last[4] = min(last[2], y0), max(last[3], x1), max(last[4], y1)
            else:
                lines.append([page, x0, y0, x1, y1])
        out = []
        for page, x0, y0, x1, y1 in lines:
            width, height = self.sizes[int(page)]
            out.append(Box(int(page), round(float(x0), 1), round(float(y0), 1), round(float(x1), 1),
                           round(float(y1), 1), round(float(width), 1), round(float(height), 1)))
        return out

    def encode(self) -> str:
        """This layout as compact ASCII for a chunk record (about 6 bytes a word): integer columns, offsets as
        differences, coordinates in tenths of a point, deflated and base64'd."""
        if not len(self):
            return ""
        sizes = np.array([(p, *size) for p, size in sorted(self.sizes.items())], np.float64).reshape(-1, 3)
        sizes[:, 1:] *= SCALE
        columns = np.concatenate([
            [len(sizes), len(self)],
            np.rint(sizes).astype(np.int64).T.ravel(),
            np.diff(self.spans[:, 0], prepend=0),
            self.spans[:, 1] - self.spans[:, 0],
            self.pages,
            np.rint(self.rects * SCALE).astype(np.int64).T.ravel(),
        ]).astype("<i4")
        return f"{FORMAT}:" + base64.b64encode(zlib.compress(columns.tobytes(), 9)).decode("ascii")

    @classmethod
    def decode(cls, data: str) -> TextLayout:
        """The layout `encode` wrote; an empty string (a chunk of a format without pages) gives no words.

        Raises:
            ValueError: the string is not an encoded layout of this version.
        """
        if not data:
            return cls.empty()
        version, _, payload = data.partition(":")
        if version != FORMAT:
            raise ValueError(f"page layout of format {version!r}; this version reads {FORMAT!r}")
        columns = np.frombuffer(zlib.decompress(base64.b64decode(payload)), "<i4").astype(np.int64)
        n_pages, n = int(columns[0]), int(columns[1])
        at = 2
        sizes = columns[at : at + 3 * n_pages].reshape(3, n_pages).T
        at += 3 * n_pages
        starts = np.cumsum(columns[at : at + n])
        lengths = columns[at + n : at + 2 * n]
        pages = columns[at + 2 * n : at + 3 * n]
        rects = columns[at + 3 * n : at + 7 * n].reshape(4, n).T / SCALE
        return cls({int(p): (w / SCALE, h / SCALE) for p, w, h in sizes}, np.stack([starts, starts + lengths], axis=1),
                   pages, rects)


def _same_line(line: list[float], y0: float, y1: float) -> bool:
    overlap = min(line[4], y1) - max(line[2], y0)
    return overlap >= SAME_LINE_OVERLAP * min(line[4] - line[2], y1 - y0)
