"""The generator on an OpenAI-compatible server: vLLM, llama.cpp's server, TGI, SGLang (`generator = "http://…/v1"`).

What makes an answer checkable survives the move because the prompt is still built here, token by token:

- The chat template is applied here (llama.cpp: the server's own template, through its /apply-template; any
  other server: the template of the local tokenizer) and the prompt goes to /v1/completions as token ids. The
  server reads exactly the tokens whose positions the passage map reports, and its `usage.prompt_tokens` is
  checked against them.
- The tokens are counted by the server's tokenizer where it can say which characters each token covers
  (llama.cpp's /tokenize with pieces), else by a local tokenizer of the same model (`generator_tokenizer`),
  checked once against the server's own /tokenize where it has one (vLLM). `ModelInfo.tokenizer` says which.
- The window is the server's, read from what it reports (llama.cpp: `meta.n_ctx` in /v1/models or `n_ctx` in
  /props; vLLM: `max_model_len` in /v1/models; TGI: `max_total_tokens` in /info), never assumed.

The `openai` package does the completions: streaming, the timeout, and retries, which it makes only before a
reply has started (a refused connection, 429, 5xx), where a retry is safe; a stream cut off half-way is an
error, never retried (the pieces already shown would repeat). llama-index's OpenAILike is not used: it sends the
prompt as text, and only token ids pin the positions. Non-OpenAI endpoints (/tokenize, /props) go through httpx,
which the client is built on.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import openai

from app.answer import ModelInfo
from app.errors import LongDocError, PromptTooLong
from app.llm.config import GeneratorConfig
from app.llm.generator import Generation, Generator, PrefixCache

log = logging.getLogger(__name__)

RETRIES = 2  # the openai client's own: only before any reply, on a refused connection, 408/409/429 or 5xx
PROBE_MESSAGES = [{"role": "system", "content": "You answer."}, {"role": "user", "content": "Who signed it — “Müller”?"}]


class ServerError(LongDocError):
    """The generator server cannot be used as configured; the message names the server and what to change."""


@dataclass
class ServedModel:
    """What the server says of the model it serves."""

    id: str
    context_window: int
    rope_scaling: dict[str, Any] | None  # as the server reports it; None where it says nothing
    llama_cpp: bool  # llama.cpp's server: /tokenize with pieces and /apply-template


class ServerTokenizer:
    """llama.cpp's own tokenizer and chat template behind the calls `PromptBuilder` makes of a Hugging Face
    tokenizer: `tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)` and
    `apply_chat_template(messages, tokenize=False, add_generation_prompt=True)`."""

    def __init__(self, http: httpx.Client, describe: str) -> None:
        self._http = http
        self._describe = describe

    def __call__(self, text: str, add_special_tokens: bool = False,
                 return_offsets_mapping: bool = False) -> dict[str, list]:
        body = {"content": text, "add_special": add_special_tokens, "with_pieces": return_offsets_mapping}
        tokens = _post(self._http, "/tokenize", body, self._describe)["tokens"]
        if not return_offsets_mapping:
            return {"input_ids": tokens}
        return {"input_ids": [t["id"] for t in tokens], "offset_mapping": char_offsets(text, [t["piece"] for t in tokens])}

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False,
                            add_generation_prompt: bool = True) -> str:
        if tokenize or not add_generation_prompt:
            raise ValueError("the server's template renders text that ends where the assistant speaks")
        return _post(self._http, "/apply-template", {"messages": messages}, self._describe)["prompt"]


def char_offsets(text: str, pieces: list[str | list[int]]) -> list[tuple[int, int]]:
    """Each token's [start, end) characters in `text`, from the server's pieces (text, or bytes as a list of ints
    where a piece is part of a UTF-8 character).

    Written here because llama.cpp returns pieces, not offsets. A token holding part of a character covers that
    whole character, as a Hugging Face fast tokenizer's offset mapping does. A SentencePiece tokenizer's leading
    space (added before the first word) is skipped.
    """
    data = text.encode("utf-8")
    char_at: list[int] = []  # the character each byte belongs to, and one past the end
    for i, ch in enumerate(text):
        char_at.extend([i] * len(ch.encode("utf-8")))
    char_at.append(len(text))
    offsets, pos = [], 0
    for piece in pieces:
        raw = bytes(piece) if isinstance(piece, list) else piece.encode("utf-8")
        if not data.startswith(raw, pos):
            if raw.startswith(b" ") and data.startswith(raw[1:], pos):
                raw = raw[1:]
            else:
                raise ServerError(f"the server's tokens do not spell the prompt (at byte {pos}): cannot place passages")
        end = pos + len(raw)
        offsets.append((char_at[pos], char_at[end - 1] + 1 if raw else char_at[pos]))
        pos = end
    if pos != len(data):
        raise ServerError(f"the server's tokens cover {pos} of the prompt's {len(data)} bytes: cannot place passages")
    return offsets


class ServerGenerator:
    """The model behind an OpenAI-compatible server, with the interface of the in-process `Generator` that the
    query engine uses: `tokenizer`, `context_window`, `info`, `count_tokens`, `prefill`, `stream`, `last_stats`.

    Several questions may stream at once (the engine bounds how many), so `last_stats` is per thread.

    Example:
        >>> config = Settings.load(generator="http://127.0.0.1:8080/v1").generator_config()  # doctest: +SKIP
        >>> gen = ServerGenerator.connect(config)                                              # doctest: +SKIP
        >>> gen.info.context_window, gen.info.tokenizer                                        # doctest: +SKIP
        (32768, 'server')
    """

    def __init__(self, config: GeneratorConfig, client: openai.OpenAI, served: ServedModel, tokenizer: Any,
                 tokenizer_name: str) -> None:
        self.config = config
        self.client = client
        self.served = served
        self.tokenizer = tokenizer
        self.base_url = config.source.rstrip("/")
        name = Path(served.id).name if "/" in served.id and served.id.endswith(".gguf") else served.id
        self.info = ModelInfo(
            name=name, rope_scaling=served.rope_scaling, context_window=served.context_window,
            attn_implementation=None, kv_cache_dtype=None, decode_weights=None,
            backend="openai", tokenizer=tokenizer_name, server=self.base_url,
        )
        self._local = threading.local()

    # ---- connecting ----------------------------------------------------------------------------------------

    @classmethod
    def connect(cls, config: GeneratorConfig) -> "ServerGenerator":
        """Ask the server what it serves and how long its window is, and settle which tokenizer counts the prompt.

        Raises:
            ServerError: the server is down or refuses the key, the URL is not an OpenAI-compatible API, the model
                is not served, the window is not reported, or no tokenizer with offsets is to be had.
        """
        base = config.source.rstrip("/")
        root = base.removesuffix("/v1")  # llama.cpp and vLLM serve /tokenize and /props beside /v1, not under it
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        http = httpx.Client(base_url=root, headers=headers, timeout=config.timeout_s)
        describe = f"the generator server at {base}"
        client = openai.OpenAI(base_url=base, api_key=config.api_key or "none",
                               timeout=config.timeout_s, max_retries=RETRIES)
        served = _served_model(http, base[len(root):] + "/models", config.served_model, describe)
        if served.llama_cpp:
            tokenizer, tokenizer_name = ServerTokenizer(http, describe), "server"
        else:
            tokenizer, tokenizer_name = _local_tokenizer(config, http, served, describe)
        gen = cls(config, client, served, tokenizer, tokenizer_name)
        log.info("generator %s at %s: window %d, tokens counted by %s", served.id, base, served.context_window,
                 tokenizer_name)
        return gen

    # ---- tokens --------------------------------------------------------------------------------------------

    @property
    def context_window(self) -> int:
        return self.served.context_window

    @property
    def last_stats(self) -> Generation | None:
        """The last generation of the calling thread."""
        return getattr(self._local, "stats", None)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def chat_ids(self, system: str, user: str) -> list[int]:
        """The chat template around one system and one user message, ending where the assistant speaks."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # ---- generation ----------------------------------------------------------------------------------------

    def prefill(self, prefix_ids: list[int], show_progress: bool = True,
                on_progress: Callable[[int, int], None] | None = None) -> PrefixCache:
        """Have the server read `prefix_ids` once; its prompt cache then serves every prompt that starts with them.

        One token is generated (the least a completion asks for) and thrown away. The cache lives on the server,
        so the returned `PrefixCache` holds only the ids. The server reports nothing while it reads, so
        `on_progress(done, total)` is called once, at the end.
        """
        self._check_fits(len(prefix_ids), 1)
        started = time.perf_counter()
        self._call(lambda: self.client.completions.create(
            model=self.served.id, prompt=list(prefix_ids), max_tokens=1, temperature=0.0))
        if on_progress is not None:
            on_progress(len(prefix_ids), len(prefix_ids))
        return PrefixCache(list(prefix_ids), None, time.perf_counter() - started)

    generate = Generator.generate  # the same: `stream` run to the end, then `last_stats`
    _admit = Generator._admit  # the same checks, with this class's `_check_fits` and its message

    def stream(self, input_ids: list[int], max_new_tokens: int | None = None,
               past: PrefixCache | None = None) -> Iterator[str]:
        """Yield the answer's text as the server streams it; afterwards `last_stats` holds the `Generation`.

        `past` needs nothing sent: the server reuses the prefix it last read by itself.

        Raises:
            PromptTooLong: the prompt plus `max_new_tokens` exceeds the server's window (checked before sending).
            ServerError: the server failed, timed out, or its reply was cut off.
        """
        ids, max_new = self._admit(input_ids, max_new_tokens)
        started = time.perf_counter()
        first: float | None = None
        pieces: list[str] = []
        finish = usage = timings = None
        response = self._call(lambda: self.client.completions.create(
            model=self.served.id, prompt=ids, max_tokens=max_new, temperature=self.config.temperature,
            top_p=self.config.top_p, stream=True, stream_options={"include_usage": True}))
        with response:
            try:
                for chunk in response:
                    timings = (chunk.model_extra or {}).get("timings") or timings  # llama.cpp's own figures
                    usage = chunk.usage or usage
                    for choice in chunk.choices:
                        finish = choice.finish_reason or finish
                        if choice.text:
                            first = first or time.perf_counter()
                            pieces.append(choice.text)
                            yield choice.text
            except openai.APIError as exc:  # the client reports a broken stream as APIConnectionError
                raise ServerError(f"the reply from {self.base_url} was cut off after {len(pieces)} pieces "
                                  f"({type(exc).__name__}: {exc}); nothing was retried") from None
        if finish is None:
            raise ServerError(f"the reply from {self.base_url} was cut off after {len(pieces)} pieces: the stream "
                              "ended without saying why it stopped")
        done = time.perf_counter()
        text = "".join(pieces)
        if usage is not None and usage.prompt_tokens != len(ids):
            log.warning("%s read %d prompt tokens where %d were sent: prompt positions may be off", self.base_url,
                        usage.prompt_tokens, len(ids))
        first = first or done
        cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None) if usage else None
        self._local.stats = Generation(
            text=text,
            prompt_tokens=len(ids),
            completion_tokens=usage.completion_tokens if usage is not None else self.count_tokens(text),
            prefill_s=timings["prompt_ms"] / 1000 if timings else first - started,
            generate_s=timings["predicted_ms"] / 1000 if timings else done - first,
            reused_tokens=cached or 0,
        )

    # ---- internals -----------------------------------------------------------------------------------------

    def _check_fits(self, prompt_tokens: int, max_new: int) -> None:
        room = self.context_window - max_new
        if prompt_tokens > room:
            raise PromptTooLong(
                f"the prompt has {prompt_tokens} tokens but only {room} fit: the server at {self.base_url} reports "
                f"a window of {self.context_window} tokens and {max_new} are kept for the answer. Use mode 'rag', "
                "fewer passages, or a server started with a larger context (-c / --max-model-len)."
            )

    def _call(self, request):
        """Run one request of the openai client, its errors turned into one line for the user."""
        try:
            return request()
        except openai.APIError as exc:
            raise _explain(exc, f"the generator server at {self.base_url}", self.served.id,
                           self.config.timeout_s) from None


