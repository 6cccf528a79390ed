"""Conversations: a follow-up is resolved against the turns before it, then searched in the right document.

The library holds real documents from sample_docs/ and tests/fixtures/. Most tests set `min_relevance` above any
relevance score, so every turn is refused before the model reads anything: what they check is retrieval (the
refused answer carries the passages retrieved), and they run in seconds. The last one lets the model answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app import LongDocQA
from app.answer import Answer, Passage, Quote, Search
from app.conversation import content_words, drew_from, named_document, resolve, unnamed
from app.errors import DocumentNotFound
from conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
EDIETS = "ediets_co-branding_agreement.txt"
MEETING = "ami_remote_control_design_meeting.txt"
ABILITY = "ABILITYINC_06_15_2020-EX-4.25-SERVICES AGREEMENT.txt"
CONTRACTS = FIXTURES / "cuad_dev" / "contracts"
UPLOAD = CONTRACTS / "OPTIMIZEDTRANSPORTATIONMANAGEMENT,INC_07_26_2000-EX-6.6-DISTRIBUTOR AGREEMENT.txt"
NEVER = 1.01  # a relevance threshold no passage reaches: every turn stops after retrieval


@pytest.fixture(scope="module")
def qa(tmp_path_factory) -> LongDocQA:
    """Two contracts and a meeting transcript; the contract uploaded mid-conversation comes later."""
    qa = LongDocQA(index_dir=tmp_path_factory.mktemp("index"), min_relevance=NEVER)
    report = qa.ingest([ROOT / "sample_docs" / EDIETS, ROOT / "sample_docs" / MEETING,
                        CONTRACTS / ABILITY])
    assert len(report.ingested) == 3, report.skipped
    return qa


def docs_of(answer: Answer) -> set[str]:
    return {p.doc for p in answer.passages}


def test_three_turns_over_two_documents_follow_ups_search_the_document_meant(qa: LongDocQA) -> None:
    chat = qa.chat()
    first = chat.ask("Who are the parties to the eDiets co-branding agreement?")
    assert docs_of(first) == {EDIETS}
    assert first.searched.why == "the document the question names; the words naming it left out"

    second = chat.ask("When does it expire?")  # names no document
    assert docs_of(second) == {EDIETS}
    assert second.question == "When does it expire?"
    assert second.to_dict()["searched"] == {"question": "When does it expire?", "doc": EDIETS,
                                            "why": "the document in focus"}
    assert docs_of(Answer("", passages=qa.retrieve("When does it expire?"))) != {EDIETS}  # asked alone

    uploaded = qa.ingest([UPLOAD]).ingested[0].name  # as the page does with a fresh upload
    try:
        chat.focus_on(uploaded)
        third = chat.ask("Which law governs this agreement?")  # "this agreement": the upload
        assert docs_of(third) == {uploaded}
        assert any("laws of the State of Texas" in p.text for p in third.passages)
        alone = qa.retrieve("Which law governs this agreement?")
        assert {p.doc for p in alone} != {uploaded}  # without the conversation, other contracts answer too
        assert [t.question for t in chat.turns] == [first.question, second.question, third.question]
    finally:
        qa.remove(uploaded)


def test_a_follow_up_without_a_subject_searches_with_the_previous_questions_subject(qa: LongDocQA) -> None:
    chat = qa.chat()
    first = chat.ask("Which buttons did the team want on the remote control?")  # "remote control" names the meeting
    assert first.searched.doc == MEETING
    follow = chat.ask("Who proposed that?")
    assert follow.searched == Search("Who proposed that? (buttons team)", MEETING,
                                     "the document in focus; the previous question's subject joined")
    assert docs_of(follow) == {MEETING}
    assert any("button" in p.text.lower() for p in follow.passages)


def test_naming_another_document_moves_the_focus_and_widening_searches_the_library(qa: LongDocQA) -> None:
    chat = qa.chat(doc=EDIETS)
    moved = chat.ask("Who are the parties to the Ability Inc services agreement?")
    assert moved.searched.doc == ABILITY and docs_of(moved) == {ABILITY}
    assert chat.focus == ABILITY
    chat.widen()
    wide = chat.ask("Which state's law governs?")
    assert wide.searched.doc is None and wide.searched.why == "no document in focus"
    library = chat.ask("Which agreements can be terminated for convenience?")
    assert library.searched.doc is None and library.searched.why == "the question is about the library"


def test_focusing_on_a_document_not_in_the_library_is_one_clear_error(qa: LongDocQA) -> None:
    with pytest.raises(DocumentNotFound, match="no ingested document named 'msa.pdf'"):
        qa.chat().focus_on("msa.pdf")


@pytest.mark.parametrize("question, expected", [
    ("What did the SandRidge agreement say about fees?", 1),         # the start of SANDRIDGEENERGYINC
    ("Who signed the Optimized Transportation Management agreement?", 2),  # words joined
    ("What does the agreement say about fees?", None),              # "agreement" names no one document
    (f"Summarise {EDIETS}", 0),                                     # the whole file name
    ("Who are the parties to the Ability agreement?", 4),           # not the start of "AGREEMENT1" either
])
def test_a_document_is_named_by_a_word_of_its_name_no_other_name_holds(question: str, expected: int | None) -> None:
    names = [[EDIETS], ["SANDRIDGEENERGYINC_08_06_2009-EX-10.6-OPERATIONS AND MAINTENANCE AGREEMENT.txt"],
             [UPLOAD.name], ["sandbox_notes.md"], [ABILITY], ["PelicanDeliversInc_20200211_EX-10.3_AGREEMENT1.txt"]]
    assert named_document(question, names) == expected


@pytest.mark.parametrize("question, name, searched", [
    ("Which law governs the eDiets co-branding agreement?", EDIETS, "Which law governs the agreement?"),
    ("Who are the parties to the SandRidge operations agreement?",
     "SANDRIDGEENERGYINC_08_06_2009-EX-10.6-OPERATIONS AND MAINTENANCE AGREEMENT.txt",
     "Who are the parties to the agreement?"),
    ("What was decided in the remote control design meeting?", MEETING, "What was decided in the meeting?"),
    # the document's words used as the subject, not as its name, stay
    ("What did the team decide about the remote control?", MEETING,
     "What did the team decide about the remote control?"),
    ("When does eDiets have to pay Women.com?", EDIETS, "When does eDiets have to pay Women.com?"),
    ("What license does the license agreement grant?", "Acme_License Agreement.txt",
     "What license does the license agreement grant?"),
])
def test_the_words_naming_the_searched_document_are_left_out_of_its_search(question: str, name: str,
                                                                           searched: str) -> None:
    assert unnamed(question, name) == searched


def test_a_question_naming_its_document_finds_the_clause_not_the_passages_naming_the_company(qa: LongDocQA) -> None:
    """Searched as typed, "eDiets co-branding" pulls the opening and the recitals, which name both, ahead of the
    governing-law clause."""
    passages = qa.retrieve("Which law governs the eDiets co-branding agreement?", doc=EDIETS)
    assert any("laws of the State of California" in p.text for p in passages)
    answer = qa.ask("Which law governs the eDiets co-branding agreement?", doc=EDIETS)  # stops after retrieval
    assert answer.searched.question == "Which law governs the agreement?" and answer.searched.doc == EDIETS
    assert "naming it left out" in answer.searched.why


@pytest.mark.slow
def test_the_quote_reads_the_question_as_searched_not_the_words_naming_the_document(tmp_path) -> None:
    """The opening defines '("eDiets")', a term made of the question's words as typed, and was quoted for it."""
    qa = LongDocQA(index_dir=tmp_path / "index", max_new_tokens=16)
    qa.ingest([ROOT / "sample_docs" / EDIETS])
    answer = qa.ask("Which law governs the eDiets co-branding agreement?", doc=EDIETS)
    assert '("eDiets")' not in answer.quote.text and "laws of the State of California" in answer.quote.text


