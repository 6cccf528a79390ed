"""Prefill and decode speed on a 2K-token prompt: this engine vs plain `model.generate`, side by side in one run.

Every row reads the same prompt and decodes greedily; each measurement is repeated and the best kept, since other
work on a shared CPU only ever slows a run down. The rows:

- this engine as shipped: int8 weights for decoding (app/int8_decode.py) and the growing KV cache (app/kv_cache.py);
- this engine with ``int8_decode=false``, to show what the int8 weights give on their own;
- transformers' ``model.generate`` with default settings, on a separately loaded plain float32 model
  (SmolLM2-135M, YaRN x4, sdpa), the baseline the ratios are taken against;
- llama.cpp (llama-cpp-python, on the same GGUF), when it is installed.

Run: HF_HUB_OFFLINE=1 python benchmarks/bench_generation.py
"""

import importlib.util
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from app.generator import EMBEDDED_GGUF, EMBEDDED_PACKAGE, Generator
from app.settings import Settings

CONTRACTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cuad_dev" / "contracts"
PROMPT_TOKENS = 2048  # prompt length, chat template included
NEW_TOKENS = 64  # decoded tokens per measurement (end token ignored so every run decodes exactly this many)
REPEATS = 2  # best of
SETTINGS = Settings.load()

gen = Generator.load(SETTINGS)
gen_fp32 = Generator.load(SETTINGS.replace(int8_decode=False))
model, tokenizer = gen_fp32.model, gen_fp32.tokenizer  # untouched transformers model for the baseline
contract = sorted(CONTRACTS.glob("*.txt"))[0]
body = tokenizer(contract.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
overhead = len(gen.chat_ids("Answer from the contract.", "")) + 16
ids = gen.chat_ids("Answer from the contract.", tokenizer.decode(body[:PROMPT_TOKENS - overhead]) + "\n\nSummarise.")
print(f"prompt: {len(ids)} tokens from {contract.name}; {NEW_TOKENS} new tokens; {torch.get_num_threads()} threads")


def best(fn):
    return min(fn() for _ in range(REPEATS))


def engine_prefill(engine: Generator) -> float:
    return engine.generate(ids, max_new_tokens=1).prefill_s


def engine_decode(engine: Generator) -> float:
    stops, engine.stop_ids = engine.stop_ids, set()  # decode a fixed count, as the generate runs below do
    try:
        stats = engine.generate(ids, max_new_tokens=NEW_TOKENS + 1)
    finally:
        engine.stop_ids = stops
    return stats.generate_s / NEW_TOKENS  # the first token comes from the prefill's logits


x = torch.tensor([ids])


def hf_time(new_tokens: int) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        model.generate(x, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    return time.perf_counter() - started


hf_prefill = best(lambda: hf_time(1))
hf_decode = (best(lambda: hf_time(NEW_TOKENS + 1)) - hf_prefill) / NEW_TOKENS
rows = [
    ("this engine", best(lambda: engine_prefill(gen)), best(lambda: engine_decode(gen))),
    ("this engine, int8_decode=false", best(lambda: engine_prefill(gen_fp32)), best(lambda: engine_decode(gen_fp32))),
    ("transformers model.generate", hf_prefill, hf_decode),
]

if importlib.util.find_spec("llama_cpp") is not None:
    from llama_cpp import Llama

    gguf = Path(importlib.util.find_spec(EMBEDDED_PACKAGE).submodule_search_locations[0]) / EMBEDDED_GGUF
    llm = Llama(str(gguf), n_ctx=4096, n_threads=torch.get_num_threads(), verbose=False)

    def cpp_time(new_tokens: int) -> float:
        llm.reset()
        started = time.perf_counter()
        for i, _ in enumerate(llm.generate(ids, temp=0.0)):
            if i + 1 == new_tokens:
                break
        return time.perf_counter() - started

    cpp_prefill = best(lambda: cpp_time(1))
    rows.append(("llama.cpp (Q4_1)", cpp_prefill, (best(lambda: cpp_time(NEW_TOKENS + 1)) - cpp_prefill) / NEW_TOKENS))

title = f"Generation speed, {len(ids)}-token prompt, {gen.rope.scaling} x{gen.rope.factor:g}, {SETTINGS.dtype}"
table = Table(title=title)
for column in ("engine", "prefill s", "prefill tok/s", "x generate", "decode tok/s", "x generate"):
    table.add_column(column, justify="left" if column == "engine" else "right")
for name, prefill_s, decode_s in rows:
    table.add_row(name, f"{prefill_s:.2f}", f"{len(ids) / prefill_s:.0f}", f"{hf_prefill / prefill_s:.2f}",
                  f"{1 / decode_s:.1f}", f"{hf_decode / decode_s:.2f}")
Console(width=120).print(table)
