"""OCR of PDF pages that have no text layer, with the real Tesseract 5 (Debian's tesseract-ocr), on a real contract
typeset onto page images (benchmarks/scanned_pages.py) and wrapped in PDFs as a scanner leaves them."""

from __future__ import annotations

import pytest
from PIL import Image
from pypdf import PdfReader
from typer.testing import CliRunner

from app import LongDocQA
from app.cli import app
from app.evidence import score_sentences
from app.quote import find_quote
from benchmarks.scanned_pages import (
    FONT_PT,
    LINE_HEIGHT,
    MARGIN_IN,
    character_error_rate,
    draw_page,
    image_pdf,
    mixed_pdf,
    normalized,
    typeset,
)
from conftest import FIXTURES
from ingest.loaders import load_document
from ingest.types import IngestError, ReadOptions
from tests.test_loaders import write_pdf

CONTRACT = (FIXTURES / "cuad_dev" / "contracts"
            / "OPTIMIZEDTRANSPORTATIONMANAGEMENT,INC_07_26_2000-EX-6.6-DISTRIBUTOR AGREEMENT.txt")
CLAUSE = "governed by the laws of the State of Texas"
QUESTION = "Which state's law governs this agreement?"
DPI = 200  # scanned and read at 200 dpi: on clean pages as exact as 300 (benchmarks/bench_ocr.py), in fewer pixels
READ = ReadOptions(ocr_dpi=DPI)


@pytest.fixture(scope="module")
def pages() -> list[list[str]]:
    """The contract typeset into US Letter pages of lines."""
    return typeset(CONTRACT.read_text(encoding="utf-8"), dpi=DPI)


def law_page(pages: list[list[str]]) -> int:
    return next(i for i, lines in enumerate(pages) if CLAUSE in normalized(" ".join(lines)))


def test_scanned_contract_is_read_by_ocr_and_its_governing_law_clause_retrieved(pages, tmp_path):
    """Its first page and the page with its governing-law clause, scanned: no text layer at all."""
    law = law_page(pages)
    scan = image_pdf([draw_page(pages[0], DPI).image, draw_page(pages[law], DPI).image], tmp_path / "scan.pdf", DPI)
    assert not any((p.extract_text() or "").strip() for p in PdfReader(scan).pages)

    with LongDocQA(index_dir=tmp_path / "index", ocr_dpi=DPI) as qa:
        report = qa.ingest(scan)
        assert report.skipped == []
        [info] = report.ingested
        assert (info.pages, info.ocr_pages, info.ocr_low_pages) == (2, 2, [])
        assert info.ocr_confidence > 85
        passages = qa.retrieve(QUESTION, doc=info.name, top_k=3)
        best = passages[0]
        assert CLAUSE in normalized(best.text)
        assert qa.document_text(info.name)[best.char_start : best.char_end] == best.text
        assert 2 in {box.page for box in best.boxes}

        answer = "The laws of the State of Texas govern it."
        quote = find_quote(score_sentences(qa.embedder, QUESTION, answer, passages), QUESTION, answer)
    assert "State of Texas" in quote.text and quote.page == 2
    # The quote's rectangles are where the clause was drawn: its line's top, in points from the top of the page.
    line = next(k for k, text in enumerate(pages[law]) if "Texas" in text)
    top = MARGIN_IN * 72 + line * FONT_PT * LINE_HEIGHT
    assert any(abs(box.y0 - top) < FONT_PT and box.page == 2 for box in quote.boxes), (top, quote.boxes)
    assert all(0 <= b.x0 < b.x1 <= b.page_width and 0 <= b.y0 < b.y1 <= b.page_height for b in quote.boxes)


