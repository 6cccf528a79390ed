"""The GPU run of `longdoc adapt`: SmolLM2-135M trained at 16K tokens with YaRN x4 on the dev contracts and
earnings-call transcripts, then read at 8K-32K positions and asked for needles at 16K and 32K, before and after;
and what a flash-attention kernel saves against materialised attention in training memory and time.

Stages, each through the tool's own code (`app.adapt.adapt`, `Generator.load`, `PromptBuilder.build_whole`):

1. memory: for each attention kernel and each length in MEMORY_LENGTHS, MEMORY_STEPS training steps in a scratch
   folder: peak CUDA memory and tokens/s. The kernels: `flash_attention_2` (the flash-attn package, when
   installed), transformers' `sdpa` with PyTorch's own FlashAttention-2 kernel forced, `sdpa` with its
   memory-efficient kernel forced, and `eager` (the attention matrix materialised: the baseline).
2. train: STEPS steps of SEQ_LEN tokens on the contracts and transcripts, HELD_OUT of the documents (whole, by a
   seeded shuffle) never trained on; the attention is the tool's default. BENCH_TRAIN_S caps the steps at what
   that many seconds hold at the speed stage 1 measured for `sdpa` (flash kernel) at the nearest length.
3. perplexity by position: EVAL_SEQUENCES sequences of EVAL_LEN tokens of the held-out documents, scored by
   the generator without and with the adapter merged; SEGMENT-token stretches, 8K-32K being the stretched ones.
4. needle in a haystack, `full_document` in YaRN x4, NIAH_LENGTHS x NIAH_DEPTHS, the haystack cut from the
   held-out documents, before and after (the adapter merged into the generator). 32K is 32,000 haystack tokens so
   that the prompt's template and the answer's 48 tokens fit the 32,768-token window. `full_document` reads the
   whole document and retrieves nothing, so each needle is asked through the prompt that mode builds
   (`PromptBuilder.build_whole`) and the generator, with no index: the run then needs neither the embedder nor
   faiss, which is what lets it travel to a bare GPU machine.

It needs a CUDA GPU and exits with one line without one; BENCH_TINY=1 runs every stage at toy sizes on any
device (the CPU here, or the GPU as a quick check), to check the script, and writes to the `_tiny` files.

Run (on the GPU machine, after `make install`; add `pip install flash-attn` or the `gpu` extra for stage 1's
flash-attn rows): HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_adapt_gpu.py
     (BENCH_STEPS, BENCH_SEQ_LEN, BENCH_TRAIN_S, BENCH_TAG change the run; BENCH_DATA=DIR points at a copy of
     shared/data)
Outputs: benchmarks/results/bench_adapt_gpu{TAG}.txt (first line: the command), .json and .png; the adapter in
benchmarks/cache/adapt_gpu{TAG}/. `--replot` redraws the .png from the .json, on any machine.
"""

import contextlib
import importlib.util
import json
import math
import os
import random
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
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from app.adapt import adapt, held_out_files, held_out_nll, pack, read_documents  # noqa: E402
from app.errors import PromptTooLong  # noqa: E402
from app.evals.datasets import DATA_ROOT  # noqa: E402
from app.evals.niah import MAX_NEW_TOKENS, found, load_haystack, planted_cells, size_label  # noqa: E402
from app.llm.generator import Generator  # noqa: E402
from app.prompt import PromptBuilder  # noqa: E402
from app.settings import Settings  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.run_header import accelerator  # noqa: E402

TINY = os.environ.get("BENCH_TINY") == "1"
DATA = Path(os.environ.get("BENCH_DATA", DATA_ROOT))
SOURCES = [DATA / "cuad_dev" / "contracts", DATA / "ectsum_dev" / "ects"]
SEQ_LEN = int(os.environ.get("BENCH_SEQ_LEN", 256 if TINY else 16384))
STEPS = int(os.environ.get("BENCH_STEPS", 2 if TINY else 300))
TRAIN_S = float(os.environ["BENCH_TRAIN_S"]) if "BENCH_TRAIN_S" in os.environ else None
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


