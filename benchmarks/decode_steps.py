"""The decode-step timer the decode benchmarks share (imported by scripts run from this folder)."""

import time

import torch

from app.llm.generator import Generator


@torch.inference_mode()
def decode_step_ms(gen: Generator, cache, token: int, steps: int) -> float:
    """Milliseconds per decode step of `token` after what `cache` holds: the best of two runs of `steps` steps,
    since other work on a shared CPU only ever slows a run down. Each run appends `steps` tokens to `cache`."""
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        for _ in range(steps):
            gen.step(token, cache)
        best = min(best, (time.perf_counter() - started) / steps * 1000)
    return best