def test_mixed_pdf_keeps_its_text_pages_as_extracted_and_reads_its_image_pages(pages, tmp_path):
    """Text, a scanned page, a blank scanned page, text: the text pages read exactly as before OCR existed (pypdf's
    extraction, byte for byte), the scanned page by OCR, and the blank one is named for a look."""
    first = ["1. Services. The Supplier provides the services in Schedule A.", "2. Fees. Net thirty days."]
    last = ["14. Notices. In writing, to the addresses above.", "15. Counterparts. Any number of copies."]
    blank = Image.new("L", draw_page([], DPI).image.size, 255)
    path = mixed_pdf([first, draw_page(pages[0], DPI).image, blank, last], tmp_path / "mixed.pdf")

    doc = load_document(path, options=READ)
    unread = load_document(path, options=ReadOptions(ocr="never"))  # the text layer alone, as before OCR
    reader = PdfReader(path)
    text_of = {int(p.label): doc.text[p.start : p.end] for p in doc.pages}
    for number in (1, 4):
        assert text_of[number] == reader.pages[number - 1].extract_text()
        assert text_of[number] == unread.text[unread.pages[number - 1].start : unread.pages[number - 1].end]
        assert text_of[number]
    assert character_error_rate(text_of[2], "\n".join(pages[0])) < 0.01
    assert text_of[3] == "" and unread.ocr is None
    assert (doc.ocr.pages, doc.ocr.low_pages) == (2, [3])
    # every page's words have rectangles, from pdfium on text pages and from Tesseract on the scanned one
    assert set(doc.layout.pages.tolist()) == {1, 2, 4}
    assert all(doc.text[s:e].strip() for s, e in doc.layout.spans)


def test_pages_read_with_low_confidence_are_named(pages, tmp_path):
    scan = image_pdf([draw_page(pages[0], DPI).image], tmp_path / "scan.pdf", DPI)
    assert load_document(scan, options=ReadOptions(ocr_dpi=DPI, ocr_min_confidence=99.9)).ocr.low_pages == [1]


def test_ocr_never_refuses_a_scan_and_names_the_setting(pages, tmp_path):
    scan = image_pdf([draw_page(pages[0], DPI).image], tmp_path / "scan.pdf", DPI)
    with pytest.raises(IngestError, match=r"scan\.pdf: no text layer in 1 page\(s\).*set ocr = auto"):
        load_document(scan, options=ReadOptions(ocr="never"))


def test_ocr_that_runs_past_its_timeout_fails_the_file_naming_the_page(pages, tmp_path):
    scan = image_pdf([draw_page(pages[0], DPI).image], tmp_path / "scan.pdf", DPI)
    with pytest.raises(IngestError, match=r"scan\.pdf: OCR of page 1: Tesseract took longer than 0\.01 s "
                                          r"\(ocr_timeout_s\)"):
        load_document(scan, options=ReadOptions(ocr_dpi=DPI, ocr_timeout_s=0.01))


def test_a_language_tesseract_has_no_data_for_is_named_with_its_package(pages, tmp_path):
    scan = image_pdf([draw_page(pages[0], DPI).image], tmp_path / "scan.pdf", DPI)
    with pytest.raises(IngestError, match=r"no data for xyz \(ocr_languages = 'eng\+xyz'\): apt-get install "
                                          r"tesseract-ocr-xyz"):
        load_document(scan, options=ReadOptions(ocr_languages="eng+xyz"))


def test_a_pdf_with_too_many_pages_is_refused_before_any_is_read(tmp_path):
    path = write_pdf(tmp_path / "long.pdf", [["page one"], ["page two"], ["page three"]])
    with pytest.raises(IngestError, match=r"long\.pdf: 3 pages, more than max_pdf_pages = 2"):
        load_document(path, options=ReadOptions(max_pdf_pages=2))


def test_cli_ingests_a_scan_lists_what_ocr_read_and_reports_bad_scans_in_one_line(pages, tmp_path):
    good = image_pdf([draw_page(pages[0], DPI).image], tmp_path / "scan.pdf", DPI)
    blank = image_pdf([Image.new("L", draw_page([], DPI).image.size, 255)], tmp_path / "blank.pdf", DPI)
    long = write_pdf(tmp_path / "long.pdf", [["page one"], ["page two"]])
    env = {"LONGDOC_OCR_DPI": str(DPI), "LONGDOC_MAX_PDF_PAGES": "1"}
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(good), str(blank), str(long), "--index", str(tmp_path / "i")], env=env)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "1 ingested" in result.output
    for name, reason in (("blank.pdf", "no readable text"), ("long.pdf", "more than max_pdf_pages = 1")):
        [line] = [line for line in result.output.splitlines() if line.startswith("skipped") and name in line]
        assert reason in line
    listed = runner.invoke(app, ["docs", "--index", str(tmp_path / "i")], env=env)
    assert listed.exit_code == 0
    assert any(line.startswith("scan.pdf: 1 page read by OCR, mean confidence") for line in listed.output.splitlines())
