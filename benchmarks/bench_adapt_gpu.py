"""The GPU run of `longdoc adapt`: SmolLM2-135M trained at 16K tokens with YaRN x4 on the dev contracts and
earnings-call transcripts, then read at 8K-32K positions and asked for needles at 16K and 32K, before and after;
and what flash-attn saves against sdpa in training memory.

Stages, each through the tool's own code (`app.adapt.adapt`, `Generator.load`, `app.evals.niah.run_niah`):

1. memory: for each attention (flash_attention_2 when flash-attn is installed, and sdpa) and each length in
   MEMORY_LENGTHS, MEMORY_STEPS training steps in a scratch folder: peak CUDA memory and tokens/s.
2. train: STEPS steps of SEQ_LEN tokens on the contracts and transcripts, HELD_OUT of the documents (whole, by a
   seeded shuffle) never trained on; the attention is the tool's default (flash-attn when installed).
3. perplexity by position: EVAL_SEQUENCES sequences of EVAL_LEN tokens of the held-out documents, scored by
   the generator without and with the adapter merged; SEGMENT-token stretches, 8K-32K being the stretched ones.
4. needle in a haystack, `full_document` in YaRN x4, NIAH_LENGTHS x NIAH_DEPTHS, the haystack cut from the
   held-out documents, before and after (the adapter as the generator). 32K is 32,000 haystack tokens so that the
   prompt's template and the answer's 48 tokens fit the 32,768-token window.

It needs a CUDA GPU and exits with one line without one; BENCH_TINY=1 runs every stage at toy sizes on any
device (the CPU here), to check the script, and writes to the `_tiny` files.

Run (on the GPU machine, after `make install`; add `pip install flash-attn` or the `gpu` extra for stage 1's
flash-attn rows): HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_adapt_gpu.py
     (BENCH_STEPS, BENCH_SEQ_LEN, BENCH_TAG change the run; BENCH_DATA=DIR points at a copy of shared/data)
Outputs: benchmarks/results/bench_adapt_gpu{TAG}.txt (first line: the command), .json and .png; the adapter in
benchmarks/cache/adapt_gpu{TAG}/.
"""

import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from app.adapt import adapt, held_out_files, held_out_nll, pack, read_documents  # noqa: E402
from app.evals.datasets import DATA_ROOT  # noqa: E402
from app.evals.niah import run_niah, size_label  # noqa: E402
from app.llm.generator import Generator  # noqa: E402
from app.settings import Settings  # noqa: E402

TINY = os.environ.get("BENCH_TINY") == "1"
DATA = Path(os.environ.get("BENCH_DATA", DATA_ROOT))
SOURCES = [DATA / "cuad_dev" / "contracts", DATA / "ectsum_dev" / "ects"]
SEQ_LEN = int(os.environ.get("BENCH_SEQ_LEN", 256 if TINY else 16384))
STEPS = int(os.environ.get("BENCH_STEPS", 2 if TINY else 300))
LEARNING_RATE = 2e-4  # the settings' default
HELD_OUT = 0.1  # of 61 documents: 6, whole
MEMORY_LENGTHS = [256] if TINY else [16384, 32768]
MEMORY_STEPS = 1 if TINY else 3
EVAL_LEN = 512 if TINY else 32768
EVAL_SEQUENCES = 1 if TINY else 4
SEGMENT = 64 if TINY else 2048
NIAH_LENGTHS = [512] if TINY else [16384, 32000]
NIAH_DEPTHS = [50] if TINY else [0, 25, 50, 75, 100]
TAG = os.environ.get("BENCH_TAG", "_tiny" if TINY else "")

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / f"bench_adapt_gpu{TAG}"
ADAPTER = ROOT / "benchmarks" / "cache" / f"adapt_gpu{TAG}"
SCRATCH = ROOT / "benchmarks" / "cache" / f"adapt_gpu_memory{TAG}"

if not torch.cuda.is_available() and not TINY:
    sys.exit("bench_adapt_gpu.py needs a CUDA GPU (BENCH_TINY=1 checks the script on any device)")
missing = [str(p) for p in SOURCES if not p.is_dir()]
if missing:
    sys.exit(f"dev data not found: {', '.join(missing)} (set BENCH_DATA to the folder holding cuad_dev and ectsum_dev)")
if TINY:  # a few short documents: the contracts' 2 MB one alone would take minutes to score on a CPU
    SOURCES = sorted((SOURCES[0]).glob("*.txt"), key=lambda p: p.stat().st_size)[:6] + sorted(SOURCES[1].glob("*"))[:2]

