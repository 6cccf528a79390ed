"""Evidence sentences are located exactly in their documents and chosen for the question."""

import pytest

from app.answer import Passage
from app.evidence import select_evidence, sentences_with_offsets
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


def test_evidence_is_the_sentence_that_answers(embedder):
    passages = [passage(0, DOC.index("7.2")), passage(DOC.index("7.2"), len(DOC), rank=2)]
    evidence = select_evidence(embedder, "Which law governs the agreement?", "New York law [2].", passages)
    best = evidence[0]
    assert "governed by the laws of the State of New York" in best.text
    assert DOC[best.char_start:best.char_end] == best.text