def plot(results: dict, path: Path) -> None:
    """Perplexity by position before and after, and peak training memory by kernel and length, from the JSON the
    run writes (so that `--replot` redraws a GPU run's figure anywhere)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    rows = results["perplexity"]["rows"]
    segment, eval_len = results["perplexity"]["segment"], results["perplexity"]["eval_len"]
    segments = [r for r in rows if r["end"] - r["start"] <= segment]
    for label in ("before", "after"):
        left.plot([(r["start"] + r["end"]) / 2 for r in segments], [r[label] for r in segments], marker="o",
                  label=label)
    native = results["native_window"]
    if eval_len > native:
        left.axvline(native, color="grey", linestyle="--", label=f"native window ({native:,})")
    left.set_yscale("log")
    left.set_xlabel(f"position (tokens; {segment:,}-token segments)")
    left.set_ylabel("perplexity")
    left.set_title(f"held-out documents, {results['perplexity']['sequences']} x {eval_len:,} tokens")
    left.grid(True, which="both", alpha=0.3)
    left.legend()
    memory = results["memory"]
    kernels = list(dict.fromkeys(r["attn"] for r in memory))
    lengths = list(dict.fromkeys(r["seq_len"] for r in memory))
    width = 0.8 / len(kernels)
    for i, attn in enumerate(kernels):
        peaks = {r["seq_len"]: r.get("peak_memory_mb") or 0 for r in memory if r["attn"] == attn}
        right.bar([j + width * i for j in range(len(lengths))], [peaks.get(n, 0) for n in lengths], width=width,
                  label=attn)
    right.set_xticks([j + width * (len(kernels) - 1) / 2 for j in range(len(lengths))],
                     [size_label(n) for n in lengths])
    right.set_xlabel("training sequence (tokens; no bar: out of memory or no kernel)")
    right.set_ylabel("peak memory (MB)")
    right.set_title("training memory by attention kernel")
    right.legend()
    train = results["train"]
    fig.suptitle(f"longdoc adapt on {results['device']}: SmolLM2-135M, YaRN x4, {train['steps']} steps at "
                 f"{train['seq_len']:,}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if "--replot" in sys.argv:  # redraw the figure from the run's JSON
    plot(json.loads(OUT.with_suffix(".json").read_text(encoding="utf-8")), OUT.with_suffix(".png"))
    sys.exit(0)

if not torch.cuda.is_available() and not TINY:
    sys.exit("bench_adapt_gpu.py needs a CUDA GPU (BENCH_TINY=1 checks the script on any device)")
missing = [str(p) for p in SOURCES if not p.is_dir()]
if missing:
    sys.exit(f"dev data not found: {', '.join(missing)} (set BENCH_DATA to the folder holding cuad_dev and ectsum_dev)")
if TINY:  # a few short documents: the contracts' 2 MB one alone would take minutes to score on a CPU
    SOURCES = sorted((SOURCES[0]).glob("*.txt"), key=lambda p: p.stat().st_size)[:6] + sorted(SOURCES[1].glob("*"))[:2]

env = " ".join(f"{k}={os.environ[k]}" for k in ("BENCH_TINY", "BENCH_STEPS", "BENCH_SEQ_LEN", "BENCH_TRAIN_S",
                                                 "BENCH_TAG", "BENCH_DATA") if k in os.environ)
command = f"{env} HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_adapt_gpu.py".strip()
started = time.time()
# the generator in bfloat16 on the GPU (flash-attn has no float32 kernels), as adapt trains it
settings = Settings.load(dtype="bfloat16" if torch.cuda.is_available() else "float32")
flash = importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()
results: dict = {"command": command, "settings": {k: settings.to_dict()[k] for k in (
    "generator", "rope_scaling", "rope_factor", "dtype", "attn_implementation")}}
console = Console(width=130, record=True)

# ---- 1. memory: flash attention against the materialised attention matrix -------------------------------------
# (label, attn_implementation, the sdpa kernel forced or None); forcing a kernel that cannot run raises, and the
# row says so rather than silently measuring another kernel
KERNELS = ([("flash_attention_2", "flash_attention_2", None)] if flash else []) + [
    ("sdpa (flash kernel)", "sdpa", SDPBackend.FLASH_ATTENTION),
    ("sdpa (memory-efficient kernel)", "sdpa", SDPBackend.EFFICIENT_ATTENTION),
    ("eager", "eager", None)]
memory = []
for label, attn, backend in KERNELS:
    for length in MEMORY_LENGTHS:
        scratch = SCRATCH / f"{attn}_{length}"
        shutil.rmtree(scratch, ignore_errors=True)
        row = {"attn": label, "seq_len": length, "steps": MEMORY_STEPS}
        try:
            with sdpa_kernel(backend) if backend is not None else contextlib.nullcontext():
                r = adapt(SOURCES, scratch, settings.replace(attn_implementation=attn), seq_len=length,
                          steps=MEMORY_STEPS, held_out=HELD_OUT, eval_sequences=1, checkpoint_every=10**6)
            row |= {"peak_memory_mb": r.peak_memory_mb, "tokens_per_s": r.tokens_per_s}
        except torch.cuda.OutOfMemoryError as exc:
            row |= {"error": f"out of memory: {exc}".splitlines()[0]}
        except RuntimeError as exc:  # "No available kernel": the forced kernel does not run here
            row |= {"error": str(exc).splitlines()[0][:120]}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        memory.append(row)
        print(row, flush=True)
results["memory"] = memory

# ---- 2. train ------------------------------------------------------------------------------------------------
steps = STEPS
if TRAIN_S is not None:  # the steps that fit the time budget at the measured speed of the default kernel
    speeds = [r for r in memory if r["attn"].startswith("sdpa (flash") and r.get("tokens_per_s")]
    if speeds:
        nearest = min(speeds, key=lambda r: abs(r["seq_len"] - SEQ_LEN))
        steps = max(1, min(STEPS, int(TRAIN_S * nearest["tokens_per_s"] / SEQ_LEN)))
results["train_budget"] = {"train_s": TRAIN_S, "steps": steps}
shutil.rmtree(ADAPTER, ignore_errors=True)  # a fresh run: adapt would otherwise continue an earlier run's checkpoint
report = adapt(SOURCES, ADAPTER, settings, show_progress=True, seq_len=SEQ_LEN, steps=steps,
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
def ask_needles(gen: Generator) -> list[dict]:
    """Every (length, depth) cell asked of `gen` through full_document's prompt; the same needles every call."""
    rng = random.Random(0)
    text, offsets = load_haystack(held, gen.tokenizer, max(NIAH_LENGTHS))
    builder = PromptBuilder(gen.tokenizer, gen.context_window, MAX_NEW_TOKENS)
    cells = []
    for n, d, needle, haystack, _ in planted_cells(text, offsets, gen.tokenizer, NIAH_LENGTHS, NIAH_DEPTHS, rng):
        cell = {"length": n, "depth": d, "code": needle.code}
        try:
            plan = builder.build_whole(needle.question, f"haystack_{size_label(n)}.txt", haystack, [])
        except PromptTooLong as exc:
            cells.append(cell | {"skipped": str(exc), "correct": None})
            continue
        g = gen.generate(plan.input_ids, MAX_NEW_TOKENS)
        cells.append(cell | {"answer": g.text, "correct": found(g.text, needle.code), "prompt_tokens": g.prompt_tokens,
                             "prefill_s": round(g.prefill_s, 3), "generate_s": round(g.generate_s, 3)})
        print({k: cells[-1][k] for k in ("length", "depth", "correct", "prompt_tokens", "prefill_s")}, flush=True)
    return cells