def test_subject_words_leave_out_question_words_pronouns_and_asking_verbs() -> None:
    assert content_words("Who proposed that, and why?") == []
    assert content_words("When does it expire?") == ["expire"]
    prev = Search("When does the eDiets agreement expire?", EDIETS)
    assert resolve("What about the renewal term?", prev, EDIETS, [[EDIETS]]).question == \
        "What about the renewal term? (When does the eDiets agreement expire?)"
    assert resolve("How long?", prev, EDIETS, [[EDIETS]]).question == "How long? (expire)"


def test_the_document_an_answer_drew_from_is_its_quotes_else_its_best_passages() -> None:
    def passage(rank: int, doc: str) -> Passage:
        return Passage(rank=rank, score=0.5, doc=doc, doc_id=doc, char_start=0, char_end=5, text="x")

    answer = Answer("q", passages=[passage(2, MEETING), passage(1, EDIETS)])
    assert drew_from(answer) == EDIETS
    answer.quote = Quote(doc=MEETING, char_start=0, char_end=1, text="x")
    assert drew_from(answer) == MEETING
    answer.abstained = True
    assert drew_from(answer) is None  # a refused answer moves no focus


@pytest.mark.slow
def test_the_model_answers_a_follow_up_from_the_document_the_previous_answer_drew_from(tmp_path) -> None:
    qa = LongDocQA(index_dir=tmp_path, max_new_tokens=24)
    qa.ingest([ROOT / "sample_docs" / EDIETS, CONTRACTS / ABILITY])
    chat = qa.chat()
    first = chat.ask("Which state's law governs the agreement?")  # no document named: the library answers
    assert not first.abstained and first.searched.doc is None
    source = drew_from(first)
    second = chat.ask("How can it be terminated?")
    assert second.searched.doc == source and docs_of(second) == {source}
    assert second.answer and second.mode in ("rag", "full_document")
