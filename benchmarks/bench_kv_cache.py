"""One decode step with transformers' DynamicCache (``torch.cat`` per token) against the growing cache, in one run.

Same model (the default: the decode step with 4-bit and int8 weights), same prompt; for each context length both
caches are filled by the same prefill and then timed over STEPS decode steps (best of two runs, since other work
on a shared CPU only slows a run down).

Run: HF_HUB_OFFLINE=1 python benchmarks/bench_kv_cache.py
"""

import torch
from decode_steps import decode_step_ms
from rich.console import Console
from rich.table import Table
from transformers import DynamicCache

from app.evals.datasets import DEV_CONTRACTS, require_dev_data
from app.llm.generator import Generator
from app.llm.kv_cache import growing_cache
from app.settings import Settings

CONTEXTS = (2000, 8000, 16000)
STEPS = 10

require_dev_data(DEV_CONTRACTS)
gen = Generator.load(Settings.load(kv_cache_dtype="float32").generator_config())  # both caches compared hold float32
text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(DEV_CONTRACTS.glob("*.txt"))[:4])
body = gen.tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.inference_mode()
def step_ms(cache, context: int) -> float:
    gen._forward(body[:context], cache, show_progress=False)
    return decode_step_ms(gen, cache, body[context], STEPS)


table = Table(title=f"One decode step (ms), SmolLM2-135M, {gen.info.decode_weights} weights, "
                    f"{torch.get_num_threads()} threads")
for column in ("context tokens", "DynamicCache (torch.cat)", "growing cache", "speed-up"):
    table.add_column(column, justify="right")
for context in CONTEXTS:
    theirs = step_ms(DynamicCache(config=gen.model.config), context)
    ours = step_ms(growing_cache(gen.model.config), context)
    table.add_row(f"{context:,}", f"{theirs:.0f}", f"{ours:.0f}", f"{theirs / ours:.2f}x")
    print(context, theirs, ours, flush=True)
Console(width=120).print(table)