env = " ".join(f"{k}={os.environ[k]}" for k in ("BENCH_TINY", "BENCH_STEPS", "BENCH_SEQ_LEN", "BENCH_TAG", "BENCH_DATA")
               if k in os.environ)
command = f"{env} HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_adapt_gpu.py".strip()
started = time.time()
# the generator in bfloat16 on the GPU (flash-attn has no float32 kernels), as adapt trains it
settings = Settings.load(dtype="bfloat16" if torch.cuda.is_available() else "float32")
flash = importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()
results: dict = {"command": command, "settings": {k: settings.to_dict()[k] for k in (
    "generator", "rope_scaling", "rope_factor", "dtype", "attn_implementation")}}
console = Console(width=130, record=True)

# ---- 1. memory: flash-attn against sdpa --------------------------------------------------------------------
memory = []
for attn in (["flash_attention_2"] if flash else []) + ["sdpa"]:
    for length in MEMORY_LENGTHS:
        scratch = SCRATCH / f"{attn}_{length}"
        shutil.rmtree(scratch, ignore_errors=True)
        row = {"attn": attn, "seq_len": length, "steps": MEMORY_STEPS}
        try:
            r = adapt(SOURCES, scratch, settings.replace(attn_implementation=attn), seq_len=length,
                      steps=MEMORY_STEPS, held_out=HELD_OUT, eval_sequences=1, checkpoint_every=10**6)
            row |= {"peak_memory_mb": r.peak_memory_mb, "tokens_per_s": r.tokens_per_s}
        except torch.cuda.OutOfMemoryError as exc:
            row |= {"error": f"out of memory: {exc}".splitlines()[0]}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        memory.append(row)
        print(row, flush=True)
results["memory"] = memory

# ---- 2. train ------------------------------------------------------------------------------------------------
report = adapt(SOURCES, ADAPTER, settings, show_progress=True, seq_len=SEQ_LEN, steps=STEPS,
               learning_rate=LEARNING_RATE, held_out=HELD_OUT, checkpoint_every=50)
results["train"] = {k: v for k, v in report.to_dict().items() if k not in ("nll_before", "nll_after")}
held = held_out_files(ADAPTER)

# ---- 3. perplexity by position to EVAL_LEN -------------------------------------------------------------------
base = Generator.load(settings.replace(quantized_decode=False).generator_config())
texts = [text for _, text in read_documents(held)]
sequences = pack(texts, base.tokenizer, EVAL_LEN)[:EVAL_SEQUENCES]
if not sequences:
    sys.exit(f"the held-out documents hold fewer than {EVAL_LEN:,} tokens: lower EVAL_LEN or raise HELD_OUT")
nll = {"before": held_out_nll(base.model, sequences)}
del base
adapted = Generator.load(settings.replace(quantized_decode=False, generator_adapter=str(ADAPTER)).generator_config())
nll["after"] = held_out_nll(adapted.model, sequences)
del adapted


def ppl(losses: torch.Tensor, start: int, end: int) -> float:
    """Perplexity of positions [start, end); losses[i] is the loss of predicting position i + 1."""
    return math.exp(losses[max(start, 1) - 1:end - 1].mean().item())


segments = [(s, min(s + SEGMENT, EVAL_LEN)) for s in range(0, EVAL_LEN, SEGMENT)]
native = settings.original_max_position or 8192  # SmolLM2's trained window
spans = segments + ([(0, native), (native, EVAL_LEN)] if EVAL_LEN > native else [])
results["perplexity"] = {"eval_len": EVAL_LEN, "sequences": len(sequences), "segment": SEGMENT, "rows": [
    {"start": s, "end": e, "before": round(ppl(nll["before"], s, e), 3), "after": round(ppl(nll["after"], s, e), 3)}
    for s, e in spans]}

# ---- 4. needle in a haystack, full_document, before and after ------------------------------------------------
niah = {}
for label, run_settings in (("before", settings), ("after", settings.replace(generator_adapter=str(ADAPTER)))):
    r = run_niah(run_settings, NIAH_LENGTHS, NIAH_DEPTHS, held, strategies=(), scalings=(settings.rope_scaling,))
    niah[label] = {"summary": r.summary(), "grid": r.grid("full_document", settings.rope_scaling),
                   "cells": [{k: getattr(c, k) for k in ("length", "depth", "code", "answer", "correct", "skipped",
                                                         "prompt_tokens", "seconds")} for c in r.cells]}
results["niah"] = {"lengths": NIAH_LENGTHS, "depths": NIAH_DEPTHS} | niah