def _explain(exc: Exception, describe: str, model: str, timeout: float) -> ServerError:
    """One line for each way a server fails, saying what to check."""
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    detail = _error_detail(exc)
    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
        return ServerError(f"{describe} did not answer within {timeout:g} s (generator_timeout_s)")
    if isinstance(exc, (openai.APIConnectionError, httpx.TransportError)):
        return ServerError(f"cannot reach {describe}: {detail or 'connection failed'}. Is it running, and is the URL "
                           "right (generator = http://HOST:PORT/v1)?")
    if status in (401, 403):
        return ServerError(f"{describe} refused the request (HTTP {status}): set LONGDOC_API_KEY to a key it accepts")
    if status == 404:
        return ServerError(f"{describe} answered 404 Not Found{f' ({detail})' if detail else ''}: check the URL "
                           f"(it should end in /v1) and that it serves {model!r}")
    if status == 400 and "context" in detail.lower():
        return ServerError(f"{describe} refused the prompt as longer than its window: {detail}")
    return ServerError(f"{describe} failed{f' (HTTP {status})' if status else ''}: {detail or type(exc).__name__}")


def _error_detail(exc: Exception) -> str:
    """The server's own message: llama.cpp and vLLM answer {"error": {"message": ...}}, TGI {"error": "..."}."""
    response = getattr(exc, "response", None)
    if not isinstance(response, httpx.Response):
        return str(exc)[:300]
    try:
        data = response.json()
    except (ValueError, httpx.ResponseNotRead):
        return response.text[:300] if response.is_closed else ""
    error = data.get("error", data) if isinstance(data, dict) else data
    return str(error.get("message", error) if isinstance(error, dict) else error)[:300]


