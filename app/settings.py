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

from app.errors import LongDocError
from app.llm import rope
from app.llm.config import EMBEDDED_GENERATOR, GeneratorConfig, is_server_url
from app.reorder import REORDERERS
from index.base import StoreError
from index.retrieval import RETRIEVAL_METHODS
from index.stores import backend_kind, redact

EMBEDDED_EMBEDDER = "embedded:all-MiniLM-L6-v2"

# The choices of a setting are its registry's keys; only the chunkers' are written out here, because
# `ingest.chunkers` imports llama-index, which `longdoc --help`, `docs` and `remove` must start without
# (tests/test_settings_agree.py keeps that copy true).
ROPE_SCALINGS = tuple(rope.ROPE_SCALINGS)
CHUNKERS = ("semantic", "fixed")
RETRIEVERS = tuple(RETRIEVAL_METHODS)
REORDER_CHOICES = tuple(REORDERERS)
MODES = ("auto", "rag", "full_document", "sections")
FOLLOWUP_REWRITES = ("rule", "model")
KV_CACHE_DTYPES = ("auto", "float32", "bfloat16")
ANSWER_STYLES = ("generative", "extractive")
OCR_CHOICES = ("auto", "always", "never")
PIN_OPENING_CHOICES = ("auto", "always", "never")
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


class SettingsError(LongDocError, ValueError):
    """A setting has a value the tool cannot use; the message says which and what is allowed. One of the tool's
    errors (a LongDocError), however the value came: a file, a variable, an argument or a question's option."""


def _default_index_dir() -> Path:
    return Path.home() / ".longdoc" / "index"


def _default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("longdoc"))


def setting(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple[str, ...] | None = None,
            bound: Bound | None = None, factory: Any = dataclasses.MISSING, secret: bool = False) -> Any:
    """A field of `Settings` carrying what `longdoc settings` prints and `Settings.validate` enforces: its
    description (`help`), and the values it may take (`choices` or `bound`). A `secret` one (a URL with a
    password, an API key) is left out of repr."""
    metadata = {"help": help, **({"choices": choices} if choices else {}), **({"bound": bound} if bound else {})}
    return field(default=default, default_factory=factory, metadata=metadata, repr=not secret)


