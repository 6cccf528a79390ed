"""The opening-chunk pin: the document's opening is among the passages, without taking the best one's place,
unless it is plainly about something else."""

import pytest

from app import LongDocQA
from app.settings import SettingsError

OPENING = ("MASTER SERVICES AGREEMENT\n\nThis Master Services Agreement is made on 3 March 2021 between Acme Widgets "
           "Corporation, a Delaware corporation, and Beta Logistics LLC, a Texas limited liability company.\n\n")
FILLER = ("{n}. Deliveries. Beta shall deliver shipment batch {n} to the warehouse at dock {n} within five business "
          "days of each purchase order, packed on standard pallets and labelled with the order number.\n\n")
LAW = ("40. Governing Law. This Agreement shall be governed by and construed in accordance with the laws of the "
       "State of New York, without regard to its conflict of laws principles.\n\n")


@pytest.fixture(scope="module")
def qa(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pin")
    doc = folder / "msa.txt"
    doc.write_text(OPENING + "".join(FILLER.format(n=n) for n in range(2, 40)) + LAW, encoding="utf-8")
    qa = LongDocQA(index_dir=folder / "index")
    assert qa.ingest([doc]).ingested
    return qa


def test_the_best_passage_stays_first_and_the_opening_comes_second(qa):
    passages = qa.retrieve("Which state's law governs this agreement?", top_k=5)
    assert "Governing Law" in passages[0].text
    assert passages[1].char_start == 0 and "MASTER SERVICES AGREEMENT" in passages[1].text
    assert [p.rank for p in passages] == [1, 2, 3, 4, 5]
    assert len({(p.doc_id, p.char_start) for p in passages}) == 5


def test_an_opening_retrieved_first_stays_first(qa):
    passages = qa.retrieve("Master Services Agreement between Acme Widgets Corporation and Beta Logistics "
                           "LLC made on 3 March 2021", top_k=5)
    assert passages[0].char_start == 0
    assert sum(p.char_start == 0 for p in passages) == 1


def test_with_one_passage_the_best_one_is_kept(qa):
    passages = qa.retrieve("Which state's law governs this agreement?", top_k=1)
    assert len(passages) == 1 and "Governing Law" in passages[0].text


def test_an_opening_about_something_else_is_not_pinned(qa):
    question = "Where is dock 12?"
    opening = qa.store.chunks()[0]
    cosine = float(qa.store.similarities(qa.embedder.embed_queries([question])[0], [opening])[0])
    assert cosine < qa.settings.pin_min_similarity
    passages = qa.retrieve(question, top_k=5)
    assert all(p.char_start != 0 for p in passages)
    assert len(passages) == 5 and [p.rank for p in passages] == [1, 2, 3, 4, 5]


GREETING = "Project Manager: Good morning everyone, welcome to the kick-off meeting. Let's start.\n"
TURNS = ("Marketing: Our survey of batch {n} users says the remote control should have {n} buttons at most.\n"
         "Industrial Designer: Then the case for batch {n} can be rubber, which costs less to mould.\n")
PROSE = ("Good afternoon and thank you for joining the call.\n"
         + "".join(f"Revenue in region {n} rose {n} percent on higher volumes in the quarter.\n" for n in range(2, 200))
         + "We expect full-year revenue between $1.8 billion and $1.9 billion.\n")


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    """A meeting transcript ("Speaker: words" turns) and a call written as running prose, with no headings."""
    folder = tmp_path_factory.mktemp("talk")
    meeting, call = folder / "meeting.txt", folder / "call.txt"
    meeting.write_text(GREETING + "".join(TURNS.format(n=n) for n in range(2, 120)), encoding="utf-8")
    call.write_text(PROSE, encoding="utf-8")
    qa = LongDocQA(index_dir=folder / "index")
    assert len(qa.ingest([meeting, call]).ingested) == 2
    return qa


@pytest.mark.parametrize("doc, question", [("meeting.txt", "What case material did the designer propose for batch 31?"),
                                           ("call.txt", "What full-year revenue do they expect?")])
def test_talk_keeps_retrieval_order_unless_pinned_always(talk, doc, question):
    def retrieve(pin: str) -> list:
        return [(p.char_start, p.char_end) for p in talk.retrieve(question, doc=doc, top_k=5, pin_opening=pin)]

    never, always = retrieve("never"), retrieve("always")
    assert all(start != 0 for start, _ in never)  # retrieval alone does not bring the greeting
    assert always[1][0] == 0 and always[0] == never[0]  # pinned, it takes the second place
    assert retrieve("auto") == never


def test_a_contract_with_headings_is_pinned_under_auto(qa):
    assert qa.settings.pin_opening == "auto"
    assert qa.retrieve("Which state's law governs this agreement?", top_k=5)[1].char_start == 0


def test_retrieval_settings_change_for_one_call_only(talk):
    question = "What full-year revenue do they expect?"
    assert talk.retrieve(question, doc="call.txt", top_k=5, pin_opening="always")[1].char_start == 0
    assert all(p.char_start != 0 for p in talk.retrieve(question, doc="call.txt", top_k=5))  # `auto` again
    with pytest.raises(SettingsError, match="pin_opening='sometimes' is not one of"):
        talk.retrieve(question, pin_opening="sometimes")
