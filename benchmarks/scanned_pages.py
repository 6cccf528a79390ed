"""Scanned pages made from real text, for the OCR benchmark (bench_ocr.py) and the OCR tests: the text is typeset
onto US Letter page images in one fixed font, and the images are wrapped in a PDF that has no text layer, as a
scanner or a fax leaves it. Since the words on each page are known, what OCR reads can be scored against them.

The font is Bitstream Vera Sans (Vera.ttf), which reportlab ships inside its package: the same glyphs on every
machine, with no system font needed. `scanned_look` makes a clean page look like a copy that went through a
scanner: a slight skew, blur, grain and JPEG compression.
"""

from __future__ import annotations

import io
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import reportlab
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from reportlab.lib.pagesizes import letter
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

FONT = Path(reportlab.__file__).parent / "fonts" / "Vera.ttf"
PAGE_IN = (8.5, 11.0)  # US Letter
MARGIN_IN = 1.0
FONT_PT = 11
LINE_HEIGHT = 1.4  # times the font size


@dataclass
class ScannedPage:
    """A page image and the text drawn on it: its lines joined by newlines, paragraphs by a blank line."""

    image: Image.Image
    text: str


def typeset(text: str, dpi: int = 200, font_pt: float = FONT_PT) -> list[list[str]]:
    """`text` cut into US Letter pages of lines: paragraphs (split at blank lines) with their whitespace collapsed,
    wrapped to the text width in the font, a blank line between paragraphs."""
    font = ImageFont.truetype(str(FONT), round(font_pt * dpi / 72))
    width = (PAGE_IN[0] - 2 * MARGIN_IN) * dpi
    per_page = int((PAGE_IN[1] - 2 * MARGIN_IN) * 72 / (font_pt * LINE_HEIGHT))
    lines: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        words = paragraph.split()
        if not words:
            continue
        line = words[0]
        for word in words[1:]:
            if font.getlength(f"{line} {word}") <= width:
                line = f"{line} {word}"
            else:
                lines.append(line)
                line = word
        lines += [line, ""]
    pages = [lines[i : i + per_page] for i in range(0, len(lines), per_page)]
    return [page[:-1] if page[-1] == "" else page for page in pages]  # no page ends with a blank line


def draw_page(lines: list[str], dpi: int = 200, font_pt: float = FONT_PT) -> ScannedPage:
    """One page image (greyscale, white paper, black type) with `lines` from the top margin down."""
    size = (round(PAGE_IN[0] * dpi), round(PAGE_IN[1] * dpi))
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), round(font_pt * dpi / 72))
    step = font_pt * LINE_HEIGHT * dpi / 72
    for k, line in enumerate(lines):
        draw.text((MARGIN_IN * dpi, MARGIN_IN * dpi + k * step), line, font=font, fill=0)
    return ScannedPage(image, "\n".join(lines))


def scanned_look(image: Image.Image, seed: int = 0) -> Image.Image:
    """The page as a scanner copies it: turned by up to half a degree, softened, grainy, JPEG-compressed."""
    rng = random.Random(seed)
    turned = image.rotate(rng.uniform(-0.5, 0.5), resample=Image.Resampling.BICUBIC, fillcolor=255, expand=False)
    soft = turned.filter(ImageFilter.GaussianBlur(0.7))
    grain = np.random.default_rng(seed).normal(0, 14, (soft.height, soft.width))
    noisy = Image.fromarray(np.clip(np.asarray(soft, np.float64) + grain, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    noisy.save(buffer, "JPEG", quality=60)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


def image_pdf(images: list[Image.Image], path: Path, dpi: int = 200) -> Path:
    """A PDF of one image per page and nothing else (no text layer), each page the image's size at `dpi`."""
    images[0].save(path, "PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return path


def mixed_pdf(pages: list[list[str] | Image.Image], path: Path) -> Path:
    """A US Letter PDF whose pages are either text (a list of lines, drawn as a text layer by reportlab) or a
    page image (placed over the whole page, with no text layer)."""
    c = canvas.Canvas(str(path), pagesize=letter)
    for page in pages:
        if isinstance(page, Image.Image):
            c.drawImage(ImageReader(page), 0, 0, width=letter[0], height=letter[1])
        else:
            for k, line in enumerate(page):
                c.drawString(72, 720 - 14 * k, line)
        c.showPage()
    c.save()
    return path


def normalized(text: str) -> str:
    """Whitespace collapsed to single spaces: line breaks and spacing are layout, not characters read."""
    return " ".join(text.split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1), one row of the table at a time.

    Each row takes substitutions and deletions from the row above in one vector step; insertions chain along the
    row, which is a running minimum of (cost - column) plus the column.
    """
    if not a or not b:
        return len(a) + len(b)
    b_codes = np.frombuffer(b.encode("utf-32-le"), np.uint32)
    columns = np.arange(len(b) + 1)
    row = columns.copy()
    for i, char in enumerate(a, start=1):
        substituted = row[:-1] + (b_codes != ord(char))
        new = np.empty_like(row)
        new[0] = i
        new[1:] = np.minimum(substituted, row[1:] + 1)
        row = np.minimum.accumulate(new - columns) + columns
    return int(row[-1])


def character_error_rate(read: str, truth: str) -> float:
    """Edit distance from the text read to the true text, per character of the true text (whitespace collapsed)."""
    truth = normalized(truth)
    return edit_distance(normalized(read), truth) / max(1, len(truth))