@dataclass
class Settings:
    """Every tunable of the tool, with its default, its description and the values it may take.

    Example:
        >>> Settings.load(top_k=8).top_k
        8
    """

    # storage
    vector_store: str = setting(
        "faiss", "the library's backend: `faiss` (embedded, in index_dir) or an engine's URL, "
        "postgresql://USER[:PASS]@HOST:PORT/DB (pgvector) or milvus://HOST:PORT (index/stores.py)",
        secret=True)  # repr would show a URL's password; to_dict hides it
    index_dir: Path = setting(help="where the embedded library lives", factory=_default_index_dir)
    cache_dir: Path = setting(help="where converted model weights are kept", factory=_default_cache_dir)

    # embedder
    embedder: str = setting(EMBEDDED_EMBEDDER, "the packaged all-MiniLM-L6-v2, or a sentence-transformers "
                                               "directory or hub id")
    embed_batch_size: int = setting(
        8, "texts per forward; small, because a batch pads every text to its longest: in "
        "benchmarks/bench_answer.py the evidence step (59 sentences of very different lengths) took about 1.9 s in "
        "batches of 64 and 0.43 s in 8", bound=POSITIVE)
    embed_int8: bool = setting(
        False, "int8 linear layers (CPU): with VNNI the embedder runs 1.6x and ingest 1.4x faster, and evidence "
        "recall is about a point lower (docs/results/speed.md). A library keeps the precision it was built with")

    # generator
    generator: str = setting(
        EMBEDDED_GENERATOR, "the packaged SmolLM2 GGUF, a .gguf path, a local HF directory or a hub id, loaded in "
        "this process; or the URL of an OpenAI-compatible server (http(s)://HOST:PORT/v1: vLLM, llama.cpp's "
        "server, TGI, SGLang)")
    generator_model: str = setting("", "with a server: the served model to use (default: the first /v1/models "
                                       "lists)")
    generator_tokenizer: str = setting(
        "", "with a server that cannot tokenize with offsets (all but llama.cpp's): a local tokenizer of the same "
        "model (HF directory or hub id) that counts the prompt; it is checked against the server's /tokenize if "
        "any")
    generator_timeout_s: float = setting(120.0, "one request to the server, connection to last token, in seconds",
                                         bound=POSITIVE)
    generator_concurrency: int = setting(
        4, "questions answered at once with a server (the in-process model answers one at a time)", bound=POSITIVE)
    api_key: str = setting("", "sent as the bearer token when the server wants one (env LONGDOC_API_KEY); never "
                               "printed", secret=True)
    rope_scaling: str = setting("yarn", "how RoPE positions are stretched past the model's native window",
                                choices=ROPE_SCALINGS)
    rope_factor: float = setting(4.0, "the RoPE stretch: the window is this many times the native one (1 = none)",
                                 bound=Bound(1.0))
    original_max_position: int = setting(
        0, "the native window the stretch starts from; 0 = the model's own max_position_embeddings (8,192 for "
        "SmolLM2)", bound=Bound(0))
    attn_implementation: str = setting("auto", "attention kernel: `auto` is flash_attention_2 on CUDA with "
                                               "flash-attn, else sdpa")
    dtype: str = setting("float32", "the in-process model's weights and activations")
    device: str = setting("auto", "where the in-process model runs: `auto` (cuda when there is one, else cpu), "
                                  "cpu, cuda, cuda:1 ...")
    quantized_decode: bool = setting(
        True, "on CPU, decode a Llama through a written-out step with 4-bit (with AVX-512, where the GGUF held them "
        "so) or int8 copies of the weights (app/llm/decode_step.py): about 2x the tokens/s of transformers' "
        "forward on an AVX-512 machine, 98% the same next tokens")
    kv_cache_dtype: str = setting(
        "auto", "keys and values kept in bfloat16 under a float32 model halve what attention reads per generated "
        "token; `auto` does so on a CPU with bfloat16 arithmetic (AVX-512 BF16 or AMX), where attention gets "
        "faster, and not on AVX2, where the conversions cost more than the bytes save (docs/results/speed.md)",
        choices=KV_CACHE_DTYPES)
    generator_adapter: str = setting(
        "", "a LoRA adapter folder written by `longdoc adapt` (\"\" = none): merged into the weights at load, "
        "named in the answer's `model.adapter`")

    # chunking
    chunker: str = setting("semantic", "how documents are cut: `semantic` at topic shifts within sections, "
                                       "`fixed` token windows", choices=CHUNKERS)
    chunk_max_tokens: int = setting(256, "the longest chunk, capped at the embedder's max input: never silently "
                                         "truncated", bound=POSITIVE)
    chunk_min_tokens: int = setting(128, "semantic pieces smaller than this merge with a neighbour", bound=Bound(0))
    fixed_chunk_tokens: int = setting(512, "the `fixed` window (capped at the embedder's max input)",
                                      bound=POSITIVE)
    fixed_chunk_overlap: int = setting(64, "tokens two `fixed` windows share", bound=Bound(0))
    semantic_breakpoint_percentile: float = setting(
        90.0, "the semantic chunker cuts where adjacent sentences' dissimilarity is at this percentile or above",
        bound=Bound(0, 100))

    # retrieval and prompt
    retriever: str = setting("hybrid", "`hybrid`: dense and BM25 fused by rank; `dense`: the embedder alone",
                             choices=RETRIEVERS)
    pin_opening: str = setting(
        "auto", "keep the opening chunk of the document answering best (title, parties, date: a contract's "
        "preamble) at rank 2, since the embedder scores \"Who are the parties?\" low against \"made as of ... by "
        "and between X\". `auto` does so for documents with headings that are not transcripts (contracts, "
        "reports), where openings answer, and not for meetings and calls, where the opening is greetings "
        "(app/engine.py, opening_answers)", choices=PIN_OPENING_CHOICES)
    pin_min_similarity: float = setting(
        0.15, "the opening is not pinned when its cosine to the question is below this: then it is about something "
        "else and the place goes to the next retrieved passage. On short-answer CUAD 0.15 frees 79 of 414 places, costs 1 "
        "answer that only the opening held and wins back 3 the pin had pushed out (benchmarks/bench_retrieval.py)",
        bound=Bound(-1, 1))
    top_k: int = setting(5, "passages retrieved for a question", bound=POSITIVE)
    reranker: str = setting(
        "", "a sentence-transformers cross-encoder (a directory or a hub id in the local cache) that re-scores the "
        "first `rerank_candidates` retrieved passages and keeps the best `top_k` (index/rerank.py); \"\" = off, "
        "since no cross-encoder ships in a PyPI package")
    rerank_candidates: int = setting(20, "passages the reranker re-scores", bound=POSITIVE)
    context_chunks: int = setting(
        0, "chunks of surrounding text handed on with each retrieved passage, on each side (\"small to big\"; "
        "app/passage_context.py): 1 raises recall@5 on the dev meetings from 0.831 to 0.911 and on the dev contracts "
        "from 0.838 to 0.895, with passages about 2.4 times as long; 0 (the chunk alone) suits the embedded model on "
        "a CPU, 1 a model with a long window", bound=Bound(0, 5))
    reorder: str = setting("important_first_last", "the passages' order in the prompt: the best at the start and "
                                                   "the end (\"lost in the middle\") by default",
                           choices=REORDER_CHOICES)
    mode: str = setting("auto", "`rag`: retrieved passages; `full_document`: the whole document; `sections`: a "
                                "whole-document question read section by section; `auto` chooses", choices=MODES)
    auto_full_document_max_tokens: int = setting(
        2048, "`auto` reads one document whole when it is at most this many generator tokens: at that size the "
        "whole text costs about what the retrieved passages would, and on a CPU a longer prefill costs minutes "
        "(0: never)", bound=Bound(0))
    sections_tokens: int = setting(
        1024, "`sections` (app/sections.py): a whole-document question (\"list every ...\", \"summarise ...\") "
        "over a document longer than the window is read section by section, each at most this many generator "
        "tokens. At 1,024 a note's one source passage is a fair share of what its section holds (a section is four "
        "or five chunks: a few clauses of a contract, a few minutes of a meeting)", bound=POSITIVE)
    section_note_tokens: int = setting(64, "the longest note one section gives", bound=POSITIVE)
    sections_answer_tokens: int = setting(256, "the longest answer the combining pass over the notes gives",
                                          bound=POSITIVE)
    followup_rewrite: str = setting(
        "rule", "follow-ups in a conversation (app/conversation.py): `rule` carries the document in focus and joins "
        "the previous question's subject when the follow-up has none, without the model; `model` has the "
        "generator rewrite the follow-up as a question that stands alone (for a model bigger than the embedded "
        "135M one, which echoes its prompt: benchmarks/bench_followups.py), the document still chosen by the rule",
        choices=FOLLOWUP_REWRITES)
    min_relevance: float = setting(
        0.34, "abstain when the passages' relevance (app/abstain.py: best passage, best sentence, question words "
        "found) is below this (0: never). On the dev CUAD contracts 0.34 catches 22.2% of questions about clauses "
        "a contract lacks and refuses 1.3% of those whose clause is there, 0.8% of dev meeting queries and none of "
        "30 needles in meetings (benchmarks/bench_abstain.py); the next step, 0.36, refuses 2.1%", bound=Bound(0))
    answer_style: str = setting(
        "generative", "`extractive`: the answer is the quote, the document's own words (app/quote.py), with the "
        "model's sentence kept beside it in `generated`; for short factual questions (parties, dates, law, terms, "
        "amounts)", choices=ANSWER_STYLES)

    # generation
    max_new_tokens: int = setting(128, "the longest answer, in tokens", bound=POSITIVE)
    temperature: float = setting(0.0, "sampling temperature; 0 = greedy", bound=Bound(0))
    top_p: float = setting(1.0, "nucleus sampling's share of probability", bound=Bound(0, 1, low_open=True))
    no_repeat_ngram: int = setting(
        4, "never repeat an n-gram of the answer (0 = off; not 1, which forbids repeating any token): small models "
        "decoding greedily otherwise loop on a phrase", bound=Bound(0))

    # adaptation, `longdoc adapt` (app/adapt.py): LoRA continued pre-training on the user's documents
    adapt_seq_len: int = setting(16384, "tokens per training sequence: twice the native window, half the YaRN x4 "
                                        "one", bound=Bound(16))
    adapt_steps: int = setting(200, "optimiser steps", bound=POSITIVE)
    adapt_lora_rank: int = setting(16, "the LoRA adapters' rank", bound=POSITIVE)
    adapt_learning_rate: float = setting(2e-4, "AdamW's learning rate", bound=POSITIVE)
    adapt_held_out: float = setting(0.1, "fraction of the documents, whole, never trained on and scored before and "
                                         "after", bound=Bound(0, 1, high_open=True))
    adapt_eval_sequences: int = setting(8, "held-out sequences scored at the end (each one forward pass)",
                                        bound=POSITIVE)
    adapt_checkpoint_every: int = setting(50, "steps between checkpoints; a run whose --out holds a checkpoint "
                                              "continues from it", bound=POSITIVE)

    # reading PDFs (ingest/loaders/pdf.py)
    ocr: str = setting(
        "auto", "OCR (Tesseract 5, `tesseract-ocr` from Debian): `auto` reads the pages that have no text layer "
        "(scans, faxes, image exhibits) and keeps every other page's text as it is; `always` reads every page (a "
        "text layer not to be trusted); `never` reads none (such pages stay empty)", choices=OCR_CHOICES)
    ocr_languages: str = setting("eng", "Tesseract's language names joined by \"+\", e.g. \"eng+deu\" "
                                        "(tesseract-ocr-deu)")
    ocr_dpi: int = setting(
        300, "the page image Tesseract reads: 300 dpi is Tesseract's own advice; clean typed pages scanned and read "
        "at 200 come out as well (character error rate 0.20% against 0.18% at 300, benchmarks/bench_ocr.py)",
        bound=POSITIVE)
    ocr_timeout_s: float = setting(120.0, "seconds for one page; a page that takes longer fails its file, with the "
                                          "page named", bound=POSITIVE)
    ocr_min_confidence: float = setting(60.0, "an OCR page whose mean word confidence (0-100) is below this is "
                                              "named in the document's info for a look", bound=Bound(0, 100))

    # limits
    max_file_mb: float = setting(200.0, "a larger file is refused before it is read", bound=POSITIVE)
    max_pdf_pages: int = setting(2000, "a PDF with more pages is refused before any page is read", bound=POSITIVE)

    def __post_init__(self) -> None:
        for f in fields(self):  # each value as its field's type, however it came (a keyword, a file, a copy)
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name)))
        self.index_dir = self.index_dir.expanduser()
        self.cache_dir = self.cache_dir.expanduser()
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

    @classmethod
    def described(cls) -> dict[str, tuple[str, Any, str]]:
        """Per setting, in order: its description, its default as `to_dict` shows it (None for a path under the
        user's home, which depends on who asks), and the values it takes ("" when any)."""
        out = {}
        for f in fields(cls):
            allowed = ("one of " + ", ".join(f.metadata["choices"]) if "choices" in f.metadata
                       else f.metadata["bound"].describe() if "bound" in f.metadata else "")
            default = None if f.default is dataclasses.MISSING else f.default
            out[f.name] = (f.metadata["help"], default, allowed)
        return out

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
        elif config_file is not None or env.get("LONGDOC_CONFIG"):  # named, so meant: never silently the defaults
            raise SettingsError(f"{path}: config file not found"
                                + ("" if config_file is not None else " (the path in LONGDOC_CONFIG)"))
        _check_names({old: True for old in RENAMED if f"LONGDOC_{old.upper()}" in env}, "environment")
        for f in fields(cls):
            raw = env.get(f"LONGDOC_{f.name.upper()}")
            if raw is not None:
                values[f.name] = raw
        _check_names(overrides)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # each value made its field's type, or refused, as the object is made


