"""HTML via beautifulsoup4: visible text in blocks, h1-h6 become sections; scripts and styles are dropped."""

from __future__ import annotations

from pathlib import Path

from bs4 import BeautifulSoup, Comment, Declaration, Doctype, NavigableString, ProcessingInstruction, Tag

from ingest.loaders.text import decode_text, find_sections, short_title, spans_from_starts
from ingest.types import IngestError, ParsedDocument, ReadOptions

DROPPED = {"script", "style", "noscript", "template", "head", "svg", "iframe", "object"}
HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
BLOCKS = HEADINGS | {
    "p", "div", "section", "article", "main", "header", "footer", "nav", "aside", "li", "ul", "ol", "dl", "dt",
    "dd", "table", "tr", "blockquote", "pre", "figure", "figcaption", "form", "fieldset", "address", "hr",
}  # fmt: skip
_NOT_TEXT = (Comment, Declaration, Doctype, ProcessingInstruction)
PARAGRAPH_SEPARATOR = "\n\n"


class _TextCollector:
    """Walks the tree once, gathering block texts with whitespace collapsed as a browser shows them.

    bs4's get_text() flattens blocks and headings alike; we need paragraph breaks and heading positions.
    The walk uses an explicit stack, so deeply nested (hostile) markup cannot exhaust Python's recursion.
    """

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.headings: list[tuple[int, str]] = []
        self._pos = 0
        self._pending: list[str] = []
        self._heading_open = False

    def flush(self) -> None:
        block = " ".join("".join(self._pending).split())
        self._pending = []
        if block:
            if self._heading_open:
                self.headings.append((self._pos, short_title(block)))
            self.parts.append(block)
            self._pos += len(block) + len(PARAGRAPH_SEPARATOR)
        self._heading_open = False

    def collect(self, root: Tag) -> str:
        _END = object()
        stack: list[object] = [root]
        while stack:
            node = stack.pop()
            if node is _END:
                self.flush()
            elif isinstance(node, NavigableString):
                if not isinstance(node, _NOT_TEXT):
                    self._pending.append(str(node))
            elif isinstance(node, Tag) and node.name not in DROPPED:
                if node.name == "br":
                    self._pending.append(" ")
                elif node.name in BLOCKS:
                    self.flush()
                    self._heading_open = node.name in HEADINGS
                    stack.append(_END)
                    stack.extend(reversed(list(node.children)))
                else:
                    stack.extend(reversed(list(node.children)))
        self.flush()
        return PARAGRAPH_SEPARATOR.join(self.parts)


def load_html(path: Path, data: bytes, name: str, options: ReadOptions) -> ParsedDocument:
    """Visible text of the page; headings (h1-h6) start sections, else numbered clauses do."""
    markup = decode_text(path, data)
    soup = BeautifulSoup(markup, "html.parser")
    collector = _TextCollector()
    text = collector.collect(soup.body or soup)
    if not text.strip():
        raise IngestError(path, "no visible text in the HTML")
    sections = spans_from_starts(collector.headings, len(text)) if collector.headings else find_sections(text)
    return ParsedDocument(name=name, source=path, doc_type="html", text=text, sections=sections)
