"""Loaders: each format's text and structure, and one clear IngestError for every kind of bad file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import docx
import pytest
from reportlab.lib.pagesizes import letter
from reportlab.pdfgen import canvas

from conftest import FIXTURES
from ingest.loaders import SUPPORTED_EXTENSIONS, load_document
from ingest.pipeline import find_files
from ingest.types import IngestError

CONTRACT = FIXTURES / "cuad_dev/contracts/SANDRIDGEENERGYINC_08_06_2009-EX-10.6-OPERATIONS AND MAINTENANCE AGREEMENT.txt"
SAMPLE_DOCS = Path(__file__).resolve().parent.parent / "sample_docs"
CONTRACT_INLINE = FIXTURES / "cuad_dev/contracts/ABILITYINC_06_15_2020-EX-4.25-SERVICES AGREEMENT.txt"  # no line breaks


def write_pdf(path: Path, pages: list[list[str]], **canvas_kw) -> Path:
    """A PDF with one page per list of lines (an empty list draws only a box: no text layer)."""
    c = canvas.Canvas(str(path), pagesize=letter, **canvas_kw)
    for lines in pages:
        if not lines:
            c.rect(100, 100, 200, 200, fill=1)
        for k, line in enumerate(lines):
            c.drawString(72, 720 - 14 * k, line)
        c.showPage()
    c.save()
    return path


def qmsum_transcript(path: Path, meeting: int = 0) -> Path:
    """A QMSum meeting (the fixture's first: an ICSI meeting) written as one `Speaker: content` line per turn."""
    with open(FIXTURES / "qmsum_dev/val.jsonl", encoding="utf-8") as f:
        record = json.loads(f.readlines()[meeting])
    path.write_text("\n".join(f"{t['speaker']}: {t['content']}" for t in record["meeting_transcripts"]), encoding="utf-8")
    return path


def test_txt_text_is_the_file_content_exactly(tmp_path):
    content = "1. Definitions\r\nThe \"Term\" means one year.\r\n\r\n2. Payment\r\nNet 30 days; fee €100.\n"
    path = tmp_path / "contract.txt"
    path.write_bytes(content.encode("utf-8"))
    doc = load_document(path)
    assert doc.text == content
    assert [s.label for s in doc.sections] == ["1. Definitions", "2. Payment"]
    assert doc.text[doc.sections[1].start :].startswith("2. Payment")


def test_non_utf8_text_is_detected_and_decoded(tmp_path):
    content = "Cette convention est régie par le droit français. Le fournisseur garantit la qualité des éléments livrés.\n" * 5
    path = tmp_path / "latin.txt"
    path.write_bytes(content.encode("cp1252"))
    assert load_document(path).text == content


def test_contract_clauses_become_sections():
    doc = load_document(CONTRACT)
    labels = [s.label for s in doc.sections]
    assert "ARTICLE IV DUTIES AS OPERATOR" in labels
    assert "9.5 Governing Law." in labels
    governing = next(s for s in doc.sections if s.label == "9.5 Governing Law.")
    assert doc.text[governing.start :].startswith("9.5 Governing Law.")
    assert doc.doc_type == "txt" and not doc.turns


def test_inline_clause_headings_become_sections_but_numbered_sentences_do_not(tmp_path):
    """Contracts extracted without line breaks (all of CUAD) run their headings inline after a sentence."""
    content = (
        "The Parties agree as follows: 1. Services. 1.1 Provision of Services. Provider shall serve. "
        "See Section 3.2 Fees. 2. The Company shall pay within 30 days. 4.2 Termination for Breach. Either party may end it."
    )
    path = tmp_path / "inline.txt"
    path.write_text(content, encoding="utf-8")
    doc = load_document(path)
    assert [(s.label, doc.text[s.start : s.start + 12]) for s in doc.sections] == [
        ("1. Services.", "1. Services."),
        ("1.1 Provision of Services.", "1.1 Provisio"),
        ("4.2 Termination for Breach.", "4.2 Terminat"),
    ]


def test_markdown_headings_become_sections(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# Title\n\nIntro.\n\n## Renewal\n\nRenews yearly.\n", encoding="utf-8")
    doc = load_document(path)
    assert [(s.label, doc.text[s.start : s.end]) for s in doc.sections] == [
        ("Title", "# Title\n\nIntro.\n\n"),
        ("Renewal", "## Renewal\n\nRenews yearly.\n"),
    ]


def test_pdf_keeps_page_spans(tmp_path):
    path = write_pdf(tmp_path / "msa.pdf", [["1. Services", "Supplier provides services."], ["12. Governing Law", "Laws of Delaware."]])
    doc = load_document(path)
    assert [p.label for p in doc.pages] == ["1", "2"]
    assert "Delaware" in doc.text[doc.pages[1].start : doc.pages[1].end]
    assert "Delaware" not in doc.text[doc.pages[0].start : doc.pages[0].end]
    assert "12. Governing Law" in [s.label for s in doc.sections]


def test_docx_headings_become_sections(tmp_path):
    document = docx.Document()
    document.add_heading("Article 1 Definitions", level=1)
    document.add_paragraph("Terms have these meanings.")
    document.add_heading("Article 2 Term", level=1)
    document.add_paragraph("Two years from the Effective Date.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Fee", "$10"
    path = tmp_path / "agreement.docx"
    document.save(path)
    doc = load_document(path)
    assert doc.text.split("\n\n") == [
        "Article 1 Definitions", "Terms have these meanings.", "Article 2 Term", "Two years from the Effective Date.", "Fee | $10"
    ]  # fmt: skip
    assert [s.label for s in doc.sections] == ["Article 1 Definitions", "Article 2 Term"]
    assert doc.text[doc.sections[1].start :].startswith("Article 2 Term")


def test_html_drops_scripts_and_keeps_headings(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>x</title><style>p{}</style></head><body><script>alert(1)</script>"
        "<h1>Report</h1><p>First   <b>bold</b> para.</p><h2>Risks</h2><ul><li>Rates</li><li>FX</li></ul></body></html>",
        encoding="utf-8",
    )
    doc = load_document(path)
    assert doc.text == "Report\n\nFirst bold para.\n\nRisks\n\nRates\n\nFX"
    assert [s.label for s in doc.sections] == ["Report", "Risks"]


def test_vtt_keeps_speaker_and_timestamp_per_turn(tmp_path):
    path = tmp_path / "call.vtt"
    path.write_text(
        "WEBVTT\n\nNOTE recorded\n\n1\n00:00:01.000 --> 00:00:03.000\n<v Alice>Revenue grew 12%.</v>\n\n"
        "00:00:03.500 --> 00:00:05.000\n<v Alice>Margins held.\n\n00:00:05.000 --> 00:00:07.250\n<v Bob>Thanks, Alice.\n",
        encoding="utf-8",
    )
    doc = load_document(path)
    assert doc.text == "Alice: Revenue grew 12%. Margins held.\nBob: Thanks, Alice."
    assert [(t.label, t.meta) for t in doc.turns] == [
        ("Alice", "00:00:01.000 --> 00:00:05.000"),
        ("Bob", "00:00:05.000 --> 00:00:07.250"),
    ]
    assert all(doc.text[t.start : t.end].startswith(t.label) for t in doc.turns)


def test_srt_takes_speaker_from_name_prefix(tmp_path):
    path = tmp_path / "meeting.srt"
    path.write_text(
        "1\r\n00:00:01,000 --> 00:00:02,000\r\nChair: We begin.\r\n\r\n2\r\n00:00:02,500 --> 00:00:04,000\r\nMs Lee: Thank you.\r\n",
        encoding="utf-8",
    )
    doc = load_document(path)
    assert doc.doc_type == "srt"
    assert [(t.label, t.meta) for t in doc.turns] == [("Chair", "00:00:01,000 --> 00:00:02,000"), ("Ms Lee", "00:00:02,500 --> 00:00:04,000")]


def test_speaker_lines_txt_becomes_transcript_with_turns(tmp_path):
    path = qmsum_transcript(tmp_path / "meeting.txt")
    doc = load_document(path)
    assert doc.doc_type == "transcript"
    assert doc.text == path.read_text(encoding="utf-8")
    assert len(doc.turns) == len(doc.text.splitlines())
    assert doc.turns[0].label == "Professor E" and doc.text[doc.turns[1].start :].startswith("Grad G:")


def test_contract_is_not_mistaken_for_transcript():
    assert load_document(CONTRACT).doc_type == "txt"


def test_a_filed_contracts_page_footers_are_not_speaker_turns(tmp_path):
    """An EDGAR exhibit as CUAD's text has it: each page one long line, then the filing's "Source:" footer."""
    footer = "Source: ACME HEALTH SERVICES, INC., 8-K, 3/20/2020"
    pages = ["EXHIBIT 99.2 Page 1 of 3 DISTRIBUTOR AGREEMENT Agreement made this 19th day of March, 2020 Between: "
             "Acme Health Services, Inc. and Beta Medical LLC. 1. Appointment. Beta is appointed distributor.",
             "2. Term. This Agreement runs for two years. 3. Price. Prices are set out in Schedule A.",
             "4. Governing Law. This Agreement is governed by the laws of Nevada."]
    path = tmp_path / "distributor.txt"
    path.write_text("".join(f"{page}\n\n{footer}\n\n" for page in pages), encoding="utf-8")
    assert load_document(path).doc_type == "txt"


def _encrypted_pdf(p: Path) -> Path:
    return write_pdf(p, [["secret terms"]], encrypt="userpassword")


BAD_FILES = {
    "missing.txt": (None, "no such file"),
    "empty.txt": (b"", "empty file"),
    "blank.md": (b"  \n\n ", "no text"),
    "binary.txt": (b"\x7fELF\x02\x01\x01\x00\x00\x00" * 50, "binary file"),
    "controls.txt": (bytes(range(1, 9)) * 100, "control characters"),
    "corrupt.pdf": (b"%PDF-1.4\n1 0 obj garbage \xff\xfe trailer", "PDF"),
    "corrupt.docx": (b"PK\x03\x04 this is not a zip", ".docx"),
    "sheet.xlsx": (b"PK\x03\x04", "unsupported file type"),
    "nocues.vtt": (b"WEBVTT\n\nno timings here\n", "no VTT cues"),
    "fake.vtt": (b"1\n00:00:01.000 --> 00:00:02.000\nhello\n", "no WEBVTT header"),
    "empty_page.html": (b"<html><script>x()</script></html>", "no visible text"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_names_file_and_reason(tmp_path, name):
    content, reason = BAD_FILES[name]
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(IngestError) as caught:
        load_document(path)
    assert caught.value.path == str(path)
    assert reason in caught.value.reason
    assert str(caught.value).startswith(str(path))


def test_corrupt_pdf_names_file_and_reason(tmp_path):
    good = write_pdf(tmp_path / "good.pdf", [["Some text"]]).read_bytes()
    path = tmp_path / "truncated.pdf"
    path.write_bytes(good[: len(good) // 3])
    with pytest.raises(IngestError, match=r"truncated\.pdf: .*PDF"):
        load_document(path)


def test_encrypted_pdf_is_refused(tmp_path):
    with pytest.raises(IngestError, match="encrypted PDF"):
        load_document(_encrypted_pdf(tmp_path / "locked.pdf"))


def test_image_only_pdf_without_readable_text_is_refused(tmp_path):
    """Pages with no text layer are read by OCR; pages on which OCR finds nothing either fail the file in one line."""
    with pytest.raises(IngestError, match=r"scan\.pdf: no readable text: 2 page\(s\) without a text layer"):
        load_document(write_pdf(tmp_path / "scan.pdf", [[], []]))


def test_file_over_size_limit_is_refused(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("word " * 1000, encoding="utf-8")
    with pytest.raises(IngestError, match="too large"):
        load_document(path, max_bytes=1000)
    assert load_document(path, max_bytes=10_000).text.startswith("word")


def test_display_name_overrides_file_name(tmp_path):
    path = tmp_path / "3f2a.txt"
    path.write_text("Hello.", encoding="utf-8")
    assert load_document(path, name="notes.txt").name == "notes.txt"


def test_find_files_expands_folders_and_reports_skips(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".git").mkdir()
    for rel in ("b/z.md", "a.txt", "b/c.PDF", "b/table.xlsx", ".git/config.txt", ".hidden.txt"):
        (tmp_path / rel).write_text("x", encoding="utf-8")
    files, skipped = find_files([tmp_path, tmp_path / "a.txt", tmp_path / "gone.pdf"])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a.txt", "b/c.PDF", "b/z.md"]
    assert sorted(Path(e.path).name for e in skipped) == ["gone.pdf", "table.xlsx"]


def test_find_files_names_a_link_to_nothing_and_a_pipe_instead_of_passing_them_over(tmp_path):
    (tmp_path / "moved.txt").symlink_to(tmp_path / "nowhere.txt")
    os.mkfifo(tmp_path / "pipe.txt")
    for paths in ([tmp_path], [tmp_path / "moved.txt", tmp_path / "pipe.txt"]):
        files, skipped = find_files(paths)
        assert files == []
        assert {Path(e.path).name: e.reason for e in skipped} == {
            "moved.txt": "a link to a file that is not there", "pipe.txt": "not a regular file (a pipe or a device?)"}


def test_supported_extensions_are_the_documented_ones():
    assert SUPPORTED_EXTENSIONS == {".pdf", ".docx", ".html", ".htm", ".md", ".markdown", ".txt", ".vtt", ".srt"}


@pytest.mark.skipif(not SAMPLE_DOCS.exists(), reason="sample_docs not present")
def test_sample_docs_all_load():
    files, skipped = find_files([SAMPLE_DOCS])
    assert not skipped
    docs = [load_document(f) for f in files if f.name != "SOURCES.md"]
    assert {d.doc_type for d in docs} == {"pdf", "docx", "txt", "transcript"}
    assert all(len(d.text) > 10_000 and (d.sections or d.turns) for d in docs)


def test_numbered_paragraphs_without_a_title_are_labelled_by_number_and_parent_clause(tmp_path):
    text = (
        "11. Confidentiality.\n"
        "11.3 By virtue of this Agreement, each party hereto may disclose to the other party certain information.\n"
        "11.4 Remedies. Each party agrees that money damages would not suffice.\n"
        "11.4.1 The receiving party shall notify the disclosing party at once of any use that breaches this.\n"
        "12. The Company shall pay all fees within thirty days of the date of each invoice that it receives.\n"
    )
    (tmp_path / "c.txt").write_text(text, encoding="utf-8")
    doc = load_document(tmp_path / "c.txt")
    assert [s.label for s in doc.sections] == [
        "11. Confidentiality.", "11.3 (Confidentiality)", "11.4 Remedies.", "11.4.1 (Remedies)", "12",
    ]
