"""Perplexity by position, per RoPE scaling: the evidence that the extended window is usable.

Each scaling scores the first L tokens of a text in ONE forward pass (so `dynamic` NTK sees the whole length, as
it would in a prompt), then the per-token negative log-likelihoods are grouped into fixed segments (2K tokens by
default). Perplexity that climbs past the original window means the model no longer reads those positions.

Memory on the CPU stays bounded at 32K tokens: attention is sdpa (no L x L matrix) and the vocabulary
projection runs `LOGIT_CHUNK` positions at a time, so the 32K x 49K logits are never held at once.

Example:
    >>> config = Settings.load().generator_config()
    >>> report = run_ppl(Path("contract.txt"), [16384], ["none", "yarn"], config, Path("ppl.png"))  # doctest: +SKIP
    >>> report.result("yarn").ppl(12288, 16384)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from app.errors import LongDocError
from app.llm.config import GeneratorConfig
from app.llm.generator import Generator
from app.llm.rope import ROPE_SCALINGS

log = logging.getLogger(__name__)

LOGIT_CHUNK = 1024  # positions per vocabulary projection: 1024 x 49,152 fp32 logits = 200 MB
# Scalings whose frequencies do not depend on the sequence length: by causality the first L tokens score the
# same inside a longer pass, so one pass at the longest length serves every shorter one.
_LENGTH_FREE = {"none", "linear", "yarn"}


@dataclass
class PplResult:
    """One scaling's per-token negative log-likelihoods over the first `length` tokens."""

    scaling: str
    length: int
    nll: torch.Tensor  # (length - 1,): nll[i] is the loss of predicting token i + 1
    seconds: float

    def ppl(self, start: int, end: int) -> float:
        """Perplexity of the tokens at positions [start, end) (position 0 has no prediction and is skipped)."""
        losses = self.nll[max(start, 1) - 1:end - 1]
        return math.exp(losses.mean().item())

    def segments(self, segment: int) -> list[tuple[int, int, float]]:
        """(start, end, perplexity) for each `segment`-token stretch."""
        return [(s, min(s + segment, self.length), self.ppl(s, min(s + segment, self.length)))
                for s in range(0, self.length, segment)]


@dataclass
class PplReport:
    """Everything `longdoc ppl` shows: per scaling and length, the segment perplexities, plus the plot."""

    source: str
    lengths: list[int]
    segment: int
    original_window: int
    results: list[PplResult] = field(default_factory=list)
    png: Path | None = None

    def result(self, scaling: str, length: int | None = None) -> PplResult:
        """The result of `scaling` at `length` (default: the longest length)."""
        length = length or max(self.lengths)
        for r in self.results:
            if r.scaling == scaling and r.length >= length:
                return r if r.length == length else PplResult(scaling, length, r.nll[:length - 1], r.seconds)
        raise KeyError(f"no result for {scaling} at {length} tokens")

    def scalings(self) -> list[str]:
        return list(dict.fromkeys(r.scaling for r in self.results))

    def table(self):
        """A rich Table: a row per scaling, a column per segment of the longest length, then the perplexity of
        the original window and of each whole length."""
        from rich.table import Table

        longest = max(self.lengths)
        table = Table(title=f"Perplexity by position: {self.source} "
                      f"({longest:,} tokens, {self.segment:,}-token segments)")
        table.add_column("RoPE")
        spans = [(s, min(s + self.segment, longest)) for s in range(0, longest, self.segment)]
        for s, e in spans:
            table.add_column(f"{_k(s)}-{_k(e)}", justify="right")
        table.add_column(f"0-{_k(min(self.original_window, longest))}", justify="right", style="bold")
        for length in self.lengths:
            table.add_column(f"all {_k(length)}", justify="right")
        for scaling in self.scalings():
            full = self.result(scaling)
            cells = [f"{full.ppl(s, e):.1f}" for s, e in spans]
            cells.append(f"{full.ppl(0, min(self.original_window, longest)):.1f}")
            cells += [f"{self.result(scaling, n).ppl(0, n):.1f}" for n in self.lengths]
            table.add_row(scaling, *cells)
        return table


