"""One page image read by Tesseract 5 (through pytesseract): its text, each word's rectangle, and how sure
Tesseract was of each word.

The page text is built from Tesseract's words rather than taken from its plain-text output, so that every
word's offsets in the text are known exactly: words of a line are joined by a space, lines by a newline, and
Tesseract's blocks (columns, paragraphs set apart) by a blank line, which the chunkers treat as a seam.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import pytesseract
from PIL import Image
from pytesseract import Output, TesseractError, TesseractNotFoundError

INSTALL_HINT = "apt-get install tesseract-ocr tesseract-ocr-eng"


class OcrFailed(Exception):
    """Tesseract could not read a page; the message says why and what to do, for one line of output."""


@dataclass
class OcrPage:
    """What Tesseract read on one page: offsets index `text`, rectangles are in PDF points (y down)."""

    text: str = ""
    spans: list[tuple[int, int]] = field(default_factory=list)
    rects: list[tuple[float, float, float, float]] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)  # 0-100, one per word

    @property
    def confidence(self) -> float:
        """Mean word confidence; 0 for a page on which nothing was read."""
        return sum(self.confidences) / len(self.confidences) if self.confidences else 0.0


@cache
def installed_languages() -> frozenset[str]:
    """The languages Tesseract has data for, asked once a process.

    Raises:
        OcrFailed: Tesseract is not installed (or not a version pytesseract can use).
    """
    try:
        return frozenset(pytesseract.get_languages())
    except (TesseractNotFoundError, SystemExit):  # pytesseract exits on a version string it cannot parse
        raise OcrFailed("Tesseract is needed to read pages without a text layer and is not installed "
                        f"({INSTALL_HINT}), or set ocr = never") from None


def check_languages(languages: str) -> None:
    """Raises OcrFailed naming each language of `languages` ("eng+deu") that Tesseract has no data for."""
    missing = [lang for lang in languages.split("+") if lang not in installed_languages()]
    if missing:
        packages = " ".join(f"tesseract-ocr-{lang.lower().replace('_', '-')}" for lang in missing)
        installed = ", ".join(sorted(installed_languages()))
        raise OcrFailed(f"Tesseract has no data for {', '.join(missing)} (ocr_languages = {languages!r}): "
                        f"apt-get install {packages}, or name installed ones: {installed}")


def read_page(image: Image.Image, dpi: float, languages: str, timeout_s: float) -> OcrPage:
    """Tesseract's reading of one page rendered at `dpi`.

    Raises:
        OcrFailed: Tesseract failed, or took longer than `timeout_s` (its process is killed).
    """
    try:
        data = pytesseract.image_to_data(image, lang=languages, timeout=timeout_s, output_type=Output.DICT)
    except TesseractNotFoundError:
        raise OcrFailed(f"Tesseract is not installed ({INSTALL_HINT}), or set ocr = never") from None
    except TesseractError as exc:
        raise OcrFailed(f"Tesseract failed ({' '.join(str(exc.message).split())[:200]})") from None
    except RuntimeError as exc:  # pytesseract's only word for a timeout: RuntimeError('Tesseract process timeout')
        if "timeout" not in str(exc):
            raise
        raise OcrFailed(f"Tesseract took longer than {timeout_s:g} s (ocr_timeout_s)") from None
    page = OcrPage()
    parts: list[str] = []
    at = 0
    last: tuple[int, int, int] | None = None  # (block, paragraph, line) of the word before
    to_points = 72.0 / dpi
    for i, word in enumerate(data["text"]):
        confidence = float(data["conf"][i])
        if confidence < 0 or not word.strip():  # a block, paragraph or line record, or an empty word
            continue
        word = " ".join(word.split())
        where = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
        if last is not None:
            gap = " " if where == last else "\n" if where[0] == last[0] else "\n\n"
            parts.append(gap)
            at += len(gap)
        last = where
        left, top = data["left"][i] * to_points, data["top"][i] * to_points
        page.spans.append((at, at + len(word)))
        page.rects.append((left, top, left + data["width"][i] * to_points, top + data["height"][i] * to_points))
        page.confidences.append(confidence)
        parts.append(word)
        at += len(word)
    page.text = "".join(parts)
    return page
