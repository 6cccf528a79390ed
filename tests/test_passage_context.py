"""Small to big (`context_chunks`): each passage handed on with the chunks around it, offsets still exact, no
chunk handed out twice, the retrieved chunk's own span kept and shown apart from its context."""

import pytest

from app import LongDocQA
from app.answer import Evidence, Passage
from app.passage_context import with_context
from app.sections import passage_of, read_sections, split_sections
from ingest.types import Chunk
from ui.answer_view import highlight

# ---- the widening itself, on chunks laid out by hand -----------------------------------------------------------

PIECES = [f"Piece {n} says something of its own. " for n in range(10)]
TEXT = "".join(PIECES)


def _chunks() -> list[Chunk]:
    out, at = [], 0
    for n, piece in enumerate(PIECES):
        end = at + len(piece) - 1  # the space between two chunks belongs to neither, as with real chunks
        out.append(Chunk("d1", "doc.txt", n, TEXT[at:end], at, end, n_tokens=8, speakers=[f"S{n % 2}"]))
        at += len(piece)
    return out


def _passage(rank: int, chunk: Chunk) -> Passage:
    return Passage(rank=rank, score=0.5, doc="doc.txt", doc_id="d1", char_start=chunk.char_start,
                   char_end=chunk.char_end, text=chunk.text, n_tokens=chunk.n_tokens, speakers=list(chunk.speakers))


def _widen(indexes: list[int], n: int, k: int = 5) -> list[Passage]:
    chunks = _chunks()
    return with_context([_passage(r, chunks[i]) for r, i in enumerate(indexes, 1)], n, k, lambda _: chunks,
                        lambda _: TEXT)


def test_a_passage_is_widened_by_its_neighbours_as_one_exact_slice():
    [p] = _widen([4], 1)
    chunks = _chunks()
    assert (p.char_start, p.char_end) == (chunks[3].char_start, chunks[5].char_end)
    assert p.text == TEXT[p.char_start:p.char_end]
    assert (p.chunk_start, p.chunk_end) == (chunks[4].char_start, chunks[4].char_end)
    assert p.n_tokens == 24 and p.speakers == ["S1", "S0"] and p.rank == 1


def test_no_chunk_is_handed_out_twice_and_k_passages_remain():
    chunks = _chunks()
    # 4 takes 2, 3, 5 and 6, so 6 is not a passage again; 0 takes 1 (2 is held); 8 takes 7 and 9; 9 is held
    passages = _widen([4, 6, 0, 8, 9, 2], 2, k=3)
    assert [(p.char_start, p.char_end) for p in passages] == [
        (chunks[2].char_start, chunks[6].char_end), (chunks[0].char_start, chunks[1].char_end),
        (chunks[7].char_start, chunks[9].char_end)]
    assert [p.chunk_start for p in passages] == [chunks[4].char_start, chunks[0].char_start, chunks[8].char_start]
    assert [p.rank for p in passages] == [1, 2, 3]


def test_no_context_leaves_the_passages_as_they_are():
    chunks = _chunks()
    passages = [_passage(1, chunks[4]), _passage(2, chunks[5])]
    assert with_context(passages, 0, 5, lambda _: chunks, lambda _: TEXT) == passages
    assert with_context(passages, 0, 1, lambda _: chunks, lambda _: TEXT) == passages[:1]
    first, second = _widen([4, 3, 6], 1)  # 3 is 4's context; 6 can take only 7 (5 is held)
    assert first.chunk_start == chunks[4].char_start and second.chunk_start == chunks[6].char_start
    assert second.char_start == chunks[6].char_start and second.char_end == chunks[7].char_end


def test_the_page_greys_the_context_and_marks_evidence_across_the_seam():
    [p] = _widen([4], 1)
    chunk_text = TEXT[p.chunk_start:p.chunk_end]
    seam = p.chunk_start - 10  # evidence starting in the context and ending in the chunk
    html = highlight(p, [Evidence("doc.txt", seam, p.chunk_start + 5, TEXT[seam:p.chunk_start + 5])])
    assert html.count('class="context"') == 3  # before the mark, inside it, after the chunk
    assert "<mark>" in html and chunk_text[5:] in html
    assert f'<span class="context" style="color: #888">{TEXT[p.chunk_end:p.char_end]}</span>' in html


def test_the_document_map_draws_the_chunk_and_a_band_for_its_context():
    from app.answer import Answer
    from ui.charts import document_map

    wide, alone = _widen([4, 0, 2], 1, k=2)[0], _passage(2, _chunks()[8])
    chart = document_map(Answer(question="q", passages=[wide, alone]), {"doc.txt": len(TEXT)})
    _, context, blocks = chart.layer
    assert len(context.data) == 1 and context.data.iloc[0]["context_from"] == wide.char_start / len(TEXT)
    assert list(blocks.data["from"]) == [wide.chunk_start / len(TEXT), alone.char_start / len(TEXT)]


# ---- through the engine, on a real library ---------------------------------------------------------------------

