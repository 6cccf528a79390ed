"""Evidence sentences are located exactly in their documents and chosen for the question."""

import pytest

from app.answer import Passage
from app.conversation import naming_words
from app.evidence import score_sentences, select_evidence, sentences_with_offsets
from app.quote import (
    ANSWER_TYPE_BONUS,
    answer_type_bonus,
    dates,
    defined_term_bonus,
    document_term_bonus,
    find_quote,
    verb_date_bonus,
)
from app.settings import EMBEDDED_EMBEDDER
from index.embedder import Embedder

DOC = (
    "ARTICLE 7. MISCELLANEOUS\n7.1 Notices. All notices shall be in writing and sent to the addresses above.\n"
    "7.2 Governing Law. This Agreement shall be governed by the laws of the State of New York, U.S.A. without "
    "regard to its conflict of laws rules. 7.3 Counterparts. This Agreement may be signed in counterparts."
)


def passage(start: int, end: int, rank: int = 1) -> Passage:
    return Passage(rank=rank, score=0.5, doc="msa.txt", doc_id="x", char_start=start, char_end=end, text=DOC[start:end])


def test_sentence_offsets_slice_back_to_the_sentence():
    start = DOC.index("7.1")
    sentences = sentences_with_offsets(passage(start, len(DOC)))
    assert len(sentences) == 3  # clause headings like "7.1 Notices." are too short to be evidence
    for s, e, text in sentences:
        assert DOC[s:e] == text
    assert any(text.startswith("This Agreement shall be governed") and text.endswith("rules.")
               for _, _, text in sentences)  # "7.2" and "U.S.A." do not end a sentence


@pytest.fixture(scope="module")
def embedder():
    return Embedder.load(EMBEDDED_EMBEDDER)


def whole(doc: str, text: str, rank: int = 1) -> Passage:
    """A passage holding a whole short document."""
    return Passage(rank=rank, score=0.4, doc=doc, doc_id=doc, char_start=0, char_end=len(text), text=text)


def quote_for(embedder, question: str, passages: list[Passage]):
    """The quote for `question` before any answer is generated."""
    return find_quote(score_sentences(embedder, question, "", passages), question, "")


def test_evidence_is_the_sentence_that_answers(embedder):
    passages = [passage(0, DOC.index("7.2")), passage(DOC.index("7.2"), len(DOC), rank=2)]
    evidence = select_evidence(score_sentences(embedder, "Which law governs the agreement?", "New York law [2].", passages))
    best = evidence[0]
    assert "governed by the laws of the State of New York" in best.text
    assert DOC[best.char_start:best.char_end] == best.text


def test_quote_is_the_shortest_clause_holding_the_answers_terms_and_slices_back_exactly(embedder):
    text = ("12. Notices. Notices go to the addresses above. 13. Governing Law. This Agreement shall be governed by "
            "the laws of the State of New York; any dispute shall be heard by the courts of Kings County, and each "
            "party waives a jury trial.")
    p = Passage(rank=1, score=0.5, doc="m.txt", doc_id="z", char_start=100, char_end=100 + len(text), text=text)
    document = " " * 100 + text
    question, answer = "Which law governs the agreement?", "The laws of New York govern it."
    quote = find_quote(score_sentences(embedder, question, answer, [p]), question, answer)
    assert document[quote.char_start:quote.char_end] == quote.text
    assert quote.text == "This Agreement shall be governed by the laws of the State of New York"


def test_quote_finds_the_date_the_answer_names_in_another_form(embedder):
    text = ("This Agreement is made on the 22nd day of August 2005 by Skype and Online BVI. "
            "The Parties met on March 1, 2004 to discuss the terms of this Agreement.")
    p = Passage(rank=1, score=0.5, doc="a.txt", doc_id="y", char_start=0, char_end=len(text), text=text)
    question = "On what date was the agreement made?"
    quote = find_quote(score_sentences(embedder, question, "It was made on 8/22/05.", [p]), question,
                       "It was made on 8/22/05.")
    assert "22nd day of August 2005" in quote.text and "March" not in quote.text
    assert dates("the 22nd day of August 2005, 8/22/05 and May 22, 2000") == ["8/22/05", "5/22/00", "8/22/05"]


def test_a_title_under_an_exhibit_label_is_the_title_not_the_label(embedder):
    text = ("Exhibit 10.4 Confidential Treatment Requested   SOFTWARE LICENSE AND MAINTENANCE AGREEMENT This Agreement "
            "is made on May 1, 2000 between Garman Routing Systems, Inc. and Sparkling Spring Water Group Limited.")
    quote = quote_for(embedder, "What is the name or title of this agreement?", [whole("s.txt", text)])
    assert quote.text == "SOFTWARE LICENSE AND MAINTENANCE AGREEMENT"
    assert text[quote.char_start:quote.char_end] == quote.text