def _get(http: httpx.Client, path: str, describe: str) -> dict[str, Any] | None:
    """GET a JSON endpoint; None when the server does not have it (404, 405 or not JSON)."""
    try:
        response = http.get(path)
    except httpx.HTTPError as exc:
        raise _explain(exc, describe, "", http.timeout.read or 0) from None
    if response.status_code in (404, 405, 501):
        return None
    if response.is_error:
        raise _explain(httpx.HTTPStatusError("", request=response.request, response=response), describe, "",
                       http.timeout.read or 0)
    try:
        return response.json()
    except ValueError:
        return None


def _post(http: httpx.Client, path: str, body: dict[str, Any], describe: str) -> dict[str, Any]:
    try:
        response = http.post(path, json=body)
        response.raise_for_status()
        return response.json()
    except httpx.HTTPError as exc:
        raise _explain(exc, describe, "", http.timeout.read or 0) from None


def _served_model(http: httpx.Client, models_path: str, wanted: str, describe: str) -> ServedModel:
    """The model entry from /v1/models, its window from whatever the server reports, and what kind of server."""
    models = _get(http, models_path, describe)
    if not isinstance(models, dict) or not isinstance(models.get("data"), list) or not models["data"]:
        raise ServerError(f"{describe} lists no models at {str(http.base_url).rstrip('/')}{models_path}: is it an "
                          "OpenAI-compatible API (the URL should end in /v1)?")
    entries = models["data"]
    if wanted:
        entry = next((e for e in entries if wanted == e.get("id") or wanted in (e.get("aliases") or [])), None)
        if entry is None:
            served = ", ".join(repr(e.get("id")) for e in entries)
            raise ServerError(f"{describe} does not serve {wanted!r} (generator_model); it serves {served}")
    else:
        entry = entries[0]
    props = _get(http, "/props", describe)
    llama_cpp = isinstance(props, dict) and "default_generation_settings" in props
    meta = entry.get("meta") or {}
    window = (entry.get("max_model_len") or meta.get("n_ctx")
              or (props or {}).get("default_generation_settings", {}).get("n_ctx"))
    if not window:
        info = _get(http, "/info", describe) or {}  # TGI
        window = info.get("max_total_tokens")
    if not window:
        raise ServerError(f"{describe} does not report its context window (no max_model_len or n_ctx), so the "
                          "prompt cannot be budgeted against it")
    rope = entry.get("rope_scaling") or meta.get("rope_scaling") or (props or {}).get("rope_scaling")
    return ServedModel(id=str(entry["id"]), context_window=int(window), rope_scaling=rope or None, llama_cpp=llama_cpp)


