"""The in-process generator on a CUDA GPU: prefill and decode tokens/s and peak memory at 8K, 32K and 64K-token
prompts with YaRN, for each attention kernel side by side in one run.

Each prompt is the one `full_document` builds (`PromptBuilder.build_whole`): a question about one document, the
document being the dev contracts joined and cut to the length. 8K and 32K run with YaRN x4 (a 32,768-token
window), 64K with YaRN x8 (65,536). The kernels: `flash_attention_2` (the flash-attn package, when installed),
`sdpa` (PyTorch's attention, which runs its own flash kernel on such a GPU in bfloat16) and `eager` (the
attention matrix materialised, the baseline the ratios are taken against). The generator prefills in chunks of
`PREFILL_CHUNK` tokens, so eager's matrix is one chunk's rows by the whole prompt, not the prompt squared.

Every (kernel, length) cell generates REPEATS times from a fresh cache and keeps its fastest run (the first run of
a model also pays for CUDA's start); peak memory is torch's most allocated during the cell. Decode tokens/s is
the answer's tokens over the time after the prefill (greedy, at most MAX_NEW tokens; an answer can end sooner).

It needs a CUDA GPU and exits with one line without one; BENCH_TINY=1 runs at toy lengths on any device, to check
the script, and writes to the `_tiny` files.

Run (on the GPU machine, after `make install`): HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_generator_gpu.py
     (BENCH_DATA=DIR points at a copy of shared/data)
Outputs: benchmarks/results/bench_generator_gpu{_tiny}.txt (first line: the command) and .json.
"""

import importlib.util
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from app.evals.datasets import DATA_ROOT
from app.evals.niah import load_haystack, size_label
from app.llm.generator import PREFILL_CHUNK, Generator
from app.prompt import PromptBuilder
from app.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.run_header import accelerator  # noqa: E402

TINY = os.environ.get("BENCH_TINY") == "1"
DATA = Path(os.environ.get("BENCH_DATA", DATA_ROOT))
CONTRACTS = DATA / "cuad_dev" / "contracts"
# (prompt tokens, YaRN factor): the prompt leaves the answer's MAX_NEW tokens and the template room in the window
LENGTHS = [(400, 4.0), (1500, 8.0)] if TINY else [(8000, 4.0), (32000, 4.0), (64000, 8.0)]
MAX_NEW = 64
REPEATS = 2
QUESTION = "Which state's law governs this agreement?"
OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / f"bench_generator_gpu{'_tiny' if TINY else ''}"

if not torch.cuda.is_available() and not TINY:
    sys.exit("bench_generator_gpu.py needs a CUDA GPU (BENCH_TINY=1 checks the script on any device)")
if not CONTRACTS.is_dir():
    sys.exit(f"dev data not found: {CONTRACTS} (set BENCH_DATA to the folder holding cuad_dev)")

cuda = torch.cuda.is_available()
flash = importlib.util.find_spec("flash_attn") is not None and cuda
started = time.time()
env = " ".join(f"{k}={os.environ[k]}" for k in ("BENCH_TINY", "BENCH_DATA") if k in os.environ)
command = f"{env} HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_generator_gpu.py".strip()
settings = Settings.load(dtype="bfloat16" if cuda else "float32", quantized_decode=False)
kernels = (["flash_attention_2"] if flash else []) + ["sdpa", "eager"]
haystack = None
rows = []
for attn in kernels:
    for factor in sorted({f for _, f in LENGTHS}):
        gen = Generator.load(settings.replace(attn_implementation=attn, rope_factor=factor).generator_config())
        if haystack is None:
            haystack = load_haystack([CONTRACTS], gen.tokenizer, max(n for n, _ in LENGTHS))
        text, offsets = haystack
        builder = PromptBuilder(gen.tokenizer, gen.context_window, MAX_NEW)
        for n, f in LENGTHS:
            if f != factor:
                continue
            plan = builder.build_whole(QUESTION, "contracts.txt", text[:offsets[min(n, len(offsets) - 1)][0]], [])
            row = {"attn": attn, "yarn_factor": factor, "window": gen.context_window, "prompt_tokens": len(plan.input_ids)}
            try:
                if cuda:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                runs = [gen.generate(plan.input_ids, MAX_NEW) for _ in range(REPEATS)]
                best = min(runs, key=lambda g: g.prefill_s + g.generate_s)
                row |= {"prefill_s": round(best.prefill_s, 4), "prefill_tok_s": round(best.prompt_tokens / best.prefill_s),
                        "completion_tokens": best.completion_tokens, "generate_s": round(best.generate_s, 4),
                        "decode_tok_s": round(best.completion_tokens / best.generate_s, 1) if best.generate_s else None,
                        "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
                        "answer": best.text[:120]}
            except torch.cuda.OutOfMemoryError as exc:
                row |= {"error": f"out of memory: {exc}".splitlines()[0][:120]}
            rows.append(row)
            print({k: v for k, v in row.items() if k != "answer"}, flush=True)
        del gen
        if cuda:
            torch.cuda.empty_cache()

device, versions = accelerator()
header = (f"# {command}   ({datetime.fromtimestamp(started, timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{(time.time() - started) / 60:.0f} min; {device}; {versions}; {settings.dtype}; prefill chunks of "
          f"{PREFILL_CHUNK:,})")
console = Console(width=140, record=True)
console.print(header, highlight=False, soft_wrap=True)
table = Table(title=f"SmolLM2-135M in process, full_document prompts, greedy, at most {MAX_NEW} new tokens; "
                    "ratios against eager at the same length")
for column in ("prompt", "YaRN", "attention", "prefill tok/s", "x eager", "decode tok/s", "x eager", "peak MB",
               "x eager"):
    table.add_column(column, justify="right")
baseline = {r["prompt_tokens"]: r for r in rows if r["attn"] == "eager" and "error" not in r}


def ratio(row: dict, key: str) -> str:
    """The row's figure over eager's at the same prompt length."""
    base = baseline.get(row["prompt_tokens"])
    if base is None or "error" in row or not base.get(key) or not row.get(key):
        return ""
    return f"{row[key] / base[key]:.2f}"


for row in sorted(rows, key=lambda r: (r["prompt_tokens"], kernels.index(r["attn"]))):
    if "error" in row:
        table.add_row(f"{row['prompt_tokens']:,}", f"x{row['yarn_factor']:g}", row["attn"], row["error"], "", "", "",
                      "", "")
        continue
    peak = "n/a" if row["peak_memory_mb"] is None else f"{row['peak_memory_mb']:,}"
    table.add_row(f"{row['prompt_tokens']:,}", f"x{row['yarn_factor']:g}", row["attn"], f"{row['prefill_tok_s']:,}",
                  ratio(row, "prefill_tok_s"), f"{row['decode_tok_s']}", ratio(row, "decode_tok_s"), peak,
                  ratio(row, "peak_memory_mb"))
console.print(table)
OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.with_suffix(".json").write_text(json.dumps({"command": command, "header": header, "device": device,
                                                "lengths": [size_label(n) for n, _ in LENGTHS], "rows": rows},
                                               indent=2), encoding="utf-8")
OUT.with_suffix(".txt").write_text(console.export_text(), encoding="utf-8")
console.print(f"wrote {OUT.with_suffix('.txt').name} and .json")
