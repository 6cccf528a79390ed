"""Prefill and decode speed on a 2K-token prompt: this engine vs plain `model.generate`, side by side in one run.

Every row reads the same prompt and decodes greedily. The rows take turns, REPEATS rounds of one run each, and
each keeps its best, since other work on a shared CPU only ever slows a run down and taking turns spreads that
over all rows alike. The rows:

- this engine as shipped: the written-out decode step with 4-bit and int8 weights (app/llm/decode_step.py) and the
  growing KV cache (app/llm/kv_cache.py), kept in bfloat16 where the CPU has bfloat16 arithmetic
  (``kv_cache_dtype=auto``);
- this engine with ``kv_cache_dtype=float32``, to show what the bfloat16 cache gives;
- this engine with ``quantized_decode=false`` and ``kv_cache_dtype=float32`` too: transformers' forward for
  each token over the growing cache;
- transformers' ``model.generate`` with default settings, on a separately loaded plain float32 model
  (SmolLM2-135M, YaRN x4, sdpa), the baseline the ratios are taken against;
- llama.cpp (llama-cpp-python, on the same GGUF), when it is installed.

Run: HF_HUB_OFFLINE=1 python benchmarks/bench_generation.py
"""

import importlib.util
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from transformers.generation.streamers import BaseStreamer

from app.evals.datasets import DEV_CONTRACTS, require_dev_data
from app.llm.generator import EMBEDDED_GGUF, EMBEDDED_PACKAGE, Generator
from app.settings import Settings

PROMPT_TOKENS = 2048  # prompt length, chat template included
NEW_TOKENS = 64  # decoded tokens per measurement (end token ignored so every run decodes exactly this many)
REPEATS = 5  # rounds; each row keeps its best and reports its median decode too
SETTINGS = Settings.load()
BASELINE, LLAMA_CPP = "transformers model.generate", "llama.cpp (Q4_1)"  # row names the ratios are taken against

require_dev_data(DEV_CONTRACTS)
gen = Generator.load(SETTINGS.generator_config())
gen_kv32 = Generator.load(SETTINGS.replace(kv_cache_dtype="float32").generator_config())
gen_fp32 = Generator.load(SETTINGS.replace(quantized_decode=False, kv_cache_dtype="float32").generator_config())
model, tokenizer = gen_fp32.model, gen_fp32.tokenizer  # untouched transformers model for the baseline
contract = sorted(DEV_CONTRACTS.glob("*.txt"))[0]
body = tokenizer(contract.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
overhead = len(gen.chat_ids("Answer from the contract.", "")) + 16
ids = gen.chat_ids("Answer from the contract.", tokenizer.decode(body[:PROMPT_TOKENS - overhead]) + "\n\nSummarise.")
print(f"prompt: {len(ids)} tokens from {contract.name}; {NEW_TOKENS} new tokens; {torch.get_num_threads()} threads")


def per_token(stamps: list[float]) -> float:
    """Seconds per decoded token from the times the 1st to the last new token arrived (prefill excluded)."""
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def engine_run(engine: Generator) -> tuple[float, float]:
    stops, engine.stop_ids = engine.stop_ids, set()  # decode a fixed count, as the other engines do
    try:
        stats = engine.generate(ids, max_new_tokens=NEW_TOKENS + 1)
    finally:
        engine.stop_ids = stops
    return stats.prefill_s, stats.generate_s / NEW_TOKENS  # the first token comes from the prefill's logits


class Stamps(BaseStreamer):
    """Times each token `model.generate` hands its streamer; the first call carries the prompt."""

    def __init__(self) -> None:
        self.started, self.times = time.perf_counter(), []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def hf_run() -> tuple[float, float]:
    stamps = Stamps()
    with torch.inference_mode():
        model.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS + 1, min_new_tokens=NEW_TOKENS + 1,
                       do_sample=False, streamer=stamps)
    new = stamps.times[1:]  # [0] is the prompt, handed over before any work
    return new[0] - stamps.started, per_token(new)


engines = [
    (f"this engine ({gen.info.decode_weights} decode step, KV cache {gen.info.kv_cache_dtype})",
     lambda: engine_run(gen)),
    ("this engine, kv_cache_dtype=float32", lambda: engine_run(gen_kv32)),
    ("this engine, quantized_decode=false, kv_cache_dtype=float32", lambda: engine_run(gen_fp32)),
    (BASELINE, hf_run),
]

if importlib.util.find_spec("llama_cpp") is not None:
    from llama_cpp import Llama

    gguf = Path(importlib.util.find_spec(EMBEDDED_PACKAGE).submodule_search_locations[0]) / EMBEDDED_GGUF
    llm = Llama(str(gguf), n_ctx=4096, n_threads=torch.get_num_threads(), verbose=False)

    def cpp_run() -> tuple[float, float]:
        llm.reset()
        started, times = time.perf_counter(), []
        for i, _ in enumerate(llm.generate(ids, temp=0.0, reset=True)):
            times.append(time.perf_counter())
            if i == NEW_TOKENS:
                break
        return times[0] - started, per_token(times)

    engines.append((LLAMA_CPP, cpp_run))

runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in engines}
for round_ in range(REPEATS):
    for name, run in engines:
        runs[name].append(run())
        prefill_s, decode_s = runs[name][-1]
        print(f"  round {round_ + 1}, {name}: prefill {prefill_s:.2f} s, decode {decode_s * 1000:.1f} ms/token",
              flush=True)
rows = [(name, min(r[0] for r in runs[name]), min(r[1] for r in runs[name]),
         statistics.median(r[1] for r in runs[name])) for name, _ in engines]
best = {name: (prefill_s, decode_s) for name, prefill_s, decode_s, _ in rows}
hf_prefill, hf_decode = best[BASELINE]
cpp_decode = best[LLAMA_CPP][1] if LLAMA_CPP in best else None

title = f"Generation speed, {len(ids)}-token prompt, {gen.rope.scaling} x{gen.rope.factor:g}, {SETTINGS.dtype}"
table = Table(title=title)
columns = ["engine", "prefill s", "prefill tok/s", "x generate", "decode tok/s", "x generate"]
for column in columns + (["x llama.cpp"] if cpp_decode else []) + ["median decode tok/s"]:
    table.add_column(column, justify="left" if column == "engine" else "right")
for name, prefill_s, decode_s, median_s in rows:
    cells = [name, f"{prefill_s:.2f}", f"{len(ids) / prefill_s:.0f}", f"{hf_prefill / prefill_s:.2f}",
             f"{1 / decode_s:.1f}", f"{hf_decode / decode_s:.2f}"]
    table.add_row(*cells, *([f"{cpp_decode / decode_s:.2f}"] if cpp_decode else []), f"{1 / median_s:.1f}")
Console(width=160).print(table)