def test_the_parties_are_quoted_from_the_sentence_that_names_them_between_company_suffixes(embedder):
    text = ("Each party shall keep the Confidential Information of the other party secret. This Agreement is made by "
            "and between RMF Empire, Inc. (\"WCC\") and Bosch International, LLC (\"Bosch\"). Either party may "
            "assign this Agreement to an affiliate of the party.")
    quote = quote_for(embedder, "Who are the parties to this agreement?", [whole("b.txt", text)])
    assert quote.text.startswith("This Agreement is made by and between RMF Empire, Inc.")
    assert "Bosch International" in quote.text


def test_a_question_naming_a_document_is_quoted_from_that_document(embedder):
    filler = " Notices shall be sent to the addresses above. Each party shall pay its own costs and expenses."
    texts = {"sandridge_operations_agreement.docx": "This Agreement shall be governed by the laws of the State of "
                                                    "Texas." + filler,
             "ediets_co-branding_agreement.txt": "This Agreement shall be governed by California law." + filler}
    passages = [whole(doc, t, rank=i + 1) for i, (doc, t) in enumerate(texts.items())]
    quote = quote_for(embedder, "Which state's law governs the co-branding agreement?", passages)
    assert quote.doc == "ediets_co-branding_agreement.txt" and "California" in quote.text


def test_the_words_naming_the_document_do_not_make_a_sentence_the_answer(embedder):
    """'the services agreement' names the document: a recital defining "Services" is not where the parties are."""
    text = ("RECITALS A. Recipient wishes to engage the Provider to provide certain services and resources (the "
            "\"Services\") and Provider desires to provide the Services. This Agreement is entered into by and between "
            "Ability Computer & Software Industries Ltd (the \"Recipient\") and Telcostar Pte, Ltd. (the \"Provider\").")
    passages = [whole("ABILITYINC_06_15_2020-EX-4.25-SERVICES AGREEMENT.txt", text)]
    quote = quote_for(embedder, "Who are the parties to the services agreement?", passages)
    assert quote.text.startswith("This Agreement is entered into by and between Ability")
    assert naming_words("Who are the parties to the services agreement?") == "services"
    assert naming_words("What did the team decide about the remote control?") == ""


def test_when_a_term_ends_is_quoted_from_the_sentence_saying_how_long_it_lasts(embedder):
    text = ("This Agreement shall automatically renew for successive terms of twelve (12) months at the end of the "
            "Initial Term unless either party gives notice. This Agreement shall become effective on the Effective "
            "Date and shall remain in full force and effect for a period of two (2) years.")
    quote = quote_for(embedder, "When does the initial term of the agreement expire?", [whole("t.txt", text)])
    assert "two (2) years" in quote.text and "renew" not in quote.text


def test_the_parties_are_quoted_from_where_they_are_named_not_where_the_parties_are_mentioned(embedder):
    text = ("This Agreement constitutes the entire agreement between the parties and supersedes all prior agreements "
            "between them. This Sponsorship Agreement is entered into effective January 1, 2010 by Stallings Capital "
            "Group Consultants, Ltd. (\"Racing\") and GAINSCO, INC. (\"Sponsor\").")
    quote = quote_for(embedder, "Who are the parties to this agreement?", [whole("r.txt", text)])
    assert "Stallings Capital" in quote.text and "entire agreement" not in quote.text


def test_a_date_the_question_names_is_quoted_from_where_it_is_defined_not_where_it_is_used(embedder):
    text = ("This Co-Branding Agreement is made as of May 22, 2000 (the \"Effective Date\") by Women.com Networks, Inc. "
            "and eDiets.com, Inc. Notices shall be sent to the addresses above. Each party shall pay its own costs. "
            "Women.com shall host the co-branded pages. eDiets shall supply the diet content. Fees are due monthly. "
            "This Agreement will become effective as of the Effective Date and will remain effective until "
            "terminated.")
    question = "On what date does the agreement become effective?"
    quote = quote_for(embedder, question, [whole("w.txt", text)])
    assert "May 22, 2000" in quote.text
    defining, using = text.split(" Notices")[0], text[text.index("This Agreement will"):]
    assert defined_term_bonus(question, defining) > 0 == defined_term_bonus(question, using)
    assert defined_term_bonus("When does the initial term expire?", 'for three years (the "Initial Term").') > 0
    assert defined_term_bonus("When does the initial term expire?", 'the "Renewal Term" means one year') == 0


def test_a_date_left_blank_in_the_filing_still_counts_as_the_date_by_its_year(embedder):
    text = ("This Trademark License Agreement is made and entered into as of the [ ] day of [ ], 2020 by Arconic Inc. "
            "and Arconic Rolled Products Corp. No waiver shall be binding unless made in writing and signed by the "
            "parties.")
    quote = quote_for(embedder, "On what date was the agreement made or signed?", [whole("a.txt", text)])
    assert "[ ], 2020" in quote.text


