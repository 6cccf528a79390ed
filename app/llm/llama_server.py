"""llama.cpp's own HTTP server (the `xllamacpp` wheel) serving a GGUF with YaRN, on 127.0.0.1: `longdoc serve`.

It gives a machine without a GPU box an OpenAI-compatible server to point `generator` at, and it is the real
server the tests and benchmarks run against. The window is YaRN's: `rope_factor` times the native window
(`yarn_orig_ctx`), split across `parallel` slots only if `unified_kv` is off (with it on, every slot may use the
whole window while the slots share one KV buffer).

`start_server` runs it in a child process, so the caller owns it by PID and stops it by that PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.errors import LongDocError

STARTUP_TIMEOUT_S = 120.0


@dataclass
class ServerConfig:
    """What to serve and how; the defaults serve the packaged SmolLM2 with YaRN x4 over its 8,192 tokens."""

    gguf: Path
    port: int
    rope_factor: float = 4.0
    native_window: int = 8192
    rope_scaling: str = "yarn"  # or "linear" (position interpolation), for comparison
    parallel: int = 1
    unified_kv: bool = True
    threads: int = 0  # 0 = llama.cpp's choice
    alias: str = ""  # the model id /v1/models shows (default: the file's path)
    api_key: str = ""  # when set, requests must carry it as a bearer token (read from LONGDOC_SERVE_API_KEY)

    @property
    def context_window(self) -> int:
        return int(self.native_window * self.rope_factor)

    def argv(self) -> list[str]:
        args = [sys.executable, "-m", "app.llm.llama_server", str(self.gguf), "--port", str(self.port),
                "--rope-factor", str(self.rope_factor), "--native-window", str(self.native_window),
                "--parallel", str(self.parallel), "--threads", str(self.threads), "--rope-scaling", self.rope_scaling]
        return args + (["--alias", self.alias] if self.alias else []) + ([] if self.unified_kv else ["--split-kv"])


def serve(config: ServerConfig, stop: threading.Event) -> None:
    """Run the server in this process until `stop` is set."""
    try:
        import xllamacpp as xl
    except ImportError:
        raise LongDocError("llama.cpp's server needs xllamacpp: pip install 'longdoc-qa[server]'") from None

    params = xl.CommonParams()
    params.model.path = str(config.gguf)
    params.hostnames = ["127.0.0.1"]  # never 0.0.0.0
    params.port = config.port
    params.n_ctx = config.context_window * (1 if config.unified_kv else config.parallel)
    params.n_parallel = config.parallel
    params.kv_unified = config.unified_kv
    params.endpoint_props = True  # /props: the window, and the sign that this is llama.cpp
    params.warmup = False
    if config.threads:
        params.cpuparams.n_threads = config.threads
        params.cpuparams_batch.n_threads = config.threads
    if config.alias:
        params.model_alias = {config.alias}
    if config.api_key:
        params.api_keys = [config.api_key]
    if config.rope_factor > 1:
        kinds = {"yarn": xl.llama_rope_scaling_type.LLAMA_ROPE_SCALING_TYPE_YARN,
                 "linear": xl.llama_rope_scaling_type.LLAMA_ROPE_SCALING_TYPE_LINEAR}
        params.rope_scaling_type = kinds[config.rope_scaling]
        params.rope_freq_scale = 1.0 / config.rope_factor
        params.yarn_orig_ctx = config.native_window
    server = xl.Server(params)
    try:
        stop.wait()
    finally:
        del server


def start_server(config: ServerConfig, log_file: Path | None = None) -> subprocess.Popen:
    """Start the server in a child process and return it once /health says ok; stop it with `stop_server`."""
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL
    env = {**os.environ, "LONGDOC_SERVE_API_KEY": config.api_key}  # not on the command line, where ps shows it
    proc = subprocess.Popen(config.argv(), stdout=out, stderr=subprocess.STDOUT, env=env,
                            cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    url = f"http://127.0.0.1:{config.port}/health"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LongDocError(f"llama.cpp's server exited with code {proc.returncode} while starting"
                               + (f" (log: {log_file})" if log_file else ""))
        try:
            if httpx.get(url, timeout=1.0).json().get("status") == "ok":
                return proc
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise LongDocError(f"llama.cpp's server did not answer on port {config.port} within {STARTUP_TIMEOUT_S:g} s")


def stop_server(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop a server `start_server` started, by its PID: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def native_window(gguf: Path) -> int:
    """The window a GGUF was trained for (`<arch>.context_length`); reading the header takes a few seconds."""
    from gguf import GGUFReader

    try:
        fields = GGUFReader(str(gguf)).fields
        arch = fields["general.architecture"]
    except (ValueError, KeyError, OSError) as exc:  # "GGUF magic invalid": some other file
        raise LongDocError(f"{gguf}: not a GGUF model file ({exc})") from None
    name = bytes(arch.parts[arch.data[0]]).decode()
    length = fields.get(f"{name}.context_length")
    if length is None:
        raise LongDocError(f"{gguf}: the file does not say its context length; pass --native-window")
    return int(length.parts[length.data[0]][0])


def run_until_signalled(config: ServerConfig) -> None:
    """Serve in this process until SIGTERM or Ctrl-C."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    serve(config, stop)


def main(argv: list[str] | None = None) -> None:
    """`python -m app.llm.llama_server GGUF --port P ...`: the child process of `start_server`."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gguf", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rope-factor", type=float, default=ServerConfig.rope_factor)
    parser.add_argument("--native-window", type=int, default=ServerConfig.native_window)
    parser.add_argument("--parallel", type=int, default=ServerConfig.parallel)
    parser.add_argument("--threads", type=int, default=ServerConfig.threads)
    parser.add_argument("--alias", default="")
    parser.add_argument("--split-kv", action="store_true")
    parser.add_argument("--rope-scaling", choices=("yarn", "linear"), default=ServerConfig.rope_scaling)
    args = parser.parse_args(argv)
    config = ServerConfig(args.gguf, args.port, rope_factor=args.rope_factor, native_window=args.native_window,
                          rope_scaling=args.rope_scaling, parallel=args.parallel, unified_kv=not args.split_kv,
                          threads=args.threads, alias=args.alias, api_key=os.environ.get("LONGDOC_SERVE_API_KEY", ""))
    run_until_signalled(config)


if __name__ == "__main__":
    main()
