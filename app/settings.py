"""One settings object for the whole tool.

Values come, each overriding the one before, from: the defaults below, a TOML file (`longdoc.toml` in the
working directory, or the path in `LONGDOC_CONFIG`), environment variables `LONGDOC_<FIELD>` (for example
`LONGDOC_TOP_K=8`), and keyword overrides (what the CLI flags and `LongDocQA(**overrides)` pass). The object
is built once at the edge and passed down; no module reads the environment on its own.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import platformdirs

from app.llm.config import EMBEDDED_GENERATOR, GeneratorConfig, is_server_url
from index.base import StoreError
from index.stores import backend_kind, redact

EMBEDDED_EMBEDDER = "embedded:all-MiniLM-L6-v2"

ROPE_SCALINGS = ("yarn", "linear", "dynamic", "none")
CHUNKERS = ("semantic", "fixed")
RETRIEVERS = ("hybrid", "dense")
REORDER_CHOICES = ("important_first_last", "reverse_rank", "document_order", "none")
MODES = ("auto", "rag", "full_document", "sections")
FOLLOWUP_REWRITES = ("rule", "model")
KV_CACHE_DTYPES = ("auto", "float32", "bfloat16")
ANSWER_STYLES = ("generative", "extractive")
OCR_CHOICES = ("auto", "always", "never")
PIN_OPENING_CHOICES = ("auto", "always", "never")
# The settings that take one of a set of values, and those values: `Settings.validate` refuses anything else,
# and tests/test_settings_agree.py checks each set against the registry that implements it.
CHOICES: dict[str, tuple[str, ...]] = {
    "rope_scaling": ROPE_SCALINGS,
    "chunker": CHUNKERS,
    "retriever": RETRIEVERS,
    "reorder": REORDER_CHOICES,
    "mode": MODES,
    "kv_cache_dtype": KV_CACHE_DTYPES,
    "answer_style": ANSWER_STYLES,
    "ocr": OCR_CHOICES,
    "pin_opening": PIN_OPENING_CHOICES,
    "followup_rewrite": FOLLOWUP_REWRITES,
}


@dataclass(frozen=True)
class Bound:
    """The values a number setting may take: from `low` to `high` (either side open when so marked)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self) -> str:
        if (self.low, self.low_open, self.high) == (0, True, None):
            return "must be positive"
        if self.low is not None and self.high is not None and not (self.low_open or self.high_open):
            return f"must be from {self.low:g} to {self.high:g}"
        sides = [f"{'above' if self.low_open else 'at least'} {self.low:g}"] if self.low is not None else []
        sides += [f"{'below' if self.high_open else 'at most'} {self.high:g}"] if self.high is not None else []
        return "must be " + " and ".join(sides)


POSITIVE = Bound(0, low_open=True)
# Every number setting and the values it may take: `Settings.validate` refuses anything else, and
# tests/test_settings_agree.py checks that no number setting is missing here. Relations between two settings
# (an overlap below its window) are checked in `validate` itself.
BOUNDS: dict[str, Bound] = {
    "embed_batch_size": POSITIVE,
    "generator_timeout_s": POSITIVE,
    "generator_concurrency": POSITIVE,
    "rope_factor": Bound(1.0),
    "original_max_position": Bound(0),  # 0: the model's own
    "chunk_max_tokens": POSITIVE,
    "chunk_min_tokens": Bound(0),
    "fixed_chunk_tokens": POSITIVE,
    "fixed_chunk_overlap": Bound(0),
    "semantic_breakpoint_percentile": Bound(0, 100),
    "pin_min_similarity": Bound(-1, 1),  # a cosine
    "top_k": POSITIVE,
    "rerank_candidates": POSITIVE,
    "auto_full_document_max_tokens": Bound(0),  # 0: never read a document whole on its own
    "sections_tokens": POSITIVE,
    "section_note_tokens": POSITIVE,
    "sections_answer_tokens": POSITIVE,
    "min_relevance": Bound(0),  # 0 never abstains; above 1 always does
    "max_new_tokens": POSITIVE,
    "temperature": Bound(0),
    "top_p": Bound(0, 1, low_open=True),
    "no_repeat_ngram": Bound(0),  # and not 1 (validate): a 1-gram ban forbids repeating any token
    "adapt_seq_len": Bound(16),
    "adapt_steps": POSITIVE,
    "adapt_lora_rank": POSITIVE,
    "adapt_learning_rate": POSITIVE,
    "adapt_held_out": Bound(0, 1, high_open=True),  # a fraction of the documents
    "adapt_eval_sequences": POSITIVE,
    "adapt_checkpoint_every": POSITIVE,
    "ocr_dpi": POSITIVE,
    "ocr_timeout_s": POSITIVE,
    "ocr_min_confidence": Bound(0, 100),
    "max_file_mb": POSITIVE,
    "max_pdf_pages": POSITIVE,
}


