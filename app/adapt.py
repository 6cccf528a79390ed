"""Continued pre-training on the user's own documents: YaRN-scaled RoPE plus LoRA adapters (`longdoc adapt`).

YaRN stretches the window without training; a short run of next-token prediction on long documents of the
kind the tool will read lets the model settle into the stretched positions (arXiv 2309.00071, section 4; the
LongLoRA recipe, arXiv 2309.12307, does the same with LoRA). Everything here is the libraries' own: the model,
its RoPE scaling and its check come from `Generator.load` (so training sees exactly the scaling that answering
will), the adapters are `peft`'s LoRA on every linear layer of the decoder, the schedule is transformers'
cosine with warm-up, the optimiser torch's AdamW. What this module adds is the data and the bookkeeping:

- documents are read through the ingest loaders, split into train and held-out **by document** (a chunk of a
  held-out document is never trained on), tokenized with the generator's tokenizer and packed end to end, an
  EOS between documents, into sequences of `seq_len` tokens;
- one sequence a step, loss = mean next-token cross-entropy, gradient checkpointing on (at 16K-32K tokens the
  activations, not the weights, are what does not fit); `flash_attention_2` on CUDA when flash-attn is
  installed, else `sdpa`; bfloat16 weights on a GPU, float32 on a CPU (whose bfloat16 matmuls are slower);
- a checkpoint (adapter, optimiser, step, losses) every `checkpoint_every` steps in `out/checkpoint-<step>/`;
  a run whose `out` holds one continues from it;
- at the end, the held-out sequences are scored with the adapter off (before) and on (after), per position.

`out` then holds the adapter as peft writes it (`adapter_config.json`, `adapter_model.safetensors`),
`longdoc_adapter.json` (what it was trained on and with) and `adapt_report.json`. Setting
`generator_adapter = out` makes the generator load and merge it (`merge_adapter`).

Example:
    >>> report = adapt(["contracts/"], Path("adapters/c"), Settings.load(), seq_len=2048, steps=200)  # doctest: +SKIP
    >>> report.ppl_before, report.ppl_after                                                         # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch

from app.errors import LongDocError
from app.llm.config import GeneratorConfig
from app.settings import BOUNDS, Settings

log = logging.getLogger(__name__)

ADAPTER_INFO = "longdoc_adapter.json"  # beside peft's files: the generator, scaling and split it was trained with
REPORT_FILE = "adapt_report.json"
CHECKPOINT_PREFIX = "checkpoint-"
ADAPTER_CONFIG = "adapter_config.json"  # what peft writes with an adapter: a folder holding it is one
STATE_FILE = "state.json"  # written last into a checkpoint: a checkpoint without it is incomplete and ignored
SEED = 0  # the split and the order of the training sequences; fixed so that a resumed run continues the same one
LORA_ALPHA_PER_RANK = 2  # alpha = 2 x rank, peft's and LoRA's usual scale for the update
WARMUP_FRACTION = 0.05  # of the steps, before the cosine decay
MAX_GRAD_NORM = 1.0
EVAL_SEGMENTS = 8  # perplexity by position is reported in this many equal stretches of a sequence


@dataclass(frozen=True)
class AdaptConfig:
    """The choices of one adaptation run; `from_settings` fills them from `Settings` (the `adapt_*` fields)."""

    seq_len: int  # tokens per training sequence
    steps: int  # optimiser steps, one sequence each
    lora_rank: int
    learning_rate: float  # peak, after warm-up
    held_out: float  # fraction of the documents (by document) kept out of training and scored at the end
    eval_sequences: int  # at most this many held-out sequences are scored
    checkpoint_every: int  # steps between checkpoints

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "AdaptConfig":
        """The `adapt_*` settings, with `overrides` (None values ignored) on top; checked like settings."""
        values = {f: getattr(settings, f"adapt_{f}") for f in cls.__dataclass_fields__}
        unknown = sorted(set(overrides) - set(values))
        if unknown:
            raise LongDocError(f"unknown adapt option(s) {', '.join(unknown)}; valid: {', '.join(values)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Each value within the bounds of its `adapt_*` setting (`app.settings.BOUNDS`), overrides too."""
        for name in self.__dataclass_fields__:
            bound, value = BOUNDS[f"adapt_{name}"], getattr(self, name)
            if not bound.admits(value):
                raise LongDocError(f"adapt {name} {bound.describe()}, got {value}")


