"""An incremental BM25 keyword index: adding or removing a document costs work in proportion to that document.

Why this is written by hand: bm25s builds an immutable index from a whole corpus. It stores, for every chunk and
term, the finished BM25 weight, with the corpus's idf and average chunk length baked in, so a change anywhere
changes every weight and the only way in is to tokenise and index every chunk again (4.0 s at 52,680 chunks;
benchmarks/bench_keyword.py measures both ways). Here each term's postings hold only raw term frequencies;
the statistics that change with the library (chunk count, each term's document frequency, total length) are
counts kept up to date on add and remove, and idf and length normalisation are applied when a query is scored.

The scores are bm25s's own, bit for bit. bm25s.BM25() defaults to method "lucene", k1=1.5, b=0.75:

    idf(t)    = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))      N: chunks; df(t): chunks holding t
    w(t, c)   = idf(t) * tf / (k1 * ((1 - b) + b * len(c) / avg_len) + tf)
    score(c)  = sum of w(t, c) over the query's tokens, a repeated token counted again

and this module repeats its arithmetic step for step: idf rounded to float32, each weight worked out in float64
then rounded to float32, the sum kept in float32 and added in query-token order. Equal scores break ties alike,
so the order matches a stable argsort over store order (documents in the order added, chunks in order).
(numpy >= 2 is assumed: under its promotion rules bm25s works the weight out in float64, as done here.)

Tokenisation is bm25s.tokenize's with llama-index BM25Retriever's settings: lower-case, the token pattern
below, English stopwords, PyStemmer's English stemmer. Callers pass the text to index (the store joins a chunk's
section title to its text first).

Not thread-safe by itself: `add` and `remove` replace and change arrays that `search` reads. The caller (the
store) holds its lock around every call.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import bm25s
import numpy as np
import Stemmer

from ingest.types import Chunk

logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its logger to DEBUG on import

TOKEN_PATTERN = r"(?u)\b\w\w+\b"
STOPWORDS = "en"
K1 = 1.5  # bm25s.BM25() defaults
B = 0.75


@dataclass
class _Document:
    """Where one document's chunks are, and what it adds to the library's statistics (so removing it is cheap)."""

    first: int  # chunk id of its first chunk; its chunks are first .. first + count - 1
    count: int
    length: int  # tokens in all its chunks
    terms: np.ndarray  # int32 term ids that occur in it, ascending
    chunks_with_term: np.ndarray  # int32, for each of `terms` the number of its chunks holding it (its part of df)


class KeywordIndex:
    """BM25 over the chunks of many documents, keyed by a document key, with cheap add and remove.

    Chunk ids count up as documents are added, so id order is store order. Each term keeps its postings
    (chunk ids ascending, term frequencies) in one growable int32 array of shape (2, capacity): appending a
    document writes to the end of each of its terms' arrays (capacity grows geometrically, so amortised O(1)),
    and a search reads each query term's postings as one slice, with nothing to merge. Removing a document marks
    its chunks dead and subtracts its counts; dead postings are skipped when scoring and dropped, with the ids
    renumbered, once dead chunks outnumber live ones.

    Postings are appended in place rather than kept as one small array per document and term, merged when a
    query reads them: terms no query asks about would never be merged, leaving about 850 small arrays (some
    100 bytes of overhead each) per 40-chunk document of the benchmark library.

    Example:
        >>> index = KeywordIndex()
        >>> index.add("msa", ["Governing law. This agreement is governed by the laws of Delaware.",
        ...                   "Fees are due within 30 days."])
        >>> index.add("nda", ["Each party keeps the other party's information confidential."])
        >>> index.search("Which law governs?", k=3)
        [('msa', 0, 1.1209477186203003)]
    """

    def __init__(self) -> None:
        self._stemmer = Stemmer.Stemmer("english")
        self._docs: dict[str, _Document] = {}
        self._owner_keys: list[str | None] = []  # owner number -> document key (None once removed)
        # Per chunk id (dead ones too, until compaction); arrays grow by doubling, the first `_next_chunk` in use.
        self._next_chunk = 0
        self._lengths = np.zeros(0, dtype=np.int32)  # tokens in each chunk
        self._alive = np.zeros(0, dtype=bool)
        self._owners = np.zeros(0, dtype=np.int32)  # index into `_owner_keys`
        # Per term id: its stem, postings, and df over live chunks.
        self._vocab: dict[str, int] = {}
        # (2, capacity) int32: row 0 chunk ids, row 1 term frequencies. int32 leaves room for 2 billion chunk ids,
        # and compaction renumbers them from 0.
        self._postings: list[np.ndarray] = []
        self._sizes = np.zeros(0, dtype=np.int64)  # postings in use, dead ones included
        self._df = np.zeros(0, dtype=np.int64)
        # Library statistics over live chunks.
        self._live_chunks = 0
        self._dead_chunks = 0
        self._total_length = 0

    def __len__(self) -> int:
        """The number of live chunks."""
        return self._live_chunks

    def __contains__(self, key: object) -> bool:
        return key in self._docs

    @property
    def vocabulary_size(self) -> int:
        """Distinct stems seen, those only removed documents held included (they keep their id)."""
        return len(self._vocab)

    def add(self, key: str, texts: list[str]) -> None:
        """Index one document's chunks, in order, after every document already here.

        Raises ValueError if `key` is already indexed: remove it first (a replaced document then comes last,
        as it does in the store's manifest).
        """
        if key in self._docs:
            raise ValueError(f"document {key!r} is already indexed; remove it first")
        count, first = len(texts), self._next_chunk
        lengths, terms, positions, tfs = self._count_terms(texts)
        starts = np.flatnonzero(np.diff(terms, prepend=-1))  # where each term's run of chunks begins
        ends = np.append(starts[1:], len(terms))
        doc_terms = terms[starts]
        chunks_with_term = ends - starts

        self._reserve_chunks(first + count)
        self._lengths[first:first + count] = lengths
        self._alive[first:first + count] = True
        self._owners[first:first + count] = len(self._owner_keys)
        self._owner_keys.append(key)
        self._next_chunk = first + count
        chunk_ids = first + positions
        for term, start, end in zip(doc_terms.tolist(), starts.tolist(), ends.tolist()):
            self._append_postings(term, chunk_ids[start:end], tfs[start:end])
        self._df[doc_terms] += chunks_with_term
        length = int(lengths.sum())
        # int32, not int64: after the postings these records are the largest part of the index.
        self._docs[key] = _Document(first, count, length, doc_terms.astype(np.int32), chunks_with_term.astype(np.int32))
        self._live_chunks += count
        self._total_length += length

    def remove(self, key: str) -> None:
        """Drop a document; its terms stop counting towards every statistic at once. KeyError if absent."""
        doc = self._docs.pop(key)
        self._alive[doc.first:doc.first + doc.count] = False
        if doc.count:
            self._owner_keys[int(self._owners[doc.first])] = None
        self._df[doc.terms] -= doc.chunks_with_term
        self._live_chunks -= doc.count
        self._dead_chunks += doc.count
        self._total_length -= doc.length
        if self._dead_chunks > self._live_chunks:
            self._compact()

    def search(self, query: str, k: int, key: str | None = None) -> list[tuple[str, int, float]]:
        """The k best chunks for `query` as (document key, chunk position in it, score), best first.

        Only chunks sharing a term with the query (score > 0) come back; equal scores keep store order. With
        `key`, only that document's chunks are ranked, still scored with the whole library's statistics (as a
        slice of bm25s's global score vector is). KeyError if `key` is not indexed.
        """
        if key is not None:
            doc = self._docs[key]
            lo, hi = doc.first, doc.first + doc.count
        else:
            lo, hi = 0, self._next_chunk
        if k <= 0 or self._live_chunks == 0 or hi == lo:
            return []
        tokens = stems([query], self._stemmer)[0]
        scores = np.zeros(hi - lo, dtype=np.float32)  # chunk id lo + i scores at i
        weights: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for token in tokens:  # a repeated token adds its weights again, as in bm25s
            term = self._vocab.get(token)
            if term is None or self._df[term] == 0:
                continue  # not in any live chunk: bm25s would have left it out of its vocabulary
            if term not in weights:
                weights[term] = self._weights(term, lo, hi)
            offsets, weight = weights[term]
            scores[offsets] += weight  # offsets are distinct within a term, so this is one float32 add each
        hits = np.flatnonzero(scores > 0)
        if len(hits) > k:
            # Keep every hit scoring at least the k-th best, so ties at the boundary still resolve by store order.
            kth_best = np.partition(scores[hits], len(hits) - k)[len(hits) - k]
            hits = hits[scores[hits] >= kth_best]
        best = hits[np.argsort(-scores[hits], kind="stable")[:k]]
        return [self._locate(lo + int(i), float(scores[i])) for i in best]

    # ---- internals -------------------------------------------------------------------------------------

    def _count_terms(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Tokenise one document's chunks as bm25s does: each chunk's length in tokens, and one row per term and
        chunk holding it (term id, chunk position, term frequency), sorted by term, then chunk. New stems get ids."""
        tokenized = bm25s.tokenize(
            texts, stopwords=STOPWORDS, stemmer=self._stemmer, token_pattern=TOKEN_PATTERN, show_progress=False,
        )
        local_to_term = np.array([self._term_id(stem) for stem in _by_local_id(tokenized.vocab)], dtype=np.int64)
        lengths = np.array([len(ids) for ids in tokenized.ids], dtype=np.int64)
        local_ids = np.fromiter(itertools.chain.from_iterable(tokenized.ids), dtype=np.int64, count=int(lengths.sum()))
        # One code per token: term id and chunk position in one number, so np.unique sorts and counts both.
        width = max(len(texts), 1)
        codes = local_to_term[local_ids] * width + np.repeat(np.arange(len(texts)), lengths)
        codes, tfs = np.unique(codes, return_counts=True)
        terms, positions = np.divmod(codes, width)
        return lengths, terms, positions, tfs

    def _weights(self, term: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """One term's float32 BM25 weight for each live chunk in ids [lo, hi) holding it, with offsets from lo."""
        block = self._postings[term]
        size = int(self._sizes[term])
        ids, tfs = block[0, :size], block[1, :size]
        if lo > 0 or hi < self._next_chunk:
            start, end = np.searchsorted(ids, [lo, hi])
            ids, tfs = ids[start:end], tfs[start:end]
        if self._dead_chunks:
            live = self._alive[ids]
            ids, tfs = ids[live], tfs[live]
        n, df = self._live_chunks, int(self._df[term])
        # bm25s keeps idf in a float32 array, then multiplies it by a float64 term-frequency part.
        idf = float(np.float32(math.log(1 + (n - df + 0.5) / (df + 0.5))))
        avg_length = self._total_length / n  # equals bm25s's np.mean of the lengths: the sum is an exact integer
        tf = tfs.astype(np.float64)
        lengths = self._lengths[ids].astype(np.float64)
        weight = (idf * (tf / (K1 * ((1 - B) + B * lengths / avg_length) + tf))).astype(np.float32)
        return ids - lo, weight

    def _locate(self, chunk_id: int, score: float) -> tuple[str, int, float]:
        key = self._owner_keys[int(self._owners[chunk_id])]
        assert key is not None  # dead chunks never score
        return key, chunk_id - self._docs[key].first, score

    def _term_id(self, stem: str) -> int:
        term = self._vocab.get(stem)
        if term is None:
            term = self._vocab[stem] = len(self._postings)
            self._postings.append(_EMPTY_POSTINGS)
            if term >= len(self._df):
                self._sizes = _grown(self._sizes, term + 1)
                self._df = _grown(self._df, term + 1)
        return term

    def _append_postings(self, term: int, chunk_ids: np.ndarray, tfs: np.ndarray) -> None:
        block = self._postings[term]
        size = int(self._sizes[term])
        end = size + len(chunk_ids)
        if end > block.shape[1]:
            # A quarter more, not double: doubling left ~45% of postings memory unused on the benchmark library,
            # and the extra copying is a few memcpys of the term's postings over its lifetime.
            grown = np.empty((2, max(end, block.shape[1] + block.shape[1] // 4)), dtype=np.int32)
            grown[:, :size] = block[:, :size]
            block = self._postings[term] = grown
        block[0, size:end] = chunk_ids
        block[1, size:end] = tfs
        self._sizes[term] = end

    def _reserve_chunks(self, needed: int) -> None:
        if needed > len(self._lengths):
            self._lengths = _grown(self._lengths, needed)
            self._alive = _grown(self._alive, needed)
            self._owners = _grown(self._owners, needed)

    def _compact(self) -> None:
        """Drop dead chunks and their postings, renumbering live chunks 0.. in the same order.

        Costs time in proportion to the whole index, but runs only once dead chunks outnumber live ones, so
        it is paid for by the removals that made it necessary. Terms no live chunk holds keep their id (and
        their stem in the vocabulary) with empty postings.
        """
        alive = self._alive[:self._next_chunk]
        new_ids = np.cumsum(alive) - 1  # the new id of each live chunk
        for term, block in enumerate(self._postings):
            size = int(self._sizes[term])
            if size == 0:
                continue
            ids, tfs = block[0, :size], block[1, :size]
            live = alive[ids]
            kept = int(live.sum())
            if kept == 0:
                self._postings[term] = _EMPTY_POSTINGS
            else:
                compacted = np.empty((2, kept), dtype=np.int32)
                compacted[0] = new_ids[ids[live]]
                compacted[1] = tfs[live]
                self._postings[term] = compacted
            self._sizes[term] = kept
        self._lengths = self._lengths[:self._next_chunk][alive]
        self._owners = self._owners[:self._next_chunk][alive]
        self._alive = np.ones(len(self._lengths), dtype=bool)
        self._next_chunk = len(self._lengths)
        for doc in self._docs.values():
            # An empty document has no chunk to look up; it keeps its place in the order.
            doc.first = int(new_ids[doc.first]) if doc.count else int(alive[:doc.first].sum())
        self._dead_chunks = 0


_EMPTY_POSTINGS = np.zeros((2, 0), dtype=np.int32)  # shared by terms with no postings; never written into


def keyword_text(chunk: Chunk) -> str:
    """What keyword search reads of a chunk, on every backend: the section title joins the text, so a clause
    deep inside "12. Governing Law" is still about governing law."""
    return f"{chunk.section}\n{chunk.text}" if chunk.section else chunk.text


def stems(texts: list[str], stemmer: Stemmer.Stemmer) -> list[list[str]]:
    """Each text's words as BM25 sees them: lower-cased, stop words out, English stems (bm25s.tokenize with
    llama-index BM25Retriever's settings). A Stemmer is not safe to share between threads."""
    return bm25s.tokenize(texts, stopwords=STOPWORDS, stemmer=stemmer, token_pattern=TOKEN_PATTERN,
                          return_ids=False, show_progress=False)


def _by_local_id(vocab: dict[str, int]) -> list[str]:
    """bm25s.tokenize's vocabulary {stem: id}, as a list indexed by id."""
    stems = [""] * len(vocab)
    for stem, local in vocab.items():
        stems[local] = stem
    return stems


def _grown(array: np.ndarray, needed: int) -> np.ndarray:
    """`array` copied into one at least twice as long (and at least `needed`), the new tail zeroed."""
    grown = np.zeros(max(needed, 2 * len(array)), dtype=array.dtype)
    grown[:len(array)] = array
    return grown
