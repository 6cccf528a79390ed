"""Is YaRN really on in the server? Next-token accuracy by position, through llama.cpp's server and in-process.

A server reports its window but not its RoPE scaling, and llama.cpp's server returns no log-probabilities of
prompt tokens, so perplexity cannot be read through it. What it can be asked: the greedy next token after the
first p tokens of a long text, at positions sampled in segments before and past the native 8,192-token window.
The share of those that are the text's actual next token follows the scaling: the same with YaRN through the
server as with YaRN in-process, and lower everywhere with linear interpolation, which without fine-tuning
ruins the short range too (README's perplexity table: about 120 against YaRN's 9). Without scaling, and with
linear scaling, llama.cpp caps the window at the model's 8,192 tokens and refuses a longer prompt ("refused").
The prompts grow in order, so the server's prompt cache reads the text once.

Rows on the same 16,384-token dev contract (the one README's perplexity table uses): the server with YaRN x4
(`longdoc serve`'s settings) and with linear x4, and the in-process model with each (argmax of one
teacher-forced pass).

    python benchmarks/bench_server_yarn.py [--per-segment 32]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tqdm import tqdm  # noqa: E402

from app.evals.datasets import DEV_CONTRACTS, require_dev_data  # noqa: E402
from app.llm.generator import Generator, embedded_gguf  # noqa: E402
from app.llm.llama_server import ServerConfig, start_server, stop_server  # noqa: E402
from app.llm.perplexity import LOGIT_CHUNK  # noqa: E402
from app.settings import Settings  # noqa: E402

TEXT = DEV_CONTRACTS / "BERKELEYLIGHTS,INC_06_26_2020-EX-10.12-COLLABORATION AGREEMENT.txt"
LENGTH = 16_384
SEGMENTS = [(1024, 2048), (5120, 6144), (9216, 10240), (12288, 13312), (15360, 16384)]
PORT = 18_741
OUT = ROOT / "benchmarks" / "results" / "bench_server_yarn.json"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--per-segment", type=int, default=32, help="positions sampled in each 1,024-token segment")
args = parser.parse_args()
require_dev_data(TEXT)
console = Console()

gen = Generator.load(Settings.load().generator_config())  # YaRN x4, the default
linear = Generator.load(Settings.load(rope_scaling="linear").generator_config())
ids = gen.tokenizer(TEXT.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"][:LENGTH]
assert len(ids) == LENGTH, f"{TEXT.name} has only {len(ids)} tokens"
positions = [s + (e - s) * i // args.per_segment for s, e in SEGMENTS for i in range(args.per_segment)]


@torch.inference_mode()
def in_process_hits(model: Generator) -> dict[int, bool]:
    """Whether the in-process model's argmax after ids[:p] is ids[p], for every sampled p, in one pass."""
    x = torch.tensor([ids], device=model.device)
    hidden = model.model.model(input_ids=x, use_cache=False).last_hidden_state[0]
    head = model.model.get_output_embeddings()
    hits = {}
    for s in range(0, LENGTH - 1, LOGIT_CHUNK):
        wanted = [p for p in positions if s <= p - 1 < s + LOGIT_CHUNK]
        if wanted:
            best = head(hidden[[p - 1 for p in wanted]]).argmax(-1).tolist()
            hits.update({p: b == ids[p] for p, b in zip(wanted, best)})
    return hits


def server_hits(config: ServerConfig, label: str, log: Path) -> tuple[dict[int, bool], dict, float]:
    """Whether the server's greedy token after ids[:p] is ids[p], asked prompt by prompt in order of p."""
    proc = start_server(config, log)
    url = f"http://127.0.0.1:{config.port}"
    try:
        meta = httpx.get(f"{url}/v1/models").json()["data"][0].get("meta", {})
        hits, started = {}, time.perf_counter()
        with httpx.Client(timeout=600) as client:
            for p in tqdm(positions, desc=label, unit="position"):
                reply = client.post(f"{url}/v1/completions", json={
                    "prompt": ids[:p], "max_tokens": 1, "temperature": 0, "logprobs": 1}).json()
                if "choices" not in reply:  # llama.cpp caps an unscaled or linear window at the native one
                    meta["refused"] = reply.get("error", reply)
                    break
                hits[p] = reply["choices"][0]["logprobs"]["content"][0]["id"] == ids[p]
        return hits, meta, time.perf_counter() - started
    finally:
        stop_server(proc)


def shares(hits: dict[int, bool]) -> list[float | None]:
    """The share right in each segment; None for a segment the server refused to read."""
    out = []
    for s, e in SEGMENTS:
        asked = [hits[p] for p in hits if s <= p < e]
        out.append(sum(asked) / len(asked) if len(asked) == args.per_segment else None)
    return out


out_dir = ROOT / "benchmarks" / "out"
out_dir.mkdir(parents=True, exist_ok=True)
rows = {}
for label, model in (("in-process, YaRN x4", gen), ("in-process, linear x4", linear)):
    started = time.perf_counter()
    rows[label] = (in_process_hits(model), {"window": model.context_window}, time.perf_counter() - started)
for label, scaling in (("llama.cpp server, YaRN x4", "yarn"), ("llama.cpp server, linear x4", "linear")):
    rows[label] = server_hits(ServerConfig(embedded_gguf(), PORT, rope_scaling=scaling), label,
                              out_dir / f"server-{scaling}.log")

table = Table(title=f"Greedy next token = the text's, {args.per_segment} positions per segment: {TEXT.name[:50]}")
table.add_column("model")
for s, e in SEGMENTS:
    table.add_column(f"{s / 1024:g}-{e / 1024:g}K", justify="right")
table.add_column("server window", justify="right")
table.add_column("s", justify="right")
for label, (hits, meta, seconds) in rows.items():
    table.add_row(label, *["refused" if x is None else f"{x:.2f}" for x in shares(hits)],
                  f"{meta.get('n_ctx', meta.get('window'))}", f"{seconds:.0f}")
console.print(table)
OUT.write_text(json.dumps({
    "bench": "server_yarn",
    "text": TEXT.name,
    "tokens": LENGTH,
    "native_window": gen.rope.original_max_position,
    "positions_per_segment": args.per_segment,
    "segments": SEGMENTS,
    "rows": {label: {"share_correct": [None if x is None else round(x, 3) for x in shares(hits)], "reported": meta,
                     "seconds": round(s, 1)}
             for label, (hits, meta, s) in rows.items()},
}, indent=2), encoding="utf-8")
console.print(f"wrote {OUT.relative_to(ROOT)}")