# What each setting may take, read from its field: `Settings.validate` refuses anything else, `longdoc settings`
# prints it, and tests/test_settings_agree.py checks the choices against the registries that implement them and
# that every number setting has bounds. Relations between two settings (an overlap below its window) are
# checked in `validate` itself.
CHOICES: dict[str, tuple[str, ...]] = {f.name: f.metadata["choices"] for f in fields(Settings) if "choices" in f.metadata}
BOUNDS: dict[str, Bound] = {f.name: f.metadata["bound"] for f in fields(Settings) if "bound" in f.metadata}
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
    """Turn strings from the environment or TOML into the field's type, with a message naming the field; a value
    of another kind (5.5 or true for a whole number, a list for a name) is refused, never rounded or printed."""
    kind = _FIELD_TYPES[name]
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return str(value).lower() in ("1", "true", "yes", "on")
            raise ValueError(value)
        if kind in ("int", "float") and isinstance(value, bool):  # TOML's true is no number
            raise ValueError(value)
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():  # TOML's 2.7: not silently 2
                raise ValueError(value)
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "Path":
            if value == "":  # Path("") is the working directory: never what an empty setting meant
                raise ValueError(value)
            return Path(value)
        if isinstance(value, os.PathLike):  # a model's or reranker's folder
            return os.fspath(value)
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    except (TypeError, ValueError):
        raise SettingsError(f"{name}: expected {kind}, got {value!r}") from None
