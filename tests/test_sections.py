"""Whole-document questions answered section by section: the sections, the notes and their sources, the KV cache
of the instructions shared by every section, and when `auto` chooses this mode. On real contracts from
tests/fixtures/ and sample_docs/."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import LongDocQA
from app.answer import Answer
from app.engine import DocumentProgress
from app.llm.generator import PREFILL_CHUNK
from app.sections import (
    SectionProgress,
    asks_summary,
    asks_whole_document,
    note_sources,
    passage_of,
    quoted_note,
    says_nothing,
    split_sections,
)
from conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = FIXTURES / "cuad_dev" / "contracts"
DISTRIBUTOR = CONTRACTS / "OPTIMIZEDTRANSPORTATIONMANAGEMENT,INC_07_26_2000-EX-6.6-DISTRIBUTOR AGREEMENT.txt"
SERVICES = CONTRACTS / "ABILITYINC_06_15_2020-EX-4.25-SERVICES AGREEMENT.txt"
EDIETS = ROOT / "sample_docs" / "ediets_co-branding_agreement.txt"


@pytest.fixture(scope="module")
def qa(tmp_path_factory) -> LongDocQA:
    qa = LongDocQA(index_dir=tmp_path_factory.mktemp("index"), section_note_tokens=24, sections_answer_tokens=48)
    assert len(qa.ingest([DISTRIBUTOR, SERVICES]).ingested) == 2
    return qa


def test_sections_cover_the_document_in_order_each_within_the_budget(qa: LongDocQA) -> None:
    info = qa.store.get(SERVICES.name)
    chunks = qa.store.chunks(info.doc_id)
    count = qa.embedder.count_tokens
    sections = split_sections(chunks, count, budget=600)
    assert [c for s in sections for c in s.chunks] == sorted(chunks, key=lambda c: c.char_start)
    assert [s.index for s in sections] == list(range(1, len(sections) + 1))
    assert all(s.tokens <= 600 for s in sections) and len(sections) > 3
    assert all(a.char_end <= b.char_start for a, b in zip(sections, sections[1:]))
    assert sections[0].char_start == chunks[0].char_start and sections[-1].char_end == chunks[-1].char_end
    # a section that ends before the budget is full ends where a new heading begins
    for s, after in zip(sections, sections[1:]):
        if s.tokens + count(after.chunks[0].text) <= 600:
            assert after.chunks[0].section != s.chunks[-1].section and s.tokens >= 300


def test_a_note_cites_the_passages_retrieval_ranks_first_not_the_one_its_words_echo(qa: LongDocQA) -> None:
    """The 135M model's note often echoes a neighbouring clause, so a note's sources are retrieval's choice:
    the section's passages among retrieval's first `depth` (the number of sections) with those a `rag` answer
    reads, in reading order, else the one passage of the section that retrieval ranks highest."""
    chunks = qa.store.chunks(qa.store.get(DISTRIBUTOR.name).doc_id)
    found, also_found, echoed = chunks[1], chunks[3], chunks[-2]
    passages = [passage_of(c, 0, 0.5) for c in (found, also_found, echoed)]
    key = lambda c: (c.doc_id, c.char_start)  # noqa: E731

    def sources(ranked_first: set[tuple[str, int]], ranking: list, depth: int = 0) -> list[int]:
        order = {key(c): i for i, c in enumerate(ranking)}
        retrieved = [p for p in passages if (p.doc_id, p.char_start) in ranked_first]
        return [p.char_start for p in note_sources(passages, retrieved, order, depth)]

    assert sources(set(), [chunks[0], also_found, echoed, found]) == [also_found.char_start]
    assert sources(set(), [echoed, found]) == [echoed.char_start]
    assert sources(set(), []) == [found.char_start]  # nothing ranked: the section's first passage
    assert sources({key(found)}, [echoed, found]) == [found.char_start]
    assert sources({key(also_found), key(found)}, [echoed]) == [found.char_start, also_found.char_start]
    deep = [chunks[0], also_found, echoed, found]
    assert sources(set(), deep, depth=2) == [also_found.char_start]  # rank 3 is past the depth
    assert sources(set(), deep, depth=3) == [also_found.char_start, echoed.char_start]
    assert sources({key(found)}, deep, depth=3) == [found.char_start, also_found.char_start, echoed.char_start]


def test_a_section_the_model_calls_empty_but_retrieval_ranked_first_quotes_those_passages(qa: LongDocQA) -> None:
    """The 135M model says "nothing here" of sections holding a list's clauses; when retrieval ranked a passage
    of the section first, the note becomes the passages' own words, cut to the note's token budget."""
    tokenizer = qa.engine.generator.tokenizer
    chunks = qa.store.chunks(qa.store.get(DISTRIBUTOR.name).doc_id)
    passages = [passage_of(c, 0, 0.5) for c in chunks[1:3]]
    whole = quoted_note(tokenizer, passages[:1], 10_000)
    assert whole == " ".join(chunks[1].text.split())
    cut = quoted_note(tokenizer, passages, 16)
    assert cut.endswith(" …") and whole.startswith(cut.removesuffix(" …"))
    assert len(tokenizer(cut.removesuffix(" …"), add_special_tokens=False)["input_ids"]) <= 16
    assert not says_nothing(cut)


@pytest.mark.parametrize("question, whole, summary", [
    ("List every termination right.", True, False),
    ("Summarise the risks the CFO raised.", True, True),
    ("What were the main discussion points of the meeting?", True, True),
    ("What was the meeting about?", True, True),
    ("Where does the CEO's guidance contradict the CFO's numbers?", True, False),
    ("Compare the renewal terms with the termination terms.", True, False),
    ("Which state's law governs the agreement?", False, False),
    ("When does the agreement expire?", False, False),
])
def test_questions_about_all_of_a_document_are_told_apart(question: str, whole: bool, summary: bool) -> None:
    assert asks_whole_document(question) is whole
    assert asks_summary(question) is summary


@pytest.mark.parametrize("note, empty", [
    ("Nothing.", True),
    ("None", True),
    ("Nothing about termination.", True),
    ("This section says nothing about.", True),  # a 135M model's note on a contract
    ("The section doesn't mention anything about renewal.", True),
    ("The contract does not specify a renewal term.", True),
    ("It is not about the question.", True),
    ("This section has nothing to do with renewal.", True),
    ("", True),
    ("The section is about the question of indemnity: each party indemnifies the other.", False),
    ("This section is about the licence granted. It is not about the question about what is granted.", False),
    ("Nothing in this Agreement shall limit the Owner's right to terminate on 30 days' notice.", False),
    ("Either party may terminate for convenience on 90 days' written notice.", False),
])
def test_a_note_that_finds_nothing_is_told_from_one_that_quotes_a_clause(note: str, empty: bool) -> None:
    assert says_nothing(note) is empty


@pytest.mark.slow
def test_a_sections_answer_notes_each_section_in_order_and_cites_their_sources(qa: LongDocQA) -> None:
    events: list[SectionProgress] = []
    answer = qa.ask("List every obligation of the distributor.", doc=DISTRIBUTOR.name, mode="sections",
                    on_progress=events.append)
    assert answer.mode == "sections" and answer.answer and not answer.abstained
    notes, text = answer.notes, qa.document_text(DISTRIBUTOR.name)
    chunks = qa.store.chunks(qa.store.get(DISTRIBUTOR.name).doc_id)
    assert notes[0].char_start == chunks[0].char_start and notes[-1].char_end == chunks[-1].char_end
    assert all(a.char_end <= b.char_start for a, b in zip(notes, notes[1:]))
    assert [(e.done, e.total) for e in events] == [(i, len(notes)) for i in range(len(notes) + 1)]

    used = [n for n in notes if n.used]
    cited = sorted(rank for n in used for rank in n.sources)
    assert used and cited == sorted(p.rank for p in answer.passages + answer.dropped)
    for note in used:
        for source in (p for p in answer.passages if p.rank in note.sources):
            assert note.char_start <= source.char_start < source.char_end <= note.char_end
            assert text[source.char_start:source.char_end] == source.text
    for note in notes:
        assert note.used or note.reason
    retrieved = qa.retrieve("List every obligation of the distributor.", doc=DISTRIBUTOR.name)
    for note in notes:  # every section holding a passage a rag answer would read is read
        if any(note.char_start <= p.char_start < note.char_end for p in retrieved):
            assert note.prompt_tokens > 0
    # every passage sits in the combining prompt: the prompt map shows each section that contributed
    assert all(0 <= p.prompt_token_start < p.prompt_token_end <= answer.prompt_tokens for p in answer.passages)

    read = [n for n in notes if n.prompt_tokens]
    assert len({n.reused_tokens for n in read}) == 1 and read[0].reused_tokens > 20  # the instructions, read once
    assert "sections_s" in answer.timings
    assert Answer.from_dict(answer.to_dict()).to_dict() == answer.to_dict()


@pytest.mark.slow
def test_auto_reads_by_sections_only_a_whole_document_question_over_a_document_too_long_for_the_window(
        tmp_path) -> None:
    qa = LongDocQA(index_dir=tmp_path, rope_scaling="none")  # an 8,192-token window
    qa.ingest([EDIETS, DISTRIBUTOR])
    engine, gen = qa.engine, qa.engine.generator
    assert gen.context_window == 8192

    def mode(question: str, doc: Path) -> str:
        ranked = engine.retrieve(question, doc=doc.name)
        return engine._choose_mode("auto", True, engine.resolve_doc(doc.name), ranked, gen, question)

    assert gen.count_tokens(qa.document_text(EDIETS.name)) > 8192
    assert mode("List every obligation of eDiets.", EDIETS) == "sections"
    assert mode("Which state's law governs the agreement?", EDIETS) == "rag"
    assert 2048 < gen.count_tokens(qa.document_text(DISTRIBUTOR.name)) < 8192
    assert mode("List every obligation of the distributor.", DISTRIBUTOR) == "full_document"  # it fits whole
    assert mode("Which state's law governs the agreement?", DISTRIBUTOR) == "rag"


@pytest.mark.slow
def test_a_document_read_whole_reports_its_reading_in_chunks_and_only_the_first_time(qa: LongDocQA) -> None:
    """`full_document` on a CPU spends minutes reading a long document before the first word: the page and the
    terminal show how far it is (`DocumentProgress`), and a second question, whose reading is kept, reports none."""
    events: list = []
    answer = qa.ask("Summarise the agreement.", doc=DISTRIBUTOR.name, mode="full_document", on_progress=events.append)
    assert answer.mode == "full_document" and answer.answer
    assert events and all(isinstance(e, DocumentProgress) and e.doc == DISTRIBUTOR.name for e in events)
    total = events[0].total
    assert PREFILL_CHUNK < total < answer.prompt_tokens  # the document part, before the question: two chunks or more
    assert [e.done for e in events] == [min(i * PREFILL_CHUNK, total) for i in range(1, len(events) + 1)]
    assert events[-1].done == total
    again: list = []
    second = qa.ask("Who are the parties?", doc=DISTRIBUTOR.name, mode="full_document", on_progress=again.append)
    assert second.answer and again == []


@pytest.mark.slow
def test_the_command_line_shows_each_section_as_it_is_read(qa: LongDocQA, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from app.cli import app

    monkeypatch.setenv("LONGDOC_SECTION_NOTE_TOKENS", "16")
    monkeypatch.setenv("LONGDOC_SECTIONS_ANSWER_TOKENS", "24")
    result = CliRunner().invoke(app, ["ask", "Summarise the agreement.", "--doc", DISTRIBUTOR.name,
                                      "--mode", "sections", "--index", str(qa.settings.index_dir)])
    assert result.exit_code == 0, result.output
    total = len(split_sections(qa.store.chunks(qa.store.get(DISTRIBUTOR.name).doc_id), qa.engine.generator.count_tokens,
                               qa.settings.sections_tokens))
    for i in range(1, total + 1):
        assert f"section {i} of {total} (used)" in result.output  # a summary reads and uses every section
    assert "mode: sections" in result.output and f"{total} read in order, {total} noted" in result.output
