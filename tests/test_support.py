"""The support check marks what the passages do not state: a wrong date or an invented name, sentence by sentence."""

import pytest

from app.answer import Passage
from app.evidence import score_sentences
from app.settings import EMBEDDED_EMBEDDER
from app.support import answer_sentences, check_support, claims
from index.embedder import Embedder

CLAUSE = ("15.3 Governing Law. This Agreement shall be interpreted and enforced in accordance with the laws of the "
          "State of California. 16.1 Term. The initial term of this Agreement expires on June 21, 2000, unless "
          "renewed for successive one (1) year terms.")
PASSAGE = Passage(rank=1, score=0.5, doc="msa.txt", doc_id="x", char_start=40, char_end=40 + len(CLAUSE), text=CLAUSE)


@pytest.fixture(scope="module")
def embedder():
    return Embedder.load(EMBEDDED_EMBEDDER)


def support(embedder, answer, question="q"):
    return check_support(embedder, question, answer, [PASSAGE], score_sentences(embedder, question, answer, [PASSAGE]))


def test_a_sentence_whose_names_and_dates_are_in_the_passages_is_supported_where_they_are(embedder):
    result = support(embedder, "The agreement is governed by the laws of California.")
    assert result.verdict == "supported"
    s = result.sentences[0]
    document = " " * 40 + CLAUSE
    assert "State of California" in document[s.char_start:s.char_end]


def test_a_wrong_date_and_an_invented_law_are_unsupported_with_the_words_missing(embedder):
    result = support(embedder, "The initial term expires on June 21, 2000. It is governed by California's "
                               "General Laws of 1999.")
    assert result.verdict == "partly supported"
    first, second = result.sentences
    assert first.supported and not second.supported
    assert "general" in second.reason and "1999" in second.reason
    wrong = support(embedder, "The initial term expires on June 21, 1999.")
    assert wrong.verdict == "unsupported" and "6/21/99" in wrong.sentences[0].reason


def test_a_sentence_without_names_is_held_to_its_meaning(embedder):
    assert support(embedder, "The initial term of this agreement can be renewed.").verdict == "supported"
    assert support(embedder, "Pets are not allowed on the premises.").verdict == "unsupported"


def test_a_year_of_a_date_in_the_passages_is_in_the_passages(embedder):
    assert support(embedder, "The term ended in 2000.").verdict == "supported"
    assert "2001" in support(embedder, "The term ended in 2001.").sentences[0].reason


def test_a_date_in_another_form_is_the_same_date(embedder):
    assert support(embedder, "It expires on 2000-06-21.").verdict == "supported"
    assert support(embedder, "It expires on 21-June-2001.").verdict == "unsupported"


def test_a_sentence_that_only_restates_the_question_is_unsupported(embedder):
    question = "When does the initial term of the agreement expire?"
    result = support(embedder, "The answer is that the initial term of the agreement expires.", question)
    assert result.verdict == "unsupported" and result.sentences[0].reason == "says nothing the question did not"
    assert support(embedder, "The initial term can be renewed.", question).verdict == "supported"


def test_sentences_and_claims():
    assert answer_sentences("Acme, Inc. pays 7.2 million. Then it ends.") == ["Acme, Inc. pays 7.2 million.",
                                                                              "Then it ends."]
    assert claims("Either party may end it on May 22, 2000 and pay $5,000.") == {"5/22/00", "5000"}


def test_a_clause_number_is_not_a_value_the_passages_state(embedder):
    def check(answer, text):
        passage = Passage(rank=1, score=0.5, doc="msa.txt", doc_id="x", char_start=0, char_end=len(text), text=text)
        return check_support(embedder, "q", answer, [passage], score_sentences(embedder, "q", answer, [passage]))

    text = ("15.2 Jurisdiction and Venue. The courts of Santa Clara County hear any dispute.\n"
            "30 days' written notice ends this Agreement.\n")
    label = check("The law governing the agreement is 15.2.", text)  # the number opening a line labels the clause
    assert label.verdict == "unsupported" and "15.2" in label.sentences[0].reason
    assert check("The notice period is 30 days.", text).verdict == "supported"  # a line may open with a value
    cited = text + "Notice is given as Section 15.2 provides.\n"
    assert check("The law governing the agreement is 15.2.", cited).verdict == "supported"  # a number in the text
