"""The answer and its passages: what `ask` returns and what `--json` prints (the contract: docs/answer.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ingest.layout import Box


@dataclass
class Passage:
    """A retrieved chunk, where it sits in its document and where it was placed in the prompt.

    `rank` is the retrieval rank (1 = most relevant); `prompt_index` the order in the prompt after reordering
    (None when the passage was dropped to fit the window); `prompt_zone` is "start", "middle" or "end".
    A PDF's passage has `boxes`, its text's rectangles on its page(s) (`ingest.layout.Box`). With
    `context_chunks` the passage is the retrieved chunk with the text around it: `chunk_start`/`chunk_end` are
    the chunk's own offsets inside `char_start`/`char_end` (None when the passage is the chunk alone).
    """

    rank: int
    score: float
    doc: str
    doc_id: str
    char_start: int
    char_end: int
    text: str
    page: int | None = None
    section: str | None = None
    speakers: list[str] = field(default_factory=list)
    n_tokens: int = 0
    prompt_index: int | None = None
    prompt_token_start: int | None = None
    prompt_token_end: int | None = None
    prompt_zone: str | None = None
    boxes: list[Box] = field(default_factory=list)
    chunk_start: int | None = None
    chunk_end: int | None = None
    # the chunk's words with their rectangles (`ingest.layout`, encoded), to locate a quote inside the passage;
    # it stays in Python: the answer JSON carries the rectangles themselves
    layout: str = field(default="", repr=False)

    @property
    def chunk_span(self) -> tuple[int, int]:
        """The retrieved chunk's own offsets in its document: `chunk_start`/`chunk_end` when context surrounds it."""
        if self.chunk_start is None or self.chunk_end is None:
            return self.char_start, self.char_end
        return self.chunk_start, self.chunk_end


@dataclass
class Evidence:
    """A sentence from a passage that best supports the answer, located in its document."""

    doc: str
    char_start: int
    char_end: int
    text: str
    score: float = 0.0


@dataclass
class Quote(Evidence):
    """The shortest span of the passages that states the answer (`app.quote`), located in its document and, in a
    PDF, on its page: `page` (1-based) and `boxes`, the rectangles of its text in PDF points from the page's
    top-left corner, each with the page's size (`ingest.layout.Box`), for drawing it on the page."""

    page: int | None = None
    boxes: list[Box] = field(default_factory=list)


@dataclass
class SentenceSupport:
    """One sentence of the answer: whether the passages state it, where (a passage sentence), or why not."""

    text: str
    supported: bool
    reason: str = ""  # why not: the names or numbers no passage holds, or that no passage sentence is close
    doc: str | None = None
    char_start: int | None = None
    char_end: int | None = None


@dataclass
class Support:
    """The support check of an answer (`app.support`): "supported", "partly supported", "unsupported", or
    "unchecked" (no answer sentence or no passage sentence to check against)."""

    verdict: str
    sentences: list[SentenceSupport] = field(default_factory=list)


@dataclass
class ModelInfo:
    """The model that answered and the window it was budgeted against.

    `backend` is "local" (in this process) or "openai" (an OpenAI-compatible server). For a server,
    `context_window` is what the server reports, `rope_scaling` is what it reports of its scaling (None where it
    says nothing), the three decoding fields are None (the server's own business), and `tokenizer` says what
    counted the prompt's tokens: "server" (its /tokenize) or "local:<name>" (a local tokenizer of the model).
    """

    name: str
    rope_scaling: dict[str, Any] | None
    context_window: int
    attn_implementation: str | None = "sdpa"
    kv_cache_dtype: str | None = "float32"
    decode_weights: str | None = "float32"  # "int4+int8" or "int8" when app.llm.decode_step decodes
    backend: str = "local"
    tokenizer: str = "local"
    server: str | None = None  # the server's base URL
    adapter: str | None = None  # the LoRA adapter merged into the weights (`generator_adapter`), as a full path


@dataclass
class Search:
    """What a question searched: the text retrieval ran on and the one document it was kept to (None: the
    library). In a conversation a follow-up is resolved first (`app.conversation`), and `why` says how."""

    question: str
    doc: str | None = None
    why: str = ""


@dataclass
class Note:
    """What one section of a document said about the question (mode `sections`, `app.sections`).

    Sections are read in order, each on its own within the model's window; `char_start`/`char_end` are the
    section's place in the document. A note that went into the combining pass (`used`) cites its sources, the
    passages of the section it draws on, by their `rank`s; a note left out says why in `reason`, and so does
    a note that quotes its passages because the model found nothing in a section retrieval ranked first.
    """

    section: int  # 1-based, in reading order
    doc: str
    char_start: int
    char_end: int
    text: str
    used: bool = False
    reason: str = ""
    sources: list[int] = field(default_factory=list)  # the ranks of its source passages in `Answer.passages`
    relevance: float = 0.0  # the section's relevance to the question (`app.abstain`), what decides `used`
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens (the instructions and the question) read from the shared KV cache
    completion_tokens: int = 0
    seconds: float = 0.0


@dataclass
class Answer:
    """One question's outcome. `error` is set (and `answer` empty) when the question failed."""

    question: str
    answer: str = ""
    id: str | None = None
    mode: str = "rag"
    model: ModelInfo | None = None
    passages: list[Passage] = field(default_factory=list)
    dropped: list[Passage] = field(default_factory=list)  # retrieved but did not fit the window
    evidence: list[Evidence] = field(default_factory=list)
    quote: Quote | None = None
    support: Support | None = None
    generated: str | None = None  # the model's own sentence, when `answer` is the quote (answer_style extractive)
    abstained: bool = False
    # how relevant the retrieved passages are (`app.abstain`): "score" and its signals "passage", "sentence",
    # "coverage"; the engine abstains when the score is below `min_relevance`
    relevance: dict[str, float] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    searched: Search | None = None  # the question as retrieval ran it, and the document it was kept to
    notes: list[Note] = field(default_factory=list)  # mode `sections`: one a section, in reading order

    def to_dict(self) -> dict[str, Any]:
        """The answer JSON of docs/answer.md (plus `abstained`, `relevance`, `dropped`, `searched` and `notes`)."""
        out = asdict(self)
        for passage in out["passages"] + out["dropped"]:
            del passage["layout"]
        order = ["id", "question", "answer", "mode", "model", "passages", "evidence", "quote", "support"]
        return {k: out[k] for k in order} | {k: v for k, v in out.items() if k not in order}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Answer":
        data = dict(data)
        model = data.pop("model", None)
        quote = data.pop("quote", None)
        support = data.pop("support", None)
        searched = data.pop("searched", None)
        return cls(
            **{k: v for k, v in data.items() if k not in ("passages", "dropped", "evidence", "notes")},
            searched=Search(**searched) if searched else None,
            notes=[Note(**n) for n in data.get("notes", [])],
            model=ModelInfo(**model) if model else None,
            quote=Quote(**{**quote, "boxes": [Box(**b) for b in quote.get("boxes", [])]}) if quote else None,
            support=Support(support["verdict"], [SentenceSupport(**x) for x in support["sentences"]]) if support else None,
            passages=[_passage(p) for p in data.get("passages", [])],
            dropped=[_passage(p) for p in data.get("dropped", [])],
            evidence=[Evidence(**e) for e in data.get("evidence", [])],
        )


def _passage(data: dict[str, Any]) -> Passage:
    return Passage(**{**data, "boxes": [Box(**b) for b in data.get("boxes", [])]})
