"""The query engine: retrieve, reorder, fit the window, generate, and say where every passage sat.

One question runs straight through `stream`: retrieval over the index (dense or hybrid), abstention when
nothing is relevant enough (`app.abstain`), the choice between reading the retrieved passages (`rag`), reading
the document whole (`full_document`) and reading it section by section (`sections`, `app.sections`), prompt
assembly within the effective window, streamed generation, and the evidence, quote and support check located
in their documents. A conversation's follow-up arrives already resolved (`app.conversation`): the engine
searches what it is given and records it in the answer's `searched`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from app.abstain import relevance, says_not_stated
from app.answer import Answer, Passage, Search
from app.conversation import unnamed
from app.documents import find_document
from app.errors import EmptyIndex, LongDocError, require_question
from app.evidence import score_sentences, select_evidence
from app.llm.generator import Generator, PrefixCache
from app.passage_context import with_context
from app.prompt import PromptBuilder, PromptPlan, strip_markup
from app.quote import find_quote
from app.reorder import REORDERERS
from app.sections import SectionProgress, asks_summary, asks_whole_document, combine_plan, read_sections
from app.settings import Settings
from app.support import check_support
from index.base import DocumentInfo, VectorStore
from index.embedder import Embedder
from index.rerank import Reranker, RerankerError
from index.retrieval import RetrievedChunk, retrieve
from ingest.layout import TextLayout
from ingest.types import Chunk

log = logging.getLogger(__name__)

ABSTAIN_ANSWER = ("The documents do not answer this question: no passage is relevant enough "
                  "(relevance {score:.2f}, below {threshold:.2f}).")
NO_SECTION_ANSWER = ("No section of {doc} speaks to this question: the most relevant scores {score:.2f}, below "
                     "{threshold:.2f}.")


def opening_answers(info: DocumentInfo | None, chunks: list[Chunk]) -> bool:
    """Whether a document's opening tends to answer questions, read from its structure: it has headings (a
    contract's clauses, a report's sections) and is not a transcript.

    A contract's preamble names it, its parties and its date; a meeting or an earnings call opens with
    greetings and the operator. With the pin, dev recall@5 on meetings is 0.802 against 0.831 without it, and
    on earnings-call cloze questions 0.967 against 0.984; on contracts the pin is worth 0.945 against 0.557 on
    short-answer questions (`longdoc eval recall --pin-opening always|never`, docs/results/retrieval.md).
    """
    transcript = info is not None and info.doc_type == "transcript"
    return not transcript and any(c.section for c in chunks)


def to_passage(rank: int, hit: RetrievedChunk) -> Passage:
    chunk = hit.chunk
    return Passage(
        rank=rank,
        score=round(float(hit.similarity), 4),
        doc=chunk.doc_name,
        doc_id=chunk.doc_id,
        char_start=chunk.char_start,
        char_end=chunk.char_end,
        text=chunk.text,
        page=chunk.pages[0] if chunk.pages else None,
        section=chunk.section,
        speakers=list(chunk.speakers),
        n_tokens=chunk.n_tokens,
        boxes=TextLayout.decode(chunk.layout).boxes(chunk.char_start, chunk.char_end),
        layout=chunk.layout,
    )


@dataclass
class DocumentProgress:
    """Where reading one document whole stands (mode `full_document`): `done` of `total` prompt tokens read.
    On a CPU a 16K-token document takes a couple of minutes; a bar shows this meanwhile."""

    done: int
    total: int
    doc: str


ReadingProgress = SectionProgress | DocumentProgress  # what a question's `on_progress` is called with


class QueryEngine:
    """Answers questions over one index with one generator.

    Args:
        settings: defaults for top_k, reorder, mode, relevance threshold and generation.
        store, embedder: the index and the model that embedded it.
        load_generator: builds the generator on first use, so listing or ingesting never loads it.

    Questions may come from several threads (the UI's sessions, a caller's pool). Retrieval runs at once; the
    generation step admits one question at a time with the in-process model, which is not safe to share, and
    `generator_concurrency` at a time with a server, which batches them itself.
    """

    def __init__(
        self,
        settings: Settings,
        store: VectorStore,
        embedder: Embedder,
        load_generator: Callable[[], Generator],
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self._load_generator = load_generator
        self._generator: Generator | None = None
        self._reranker: Reranker | None = None
        self._loading = threading.Lock()
        self._slots = threading.BoundedSemaphore(settings.generator_concurrency if settings.generator_is_server else 1)
        self._prefix: tuple[tuple[int, ...], PrefixCache] | None = None  # the last document's prefix and KV cache
        self._doc_tokens: dict[str, int] = {}  # generator tokens of each document read whole, by doc_id

    @property
    def generator(self) -> Generator:
        with self._loading:
            if self._generator is None:
                self._generator = self._load_generator()
        return self._generator

    def _load_reranker(self, name: str) -> Reranker | None:
        """The cross-encoder `name` (a `reranker` setting), loaded on first use; None when reranking is off."""
        if not name:
            return None
        with self._loading:
            if self._reranker is None or self._reranker.name != name:
                try:
                    self._reranker = Reranker.load(name)
                except RerankerError as exc:
                    raise LongDocError(str(exc)) from None
        return self._reranker

    def resolve_doc(self, doc: str | None) -> DocumentInfo | None:
        return None if doc is None else find_document(self.store, doc)

    def retrieve(self, question: str, doc: str | None = None, top_k: int | None = None,
                 settings: Settings | None = None) -> list[Passage]:
        """The top-k passages, best first (by the reranker when there is one), each with its rank and cosine
        similarity to the question. `settings`: other retrieval settings for this call (default: the engine's).

        Searching one document, the words of the question that name it are left out of the search
        (`app.conversation.unnamed`): "the eDiets co-branding agreement" chose the document, and inside it those
        words match the passages that mention eDiets, not the clause asked about."""
        info = self.resolve_doc(doc)
        return self._retrieve(unnamed(question, info.name) if info else question, info, top_k,
                              settings or self.settings)

    def _retrieve(self, query: str, info: DocumentInfo | None, top_k: int | None, s: Settings) -> list[Passage]:
        """`retrieve` for a document already found and a query as it is searched (its naming words left out)."""
        k = top_k or s.top_k
        wanted = k
        if s.context_chunks:  # passages a better one takes as context are left out: enough must remain for k
            k = k * (2 * s.context_chunks + 1)
        reranker = self._load_reranker(s.reranker)
        hits = retrieve(
            self.store, self.embedder, query, k=max(k, s.rerank_candidates) if reranker else k,
            method=s.retriever, doc_id=info.doc_id if info else None,
        )
        if reranker:
            hits = reranker.rerank(query, hits, k)
        passages = [to_passage(i + 1, hit) for i, hit in enumerate(hits)]
        if s.pin_opening != "never" and passages:
            query_vec = self.embedder.embed_queries([query])[0]  # remembered from retrieval: no second run
            passages = self._pin_opening(passages, query_vec, k, s)
        return with_context(passages, s.context_chunks, wanted, self.store.chunks, self.store.document_text)

    def _pin_opening(self, passages: list[Passage], query_vec: np.ndarray, k: int, s: Settings) -> list[Passage]:
        """Keep the best document's opening chunk among the k, at rank 2 unless retrieval already ranked it first,
        when it is not plainly about something else (cosine below `pin_min_similarity`) and, under
        `pin_opening = "auto"`, when the document is of a kind whose opening answers (`opening_answers`).

        A document's opening names it, its parties and its date, which questions ask about constantly and
        which a sentence embedder matches poorly (recall@5 on short-answer CUAD: 0.945 with the pin, 0.557
        without; benchmarks/bench_retrieval.py). Rank 2, not 1: the best retrieved passage keeps the first
        place, and with `important_first_last` the opening closes the context, next to the question. Pinned at
        rank 1 it pushed a planted needle out of first place in 16 of 20 NIAH cells.
        """
        doc_id = passages[0].doc_id
        chunks = self.store.chunks(doc_id)
        if s.pin_opening == "auto" and not opening_answers(self.store.get(doc_id), chunks):
            return passages
        opening = chunks[0]
        rest = [p for p in passages if not (p.doc_id == doc_id and p.char_start == opening.char_start)]
        if len(rest) == len(passages):
            similarity = float(self.store.similarities(query_vec, [opening])[0])
            if similarity < s.pin_min_similarity:
                return passages
            hit = RetrievedChunk(opening, score=similarity, similarity=similarity, fused=None,
                                 dense_rank=None, keyword_rank=None)
            pinned = to_passage(2, hit)
        else:
            pinned = next(p for p in passages if p not in rest)
        ordered = ([pinned, *rest] if passages[0] is pinned else [rest[0], pinned, *rest[1:]])[:k]
        for rank, passage in enumerate(ordered, start=1):
            passage.rank = rank
        return ordered

    def stream(
        self,
        question: str,
        *,
        id: str | None = None,
        doc: str | None = None,
        top_k: int | None = None,
        reorder: str | None = None,
        mode: str | None = None,
        context_chunks: int | None = None,
        search: Search | None = None,
        on_progress: Callable[[ReadingProgress], None] | None = None,
    ) -> Iterator[str | Answer]:
        """Yield the answer's text pieces as they are generated, then the finished `Answer`.

        Args:
            top_k, reorder, mode, context_chunks: the settings of those names, for this question only.
            search: what to search instead of `question` itself, and in which document (a conversation's
                follow-up, resolved by `app.conversation`); recorded in the answer's `searched`.
            on_progress: mode `sections` calls it as it reads the sections (`SectionProgress`), mode
                `full_document` as it reads the document's tokens (`DocumentProgress`; not again for a
                document whose reading an earlier question already keeps).
        """
        if search is not None and doc is not None and doc != search.doc:
            raise LongDocError("give the document either as doc or in search, not both")
        search = search or Search(question=question, doc=doc)
        text, doc = search.question, search.doc
        given = {k: v for k, v in (("top_k", top_k), ("reorder", reorder), ("mode", mode),
                                   ("context_chunks", context_chunks)) if v is not None}
        call = self.settings.replace(**given) if given else self.settings  # checked as those settings are
        top_k, reorder, mode = call.top_k, call.reorder, call.mode
        require_question(question)
        require_question(text)
        if len(self.store) == 0:
            raise EmptyIndex("the library is empty: ingest a document first (longdoc ingest PATH)")

        gen = self.generator  # loaded (once) before the clock starts: timings are the answer's, not the model's
        started = time.perf_counter()
        info = self.resolve_doc(doc)  # once a question: each lookup is a query on an engine
        query = unnamed(text, info.name) if info else text
        ranked = self._retrieve(query, info, top_k, call)
        timings = {"retrieve_s": round(time.perf_counter() - started, 4)}
        if query != text:  # what retrieval ran on (`retrieve`)
            search = Search(query, doc, "; ".join(filter(None, (search.why, "the words naming it left out"))))
        answer = Answer(question=question, id=id, model=gen.info, timings=timings, searched=search)
        on_question = score_sentences(self.embedder, text, "", ranked)  # reused by the evidence below
        relevant = relevance(text, ranked, on_question)
        answer.relevance = relevant.to_dict()
        timings["relevance_s"] = round(time.perf_counter() - started - timings["retrieve_s"], 4)

        # a summary is never refused: every document has something to summarise, whatever the words match
        if not ranked or (relevant.score < self.settings.min_relevance and not asks_summary(text)):
            answer.abstained = True
            answer.answer = ABSTAIN_ANSWER.format(score=relevant.score, threshold=self.settings.min_relevance)
            answer.passages = ranked
            answer.mode = "rag" if mode == "auto" else mode
            answer.timings["total_s"] = round(time.perf_counter() - started, 4)
            yield answer.answer
            yield answer
            return

        if info is None and mode != "rag":  # the document a whole-document mode would read
            info = self.store.get(ranked[0].doc_id)
        answer.mode = self._choose_mode(mode, doc is not None, info, ranked, gen, text)
        max_new = self.settings.sections_answer_tokens if answer.mode == "sections" else self.settings.max_new_tokens
        builder = PromptBuilder(gen.tokenizer, gen.context_window, max_new)
        map_prefill_s = map_generate_s = 0.0
        if answer.mode == "sections":
            map_started = time.perf_counter()
            read = self._read_sections(text, info, ranked, on_progress)
            answer.notes = read.notes
            map_prefill_s, map_generate_s = read.prefill_s, read.generate_s
            answer.timings["sections_s"] = round(time.perf_counter() - map_started, 4)
            if not read.sources:
                answer.abstained = True
                answer.answer = NO_SECTION_ANSWER.format(doc=info.name, score=read.best_relevance,
                                                         threshold=self.settings.min_relevance)
                answer.passages = ranked
                answer.timings["total_s"] = round(time.perf_counter() - started, 4)
                yield answer.answer
                yield answer
                return
            plan = combine_plan(builder, text, read)
        elif answer.mode == "full_document":
            plan = builder.build_whole(text, info.name, self.store.document_text(info.doc_id), ranked)
        else:
            plan = builder.build(text, ranked, REORDERERS[reorder])
        answer.passages, answer.dropped = plan.passages, plan.dropped
        answer.prompt_tokens = len(plan.input_ids)

        pieces: list[str] = []
        with self._slots:
            past, prefix_prefill_s = (self._document_prefix(plan, text, info.name, on_progress)
                                      if answer.mode == "full_document" else (None, 0.0))
            for piece in gen.stream(plan.input_ids, max_new_tokens=max_new, past=past):
                pieces.append(piece)
                yield piece
            stats = gen.last_stats
        answer.answer = strip_markup("".join(pieces))  # the streamed pieces keep what the model wrote
        answer.abstained = says_not_stated(answer.answer)  # the model's own "the documents do not say"
        answer.completion_tokens = stats.completion_tokens
        prefill_s = stats.prefill_s + prefix_prefill_s + map_prefill_s
        answer.timings.update(prefill_s=round(prefill_s, 4), generate_s=round(stats.generate_s + map_generate_s, 4))
        evidence_started = time.perf_counter()
        scored = score_sentences(self.embedder, text, answer.answer, answer.passages, embedded=on_question)
        answer.evidence = select_evidence(scored)
        answer.quote = find_quote(scored, search.question, answer.answer)  # without the words naming the document
        answer.support = check_support(self.embedder, text, answer.answer, answer.passages, scored)
        if self.settings.answer_style == "extractive" and answer.quote is not None:
            answer.generated, answer.answer = answer.answer, answer.quote.text
        answer.timings["evidence_s"] = round(time.perf_counter() - evidence_started, 4)
        answer.timings["total_s"] = round(time.perf_counter() - started, 4)
        yield answer

    def ask(self, question: str, **options) -> Answer:
        """Run `stream` to the end and return the `Answer`."""
        *_, answer = self.stream(question, **options)
        return answer

    def _choose_mode(self, mode: str, one_doc: bool, info: DocumentInfo, ranked: list[Passage], gen: Generator,
                     question: str) -> str:
        """`auto` reads one document whole when the question is about one document and it is short enough, or
        when the question asks about all of it (list, every, summarise, compare) and it fits the window; such a
        question about a document longer than the window is answered section by section."""
        if mode != "auto":
            return mode
        if not one_doc and len({p.doc_id for p in ranked}) > 1:
            return "rag"
        if info.doc_id not in self._doc_tokens:  # a document's text never changes under its content hash
            self._doc_tokens[info.doc_id] = gen.count_tokens(self.store.document_text(info.doc_id))
        tokens = self._doc_tokens[info.doc_id]
        if tokens <= self.settings.auto_full_document_max_tokens:
            return "full_document"
        if not asks_whole_document(question):
            return "rag"
        builder = PromptBuilder(gen.tokenizer, gen.context_window, self.settings.max_new_tokens)
        fits = builder.fits_whole(question, info.name, self.store.document_text(info.doc_id))
        return "full_document" if fits else "sections"

    def _read_sections(self, question: str, info: DocumentInfo, ranked: list[Passage],
                       on_progress: Callable[[SectionProgress], None] | None):
        """The map step of mode `sections` (`app.sections.read_sections`), holding the generation slot."""
        s = self.settings
        ranking = self.retrieve(question, doc=info.doc_id, top_k=max(info.chunks, 1),  # the whole document, ranked
                                settings=s.replace(context_chunks=0))  # chunk by chunk: no chunk is another's context
        with self._slots:
            return read_sections(self.generator, self.store, self.embedder, question, info,
                                 sections_tokens=s.sections_tokens, note_tokens=s.section_note_tokens,
                                 min_relevance=s.min_relevance, retrieved=ranked, ranking=ranking,
                                 on_progress=on_progress)

    def generate_text(self, system: str, user: str, max_new_tokens: int) -> str:
        """One short generation outside question answering (a follow-up's rewrite), in the generation slot."""
        gen = self.generator
        with self._slots:
            return gen.generate(gen.chat_ids(system, user), max_new_tokens=max_new_tokens).text.strip()

    def _document_prefix(self, plan: PromptPlan, question: str, doc: str,
                         on_progress: Callable[[ReadingProgress], None] | None) -> tuple[PrefixCache, float]:
        """The cache of the prompt's document part, shared by every question on that document, and the seconds
        spent reading it for this question (0 when an earlier question did).

        The in-process model keeps the KV cache in `self._prefix`; a server keeps it in its own prompt cache.
        """
        gen = self.generator
        split = plan.text.rindex("Question: " + question)
        prefix_len = len(gen.tokenizer(plan.text[:split], add_special_tokens=False)["input_ids"])
        prefix = tuple(plan.input_ids[:prefix_len])
        current = self._prefix
        if current is not None and current[0] == prefix:
            return current[1], 0.0
        report = None if on_progress is None else lambda done, total: on_progress(DocumentProgress(done, total, doc))
        current = self._prefix = (prefix, gen.prefill(list(prefix), on_progress=report))
        return current[1], current[1].prefill_s