niah = {}
for label, run_settings in (("before", settings), ("after", settings.replace(generator_adapter=str(ADAPTER)))):
    gen = Generator.load(run_settings.generator_config())
    niah[label] = ask_needles(gen)
    del gen
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
results["niah"] = {"lengths": NIAH_LENGTHS, "depths": NIAH_DEPTHS} | niah

# ---- report --------------------------------------------------------------------------------------------------
device, versions = accelerator()
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                        text=True).stdout.strip()
header = (f"# {command}   ({datetime.fromtimestamp(started, timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{(time.time() - started) / 60:.0f} min; {device}; {versions}; commit {commit})")
results["header"], results["device"], results["native_window"] = header, device, native
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
table = Table(title=f"NIAH full_document (YaRN x{settings.rope_factor:g}): correct of {len(NIAH_DEPTHS)} depths, "
                    "and the prefill's seconds")
table.add_column("")
for n in NIAH_LENGTHS:
    table.add_column(size_label(n), justify="right")
for label in ("before", "after"):
    cells = []
    for n in NIAH_LENGTHS:
        row = [c for c in niah[label] if c["length"] == n and c["correct"] is not None]
        prefill = sum(c["prefill_s"] for c in row) / len(row) if row else 0.0
        cells.append(f"{sum(c['correct'] for c in row)}/{len(row)} ({prefill:.2f} s)")
    table.add_row(label, *cells)
console.print(table)

OUT.parent.mkdir(parents=True, exist_ok=True)
plot(results, OUT.with_suffix(".png"))
OUT.with_suffix(".json").write_text(json.dumps(results, indent=2), encoding="utf-8")
OUT.with_suffix(".txt").write_text(console.export_text(), encoding="utf-8")
console.print(f"wrote {OUT.with_suffix('.txt').relative_to(ROOT)}, .json and .png")
