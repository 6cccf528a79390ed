"""The public Python API: `from app import LongDocQA`. The CLI and the UI are thin shells over it."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from app.answer import Answer, ModelInfo, Passage
from app.batch import Question, answer_all, group_by_doc
from app.conversation import Conversation
from app.documents import content_id, document_key, find_document
from app.errors import LongDocError, require_question
from app.settings import Settings, SettingsError
from index.base import DocumentInfo, LibraryMeta
from index.copy import CopyReport, copy_library
from index.embedder import Embedder
from index.stores import open_store, recorded_meta
from ingest.types import IngestError, ReadOptions

if TYPE_CHECKING:
    from PIL import Image

    from app.adapt import AdaptReport
    from app.engine import QueryEngine, ReadingProgress
    from app.ingestion import IngestReport
    from app.llm.generator import Generator
    from ingest.chunkers import Chunker

log = logging.getLogger(__name__)

ANSWER_OPTIONS = ("top_k", "reorder", "mode", "context_chunks")  # the settings one question may set for itself
MAX_PAGE_DPI = 600  # a US Letter page is 5,100 x 6,600 pixels there; far beyond, one image takes gigabytes


def load_generator(settings: Settings) -> Generator:
    """The model `settings.generator` names: an OpenAI-compatible server for an http(s) URL, else one loaded here."""
    if settings.generator_is_server:
        from app.llm.server_generator import ServerGenerator

        return ServerGenerator.connect(settings.generator_config())
    from app.llm.generator import Generator  # torch and transformers: only when a model is loaded here (cold start)

    return Generator.load(settings.generator_config())


class LongDocQA:
    """Ask questions of long documents, offline.

    Args:
        index_dir: where the index lives (default from settings: ~/.longdoc/index).
        settings: a full `Settings`; otherwise one is loaded from longdoc.toml and LONGDOC_* variables.
        **overrides: any `Settings` field, e.g. `top_k=8`; an unknown name raises, listing the valid ones.

    Example:
        >>> qa = LongDocQA(index_dir="/tmp/longdoc-index")      # or `with LongDocQA(...) as qa:`, closed at the end
        >>> qa.ingest(["sample_docs"]).ingested[0].name          # doctest: +SKIP
        'ami_remote_control_design_meeting.txt'
        >>> a = qa.ask("Which state's law governs the agreement?")  # doctest: +SKIP
        >>> a.passages[0].prompt_zone, a.to_dict()["mode"]        # doctest: +SKIP
        ('start', 'rag')
    """

    def __init__(self, index_dir: str | Path | None = None, settings: Settings | None = None, **overrides: Any):
        if settings is not None and not isinstance(settings, Settings):
            raise SettingsError(f"settings must be an app.settings.Settings, not {type(settings).__name__} (keyword "
                                "arguments such as top_k=8 override single settings)")
        if settings is None:
            settings = Settings.load(index_dir=index_dir, **overrides)
        elif index_dir is not None or overrides:
            settings = settings.replace(**overrides, **({"index_dir": Path(index_dir)} if index_dir else {}))
        self.settings = settings
        # The embedder and the query engine are made on first use (cold start): `docs` and `remove` need neither,
        # and loading the embedder imports torch.
        self._lock = threading.RLock()  # one object serves the UI's sessions: each is made once
        self._embedder: Embedder | None = None
        self._engine: QueryEngine | None = None
        self.store = open_store(settings.vector_store, settings.index_dir, self._library_meta())

    def _library_meta(self) -> LibraryMeta:
        """What the library must have been built with. The vector size is the embedder's; an existing embedded
        library that records this embedder and precision gives it without loading the model (`embedder` checks
        it when the model loads), anything else (a new library, another embedder, an engine) loads it now."""
        s = self.settings
        precision = "int8" if s.embed_int8 else "float32"
        found = recorded_meta(s.vector_store, s.index_dir)
        if (found is not None and found.get("embedder") == s.embedder
                and found.get("precision", "float32") == precision and type(found.get("dim")) is int):
            return LibraryMeta(s.embedder, found["dim"], precision)
        self._embedder = self._load_embedder()
        return LibraryMeta(s.embedder, self._embedder.dim, self._embedder.precision)

    def _load_embedder(self) -> Embedder:
        s = self.settings
        return Embedder.load(s.embedder, batch_size=s.embed_batch_size, int8=s.embed_int8)

    @property
    def embedder(self) -> Embedder:
        """The sentence embedder, loaded on first use; refused, as at opening, if its vectors are not the
        library's (a model directory replaced under the same name)."""
        with self._lock:
            if self._embedder is None:
                embedder = self._load_embedder()
                LibraryMeta(self.settings.embedder, embedder.dim, embedder.precision).check(
                    self.store.meta.to_dict(), self.store.where)
                self._embedder = embedder
            return self._embedder

    @property
    def engine(self) -> QueryEngine:
        """Retrieval and answering over the library; the generator inside loads at the first question."""
        with self._lock:
            if self._engine is None:
                from app.engine import QueryEngine  # imports torch and transformers (cold start)

                settings = self.settings
                self._engine = QueryEngine(settings, self.store, self.embedder, lambda: load_generator(settings))
            return self._engine

    def close(self) -> None:
        """Release the library's connection (an engine's); the object is not used after."""
        self.store.close()

    def __enter__(self) -> "LongDocQA":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ingest(
        self,
        paths: Iterable[str | Path] | str | Path,
        show_progress: bool = False,
        on_file: Callable[[Path, int, int], None] | None = None,
    ) -> IngestReport:
        """Ingest files and folders; unchanged files are skipped, changed ones replaced, bad ones reported.

        A file counts as changed when its content or the chunking (chunker and its settings) differs, or for
        a PDF how it is read (the OCR settings): pages of a PDF without a text layer are read by OCR (`ocr`).
        A file whose bytes are already in the library under another name is stored once: the document answers
        to both names.

        Returns:
            IngestReport with `.ingested`, `.unchanged` (DocumentInfo lists), `.duplicates` ((name, document)
            pairs) and `.skipped` ((file, reason) pairs).
        """
        paths = _paths(paths)
        from app.ingestion import ingest_files  # the loaders and chunkers: llama-index, pypdf (cold start)

        s = self.settings
        return ingest_files(
            paths, self.store, self.embedder, self.chunker(), max_bytes=int(s.max_file_mb * 1024 * 1024),
            show_progress=show_progress, on_file=on_file, options=self.read_options(),
        )

    def read_options(self) -> ReadOptions:
        """How `ingest` reads files, from the settings: OCR of PDF pages without a text layer, the page limit."""
        s = self.settings
        return ReadOptions(ocr=s.ocr, ocr_languages=s.ocr_languages, ocr_dpi=s.ocr_dpi, ocr_timeout_s=s.ocr_timeout_s,
                           ocr_min_confidence=s.ocr_min_confidence, max_pdf_pages=s.max_pdf_pages)

    def chunker(self) -> Chunker:
        """The chunker the settings name, as `ingest` uses it (benchmarks take it from here to measure the same)."""
        from ingest.chunkers import make_chunker, mean_word_vectors  # llama-index (cold start)

        s = self.settings
        return make_chunker(
            s.chunker, self.embedder.tokenizer, min(s.chunk_max_tokens, self.embedder.max_tokens),
            min_tokens=s.chunk_min_tokens, window=s.fixed_chunk_tokens, overlap=s.fixed_chunk_overlap,
            breakpoint_percentile=s.semantic_breakpoint_percentile,
            # topic shifts from static word vectors: 25x cheaper than running the embedder, as good at seams
            embed_fn=mean_word_vectors(self.embedder.tokenizer, self.embedder.word_vectors()),
        )

    def documents(self) -> list[DocumentInfo]:
        """Every ingested document, with its pages, chunks and tokens."""
        return self.store.documents()

    def damaged(self) -> dict[str, str]:
        """Documents whose files in the library's folder cannot be read (lost or spoiled on disk), by name, with
        what is wrong. They are listed but never searched; ingesting the file again or removing it mends it, and
        the other documents are served meanwhile."""
        by_id = {d.doc_id: d.name for d in self.documents()}
        return {by_id[doc_id]: reason for doc_id, reason in self.store.damaged().items()}

    def document_text(self, doc: str) -> str:
        """The extracted text that every `char_start`/`char_end` indexes (a .txt file's exact content)."""
        return self.store.document_text(self._info(doc).doc_id)

    def remove(self, doc: str) -> DocumentInfo:
        """Remove a document (by name, id, or the path of its file) and its chunks from the index.

        A document that answers to several names (the same bytes ingested under each) loses only the name
        given, and goes with its last name; an id or a file's path removes it whatever its names.

        Returns:
            The document as it was before.
        """
        info = self._info(doc)
        named = document_key(doc)
        return self.store.remove(named if named in info.names else info.doc_id)

    def copy_library(self, vector_store: str, index_dir: str | Path | None = None,
                     show_progress: bool = False) -> CopyReport:
        """Copy this library (texts, chunks, vectors, names) to another backend, without embedding again.

        Args:
            vector_store: the target, as the setting takes it ("faiss", "postgresql://...", "milvus://...").
            index_dir: the target folder when it is "faiss".

        Example:
            >>> qa.copy_library("postgresql://longdoc:pw@db:5432/library").copied   # doctest: +SKIP
        """
        target = open_store(vector_store, Path(index_dir or self.settings.index_dir).expanduser(), self.store.meta)
        try:
            return copy_library(self.store, target, show_progress=show_progress)
        finally:
            target.close()

    def retrieve(self, question: str, doc: str | None = None, top_k: int | None = None,
                 **overrides: Any) -> list[Passage]:
        """The passages `ask` would put in the prompt, best first, without generating: each with its document,
        exact offsets, rank and cosine similarity to the question.

        Args:
            doc: restrict retrieval to one ingested document (its name, id, or the path of its file).
            top_k: passages to return (default: the `top_k` setting).
            **overrides: retrieval settings for this call, e.g. `retriever="dense"`, `pin_opening="never"`.
        """
        require_question(question)  # the question, the document and the settings checked before a model loads
        doc = self._checked(doc)
        given = overrides | ({} if top_k is None else {"top_k": top_k})
        call = self.settings.replace(**given) if given else self.settings
        return self.engine.retrieve(question, doc=doc, top_k=call.top_k, settings=call)

    def model_info(self) -> ModelInfo:
        """The generator's name, RoPE scaling, effective window and attention; loads the model if needed."""
        return self.engine.generator.info

    def ask(
        self,
        question: str,
        doc: str | None = None,
        top_k: int | None = None,
        reorder: str | None = None,
        mode: str | None = None,
        context_chunks: int | None = None,
        id: str | None = None,
        on_progress: Callable[[ReadingProgress], None] | None = None,
    ) -> Answer:
        """Answer one question.

        Args:
            doc: restrict retrieval to one ingested document (its name, id, or the path of its file).
            top_k, reorder, mode, context_chunks: override the settings for this call. `mode="sections"` reads the document
                section by section (`app.sections`); `auto` does so for a question about all of a document
                longer than the window ("list every ...", "summarise ...").
            on_progress: called as the sections are read (`SectionProgress`: done, total, the last note), or
                as a document read whole is read (`DocumentProgress`: tokens done, total).

        Returns:
            Answer; `.to_dict()` is the answer JSON of docs/answer.md.
        """
        require_question(question)  # the question, the document and the options checked before a model loads
        doc = self._checked(doc)
        self._check_options(dict(top_k=top_k, reorder=reorder, mode=mode, context_chunks=context_chunks))
        return self.engine.ask(question, id=id, doc=doc, top_k=top_k, reorder=reorder, mode=mode,
                               context_chunks=context_chunks, on_progress=on_progress)

    def stream(self, question: str, **options: Any) -> Iterator[str | Answer]:
        """Like `ask`, but yields the answer's text pieces as they come, then the final `Answer`."""
        require_question(question)  # the question, the document and the options checked before a model loads
        self._check_options(options, ("doc", "id", "on_progress", *ANSWER_OPTIONS))
        if options.get("doc") is not None:
            options["doc"] = self._checked(options["doc"])
        return self.engine.stream(question, **options)

    def chat(self, doc: str | None = None, **options: Any) -> Conversation:
        """A conversation: each question after the first is resolved against the turns before it, then searched.

        A follow-up searches the document in focus (the one a question names, the one the previous answer drew
        from, or the one given here or to `focus_on`, such as a file just ingested) and, when it has no subject
        of its own, with the previous question's subject joined; the answer's `searched` says what ran and why.

        Args:
            doc: the document in focus at the start (None: the whole library).
            **options: `top_k`, `reorder`, `mode`, `on_progress` for every turn (each `ask` may override them).

        Example:
            >>> chat = qa.chat()                                                          # doctest: +SKIP
            >>> chat.ask("Who are the parties to the eDiets agreement?").answer           # doctest: +SKIP
            >>> chat.ask("When does it expire?").searched.doc                             # doctest: +SKIP
            'ediets_co-branding_agreement.txt'
        """
        doc = self._checked(doc)  # before the engine: a wrong name or option fails before the embedder loads
        self._check_options(options, ("on_progress", *ANSWER_OPTIONS))
        return Conversation(self.engine, doc=doc, **options)

    def ask_many(self, questions: Iterable[str | Question], **options: Any) -> Iterator[Answer]:
        """Answer many questions, yielding each Answer as it is ready; a failing one carries `error`.

        Questions about the same document run together so a whole-document prefill is reused.

        Args:
            questions: strings, or `Question`s (each with its own id and document).
            **options: `doc` for every question that names none, and `top_k`, `reorder`, `mode`,
                `context_chunks` as in `ask`.

        Example:
            >>> for a in qa.ask_many(["Who are the parties?", "When does it expire?"]):  # doctest: +SKIP
            ...     print(a.id, a.answer)
        """
        if isinstance(questions, (str, Question)):  # a string would be asked letter by letter
            raise LongDocError("ask_many takes several questions (a list of them); ask takes one")
        try:
            items = list(questions)
        except TypeError:
            raise LongDocError(f"questions must be a list of questions, not {type(questions).__name__}") from None
        doc = self._checked(options.pop("doc", None))  # for every question that names none itself
        self._check_options(options, ANSWER_OPTIONS)
        rows = []
        for i, q in enumerate(items, 1):
            if not isinstance(q, Question):
                require_question(q)
                q = Question(id=f"q{i}", question=q)
            rows.append(q if q.doc or doc is None else dataclasses.replace(q, doc=doc))
        return answer_all(self, group_by_doc(rows), **options)

    def adapt(
        self,
        paths: Iterable[str | Path] | str | Path,
        out: str | Path,
        seq_len: int | None = None,
        steps: int | None = None,
        rope_factor: float | None = None,
        lora_rank: int | None = None,
        show_progress: bool = False,
        **options: Any,
    ) -> AdaptReport:
        """Continue pre-training the generator on documents (next-token loss, YaRN, LoRA) and write the adapter.

        Reads the files with the ingest loaders, holds out whole documents, trains, and scores the held-out ones
        with and without the adapter. A folder `out` that holds a checkpoint is continued. The library is not
        touched; answer with the adapter by setting `generator_adapter` to `out`.

        Args:
            paths: files or folders, any format `ingest` reads.
            out: the adapter's folder.
            seq_len, steps, lora_rank: override `adapt_seq_len`, `adapt_steps`, `adapt_lora_rank`.
            rope_factor: override `rope_factor` (the scaling is `rope_scaling`, YaRN by default).
            **options: other `app.adapt.AdaptConfig` fields (learning_rate, held_out, eval_sequences,
                checkpoint_every); an unknown name raises.

        Returns:
            AdaptReport: `.steps`, `.losses`, `.ppl_before`, `.ppl_after`, `.held_out_documents`, `.seconds`,
            `.tokens_per_s`; `.to_dict()` is what `out/adapt_report.json` holds.

        Example:
            >>> r = qa.adapt(["contracts/"], "adapters/contracts", seq_len=2048, steps=200)  # doctest: +SKIP
            >>> r.ppl_before, r.ppl_after                                                    # doctest: +SKIP
        """
        from app.adapt import adapt  # torch and peft (cold start)

        paths = _paths(paths)
        settings = self.settings if rope_factor is None else self.settings.replace(rope_factor=rope_factor)
        return adapt(paths, out, settings, show_progress=show_progress, seq_len=seq_len, steps=steps,
                     lora_rank=lora_rank, **options)

    def page_image(self, doc: str, page: int, dpi: float = 100) -> Image.Image:
        """Page `page` (1-based) of the PDF `doc`, rendered from the file it was ingested from, to draw an answer's
        `quote.boxes` or a passage's `boxes` on: a box's coordinate in points times dpi / 72 is its pixel.

        Raises:
            LongDocError: the document is not a PDF, its file is not where it was ingested from or no longer holds
                the same bytes (a library read on another machine), or it has no such page.

        Example:
            >>> a = qa.ask("Which law governs?", doc="msa.pdf")                 # doctest: +SKIP
            >>> image = qa.page_image(a.quote.doc, a.quote.page, dpi=144)      # doctest: +SKIP
            >>> [(b.x0 * 2, b.y0 * 2) for b in a.quote.boxes]                  # doctest: +SKIP
        """
        from ingest.loaders.pdf import render_page

        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            raise LongDocError(f"page is a page number from 1, not {page!r}")
        if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not 0 < dpi <= MAX_PAGE_DPI:
            raise LongDocError(f"dpi must be a number above 0 and at most {MAX_PAGE_DPI}, not {dpi!r}")
        info = self._info(doc)
        path = Path(info.source)
        if info.doc_type != "pdf":
            raise LongDocError(f"{info.name} is a {info.doc_type} document, not a PDF: it has no pages to draw")
        if not path.is_file():
            raise LongDocError(f"{info.name}: its PDF is not at {path} on this machine")
        if content_id(path) != info.doc_id:
            raise LongDocError(f"{info.name}: the file at {path} has changed since it was ingested")
        try:
            return render_page(path, page, dpi)
        except IngestError as exc:
            raise LongDocError(f"{info.name}: {exc.reason}") from None

    def _info(self, doc: str) -> DocumentInfo:
        return find_document(self.store, doc)

    def _check_options(self, options: dict[str, Any], allowed: Iterable[str] = ANSWER_OPTIONS) -> None:
        """Refuse an option a call does not take, and check the answer options as the settings of those names
        are checked: before any model loads (the engine applies them)."""
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise LongDocError(f"unknown option(s) {', '.join(unknown)}; this call takes {', '.join(allowed)}")
        given = {k: options[k] for k in ANSWER_OPTIONS if options.get(k) is not None}
        if given:
            self.settings.replace(**given)

    def _checked(self, doc: str | None) -> str | None:
        """`doc` as the engine takes it, checked before any model loads (a wrong name fails at once, not after
        seconds of loading): a name or id as given, a file's path as its document's name."""
        if doc is None:
            return None
        info = self._info(doc)
        return doc if doc in (info.doc_id, *info.names) else info.name  # a path (or Path) as the name


def _paths(paths: Iterable[str | Path] | str | Path) -> list[Path]:
    """Files and folders as `ingest` and `adapt` take them: one path, or several."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    try:
        return [Path(p) for p in paths]
    except TypeError:
        raise LongDocError(f"paths are files or folders (str or Path), one or a list: not {paths!r:.80}") from None
