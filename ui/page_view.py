"""The quote on its page: a PDF answer shows the page its quote is on, rendered, with the quote's rectangles marked
and the other passages' on that page in a lighter colour, and a button that opens the page large.

The marks are boxes laid over the page image in percent of the page (from `Quote.boxes` and `Passage.boxes`, in
PDF points with the page's size), not painted into it: they keep their place at any width, and a test or a
screen reader finds them as elements. The page comes from `LongDocQA.page_image`, which renders it from the
file the document was ingested from while that file holds the same bytes; a library on PostgreSQL or Milvus
may be read on a machine without the file, and then the page is named, not shown.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import streamlit as st

from app.answer import Answer
from app.api import LongDocQA
from app.errors import LongDocError
from ingest.layout import Box

PAGE_DPI = 100  # the page beside the answer: 850 px wide for US Letter, about as wide as the column shows it
LARGE_DPI = 200  # the page opened large, sharp enough to read small print
QUOTE_MARK = "background: rgba(255, 190, 0, 0.42); outline: 1.5px solid rgba(214, 120, 0, 0.95);"
PASSAGE_MARK = "background: rgba(66, 133, 244, 0.13);"


@st.cache_data(max_entries=32, show_spinner=False)
def page_png(_qa: LongDocQA, doc_id: str, page: int, dpi: int) -> str:
    """The page as a base64 PNG. Cached by doc_id, which is the hash of the bytes it was rendered from, so a cached
    page is always the ingested document's own (`_qa` is not part of the key: one library per app)."""
    buffer = io.BytesIO()
    _qa.page_image(doc_id, page, dpi).save(buffer, "PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def marks(boxes: Sequence[Box], page: int, style: str, kind: str) -> str:
    """One absolutely placed <div> per rectangle on `page`, in percent of the page's size."""
    out = []
    for b in boxes:
        if b.page != page:
            continue
        left, top = 100 * b.x0 / b.page_width, 100 * b.y0 / b.page_height
        width, height = 100 * (b.x1 - b.x0) / b.page_width, 100 * (b.y1 - b.y0) / b.page_height
        out.append(f'<div class="mark {kind}" style="position: absolute; left: {left:.3f}%; top: {top:.3f}%; '
                   f'width: {width:.3f}%; height: {height:.3f}%; {style}"></div>')
    return "".join(out)


def page_html(image_png: str, answer: Answer, max_width: str) -> str:
    """The quote's page with the marks over it: the passages' lighter, under the quote's."""
    q = answer.quote
    passage_boxes = [b for p in answer.passages if p.doc == q.doc for b in p.boxes]
    alt = html.escape(f"Page {q.page} of {q.doc}, the quote marked", quote=True)
    return (f'<div class="page-view" style="position: relative; max-width: {max_width}; line-height: 0; '
            f'border: 1px solid rgba(49, 51, 63, 0.2)">'
            f'<img src="data:image/png;base64,{image_png}" alt="{alt}" style="width: 100%; display: block">'
            f'{marks(passage_boxes, q.page, PASSAGE_MARK, "passage")}{marks(q.boxes, q.page, QUOTE_MARK, "quote")}</div>')


def render_quote_page(qa: LongDocQA, answer: Answer, key: str) -> None:
    """The quote's page with the quote marked, and a button that opens it large; nothing for a quote without a
    page (a document that is not a PDF), and a line saying why when the page cannot be drawn here."""
    q = answer.quote
    if q is None or not q.boxes:
        return
    doc_id = next((p.doc_id for p in answer.passages if p.doc == q.doc), q.doc)
    try:
        image = page_png(qa, doc_id, q.page, PAGE_DPI)
    except LongDocError as exc:
        st.caption(f"The quote is on page {q.page} of {q.doc}; the page cannot be shown: {exc}")
        return
    st.markdown(f"**Page {q.page}** of {q.doc}: the quote marked, the other passages on the page lighter")
    st.html(page_html(image, answer, max_width="640px"))
    if st.button(f"Open page {q.page}", key=f"{key}-open-page", icon=":material/open_in_full:"):
        large = page_png(qa, doc_id, q.page, LARGE_DPI)
        st.dialog(f"{q.doc}, page {q.page}", width="large")(lambda: st.html(page_html(large, answer, "100%")))()
