"""The first line of a benchmark's results: the command that gives them, then when and where it ran.

    # BENCH_X=3 .venv/bin/python benchmarks/bench_y.py   (2026-12-02 20:30 UTC, x86_64, 2 cores shared,
      load average 0.1 at start, <what else the benchmark names: commit, versions>)

A timing means little without the machine's load beside it, so every header that times anything says it.
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone


def command(env_prefix: str = "") -> str:
    """The command as it was typed: the variables starting with `env_prefix` that are set, then the script."""
    env = [f"{k}={os.environ[k]}" for k in sorted(os.environ) if env_prefix and k.startswith(env_prefix)]
    return " ".join([*env, ".venv/bin/python", *sys.argv])


def run_header(command: str, details: str) -> str:
    """`# command   (date UTC, machine, cores, load average at start, details)`."""
    return (f"# {command}   ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
            f"{os.cpu_count()} cores shared, load average {os.getloadavg()[0]:.1f} at start, {details})")


def accelerator() -> tuple[str, str]:
    """The device a GPU benchmark ran on and the versions that decide its speed: (device, versions)."""
    import importlib.metadata
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    versions = f"torch {torch.__version__}" + (f", CUDA {torch.version.cuda}" if cuda else "")
    if cuda and importlib.util.find_spec("flash_attn") is not None:
        versions += f", flash-attn {importlib.metadata.version('flash-attn')}"
    return device, versions
