"""Continued pre-training on a CPU: held-out dev contracts' perplexity by position before and after `longdoc adapt`.

What runs: `app.adapt.adapt`, the code behind `longdoc adapt` and `qa.adapt`, with the default settings
(SmolLM2-135M, YaRN x4, LoRA rank 16 on every linear layer, gradient checkpointing, float32 on the CPU) on the
41 dev CUAD contracts. HELD_OUT of them, whole contracts chosen by a seeded shuffle, are never trained on; STEPS
steps of one SEQ_LEN-token sequence each train on the rest; then EVAL_SEQUENCES held-out sequences are scored
with the adapter off (before) and on (after).

Figures: training loss by step, held-out perplexity overall and by position, seconds per step, tokens/s, peak
memory. What this cannot show on 2 cores: the stretched positions. At 2K tokens every trained position lies
inside SmolLM2's native 8K window, so the gain measured here is mostly the contracts' language (domain), not
longer reach; positions 8K-32K are the GPU run's (benchmarks/bench_adapt_gpu.py).

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_adapt.py
     (BENCH_STEPS, BENCH_SEQ_LEN, BENCH_LR, BENCH_TAG change the run; BENCH_TINY=1 checks the script in a minute)
Outputs: benchmarks/results/bench_adapt{TAG}.txt (first line: the command), .json and .png; the adapter in
benchmarks/cache/adapt{TAG}/, which a rerun with the same settings continues from its last checkpoint.
"""

import json
import math
import os
import platform
import resource
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from app.adapt import adapt  # noqa: E402
from app.evals.datasets import DEV_CONTRACTS, require_dev_data  # noqa: E402
from app.settings import Settings  # noqa: E402

TINY = os.environ.get("BENCH_TINY") == "1"
SEQ_LEN = int(os.environ.get("BENCH_SEQ_LEN", 256 if TINY else 2048))
STEPS = int(os.environ.get("BENCH_STEPS", 3 if TINY else 60))
# few steps: a higher peak than the settings' 2e-4, which is for the hundreds of steps of a GPU run
LEARNING_RATE = float(os.environ.get("BENCH_LR", 5e-4))
HELD_OUT = 0.15  # of 41 contracts: 6, whole
EVAL_SEQUENCES = 2 if TINY else 12
BIN = 32 if TINY else 128  # positions per point of the plot
TAG = os.environ.get("BENCH_TAG", "_tiny" if TINY else "")

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / f"bench_adapt{TAG}"
ADAPTER = ROOT / "benchmarks" / "cache" / f"adapt{TAG}"

require_dev_data(DEV_CONTRACTS)
env = " ".join(f"{k}={os.environ[k]}" for k in ("BENCH_TINY", "BENCH_STEPS", "BENCH_SEQ_LEN", "BENCH_LR", "BENCH_TAG")
               if k in os.environ)
command = f"{env} HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_adapt.py".strip()
started = time.time()
settings = Settings.load()
report = adapt([DEV_CONTRACTS], ADAPTER, settings, show_progress=True, seq_len=SEQ_LEN, steps=STEPS,
               learning_rate=LEARNING_RATE, held_out=HELD_OUT, eval_sequences=EVAL_SEQUENCES,
               checkpoint_every=10)
peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

cpu = next((x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
            if x.startswith("model name")), platform.processor())
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                        text=True).stdout.strip()
load = os.getloadavg()[0]
header = (f"# {command}   ({datetime.fromtimestamp(started, timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu}, "
          f"{os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, commit {commit}, "
          f"1-minute load {load:.2f} at the end)")
trained = report.steps - report.resumed_from
losses = report.losses
console = Console(width=120, record=True)
console.print(header, highlight=False, soft_wrap=True)
console.print(f"{report.steps} steps of {report.seq_len:,} tokens (LoRA rank {report.lora_rank}, peak lr "
              f"{report.learning_rate:g}, {report.rope_scaling['rope_type']} x{report.rope_scaling['factor']:g}, "
              f"{report.dtype}, {report.attn_implementation}) on {len(report.train_documents)} contracts "
              f"({report.train_sequences} sequences); {len(report.held_out_documents)} held out, whole: "
              f"{', '.join(Path(p).name[:40] for p in report.held_out_documents)}", highlight=False)