MEETING = "".join(
    f"Project Manager: Next, item {n}: the {topic}. What do we think?\n"
    f"Marketing: For the {topic}, our users asked for something cheaper than last year's model, and the survey "
    f"says most of them would pay less if the {topic} were simpler.\n"
    f"Industrial Designer: Agreed, we go with option {n}: it costs {n} euros less to build and it is ready in "
    f"{n + 2} weeks.\n"
    for n, topic in enumerate(["remote's case", "battery", "buttons", "colour scheme", "scroll wheel", "logo",
                               "packaging", "charger", "speaker", "manual", "display", "antenna", "strap", "stand",
                               "light", "sound", "menu", "remote's weight", "cable", "warranty", "box", "label",
                               "lid", "grip"], start=1))


@pytest.fixture(scope="module")
def qa(tmp_path_factory):
    folder = tmp_path_factory.mktemp("context")
    doc = folder / "design_meeting.txt"
    doc.write_text(MEETING, encoding="utf-8")
    qa = LongDocQA(index_dir=folder / "index")
    assert qa.ingest([doc]).ingested
    assert len(qa.store.chunks()) >= 6
    return qa


def test_retrieval_hands_on_each_chunk_with_its_context(qa):
    question = "What did the survey say about the battery?"
    alone = qa.retrieve(question, top_k=15)
    widened = qa.retrieve(question, top_k=3, context_chunks=1)
    text = qa.document_text("design_meeting.txt")
    assert len(widened) == 3 and [p.rank for p in widened] == [1, 2, 3]
    assert widened[0].chunk_start == alone[0].char_start
    retrieved = [p.char_start for p in alone]  # each passage's chunk in retrieval's order, none skipped unheld
    own = [p.chunk_span[0] for p in widened]
    assert own == sorted(own, key=retrieved.index)
    for p in widened:
        assert p.text == text[p.char_start:p.char_end]
        if p.chunk_start is not None:
            assert p.char_start <= p.chunk_start < p.chunk_end <= p.char_end
            assert (p.char_start, p.char_end) != (p.chunk_start, p.chunk_end)
    spans = sorted((p.char_start, p.char_end) for p in widened)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # no text handed out twice
    skipped = [s for s in retrieved[:retrieved.index(own[-1])] if s not in own]
    assert all(any(p.char_start <= s < p.char_end for p in widened) for s in skipped)  # each one held as context


@pytest.mark.slow
def test_an_answer_reads_the_context_and_its_json_says_where_the_chunk_is(qa):
    question = "What did the survey say about the battery?"
    short = LongDocQA(index_dir=qa.settings.index_dir, max_new_tokens=8)
    alone = short.ask(question, top_k=2, mode="rag")
    answer = short.ask(question, top_k=2, mode="rag", context_chunks=1)  # this question only
    assert short.settings.context_chunks == 0
    text = qa.document_text("design_meeting.txt")
    data = answer.to_dict()
    assert any(p["chunk_start"] is not None for p in data["passages"])
    assert all(text[p["char_start"]:p["char_end"]] == p["text"] for p in data["passages"])
    for narrow, wide in zip(alone.passages, answer.passages):  # the context sits in the prompt with its chunk
        assert narrow.prompt_index is not None and wide.prompt_index is not None
        if wide.chunk_start is not None:
            assert (wide.prompt_token_end - wide.prompt_token_start
                    > narrow.prompt_token_end - narrow.prompt_token_start)


@pytest.mark.slow
def test_sections_read_chunk_by_chunk_while_the_answer_cites_passages_with_context(qa):
    """Mode `sections` splits the document into chunks, never into passages with context, and knows a widened
    passage by its chunk: a section holding one is read."""
    wide = LongDocQA(index_dir=qa.settings.index_dir, context_chunks=1, section_note_tokens=16,
                     sections_answer_tokens=16)
    question = "List every decision about the battery."
    answer = wide.ask(question, doc="design_meeting.txt", mode="sections")
    retrieved = wide.retrieve(question, doc="design_meeting.txt")
    assert any(p.chunk_start is not None for p in retrieved)
    chunks = qa.store.chunks()
    notes = answer.notes
    assert notes[0].char_start == chunks[0].char_start and notes[-1].char_end == chunks[-1].char_end
    assert len(notes) > 1 and all(a.char_end <= b.char_start for a, b in zip(notes, notes[1:]))
    for note in notes:
        if any(note.char_start <= p.chunk_span[0] < note.char_end for p in retrieved):
            assert note.prompt_tokens > 0, note
    text = qa.document_text("design_meeting.txt")
    assert all(text[p.char_start:p.char_end] == p.text for p in answer.passages)


@pytest.mark.slow
def test_a_section_holding_a_retrieved_chunk_is_read_even_when_its_context_starts_in_the_section_before(qa):
    gen, store = qa.engine.generator, qa.store
    info = store.get("design_meeting.txt")
    chunks = store.chunks(info.doc_id)
    sections = split_sections(chunks, gen.count_tokens, 300)
    assert len(sections) >= 3
    chunk = sections[1].chunks[0]
    [widened] = with_context([passage_of(chunk, 1, 0.5)], 1, 1, store.chunks, store.document_text)
    assert widened.char_start < sections[1].char_start <= widened.chunk_span[0]
    read = read_sections(gen, store, qa.embedder, "What was decided about the battery?", info, sections_tokens=300,
                         note_tokens=8, min_relevance=0.99, retrieved=[widened], ranking=[passage_of(chunk, 1, 0.5)])
    assert [bool(n.prompt_tokens) for n in read.notes] == [i == 1 for i in range(len(sections))]