# ---- report --------------------------------------------------------------------------------------------------
device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor()})"
versions = f"torch {torch.__version__}" + (f", CUDA {torch.version.cuda}" if torch.cuda.is_available() else "")
if flash:
    versions += f", flash-attn {importlib.metadata.version('flash-attn')}"
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                        text=True).stdout.strip()
header = (f"# {command}   ({datetime.fromtimestamp(started, timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{(time.time() - started) / 60:.0f} min; {device}; {versions}; commit {commit})")
results["header"] = header
console.print(header, highlight=False, soft_wrap=True)

table = Table(title=f"Training memory and speed, {MEMORY_STEPS} steps (LoRA r{report.lora_rank}, gradient "
                    f"checkpointing, {report.dtype})")
for column in ("attention", "sequence", "peak memory (MB)", "tokens/s"):
    table.add_column(column, justify="right")
for row in memory:
    peak = row.get("peak_memory_mb")
    table.add_row(row["attn"], f"{row['seq_len']:,}", row.get("error") or ("n/a" if peak is None else f"{peak:,.0f}"),
                  "" if "error" in row else f"{row['tokens_per_s']:,.0f}")
console.print(table)
console.print(f"train: {report.steps} steps of {report.seq_len:,} tokens ({report.attn_implementation}) on "
              f"{len(report.train_documents)} documents, {len(report.held_out_documents)} held out; loss "
              f"{report.losses[0]:.3f} at step 1, {sum(report.losses[-10:]) / len(report.losses[-10:]):.3f} over the "
              f"last 10; {report.tokens_per_s:,.0f} tokens/s; peak {report.peak_memory_mb} MB; held-out "
              f"perplexity at {report.seq_len:,}: {report.ppl_before} before, {report.ppl_after} after",
              highlight=False)
table = Table(title=f"Held-out perplexity by position ({len(sequences)} sequences of {EVAL_LEN:,} tokens)")
for column in ("positions", "before", "after", "change"):
    table.add_column(column, justify="right")
for row in results["perplexity"]["rows"]:
    table.add_row(f"{row['start']:,}-{row['end']:,}", f"{row['before']:.2f}", f"{row['after']:.2f}",
                  f"{row['after'] / row['before'] - 1:+.1%}")
console.print(table)
table = Table(title=f"NIAH full_document: correct of {len(NIAH_DEPTHS)} depths")
table.add_column("")
for n in NIAH_LENGTHS:
    table.add_column(size_label(n), justify="right")
for label in ("before", "after"):
    table.add_row(label, *[f"{sum(x or 0 for x in row):.0f}/{sum(x is not None for x in row)}"
                           for row in niah[label]["grid"]])
console.print(table)

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
for label in ("before", "after"):
    left.plot([(s + e) / 2 for s, e in segments], [ppl(nll[label], s, e) for s, e in segments], marker="o",
              label=label)
if EVAL_LEN > native:
    left.axvline(native, color="grey", linestyle="--", label=f"native window ({native:,})")
left.set_yscale("log")
left.set_xlabel(f"position (tokens; {SEGMENT:,}-token segments)")
left.set_ylabel("perplexity")
left.set_title(f"held-out documents, {len(sequences)} x {EVAL_LEN:,} tokens")
left.grid(True, which="both", alpha=0.3)
left.legend()
for i, attn in enumerate(dict.fromkeys(r["attn"] for r in memory)):
    rows = [r for r in memory if r["attn"] == attn]
    right.bar([j + 0.4 * i for j in range(len(rows))], [r.get("peak_memory_mb") or 0 for r in rows], width=0.4,
              label=attn)
right.set_xticks([j + 0.2 for j in range(len(MEMORY_LENGTHS))], [size_label(n) for n in MEMORY_LENGTHS])
right.set_xlabel("training sequence (tokens)")
right.set_ylabel("peak memory (MB)")
right.set_title("training memory: flash-attn vs sdpa")
right.legend()
fig.suptitle(f"longdoc adapt on {device}: SmolLM2-135M, YaRN x4, {report.steps} steps at {report.seq_len:,}",
             fontsize=11)
fig.tight_layout()
OUT.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT.with_suffix(".png"), dpi=110)
OUT.with_suffix(".json").write_text(json.dumps(results, indent=2), encoding="utf-8")
OUT.with_suffix(".txt").write_text(console.export_text(), encoding="utf-8")
console.print(f"wrote {OUT.with_suffix('.txt').relative_to(ROOT)}, .json and .png")
