"""How well OCR reads scanned contracts: character error rate of the text `longdoc ingest` gets from a scanned PDF,
against the text that was printed on it.

Real contract text (the dev CUAD contracts in ../shared/data, else the three in tests/fixtures) is typeset onto
US Letter page images in one fixed font (benchmarks/scanned_pages.py), wrapped in a PDF with no text layer, and
read by the PDF loader exactly as ingestion reads it (Tesseract 5 through pytesseract, `ReadOptions` as the
settings give them). Each page's text is compared with the lines drawn on it:

- CER: Levenshtein distance over the length of the true text, whitespace collapsed on both sides (line breaks
  and spacing are layout, not characters read);
- CER on letters and digits: the same with everything else dropped first, so that a rule of dashes or a row of
  underscores read as noise does not hide how well the words were read;
- Tesseract's mean word confidence, and seconds per page (render and OCR).

Three conditions: clean pages scanned and read at 300 dpi (the default `ocr_dpi`), the same at 200 dpi, and at
300 dpi pages that look scanned (turned up to half a degree, blurred, grainy, JPEG-compressed).

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_ocr.py   (writes benchmarks/results/bench_ocr.txt)
     BENCH_OCR_CONTRACTS=3 BENCH_OCR_PAGES=1 ... for a quick look
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytesseract  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from app.evals.datasets import DEV_CONTRACTS  # noqa: E402
from benchmarks.run_header import run_header  # noqa: E402
from benchmarks.scanned_pages import character_error_rate, draw_page, image_pdf, scanned_look, typeset  # noqa: E402
from ingest.loaders import load_document  # noqa: E402
from ingest.types import ReadOptions  # noqa: E402

CONTRACTS = int(os.environ.get("BENCH_OCR_CONTRACTS", 6))
PAGES = int(os.environ.get("BENCH_OCR_PAGES", 2))  # the first pages of each contract
CONDITIONS = [  # (name, dpi the page is scanned and read at, scanner look)
    ("clean, 300 dpi", 300, False),
    ("clean, 200 dpi", 200, False),
    ("scanner look, 300 dpi", 300, True),
]
FIXTURE_CONTRACTS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "cuad_dev" / "contracts"
RESULTS = Path(__file__).resolve().parent / "results" / "bench_ocr.txt"


def letters_and_digits(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", text)


source = DEV_CONTRACTS if DEV_CONTRACTS.is_dir() else FIXTURE_CONTRACTS
paths = sorted(source.glob("*.txt"))
contracts = paths[:: max(1, len(paths) // CONTRACTS)][:CONTRACTS]
console = Console(width=140, record=True)
console.print(run_header("HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_ocr.py",
                         f"Tesseract {pytesseract.get_tesseract_version()}"), highlight=False, soft_wrap=True)
console.print(f"{len(contracts)} contracts from {source.relative_to(source.parents[2])}, the first {PAGES} page(s) "
              "of each typeset in Bitstream Vera Sans 11 pt on US Letter", highlight=False)

table = Table("condition", "pages", "characters", "CER", "CER letters+digits", "worst page CER", "mean confidence",
              "s / page")
with tempfile.TemporaryDirectory() as tmp:
    for name, dpi, scanned in CONDITIONS:
        rows = []  # (characters, edits, letter-and-digit characters, their edits, seconds) per page
        confidences = []
        for n, path in enumerate(contracts):
            pages = typeset(path.read_text(encoding="utf-8-sig"), dpi=dpi)[:PAGES]
            drawn = [draw_page(lines, dpi) for lines in pages]
            images = [scanned_look(p.image, seed=n * 100 + k) if scanned else p.image for k, p in enumerate(drawn)]
            pdf = image_pdf(images, Path(tmp) / f"{n}.pdf", dpi)
            started = time.perf_counter()
            doc = load_document(pdf, options=ReadOptions(ocr_dpi=dpi))
            seconds = (time.perf_counter() - started) / len(drawn)
            confidences.append((doc.ocr.confidence, len(drawn)))
            for span, page in zip(doc.pages, drawn):
                read = doc.text[span.start : span.end]
                truth, truth_ld = " ".join(page.text.split()), letters_and_digits(page.text)
                rows.append((len(truth), character_error_rate(read, page.text) * len(truth),
                             len(truth_ld), character_error_rate(letters_and_digits(read), truth_ld) * len(truth_ld),
                             seconds))
            console.print(f"  {name}: {path.name[:60]} done", highlight=False)
        chars, edits = sum(r[0] for r in rows), sum(r[1] for r in rows)
        chars_ld, edits_ld = sum(r[2] for r in rows), sum(r[3] for r in rows)
        worst = max(r[1] / r[0] for r in rows)
        confidence = sum(c * k for c, k in confidences) / sum(k for _, k in confidences)
        table.add_row(name, str(len(rows)), f"{chars:,}", f"{edits / chars:.2%}", f"{edits_ld / chars_ld:.2%}",
                      f"{worst:.2%}", f"{confidence:.1f}", f"{sum(r[4] for r in rows) / len(rows):.1f}")
console.print(table)
RESULTS.write_text(console.export_text(), encoding="utf-8")
console.print(f"written to {RESULTS.relative_to(RESULTS.parents[2])}", highlight=False)