def _local_tokenizer(config: GeneratorConfig, http: httpx.Client, served: ServedModel,
                     describe: str) -> tuple[Any, str]:
    """A local tokenizer of the served model, checked against the server's /tokenize where it has one."""
    if not config.tokenizer:
        raise ServerError(f"{describe} cannot say which characters each token covers (only llama.cpp's server "
                          f"can): set generator_tokenizer to a local tokenizer of {served.id!r} (a Hugging Face "
                          "directory) so the prompt's token positions are exact")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(config.tokenizer)
    except (OSError, ValueError) as exc:
        raise ServerError(f"generator_tokenizer {config.tokenizer!r}: cannot load it ({exc})") from None
    probe = tokenizer.apply_chat_template(PROBE_MESSAGES, tokenize=False, add_generation_prompt=True)
    ours = tokenizer(probe, add_special_tokens=False)["input_ids"]
    try:
        response = http.post("/tokenize", json={"model": served.id, "prompt": probe, "add_special_tokens": False})
        theirs = response.json().get("tokens") if response.is_success else None
    except (httpx.HTTPError, ValueError):
        theirs = None
    if theirs is not None and list(theirs) != list(ours):
        raise ServerError(f"generator_tokenizer {config.tokenizer!r} tokenizes differently from "
                          f"{describe}: it is not the served model's tokenizer")
    checked = "checked against the server" if theirs is not None else "not checked: the server has no /tokenize"
    log.info("counting tokens with %s (%s)", config.tokenizer, checked)
    return tokenizer, f"local:{config.tokenizer}"