@dataclass
class AdapterInfo:
    """`longdoc_adapter.json`: what an adapter was trained on and with, read back by the generator and the evals."""

    generator: str
    rope_scaling: str
    rope_factor: float
    original_max_position: int
    seq_len: int
    lora_rank: int
    steps: int
    train_documents: list[str]
    held_out_documents: list[str]

    @classmethod
    def read(cls, adapter_dir: str | Path) -> "AdapterInfo":
        """Raises LongDocError (one line) when `adapter_dir` is not an adapter `longdoc adapt` wrote."""
        path = Path(adapter_dir).expanduser()
        if not (path / ADAPTER_CONFIG).is_file():
            raise LongDocError(f"{path}: not a LoRA adapter (no adapter_config.json); `longdoc adapt ... --out "
                               f"{path}` writes one")
        try:
            return cls(**json.loads((path / ADAPTER_INFO).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise LongDocError(f"{path}: no {ADAPTER_INFO}; it was not written by `longdoc adapt`, or its "
                               "training has not finished") from None
        except (json.JSONDecodeError, TypeError) as exc:
            raise LongDocError(f"{path / ADAPTER_INFO}: unreadable ({exc})") from None


@dataclass
class AdaptReport:
    """What `adapt` did and what it measured; `to_dict()` is `adapt_report.json`.

    `ppl_before` / `ppl_after` are the held-out documents' perplexity without and with the adapter (None when no
    document was held out); `segments` the same by position: `EVAL_SEGMENTS` stretches of the sequence.
    """

    out_dir: str
    steps: int
    resumed_from: int  # the step this run started at (0: a fresh run)
    seq_len: int
    lora_rank: int
    learning_rate: float
    rope_scaling: dict[str, Any] | None
    device: str
    dtype: str
    attn_implementation: str
    losses: list[float]  # training loss of every step, from step 1
    train_documents: list[str]
    held_out_documents: list[str]
    train_sequences: int
    eval_sequences: int
    ppl_before: float | None = None
    ppl_after: float | None = None
    segments: list[dict[str, float]] = field(default_factory=list)  # start, end, ppl_before, ppl_after
    seconds: float = 0.0  # this run, load to report
    train_seconds: float = 0.0  # this run's training steps
    tokens_per_s: float = 0.0  # training tokens per second over this run's steps
    peak_memory_mb: float | None = None  # CUDA only: the most memory torch held during training
    nll_before: list[float] = field(default_factory=list, repr=False)  # mean loss at each position (plots)
    nll_after: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- data -----------------------------------------------------------------------------------------------------


@dataclass
class Corpus:
    """The documents split by document, and their packed token sequences."""

    train_documents: list[Path]
    held_out_documents: list[Path]
    train: list[list[int]]  # sequences of exactly seq_len tokens
    held_out: list[list[int]]  # of seq_len tokens (or one shorter one when the held-out text is shorter)


def read_documents(paths: Iterable[str | Path], max_bytes: int | None = None) -> list[tuple[Path, str]]:
    """(file, text) of every readable document under `paths`, through the ingest loaders, in a stable order.

    A file the loaders cannot read is logged and passed over, as `ingest` does; no readable file at all raises.
    """
    from ingest.loaders import load_document
    from ingest.pipeline import find_files
    from ingest.types import IngestError

    files, skipped = find_files(paths)
    docs = []
    for path in files:
        try:
            text = load_document(path, max_bytes=max_bytes).text.strip()
        except IngestError as exc:
            skipped.append(exc)
            continue
        if text:
            docs.append((path.resolve(), text))
    for exc in skipped:
        log.warning("skipped %s", exc)
    if not docs:
        raise LongDocError(f"no readable documents in {', '.join(map(str, paths))}")
    return docs


def split_by_document(files: Sequence[Path], held_out: float) -> tuple[list[Path], list[Path]]:
    """(train, held out): a seeded shuffle of the files, the first `held_out` fraction kept out (at least one when
    the fraction is above 0 and there are two files or more). Whole documents, so no held-out text is trained on.

    Example:
        >>> train, test = split_by_document([Path(f"{i}.txt") for i in range(10)], 0.2)
        >>> len(train), len(test), set(train) & set(test)
        (8, 2, set())
    """
    order = sorted(files)
    random.Random(SEED).shuffle(order)
    n = 0 if held_out <= 0 or len(order) < 2 else min(len(order) - 1, max(1, round(held_out * len(order))))
    return sorted(order[n:]), sorted(order[:n])


def pack(texts: Sequence[str], tokenizer: Any, seq_len: int) -> list[list[int]]:
    """The texts' tokens end to end, an EOS after each, cut into `seq_len`-token sequences; the remainder is
    dropped (it would be a shorter, padded step)."""
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"]
        stream.append(tokenizer.eos_token_id)
    return [stream[i:i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)]


def build_corpus(documents: Sequence[tuple[Path, str]], tokenizer: Any, config: AdaptConfig) -> Corpus:
    """Split `read_documents`' output by document, tokenize and pack.

    Raises:
        LongDocError: the training documents hold fewer tokens than one sequence.
    """
    docs = dict(documents)
    train_files, held_files = split_by_document(list(docs), config.held_out)
    train = pack([docs[f] for f in train_files], tokenizer, config.seq_len)
    if not train:
        tokens = sum(len(tokenizer(docs[f], add_special_tokens=False)["input_ids"]) + 1 for f in train_files)
        raise LongDocError(f"the {len(train_files)} training document(s) hold {tokens:,} tokens, fewer than one "
                           f"sequence of {config.seq_len:,}: lower --seq-len or add documents")
    held = pack([docs[f] for f in held_files], tokenizer, config.seq_len)[:config.eval_sequences]
    if held_files and not held:  # shorter than one sequence: score what there is
        held = pack([docs[f] for f in held_files], tokenizer, 1)
        held = [[t for seq in held for t in seq][:config.seq_len]]
    return Corpus(train_files, held_files, train, held)


# ---- model ------------------------------------------------------------------------------------------------------


def training_dtype(device: torch.device) -> str:
    """bfloat16 on a GPU (flash-attn needs it, and it halves activation memory); float32 on a CPU, where bfloat16
    matmuls are emulated on most chips and slower."""
    return "bfloat16" if device.type == "cuda" else "float32"


def load_for_training(settings: Settings) -> Any:
    """The generator as `Generator.load` builds it (weights, RoPE scaling applied and verified, attention), in the
    training dtype, without the quantized decode copies and without any adapter already set."""
    from app.llm.generator import Generator, _device

    if settings.generator_is_server:
        raise LongDocError(f"adapt trains a model loaded in this process; generator is a server "
                           f"({settings.generator}): set generator to the model's weights")
    device = _device(settings.device)
    config = settings.generator_config()
    return Generator.load(config.replace(dtype=training_dtype(device), quantized_decode=False, adapter=""))


def lora_config(rank: int) -> Any:
    """LoRA on every linear layer of the decoder (attention and MLP), not the output layer: LongLoRA found
    attention-only LoRA too weak for long-context adaptation. No dropout, so a resumed run trains as an
    unbroken one would."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=LORA_ALPHA_PER_RANK * rank, lora_dropout=0.0, bias="none",
                      target_modules="all-linear", task_type="CAUSAL_LM")


def merge_adapter(model: Any, adapter_dir: str | Path, config: GeneratorConfig) -> Any:
    """`model` with the LoRA adapter in `adapter_dir` merged into its weights: a plain model again, so every path
    that reads the weights (the forward, `app.llm.decode_step`'s quantized copies) reads the adapted ones. The merged
    weights are off the GGUF's 4-bit grid, so the decode step reads them in int8 (`model.decode_weights` says so).

    Raises:
        LongDocError: `adapter_dir` is not an adapter, or was trained on another generator.
    """
    from peft import PeftModel

    info = AdapterInfo.read(adapter_dir)
    if info.generator != config.source:
        raise LongDocError(f"the adapter {adapter_dir} was trained on {info.generator}, not on the configured "
                           f"generator {config.source}")
    if (info.rope_scaling, info.rope_factor) != (config.rope_scaling, config.rope_factor):
        log.warning("the adapter %s was trained with %s x%g; the generator runs %s x%g", adapter_dir,
                    info.rope_scaling, info.rope_factor, config.rope_scaling, config.rope_factor)
    with _quiet_peft():
        return PeftModel.from_pretrained(model, str(Path(adapter_dir).expanduser())).merge_and_unload()


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft reads transformers 5's deprecated `is_gradient_checkpointing`; its warning says nothing to a user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


# ---- checkpoints ------------------------------------------------------------------------------------------------


def latest_checkpoint(out: Path) -> Path | None:
    """The complete checkpoint (one with its state file) of the highest step in `out`, if any."""
    done = [p for p in out.glob(f"{CHECKPOINT_PREFIX}*") if (p / STATE_FILE).is_file()]
    return max(done, key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)), default=None)


def _save_checkpoint(out: Path, model: Any, optimizer: Any, state: dict[str, Any]) -> None:
    """Write `out/checkpoint-<step>/` (state file last, so a crash mid-write leaves it ignored), then drop older."""
    target = out / f"{CHECKPOINT_PREFIX}{state['step']}"
    shutil.rmtree(target, ignore_errors=True)
    model.save_pretrained(target)
    torch.save(optimizer.state_dict(), target / "optimizer.pt")
    tmp = target / f".{STATE_FILE}"
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, target / STATE_FILE)
    for old in out.glob(f"{CHECKPOINT_PREFIX}*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)


def _run_key(settings: Settings, config: AdaptConfig, corpus: Corpus) -> dict[str, Any]:
    """What a checkpoint must share with this run to be continued by it."""
    return {"generator": settings.generator, "rope_scaling": settings.rope_scaling,
            "rope_factor": settings.rope_factor, "seq_len": config.seq_len, "lora_rank": config.lora_rank,
            "learning_rate": config.learning_rate,
            "train_documents": [str(p) for p in corpus.train_documents],
            "held_out_documents": [str(p) for p in corpus.held_out_documents]}


# ---- evaluation -------------------------------------------------------------------------------------------------


def held_out_nll(model: Any, sequences: Sequence[list[int]]) -> torch.Tensor:
    """Mean next-token loss at each position over `sequences` (shorter ones count where they reach)."""
    from app.llm.perplexity import model_nll

    longest = max(len(s) for s in sequences)
    total, count = torch.zeros(longest - 1), torch.zeros(longest - 1)
    for ids in sequences:
        nll = model_nll(model, ids)
        total[:len(nll)] += nll
        count[:len(nll)] += 1
    return total / count


def _segments(before: torch.Tensor, after: torch.Tensor) -> list[dict[str, float]]:
    n = len(before) + 1  # positions; nll[i] predicts position i + 1
    step = max(1, math.ceil(n / EVAL_SEGMENTS))
    rows = []
    for start in range(0, n, step):
        end = min(start + step, n)
        sl = slice(max(start, 1) - 1, end - 1)
        rows.append({"start": start, "end": end, "ppl_before": round(math.exp(before[sl].mean().item()), 3),
                     "ppl_after": round(math.exp(after[sl].mean().item()), 3)})
    return rows


# ---- the run ----------------------------------------------------------------------------------------------------


def adapt(paths: Iterable[str | Path], out: str | Path, settings: Settings, show_progress: bool = False,
          **overrides: Any) -> AdaptReport:
    """Train a LoRA adapter on the documents under `paths` and write it to `out`; continue `out`'s checkpoint.

    Args:
        paths: files and folders, in any format `ingest` reads.
        out: the adapter's folder (created); set `generator_adapter` to it to answer with the adapted model.
        settings: the generator, its RoPE scaling and factor, and the `adapt_*` defaults.
        show_progress: a progress bar with the loss and tokens/s.
        **overrides: `AdaptConfig` fields (seq_len, steps, lora_rank, learning_rate, held_out, eval_sequences,
            checkpoint_every); an unknown name raises.

    Returns:
        AdaptReport: losses, held-out perplexity before/after, by position, and the speed.

    Raises:
        LongDocError: unreadable documents, too little text for one sequence, a sequence longer than the scaled
            window, or a checkpoint in `out` from a different run.

    Example:
        >>> r = adapt(["contracts/"], Path("adapters/c"), Settings.load(), seq_len=2048, steps=200)  # doctest: +SKIP
        >>> r.losses[0] > r.losses[-1], r.ppl_after < r.ppl_before                                  # doctest: +SKIP
        (True, True)
    """
    from peft import PeftModel, get_peft_model
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    started = time.perf_counter()
    config = AdaptConfig.from_settings(settings, **overrides)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():  # found at the first checkpoint, after minutes of training
        raise LongDocError(f"{out}: a file; the adapter goes in a folder (--out)")
    if (out.is_dir() and any(out.iterdir()) and latest_checkpoint(out) is None
            and not (out / ADAPTER_CONFIG).is_file()):
        raise LongDocError(f"{out} holds other files: the adapter goes in a new folder, or one that holds an "
                           "earlier adapter or a checkpoint of this run")
    documents = read_documents(paths, max_bytes=int(settings.max_file_mb * 1024 * 1024))  # before the model: fail fast
    gen = load_for_training(settings)
    if config.seq_len > gen.context_window:
        raise LongDocError(f"--seq-len {config.seq_len:,} is longer than the {gen.rope.scaling} x{gen.rope.factor:g} "
                           f"window of {gen.context_window:,} tokens: raise --rope-factor or lower --seq-len")
    corpus = build_corpus(documents, gen.tokenizer, config)
    key = _run_key(settings, config, corpus)

    base, device = gen.model, gen.device
    base.config.use_cache = False
    checkpoint = latest_checkpoint(out) if out.is_dir() else None
    state: dict[str, Any] = {"step": 0, "losses": []}
    if checkpoint is not None:
        state = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
        differs = [k for k in key if state["key"].get(k) != key[k]]
        if differs:
            raise LongDocError(f"{out} holds a checkpoint of a different run ({', '.join(differs)} differ): use "
                               f"another --out, or delete {checkpoint} to start over")
    _enable_checkpointing(base)
    with _quiet_peft():
        if checkpoint is not None:
            model = PeftModel.from_pretrained(base, str(checkpoint), is_trainable=True)
            log.info("resuming %s from step %d", out, state["step"])
        else:
            model = get_peft_model(base, lora_config(config.lora_rank))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    if checkpoint is not None:
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", map_location=device))
    # a resumed run picks the schedule up at the checkpoint's step, over this run's --steps (which may be more)
    schedule = get_cosine_schedule_with_warmup(optimizer, int(WARMUP_FRACTION * config.steps), config.steps,
                                               last_epoch=state["step"] - 1)

    resumed_from = state["step"]
    losses: list[float] = list(state["losses"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    bar = tqdm(total=config.steps, initial=resumed_from, desc="Adapting", unit="step", disable=not show_progress)
    train_started = time.perf_counter()
    for step in range(resumed_from, config.steps):
        ids = torch.tensor([sequence_at(corpus.train, step)], device=device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(loss.item(), 5))
        done = step + 1 - resumed_from
        rate = done * config.seq_len / (time.perf_counter() - train_started)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", tok_s=f"{rate:,.0f}")
        bar.update()
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            _save_checkpoint(out, model, optimizer, {"step": step + 1, "losses": losses, "key": key})
    bar.close()
    train_seconds = time.perf_counter() - train_started
    trained = config.steps - resumed_from if config.steps > resumed_from else 0

    report = AdaptReport(
        out_dir=str(out), steps=max(config.steps, resumed_from), resumed_from=resumed_from, seq_len=config.seq_len,
        lora_rank=config.lora_rank, learning_rate=config.learning_rate, rope_scaling=gen.rope.public(),
        device=device.type, dtype=training_dtype(device), attn_implementation=gen.info.attn_implementation or "",
        losses=losses, train_documents=[str(p) for p in corpus.train_documents],
        held_out_documents=[str(p) for p in corpus.held_out_documents], train_sequences=len(corpus.train),
        eval_sequences=len(corpus.held_out), train_seconds=round(train_seconds, 2),
        tokens_per_s=round(trained * config.seq_len / train_seconds, 1) if trained else 0.0,
        peak_memory_mb=round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None,
    )
    model.eval()
    if corpus.held_out:
        with torch.inference_mode():
            after = held_out_nll(model.get_base_model(), corpus.held_out)
            with model.disable_adapter():
                before = held_out_nll(model.get_base_model(), corpus.held_out)
        report.ppl_before = round(math.exp(before.mean().item()), 4)
        report.ppl_after = round(math.exp(after.mean().item()), 4)
        report.segments = _segments(before, after)
        report.nll_before = [round(x, 4) for x in before.tolist()]
        report.nll_after = [round(x, 4) for x in after.tolist()]

    model.save_pretrained(out)
    info = AdapterInfo(generator=settings.generator, rope_scaling=settings.rope_scaling,
                       rope_factor=settings.rope_factor, original_max_position=gen.rope.original_max_position,
                       seq_len=config.seq_len, lora_rank=config.lora_rank, steps=report.steps,
                       train_documents=report.train_documents, held_out_documents=report.held_out_documents)
    (out / ADAPTER_INFO).write_text(json.dumps(asdict(info), indent=2), encoding="utf-8")
    report.seconds = round(time.perf_counter() - started, 2)
    (out / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return report


def _enable_checkpointing(model: Any) -> None:
    """Gradient (activation) checkpointing on every decoder layer, non-reentrant (it needs no inputs that require
    grad, which frozen embeddings are not). transformers 5 renamed the method; 4.x has only the old name."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def sequence_at(sequences: list[list[int]], step: int) -> list[int]:
    """The training sequence of `step`: each pass over the sequences in its own seeded order, so any step's
    sequence is known without replaying the ones before (a resumed run sees what an unbroken one would)."""
    n = len(sequences)
    order = list(range(n))
    random.Random(SEED + step // n).shuffle(order)
    return sequences[order[step % n]]


def held_out_files(adapter_dir: str | Path) -> list[Path]:
    """The documents `adapter_dir` was not trained on, as `longdoc ppl/eval niah --adapter` score them.

    Raises:
        LongDocError: none were held out, or they are no longer where they were.
    """
    info = AdapterInfo.read(adapter_dir)
    if not info.held_out_documents:
        raise LongDocError(f"{adapter_dir} was trained with no documents held out: give the files to score")
    files = [Path(p) for p in info.held_out_documents]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise LongDocError(f"held-out document(s) of {adapter_dir} not found: {', '.join(missing)}")
    return files