if trained:
    console.print(f"this run: {trained} steps in {report.train_seconds:.0f} s, {report.train_seconds / trained:.1f} s "
                  f"a step, {report.tokens_per_s:.0f} tokens/s; peak memory {peak_rss_mb:,.0f} MB (RSS)",
                  highlight=False)
first, last = sum(losses[:10]) / len(losses[:10]), sum(losses[-10:]) / len(losses[-10:])
console.print(f"training loss: {first:.3f} over the first {len(losses[:10])} steps, {last:.3f} over the last "
              f"{len(losses[-10:])}", highlight=False)
table = Table(title=f"Held-out perplexity by position ({report.eval_sequences} sequences of "
                    f"{report.seq_len:,} tokens from the held-out contracts)")
for column in ("positions", "before", "after", "change"):
    table.add_column(column, justify="right")
for row in report.segments:
    table.add_row(f"{row['start']:,}-{row['end']:,}", f"{row['ppl_before']:.2f}", f"{row['ppl_after']:.2f}",
                  f"{row['ppl_after'] / row['ppl_before'] - 1:+.1%}")
table.add_row("all", f"{report.ppl_before:.2f}", f"{report.ppl_after:.2f}",
              f"{report.ppl_after / report.ppl_before - 1:+.1%}", style="bold")
console.print(table)



def binned(nll: list[float]) -> tuple[list[float], list[float]]:
    """(middle position, perplexity) of each BIN-token stretch; nll[i] is the loss of predicting position i + 1."""
    bins = [nll[i:i + BIN] for i in range(0, len(nll), BIN)]
    return [1 + i * BIN + len(b) / 2 for i, b in enumerate(bins)], [math.exp(sum(b) / len(b)) for b in bins]


fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
for name, nll in (("before (YaRN x4, no adapter)", report.nll_before), ("after (with the adapter)", report.nll_after)):
    left.plot(*binned(nll), marker="o", markersize=3, label=name)
left.set_xlabel(f"position in the sequence (tokens; {BIN}-token bins)")
left.set_ylabel("perplexity")
left.set_title(f"{len(report.held_out_documents)} held-out dev contracts, {report.eval_sequences} sequences")
left.grid(True, alpha=0.3)
left.legend()
right.plot(range(1, len(losses) + 1), losses, alpha=0.4, label="per step")
window = 10
smooth = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
          for i in range(len(losses))]
right.plot(range(1, len(losses) + 1), smooth, label=f"mean of the last {window}")
right.set_xlabel("step")
right.set_ylabel("training loss (nats/token)")
right.set_title(f"LoRA r{report.lora_rank}, {report.seq_len:,}-token sequences, lr {report.learning_rate:g}")
right.grid(True, alpha=0.3)
right.legend()
fig.suptitle(f"longdoc adapt on a CPU: SmolLM2-135M, YaRN x4, {report.steps} steps", fontsize=11)
fig.tight_layout()
OUT.parent.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT.with_suffix(".png"), dpi=110)
console.print(f"wrote {OUT.with_suffix('.txt').relative_to(ROOT)}, .json and .png")

summary = report.to_dict() | {"header": header, "command": command, "peak_rss_mb": round(peak_rss_mb, 1)}
summary.pop("nll_before"), summary.pop("nll_after")
summary["ppl_by_bin"] = {"bin": BIN, "before": [round(x, 3) for x in binned(report.nll_before)[1]],
                         "after": [round(x, 3) for x in binned(report.nll_after)[1]]}
OUT.with_suffix(".json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
OUT.with_suffix(".txt").write_text(console.export_text(), encoding="utf-8")
