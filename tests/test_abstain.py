"""Abstention: a fact inside unrelated prose is answered, a question the document says nothing about is not."""

import pytest

from app import LongDocQA
from app.abstain import WEIGHTS, Relevance, relevance
from app.answer import Passage
from app.evidence import score_sentences
from app.settings import EMBEDDED_EMBEDDER
from index.embedder import Embedder

# A meeting's small talk, long enough for several chunks, with one fact planted in the middle of a turn.
TURNS = [
    "Project Manager: Okay, shall we start with the remote control design? We had three options on the table.",
    "Industrial Designer: I looked at the rubber casing again, and the users in the survey liked the soft feel.",
    "Marketing: The younger group wants bright colours. Older users care more about big buttons and clear labels.",
    "User Interface: We could put the volume on a scroll wheel, which saves space on the front panel.",
    "Project Manager: Fine. And the budget is still twelve and a half euros per unit, so no LCD screen.",
]
FACT = "Project Manager: Before I forget, the access code for the Larkspur vault is 7391-QX, so write it down."


@pytest.fixture(scope="module")
def qa(tmp_path_factory):
    folder = tmp_path_factory.mktemp("abstain")
    turns = [t for _ in range(8) for t in TURNS]
    turns.insert(len(turns) // 2, FACT)
    (folder / "meeting.txt").write_text("\n\n".join(turns) + "\n", encoding="utf-8")
    qa = LongDocQA(index_dir=folder / "index", max_new_tokens=24)
    assert qa.ingest([folder / "meeting.txt"]).ingested
    return qa


@pytest.mark.slow  # asks: loads the generator
def test_a_fact_in_a_chunk_of_small_talk_is_answered_and_quoted(qa):
    answer = qa.ask("What is the access code for the Larkspur vault?")
    assert not answer.abstained
    assert answer.relevance["sentence"] > answer.relevance["passage"]  # the fact's sentence beats its chunk
    assert "7391-QX" in answer.quote.text


@pytest.mark.slow  # asks: the generator is loaded before relevance is judged
def test_a_question_the_meeting_never_touches_is_abstained_on_with_its_relevance(qa):
    answer = qa.ask("Does the contract cap the supplier's liability for indirect damages?")
    assert answer.abstained
    assert answer.relevance["score"] < qa.settings.min_relevance
    assert f"{answer.relevance['score']:.2f}" in answer.answer
    assert answer.passages  # what was retrieved is still shown


@pytest.fixture(scope="module")
def embedder():
    return Embedder.load(EMBEDDED_EMBEDDER)


def passage(text: str, score: float) -> Passage:
    return Passage(rank=1, score=score, doc="d.txt", doc_id="d", char_start=0, char_end=len(text), text=text)


def test_coverage_counts_the_question_terms_the_passages_hold(embedder):
    text = "Either party may terminate this agreement on ninety days' written notice to the other."
    p = passage(text, 0.5)
    question = "How much notice must be given to terminate the lease?"  # notice, terminat(e), given, lease, much
    r = relevance(question, [p], score_sentences(embedder, question, "", [p]))
    assert r.passage == 0.5
    assert 0.3 < r.coverage < 0.7  # "notice" and "terminate" are there; "lease", "given", "much" are not
    assert r.score == pytest.approx(sum(w * getattr(r, n) for n, w in WEIGHTS.items()))


def test_nothing_retrieved_is_not_relevant(embedder):
    assert relevance("Anything?", [], score_sentences(embedder, "Anything?", "", [])) == Relevance(0.0, 0.0, 0.0)


def test_the_models_own_not_stated_is_recognised():
    from app.abstain import says_not_stated

    assert says_not_stated("The agreement does not specify a renewal term.")
    assert says_not_stated("The passages do not mention a cap on liability.")
    assert not says_not_stated("The agreement renews for successive one-year terms.")