def test_the_date_quoted_is_the_date_of_what_the_question_asks(embedder):
    text = ("SPONSORSHIP AGREEMENT\nThe Sponsor has sponsored racing teams in professional races from 2005 through "
            "2008 and wishes to continue. This Sponsorship Agreement is entered into effective January 1,2010 by and "
            "between Stallings Racing, Ltd. and Sponsor, Inc. The term of this Agreement shall commence on the date "
            "hereof and shall continue through November 30, 2011.")
    quote = quote_for(embedder, "On what date was the agreement made or signed?", [whole("s.txt", text)])
    assert "January 1,2010" in quote.text and dates(quote.text) == ["1/1/10"]  # "1,2010": no space, still a date
    assert verb_date_bonus("On what date was the agreement made or signed?",
                           "The Sponsor sponsored our racing teams in the race held on March 3, 2008.") == 0
    assert verb_date_bonus("When does the term expire?", "This Agreement shall expire on June 21, 2000.") > 0
    assert verb_date_bonus("When was it signed?", "Dated: September 28, 2018") > 0  # words, not their punctuation
    assert verb_date_bonus("When does the term expire?", "The term commences on the date hereof and continues "
                                                         "through June 21, 2000.") == 0  # "date" frames the question


@pytest.mark.parametrize("sentence", [
    "Unless earlier terminated in accordance with this paragraph 7, this Agreement shall continue indefinitely.",
    "The license shall remain in effect perpetually as long as fees are paid.",
    "The Contract is valid for 5 years, beginning from and ended on .",
    "This Agreement shall terminate upon the earliest to occur of the events below.",
])
def test_a_sentence_saying_how_long_the_agreement_lasts_answers_when_it_ends(sentence):
    question = "When does the initial term of the agreement expire?"
    assert answer_type_bonus(question, sentence) >= ANSWER_TYPE_BONUS
    assert answer_type_bonus(question, "Either party may terminate this Agreement for convenience.") == 0


def test_the_law_that_governs_is_quoted_from_the_clause_naming_it_not_a_clause_mentioning_laws(embedder):
    text = ("11. Confidential Information. Such Confidential Information shall be governed by the terms of this "
            "Section 11, and each party shall comply with all applicable laws and regulations in its use. "
            "12. Miscellaneous. This Agreement shall be interpreted and enforced in accordance with the laws of the "
            "State of California, without regard to its conflict of law provisions.")
    quote = quote_for(embedder, "Which state or country's law governs the contract?", [whole("e.txt", text)])
    assert "State of California" in quote.text and "Confidential" not in quote.text
    assert answer_type_bonus("Which law governs the agreement?", "The laws of Delaware shall govern it.") > 0
    assert answer_type_bonus("Which law governs the agreement?", "Each party shall obey all applicable laws.") == 0


def test_when_the_agreement_ends_is_quoted_from_a_sentence_about_the_agreement_itself(embedder):
    text = ("Either party may terminate on ninety (90) days' notice. Such termination shall become effective as of "
            "November 1, 2007. 12.1 This contract shall be effective as of November 1, 2002, and shall remain in "
            "force and effect until October 31, 2012.")
    question = "When does the initial term of the agreement expire?"
    quote = quote_for(embedder, question, [whole("g.txt", text)])
    assert "October 31, 2012" in quote.text
    assert document_term_bonus(question, "This Agreement shall continue until terminated by either party.") > 0
    assert document_term_bonus(question, "Such termination shall become effective as of November 1, 2007.") == 0
    assert document_term_bonus("Who are the parties to this agreement?", "This Agreement shall continue.") == 0


def test_when_before_a_gerund_asks_what_was_said_not_a_date():
    dated = "On 12 March 2005 the team met again."
    assert answer_type_bonus("What did the team decide when discussing the remote's case?", dated) == 0
    assert answer_type_bonus("When did the team meet again?", dated) > 0


def test_a_heading_is_quoted_with_the_sentence_under_it(embedder):
    text = ("4.7 Each party shall bear its own costs.\nNon-Solicitation of Employees\n4.8 This Agreement bars either "
            "party from hiring any employee of the other party during the term.")
    question = "Is there a non-solicitation of employees clause?"
    quote = quote_for(embedder, question, [whole("g.txt", text)])
    assert quote.text.startswith("Non-Solicitation of Employees") and "hiring any employee" in quote.text
    assert text[quote.char_start:quote.char_end] == quote.text
    # the sentence under it opens the next retrieved passage: that sentence alone, exact in the document
    cut = text.index("4.8")
    first = Passage(rank=1, score=0.5, doc="g.txt", doc_id="g", char_start=0, char_end=cut, text=text[:cut])
    second = Passage(rank=2, score=0.4, doc="g.txt", doc_id="g", char_start=cut, char_end=len(text), text=text[cut:])
    quote = quote_for(embedder, question, [first, second])
    assert quote.text.startswith("4.8 This Agreement") and text[quote.char_start:quote.char_end] == quote.text