def perplexity_by_segment(
    config_or_generator: GeneratorConfig | Generator,
    text: str,
    lengths: list[int],
    scalings: list[str],
    segment: int = 2048,
    show_progress: bool = True,
    adapter: str | Path | None = None,
) -> PplReport:
    """Score `text` under each scaling at each length.

    Args:
        config_or_generator: the generator to load (the scaling is replaced per run), or a loaded generator,
            reused for its own scaling.
        text: at least max(lengths) tokens of text.
        lengths: token counts to score, e.g. [2048, 8192, 16384].
        scalings: names from `app.llm.rope.ROPE_SCALINGS`.
        segment: tokens per reported segment.
        adapter: a `longdoc adapt` folder: one more row, "<scaling>+adapter", the config's scaling with the
            adapter merged, to read against the same scaling's row without it.

    Returns:
        A PplReport (no plot yet: see `plot_ppl`).
    """
    if not lengths or not scalings:
        raise LongDocError("give at least one length and one scaling")
    given = config_or_generator if isinstance(config_or_generator, Generator) else None
    config = given.config if given else config_or_generator
    config = config.replace(quantized_decode=False)  # scoring never decodes: skip building the decode step
    generators = {}
    if given:
        generators[given.rope.scaling] = given
    first = given or Generator.load(config.replace(rope_scaling=scalings[0]))
    generators.setdefault(first.rope.scaling, first)
    ids = first.tokenizer(text, add_special_tokens=False)["input_ids"]
    longest = max(lengths)
    if len(ids) < longest:
        raise LongDocError(f"the text has {len(ids):,} tokens; the longest length asked is {longest:,}. "
                           "Give a longer text or smaller --lengths.")
    report = PplReport("", sorted(lengths), segment, first.rope.original_max_position)
    # (label, loader): each model is loaded when its turn comes, so only one extra is held at a time
    runs = [(s, lambda s=s: generators.get(s) or Generator.load(config.replace(rope_scaling=s))) for s in scalings]
    if adapter:
        runs.append((f"{config.rope_scaling}+adapter", lambda: Generator.load(config.replace(adapter=str(adapter)))))
    for label, load in runs:
        gen = load()
        for length in [longest] if gen.rope.scaling in _LENGTH_FREE else sorted(lengths):
            started = time.perf_counter()
            nll = token_nll(gen, ids[:length], show_progress=show_progress)
            report.results.append(PplResult(label, length, nll, time.perf_counter() - started))
            log.info("ppl %s at %d tokens: %.2f (%.0fs)", label, length, math.exp(nll.mean().item()),
                     time.perf_counter() - started)
    return report


def token_nll(gen: Generator, ids: list[int], show_progress: bool = False) -> torch.Tensor:
    """Per-token negative log-likelihood of `ids` under the generator's model (see `model_nll`)."""
    return model_nll(gen.model, ids, show_progress)


@torch.inference_mode()
def model_nll(model, ids: list[int], show_progress: bool = False) -> torch.Tensor:
    """Per-token negative log-likelihood of `ids` under a transformers causal LM, in one forward pass, projected to
    the vocabulary in chunks. Takes the model rather than a Generator so that `app.adapt` scores a model under
    training (adapter on and off) with the same arithmetic as `longdoc ppl`."""
    x = torch.tensor([ids], device=next(model.parameters()).device)
    hidden = model.model(input_ids=x, use_cache=False).last_hidden_state[0]  # (L, hidden), after the final norm
    head = model.get_output_embeddings()
    targets = x[0, 1:]
    out = torch.empty(len(ids) - 1, dtype=torch.float32)
    starts = range(0, len(ids) - 1, LOGIT_CHUNK)
    for s in tqdm(starts, desc="Scoring", disable=not show_progress or len(starts) < 4, leave=False):
        e = min(s + LOGIT_CHUNK, len(ids) - 1)
        logits = head(hidden[s:e]).float()  # (chunk, vocab)
        out[s:e] = F.cross_entropy(logits, targets[s:e], reduction="none").cpu()
    return out


def plot_ppl(report: PplReport, out_png: Path) -> Path:
    """Perplexity vs position (log scale), one line per scaling, the original window as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for scaling in report.scalings():
        segs = report.result(scaling).segments(report.segment)
        ax.plot([(s + e) / 2 for s, e, _ in segs], [p for *_, p in segs], marker="o", label=scaling)
    ax.axvline(report.original_window, color="grey", linestyle="--",
               label=f"original window ({report.original_window:,})")
    ax.set_yscale("log")
    ax.set_xlabel(f"position (tokens; {report.segment:,}-token segments)")
    ax.set_ylabel("perplexity")
    ax.set_title(f"RoPE scaling vs position: {report.source}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    report.png = out_png
    return out_png


def run_ppl(file: Path | None, lengths: list[int], scalings: list[str], config: GeneratorConfig, out_png: Path,
            adapter: Path | None = None) -> PplReport:
    """`longdoc ppl`: read `file` (any format ingest reads), score it, draw the plot; print `report.table()`.

    With `adapter` (a `longdoc adapt` folder) a row with the adapter merged is added, and `file` may be None: the
    documents the adapter was not trained on are scored, joined end to end by blank lines.
    """
    from ingest.loaders import load_document

    unknown = [s for s in scalings if s not in ROPE_SCALINGS]
    if unknown:  # said before a model loads and the others are scored
        raise LongDocError(f"rope scaling {unknown[0]!r} is not one of {', '.join(ROPE_SCALINGS)}")
    if adapter is not None:
        from app.adapt import AdapterInfo

        AdapterInfo.read(adapter)  # an adapter folder, or one line saying it is not
    if file is None:
        if adapter is None:
            raise LongDocError("give a file to score (or --adapter, to score the documents it held out)")
        from app.adapt import held_out_files

        files = held_out_files(adapter)
        text = "\n\n".join(load_document(f).text.strip() for f in files)
        source = f"{len(files)} held-out document(s) of {Path(adapter).name}"
    else:
        text, source = load_document(Path(file)).text, Path(file).name
    report = perplexity_by_segment(config, text, lengths, scalings, adapter=adapter)
    report.source = source
    plot_ppl(report, out_png)
    return report


def _k(tokens: int) -> str:
    return f"{tokens / 1024:g}K" if tokens % 1024 == 0 else str(tokens)
