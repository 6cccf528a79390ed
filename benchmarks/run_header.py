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
