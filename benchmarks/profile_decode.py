"""Where one decode step's time goes: the torch profiler's top operators at a 2K-token context.

Run: HF_HUB_OFFLINE=1 python benchmarks/profile_decode.py [--quantized-decode false]
"""

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from app.evals.datasets import DEV_CONTRACTS, require_dev_data
from app.llm.generator import Generator
from app.settings import Settings

CONTEXT = 2000
STEPS = 10

parser = argparse.ArgumentParser()
parser.add_argument("--quantized-decode", default="true")
args = parser.parse_args()
require_dev_data(DEV_CONTRACTS)
gen = Generator.load(Settings.load(quantized_decode=args.quantized_decode).generator_config())
text = sorted(DEV_CONTRACTS.glob("*.txt"))[0].read_text(encoding="utf-8")
ids = gen.tokenizer(text, add_special_tokens=False)["input_ids"]

with torch.inference_mode():
    cache = gen._new_cache()
    gen._forward(ids[:CONTEXT], cache, show_progress=False)
    token = ids[CONTEXT]
    for _ in range(3):  # warm-up
        gen.step(token, cache)
    started = time.perf_counter()
    for _ in range(STEPS):
        gen.step(token, cache)
    print(f"{(time.perf_counter() - started) / STEPS * 1000:.1f} ms per step at {CONTEXT} tokens (no profiler)")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(STEPS):
            gen.step(token, cache)
print(f"operators over {STEPS} steps:")
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
