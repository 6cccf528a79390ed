"""The opening-chunk pin: the document's opening is among the passages, without taking the best one's place,
unless it is plainly about something else."""

import pytest

from app import LongDocQA

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
    passages = qa.engine.retrieve("Which state's law governs this agreement?", top_k=5)
    assert "Governing Law" in passages[0].text
    assert passages[1].char_start == 0 and "MASTER SERVICES AGREEMENT" in passages[1].text
    assert [p.rank for p in passages] == [1, 2, 3, 4, 5]
    assert len({(p.doc_id, p.char_start) for p in passages}) == 5


def test_an_opening_retrieved_first_stays_first(qa):
    passages = qa.engine.retrieve("Master Services Agreement between Acme Widgets Corporation and Beta Logistics "
                                  "LLC made on 3 March 2021", top_k=5)
    assert passages[0].char_start == 0
    assert sum(p.char_start == 0 for p in passages) == 1


def test_with_one_passage_the_best_one_is_kept(qa):
    passages = qa.engine.retrieve("Which state's law governs this agreement?", top_k=1)
    assert len(passages) == 1 and "Governing Law" in passages[0].text


def test_an_opening_about_something_else_is_not_pinned(qa):
    question = "Where is dock 12?"
    opening = qa.store.chunks()[0]
    cosine = float(qa.store.similarities(qa.embedder.embed_queries([question])[0], [opening])[0])
    assert cosine < qa.settings.pin_min_similarity
    passages = qa.engine.retrieve(question, top_k=5)
    assert all(p.char_start != 0 for p in passages)
    assert len(passages) == 5 and [p.rank for p in passages] == [1, 2, 3, 4, 5]
