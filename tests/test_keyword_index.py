"""The incremental keyword index scores exactly as a bm25s index rebuilt over the same live documents would.

The reference is what the store does today: bm25s.BM25() over every chunk in store order, the query's tokens
kept if bm25s knows them, `get_scores`, chunks scoring > 0 ranked by a stable argsort. Documents are runs of
real paragraphs from the sample contract and meeting transcript.
"""

import re
from pathlib import Path

import bm25s
import numpy as np
import pytest
import Stemmer

from index.keyword import STOPWORDS, TOKEN_PATTERN, KeywordIndex

SAMPLES = Path(__file__).resolve().parents[1] / "sample_docs"
QUERIES = [
    "What is the termination fee payable by eDiets?",
    "Who hosts the co-branded site and who pays for it?",
    "remote control buttons, battery and LCD screen design",
    "confidentiality and exclusivity obligations",
    "payment payment terms",  # a repeated token counts twice in bm25s
    "What did the marketing expert say about fashion and trendy colours?",
]

Ranking = list[tuple[str, int, float]]


def paragraphs(name: str) -> list[str]:
    text = (SAMPLES / name).read_text(encoding="utf-8-sig")
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


@pytest.fixture(scope="module")
def documents() -> dict[str, list[str]]:
    """Twelve documents of consecutive paragraphs: six from the contract, six from the meeting."""
    docs = {}
    for source in ("ediets_co-branding_agreement.txt", "ami_remote_control_design_meeting.txt"):
        paras = paragraphs(source)
        size = -(-len(paras) // 6)
        for i in range(6):
            docs[f"{source[:4]}-{i}"] = paras[i * size:(i + 1) * size]
    assert sum(len(p) for p in docs.values()) > 200
    return docs


def bm25s_ranking(docs: dict[str, list[str]], query: str, key: str | None = None) -> Ranking:
    """Every chunk bm25s scores above zero, best first, as (key, position, score): the store's keyword search."""
    stemmer = Stemmer.Stemmer("english")
    places = [(k, i) for k, texts in docs.items() for i in range(len(texts))]
    corpus = bm25s.tokenize([t for texts in docs.values() for t in texts], stopwords=STOPWORDS, stemmer=stemmer,
                            token_pattern=TOKEN_PATTERN, show_progress=False)
    bm25 = bm25s.BM25()
    bm25.index(corpus, show_progress=False)
    tokens = bm25s.tokenize([query], stopwords=STOPWORDS, stemmer=stemmer, token_pattern=TOKEN_PATTERN,
                            return_ids=False, show_progress=False)[0]
    tokens = [t for t in tokens if t in bm25.vocab_dict]
    if not tokens:
        return []
    scores = bm25.get_scores(tokens)
    lo = 0
    hi = len(scores)
    if key is not None:
        lo = next(n for n, place in enumerate(places) if place[0] == key)
        hi = lo + len(docs[key])
    window = scores[lo:hi]
    hits = np.flatnonzero(window > 0)
    best = hits[np.argsort(-window[hits], kind="stable")]
    return [(*places[lo + i], float(window[i])) for i in best]


def assert_same_ranking(got: Ranking, want: Ranking) -> None:
    assert [(k, i) for k, i, _ in got] == [(k, i) for k, i, _ in want]
    np.testing.assert_allclose([s for *_, s in got], [s for *_, s in want], rtol=0, atol=1e-5)


def built(docs: dict[str, list[str]]) -> KeywordIndex:
    index = KeywordIndex()
    for key, texts in docs.items():
        index.add(key, texts)
    return index


def test_scores_match_bm25s_on_real_paragraphs(documents):
    index = built(documents)
    assert len(index) == sum(len(t) for t in documents.values())
    for query in QUERIES:
        want = bm25s_ranking(documents, query)
        assert want, query
        assert_same_ranking(index.search(query, k=10_000), want)
        assert index.search(query, k=10_000) == want  # bit for bit, in fact: the float32 roundings are bm25s's


def test_scores_match_bm25s_after_removals_and_additions(documents):
    index = built(documents)
    live = dict(documents)
    for key in ("edie-2", "ami_-0", "ami_-4"):
        index.remove(key)
        del live[key]
    # New documents, one sharing paragraphs with live ones (exact ties) and one the removed document again.
    extra = {"mixed": documents["edie-2"][::2] + documents["ami_-1"][:5], "edie-2": documents["edie-2"]}
    for key, texts in extra.items():
        index.add(key, texts)
        live[key] = texts
    assert len(index) == sum(len(t) for t in live.values())
    for query in QUERIES:
        assert_same_ranking(index.search(query, k=10_000), bm25s_ranking(live, query))


def test_scores_match_bm25s_after_most_documents_are_removed(documents):
    """Removing more than half the chunks renumbers what is left; scores and order must not notice."""
    index = built(documents)
    live = dict(documents)
    for key in list(documents)[:9]:
        index.remove(key)
        del live[key]
    index.add("again", documents["edie-0"])
    live["again"] = documents["edie-0"]
    for query in QUERIES:
        assert_same_ranking(index.search(query, k=10_000), bm25s_ranking(live, query))


def test_k_keeps_the_best_and_breaks_ties_in_store_order(documents):
    index = built(documents)
    index.add("copy", documents["edie-1"])  # every chunk of edie-1 now ties with its copy, which comes later
    live = {**documents, "copy": documents["edie-1"]}
    for query in QUERIES:
        want = bm25s_ranking(live, query)
        for k in (1, 3, 10):
            assert_same_ranking(index.search(query, k=k), want[:k])


def test_restricting_to_one_document_scores_with_the_whole_library(documents):
    index = built(documents)
    query = "What is the termination fee payable by eDiets?"
    want = bm25s_ranking(documents, query, key="edie-3")
    assert want
    assert_same_ranking(index.search(query, k=10_000, key="edie-3"), want)
    # The same document indexed alone scores differently: the restriction is not a smaller library.
    alone = built({"edie-3": documents["edie-3"]}).search(query, k=10_000)
    assert [s for *_, s in alone] != [s for *_, s in want]
    assert index.search(query, k=2, key="edie-3") == index.search(query, k=10_000, key="edie-3")[:2]


def test_empty_index_stopwords_and_unknown_terms_find_nothing(documents):
    assert KeywordIndex().search("termination fee", k=5) == []
    assert len(KeywordIndex()) == 0
    index = built(documents)
    # Only bm25s's 33 English stopwords (Lucene's list: "what", "who" and "one" are not among them).
    assert index.search("Is it not that they will be there, and then at such?", k=5) == []
    assert index.search("zyzzogeton quuxified", k=5) == []
    assert index.search("", k=5) == []
    assert index.search("termination fee", k=0) == []
    # Unknown terms beside known ones change nothing.
    assert index.search("termination zyzzogeton fee", k=50) == index.search("termination fee", k=50)


def test_a_removed_documents_terms_stop_counting(documents):
    index = built(documents)
    index.remove("ami_-2")
    unique_to_it = "trendy fruit vegetable"
    live = {k: v for k, v in documents.items() if k != "ami_-2"}
    assert_same_ranking(index.search(unique_to_it, k=10_000), bm25s_ranking(live, unique_to_it))
    stems = index.vocabulary_size
    for key in documents:
        if key != "ami_-2":
            index.remove(key)
    assert len(index) == 0
    assert index.vocabulary_size == stems  # stems keep their ids; only their postings go
    assert index.search(unique_to_it, k=5) == []


def test_adding_a_key_twice_or_removing_an_absent_one_is_refused(documents):
    index = built({"a": documents["edie-0"]})
    assert "a" in index and "b" not in index
    with pytest.raises(ValueError, match="already indexed"):
        index.add("a", ["more text"])
    with pytest.raises(KeyError):
        index.remove("b")
    with pytest.raises(KeyError):
        index.search("fee", k=3, key="b")


def test_empty_documents_and_chunks_count_as_bm25s_counts_them(documents):
    """A chunk with no tokens left still counts in N and the average length, as in bm25s."""
    docs = {"empty": [], "stopwords": ["the of and", ""], **{k: documents[k] for k in ("edie-0", "ami_-5")}}
    index = built(docs)
    assert len(index) == len(documents["edie-0"]) + len(documents["ami_-5"]) + 2
    assert index.search("fee", k=3, key="empty") == []
    for query in QUERIES:
        assert_same_ranking(index.search(query, k=10_000), bm25s_ranking(docs, query))


def test_a_term_in_many_documents_scores_right_after_many_adds(documents):
    """1,500 documents share terms: their postings grow by many appends, and removals leave holes in them."""
    paras = [p for texts in documents.values() for p in texts]
    docs = {
        f"doc{n}": [f"The supplier shall indemnify the customer against claim {n}.", paras[n % len(paras)]]
        for n in range(1500)
    }
    index = built(docs)
    query = "Must the supplier indemnify the customer for a claim?"
    assert_same_ranking(index.search(query, k=10_000), bm25s_ranking(docs, query))
    for n in range(0, 1500, 3):
        index.remove(f"doc{n}")
        del docs[f"doc{n}"]
    assert_same_ranking(index.search(query, k=10_000), bm25s_ranking(docs, query))
    assert_same_ranking(index.search(query, k=5, key="doc1000"), bm25s_ranking(docs, query, key="doc1000"))
