"""Why decoding is slow on this CPU, and what cheaper weights would and would not buy.

One decode step of the 135M model in fp32 reads all 540 MB of its weights; on 2 cores that bounds decoding at
well under 20 tokens/s however the loop is written. This measures, on the same loaded model, the time of one
decode step at a short and a 2K-token context, and the perplexity of a 1K-token stretch of a dev contract, for:

- float32 (the default),
- bfloat16 weights (half the bytes; but AVX2 has no bf16 arithmetic, so every product is converted),
- int8 dynamic quantization of the linear layers (`torch.ao.quantization.quantize_dynamic`, fbgemm).

Run: HF_HUB_OFFLINE=1 python benchmarks/bench_decode_dtypes.py
"""

import time
import warnings
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from app.generator import Generator
from app.settings import Settings

CONTRACTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cuad_dev" / "contracts"
CONTEXTS = (16, 2000)
STEPS = 10

gen = Generator.load(Settings.load())
body = gen.tokenizer(sorted(CONTRACTS.glob("*.txt"))[0].read_text(encoding="utf-8"),
                     add_special_tokens=False)["input_ids"]


@torch.inference_mode()
def step_ms(context: int) -> float:
    """Milliseconds per decode step after `context` prompt tokens (best of two runs of STEPS steps)."""
    cache = gen._new_cache()
    gen._forward(body[:context], cache, show_progress=False)
    x = torch.tensor([[body[context]]])
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        for _ in range(STEPS):
            gen.model(input_ids=x, use_cache=True, logits_to_keep=1, cache=cache)
        best = min(best, (time.perf_counter() - started) / STEPS * 1000)
    return best


@torch.inference_mode()
def perplexity() -> float:
    x = torch.tensor([body[:1024]])
    return float(gen.model(input_ids=x, labels=x).loss.exp())


rows = []
for label in ("float32", "bfloat16", "int8 dynamic"):
    if label == "bfloat16":
        gen.model.to(torch.bfloat16)
    elif label == "int8 dynamic":
        gen.model.to(torch.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao quantization is deprecated; measured here to show why not
            from torch.ao.quantization import quantize_dynamic

            gen.model = quantize_dynamic(gen.model, {torch.nn.Linear}, dtype=torch.qint8)
    rows.append((label, *(step_ms(c) for c in CONTEXTS), perplexity()))
    print(rows[-1], flush=True)

table = Table(title=f"One decode step, SmolLM2-135M {gen.rope.scaling} x{gen.rope.factor:g}, "
                    f"{torch.get_num_threads()} threads")
table.add_column("weights")
for c in CONTEXTS:
    table.add_column(f"ms/step at {c} tokens", justify="right")
    table.add_column("tokens/s", justify="right")
table.add_column("ppl, 1K tokens", justify="right")
for label, *ms, ppl in rows:
    cells = [f"{m:.0f}|{1000 / m:.1f}" for m in ms]
    table.add_row(label, *[part for c in cells for part in c.split("|")], f"{ppl:.1f}")
Console(width=120).print(table)
