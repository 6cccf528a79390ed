"""What decoding costs on this CPU with each kind of weights, and what each does to the model's predictions.

One decode step of the 135M model in float32 reads all 540 MB of its weights, so its time is set by memory
bandwidth (and, through transformers' forward, by many small operations). This measures, in one run on the same model, the time of one decode step at three context lengths,
and, decoding a 1K-token stretch of a dev contract token by token (the way answers are generated), the
perplexity and how often the next-token argmax agrees with float32's, for:

- float32 weights through transformers' forward (``quantized_decode=false``),
- the written-out decode step (the default; `app/llm/decode_step.py`): 4-bit copies of the layers (the GGUF's own
  Q4_1 grid; int8 on a CPU without AVX-512) and an int8 copy of the output layer, float32 everywhere else,
- the same with the KV cache in bfloat16 (`kv_cache_dtype`; the default where the CPU has bfloat16 arithmetic),
- bfloat16 weights (half the bytes; but AVX2 has no bf16 arithmetic, so every product is converted),
- int8 dynamic quantization of the linear layers (`torch.ao.quantization.quantize_dynamic`, fbgemm), which also
  quantizes the activations.

All rows use the engine's growing KV cache, in float32 unless the row says otherwise. Run: HF_HUB_OFFLINE=1 python benchmarks/bench_decode_dtypes.py
"""

import warnings

import torch
from decode_steps import decode_step_ms
from rich.console import Console
from rich.table import Table

from app.evals.datasets import DEV_CONTRACTS, require_dev_data
from app.llm.generator import Generator
from app.settings import Settings

CONTEXTS = (16, 2000, 8000)
STEPS = 10
PPL_TOKENS = 1024

require_dev_data(DEV_CONTRACTS)
gen = Generator.load(Settings.load(quantized_decode=False, kv_cache_dtype="float32").generator_config())
text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(DEV_CONTRACTS.glob("*.txt"))[:3])
body = gen.tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.inference_mode()
def step_ms(context: int) -> float:
    """Milliseconds per decode step after `context` prompt tokens (best of two runs of STEPS steps)."""
    cache = gen._new_cache()
    gen._forward(body[:context], cache, show_progress=False)
    return decode_step_ms(gen, cache, body[context], STEPS)


@torch.inference_mode()
def decode_predictions() -> tuple[float, torch.Tensor]:
    """Feed the stretch one token at a time; return its perplexity and each position's argmax."""
    cache = gen._new_cache()
    nll, argmax = 0.0, []
    for i in range(PPL_TOKENS - 1):
        logits = gen.step(body[i], cache)[0].float()
        nll += float(torch.nn.functional.cross_entropy(logits[None], torch.tensor([body[i + 1]])))
        argmax.append(int(logits.argmax()))
    return float(torch.tensor(nll / (PPL_TOKENS - 1)).exp()), torch.tensor(argmax)


rows, reference = [], None
STEP = "decode step"
for label in ("float32", STEP, f"{STEP}, bfloat16 KV cache", "bfloat16", "int8 dynamic"):
    if label == STEP:
        gen = Generator.load(Settings.load(kv_cache_dtype="float32").generator_config())
        label = f"{STEP}, {gen.info.decode_weights} weights"
    elif label == f"{STEP}, bfloat16 KV cache":
        gen = Generator.load(Settings.load(kv_cache_dtype="bfloat16").generator_config())
        label = f"{STEP}, {gen.info.decode_weights} weights, bfloat16 KV cache"
    elif label == "bfloat16":
        gen = Generator.load(Settings.load(quantized_decode=False, dtype="bfloat16").generator_config())
    elif label == "int8 dynamic":
        gen = Generator.load(Settings.load(quantized_decode=False, kv_cache_dtype="float32").generator_config())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao quantization is deprecated; measured here to show why not
            from torch.ao.quantization import quantize_dynamic

            gen.model = quantize_dynamic(gen.model, {torch.nn.Linear}, dtype=torch.qint8)
    ppl, argmax = decode_predictions()
    reference = argmax if reference is None else reference
    agree = float((argmax == reference).float().mean())
    rows.append((label, *(step_ms(c) for c in CONTEXTS), ppl, agree))
    print(rows[-1], flush=True)

table = Table(title=f"One decode step, SmolLM2-135M {gen.rope.scaling} x{gen.rope.factor:g}, "
                    f"{torch.get_num_threads()} threads")
table.add_column("weights")
for c in CONTEXTS:
    table.add_column(f"ms/step at {c} tokens", justify="right")
    table.add_column("tokens/s", justify="right")
table.add_column(f"ppl, {PPL_TOKENS} tokens", justify="right")
table.add_column("argmax = float32's", justify="right")
for label, *ms, ppl, agree in rows:
    cells = [part for m in ms for part in (f"{m:.0f}", f"{1000 / m:.1f}")]
    table.add_row(label, *cells, f"{ppl:.2f}", f"{agree:.1%}")
Console(width=160).print(table)