class SettingsError(ValueError):
    """A setting has a value the tool cannot use; the message says which and what is allowed."""


def _default_index_dir() -> Path:
    return Path.home() / ".longdoc" / "index"


def _default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("longdoc"))


@dataclass
class Settings:
    """Every tunable of the tool, with its default.

    Example:
        >>> Settings.load(top_k=8).top_k
        8
    """

    # storage: the library's backend, `faiss` (embedded, in index_dir) or an engine's URL,
    # postgresql://USER[:PASS]@HOST:PORT/DB (pgvector) or milvus://HOST:PORT (index/stores.py)
    vector_store: str = field(default="faiss", repr=False)  # repr would show a URL's password; to_dict hides it
    index_dir: Path = field(default_factory=_default_index_dir)
    cache_dir: Path = field(default_factory=_default_cache_dir)  # converted model weights

    # embedder: the packaged all-MiniLM-L6-v2, or a sentence-transformers directory / hub id
    embedder: str = EMBEDDED_EMBEDDER
    # texts per forward; small, because a batch pads every text to its longest: in benchmarks/bench_answer.py the
    # evidence step (59 sentences of very different lengths) took about 1.9 s in batches of 64 and 0.43 s in 8
    embed_batch_size: int = 8
    # int8 linear layers (CPU): with VNNI the embedder runs 1.6x and ingest 1.4x faster, and evidence recall is
    # about a point lower (README, Retrieval). An index keeps the precision it was built with.
    embed_int8: bool = False

    # generator: the packaged SmolLM2 GGUF, a .gguf path, a local HF directory or a hub id, loaded in this process;
    # or the URL of an OpenAI-compatible server (http(s)://HOST:PORT/v1: vLLM, llama.cpp's server, TGI, SGLang)
    generator: str = EMBEDDED_GENERATOR
    # with a server: the served model to use (default: the first /v1/models lists) ...
    generator_model: str = ""
    # ... and, for a server that cannot tokenize with offsets (all but llama.cpp's), a local tokenizer of the same
    # model (HF directory or hub id) that counts the prompt; it is checked against the server's /tokenize if any
    generator_tokenizer: str = ""
    generator_timeout_s: float = 120.0  # one request to the server, connection to last token
    # questions answered at once with a server (the in-process model answers one at a time)
    generator_concurrency: int = 4
    # sent as the bearer token when the server wants one (env LONGDOC_API_KEY); never printed
    api_key: str = field(default="", repr=False)
    rope_scaling: str = "yarn"
    rope_factor: float = 4.0
    original_max_position: int = 0  # 0 = the model's own max_position_embeddings (8,192 for SmolLM2)
    attn_implementation: str = "auto"  # flash_attention_2 on CUDA with flash-attn, else sdpa
    dtype: str = "float32"
    device: str = "auto"
    # on CPU, decode a Llama through a written-out step with 4-bit (with AVX-512, where the GGUF held them so) or
    # int8 copies of the weights (app/llm/decode_step.py): about 2x the tokens/s of transformers' forward on the AVX-512
    # machine, 98% the same next tokens
    quantized_decode: bool = True
    # keys and values kept in bfloat16 under a float32 model halve what attention reads per generated token;
    # `auto` does so on a CPU with bfloat16 arithmetic (AVX-512 BF16 or AMX), where attention gets faster, and
    # not on AVX2, where the conversions cost more than the bytes save (README, Generation speed)
    kv_cache_dtype: str = "auto"
    # a LoRA adapter folder written by `longdoc adapt` ("" = none): merged into the weights at load, named in the
    # answer's `model.adapter`
    generator_adapter: str = ""

    # chunking
    chunker: str = "semantic"
    chunk_max_tokens: int = 256  # capped at the embedder's max input: never silently truncated
    chunk_min_tokens: int = 128  # semantic pieces smaller than this merge with a neighbour
    fixed_chunk_tokens: int = 512  # `fixed` window (capped at the embedder's max input)
    fixed_chunk_overlap: int = 64
    semantic_breakpoint_percentile: float = 90.0  # cut where adjacent-sentence dissimilarity is this high

    # retrieval and prompt
    retriever: str = "hybrid"
    # The opening chunk of the document answering best (title, parties, date: a contract's preamble) is kept
    # at rank 2: the embedder scores "Who are the parties?" low against "made as of ... by and between X".
    # `auto` does so for documents with headings that are not transcripts (contracts, reports), where openings
    # answer, and not for meetings and calls, where the opening is greetings (app/engine.py, opening_answers).
    pin_opening: str = "auto"
    # ... unless the opening's cosine to the question is below this: then it is about something else and the
    # place goes to the next retrieved passage. On short-answer CUAD 0.15 frees 79 of 414 places, costs 1 answer
    # that only the opening held and wins back 3 the pin had pushed out (benchmarks/bench_retrieval.py).
    pin_min_similarity: float = 0.15
    top_k: int = 5
    # a sentence-transformers cross-encoder (a directory or a hub id in the local cache) that re-scores the first
    # `rerank_candidates` retrieved passages and keeps the best `top_k` (index/rerank.py); "" = off, since no
    # cross-encoder ships in a PyPI package
    reranker: str = ""
    rerank_candidates: int = 20
    reorder: str = "important_first_last"
    mode: str = "auto"
    # `auto` reads one document whole when it is at most this many generator tokens: at that size the whole
    # text costs about what the retrieved passages would, and on a CPU a longer prefill costs minutes.
    auto_full_document_max_tokens: int = 2048
    # `sections` (app/sections.py): a whole-document question ("list every ...", "summarise ...") over a document
    # longer than the window is read section by section, each section at most this many generator tokens, with a
    # note of at most `section_note_tokens` each, then one combining pass of at most `sections_answer_tokens`.
    # At 1,024 a note's one source passage is a fair share of what its section holds (a section is four or five
    # chunks: a few clauses of a contract, a few minutes of a meeting).
    sections_tokens: int = 1024
    section_note_tokens: int = 64
    sections_answer_tokens: int = 256
    # follow-ups in a conversation (app/conversation.py): `rule` carries the document in focus and joins the
    # previous question's subject when the follow-up has none, without the model; `model` has the generator
    # rewrite the follow-up as a question that stands alone (for a model bigger than the embedded 135M one, which
    # echoes its prompt: benchmarks/bench_followups.py), the document still chosen by the rule
    followup_rewrite: str = "rule"
    # abstain when the passages' relevance (app/abstain.py: best passage, best sentence, question words found) is
    # below this. On the dev CUAD contracts 0.34 catches 22.2% of questions about clauses a contract lacks and
    # refuses 1.3% of those whose clause is there, 0.8% of dev meeting queries and none of 30 needles in meetings
    # (benchmarks/bench_abstain.py); the next step, 0.36, refuses 2.1%
    min_relevance: float = 0.34
    # `extractive`: the answer is the quote, the document's own words (app/quote.py), with the model's sentence
    # kept beside it in `generated`; for short factual questions (parties, dates, law, terms, amounts)
    answer_style: str = "generative"

    # generation
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    # never repeat an n-gram of the answer (0 = off): small models decoding greedily otherwise loop on a phrase
    no_repeat_ngram: int = 4

    # adaptation, `longdoc adapt` (app/adapt.py): LoRA continued pre-training on the user's documents
    adapt_seq_len: int = 16384  # tokens per training sequence: twice the native window, half the YaRN x4 one
    adapt_steps: int = 200
    adapt_lora_rank: int = 16
    adapt_learning_rate: float = 2e-4
    adapt_held_out: float = 0.1  # fraction of the documents, whole, never trained on and scored before/after
    adapt_eval_sequences: int = 8  # held-out sequences scored at the end (each one forward pass)
    adapt_checkpoint_every: int = 50  # steps; a run whose --out holds a checkpoint continues from it

    # reading PDFs (ingest/loaders/pdf.py). OCR (Tesseract 5, `tesseract-ocr` from Debian): `auto` reads the pages
    # that have no text layer (scans, faxes, image exhibits) and keeps every other page's text as it is; `always`
    # reads every page (a text layer not to be trusted); `never` reads none (such pages stay empty)
    ocr: str = "auto"
    ocr_languages: str = "eng"  # Tesseract's language names joined by "+", e.g. "eng+deu" (tesseract-ocr-deu)
    # the page image Tesseract reads: 300 dpi is Tesseract's own advice; clean typed pages scanned and read at 200
    # come out as well (character error rate 0.20% against 0.18% at 300, benchmarks/bench_ocr.py)
    ocr_dpi: int = 300
    ocr_timeout_s: float = 120.0  # one page; a page that takes longer fails its file, with the page named
    # an OCR page whose mean word confidence (0-100) is below this is named in the document's info for a look
    ocr_min_confidence: float = 60.0

    # limits
    max_file_mb: float = 200.0
    max_pdf_pages: int = 2000  # a PDF with more pages is refused before any page is read

    def __post_init__(self) -> None:
        self.index_dir = Path(self.index_dir).expanduser()
        self.cache_dir = Path(self.cache_dir).expanduser()
        self.validate()

    def validate(self) -> None:
        """Check choices and bounds first, so a bad value fails here with a message, not deep in a model."""
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise SettingsError(f"{name}={value!r} is not one of {', '.join(allowed)}")
        try:
            backend_kind(self.vector_store)
        except StoreError as exc:
            raise SettingsError(str(exc)) from None
        for name, bound in BOUNDS.items():
            if not bound.admits(getattr(self, name)):
                raise SettingsError(f"{name} {bound.describe()}, got {getattr(self, name)}")
        if self.no_repeat_ngram == 1:
            raise SettingsError("no_repeat_ngram must be 0 (off) or at least 2, got 1")
        if self.generator_adapter and self.generator_is_server:
            raise SettingsError("generator_adapter applies to a model loaded in this process, not to a server's "
                                f"({self.generator}): merge it into the served weights, or unset it")
        if self.fixed_chunk_overlap >= self.fixed_chunk_tokens:
            raise SettingsError(
                f"fixed_chunk_overlap ({self.fixed_chunk_overlap}) must be smaller than "
                f"fixed_chunk_tokens ({self.fixed_chunk_tokens})"
            )
        if self.chunk_min_tokens >= self.chunk_max_tokens:
            raise SettingsError("chunk_min_tokens must be below chunk_max_tokens")

    def replace(self, **overrides: Any) -> "Settings":
        """A copy with some values changed, checked like the original."""
        _check_names(overrides)
        return dataclasses.replace(self, **overrides)

    @property
    def generator_is_server(self) -> bool:
        """Whether `generator` names an OpenAI-compatible server rather than a model to load in this process."""
        return is_server_url(self.generator)

    def generator_config(self) -> GeneratorConfig:
        """What the model runtime (`app.llm`) is told: the generator's settings and no others."""
        return GeneratorConfig(
            source=self.generator, cache_dir=self.cache_dir, rope_scaling=self.rope_scaling,
            rope_factor=self.rope_factor, original_max_position=self.original_max_position,
            attn_implementation=self.attn_implementation, dtype=self.dtype, device=self.device,
            quantized_decode=self.quantized_decode, kv_cache_dtype=self.kv_cache_dtype,
            adapter=self.generator_adapter, max_new_tokens=self.max_new_tokens, temperature=self.temperature,
            top_p=self.top_p, no_repeat_ngram=self.no_repeat_ngram, served_model=self.generator_model,
            tokenizer=self.generator_tokenizer, timeout_s=self.generator_timeout_s, api_key=self.api_key)

    def to_dict(self) -> dict[str, Any]:
        """Every value, paths as strings; the API key only as whether one is set."""
        out = {f.name: (str(v) if isinstance(v := getattr(self, f.name), Path) else v) for f in fields(self)}
        out["api_key"] = "***" if self.api_key else ""
        out["vector_store"] = redact(self.vector_store)
        return out

    @classmethod
    def load(
        cls,
        config_file: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> "Settings":
        """Defaults, then the TOML file, then `LONGDOC_*` variables, then `overrides` (None values ignored)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = Path(config_file or env.get("LONGDOC_CONFIG") or "longdoc.toml").expanduser()
        if path.is_file():
            try:
                values.update(tomllib.loads(path.read_text(encoding="utf-8")))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise SettingsError(f"{path}: not valid TOML ({exc})") from None
            _check_names(values, source=str(path))
        elif config_file is not None:
            raise SettingsError(f"{path}: config file not found")
        _check_names({old: True for old in RENAMED if f"LONGDOC_{old.upper()}" in env}, "environment")
        for f in fields(cls):
            raw = env.get(f"LONGDOC_{f.name.upper()}")
            if raw is not None:
                values[f.name] = raw
        _check_names(overrides)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: _coerce(k, v) for k, v in values.items()})


_FIELD_TYPES = {f.name: f.type for f in fields(Settings)}
RENAMED = {"int8_decode": "quantized_decode"}  # old name -> new, for a message instead of "unknown"


def _check_names(values: Mapping[str, Any], source: str = "settings") -> None:
    renamed = [f"{old} is now {RENAMED[old]}" for old in sorted(set(values) & set(RENAMED))]
    if renamed:
        raise SettingsError(f"{source}: {'; '.join(renamed)}")
    unknown = sorted(set(values) - set(_FIELD_TYPES))
    if unknown:
        raise SettingsError(
            f"{source}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(_FIELD_TYPES))}"
        )


def _coerce(name: str, value: Any) -> Any:
    """Turn strings from the environment or TOML into the field's type, with a message naming the field."""
    kind = _FIELD_TYPES[name]
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return str(value).lower() in ("1", "true", "yes", "on")
            raise ValueError(value)
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "Path":
            return Path(value)
        return str(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name}: expected {kind}, got {value!r}") from None
