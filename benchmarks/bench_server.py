"""The same questions over one dev contract answered in-process and through llama.cpp's server, side by side.

Everything runs in one go, so the machine's load falls on every row alike:

- `longdoc ask` one process per question, and `longdoc batch` once, each in full_document mode (the document
  first, the question last), with the in-process model and with `generator = http://127.0.0.1:PORT/v1`. The
  server is llama.cpp's (xllamacpp) serving the packaged GGUF with YaRN x4 (32,768 tokens). In-process, a batch
  reuses the document's KV cache; through the server, its prompt cache does the same for the batch and for
  separate processes alike, which the mean prefill column shows.
- 8 questions (rag mode) through the server from 8 threads at once against the same 8 in a row, one process,
  each way on a freshly started server so that neither reads the other's prompts from the server's cache.

    python benchmarks/bench_server.py [--quick]     # --quick: 5 questions, ~2K-token contract
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tqdm import tqdm  # noqa: E402

from app import LongDocQA  # noqa: E402
from app.llm.generator import embedded_gguf  # noqa: E402
from app.llm.llama_server import ServerConfig, start_server, stop_server  # noqa: E402
from benchmarks.contract_questions import QUESTIONS, pick_contract  # noqa: E402

FULL = {"questions": 20, "tokens": 4_000}
QUICK = {"questions": 5, "tokens": 2_000}
CONCURRENT = 8
WARM_UP = "What is this agreement about?"
PORT = 18_731
OUT = ROOT / "benchmarks" / "results"

args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
args.add_argument("--quick", action="store_true", help="5 questions over a ~2K-token contract")
options = args.parse_args()
size = QUICK if options.quick else FULL
console = Console()
SCRIPT = Path(sys.executable).with_name("longdoc")
LONGDOC = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-c", "from app.cli import main; main()"]
URL = f"http://127.0.0.1:{PORT}/v1"


def longdoc(env: dict[str, str], *argv: str) -> tuple[float, str]:
    """Run one `longdoc` command as a user would; its wall time and stdout. A failure stops the benchmark."""
    started = time.perf_counter()
    done = subprocess.run([*LONGDOC, *argv], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"longdoc {' '.join(argv[:2])} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout


def one_by_one_and_batch(env, questions, common, tmp: Path, label: str) -> dict:
    asked = []
    for q in tqdm(questions, desc=f"{label}: longdoc ask, one by one", unit="question"):
        seconds, stdout = longdoc(env, "ask", q, "--json", *common)
        asked.append((seconds, json.loads(stdout)))
    qfile = tmp / "questions.txt"
    qfile.write_text("\n".join(questions) + "\n", encoding="utf-8")
    out = tmp / f"answers-{label}.jsonl"
    console.print(f"{label}: longdoc batch, {len(questions)} questions ...")
    batch_s, _ = longdoc(env, "batch", str(qfile), "--out", str(out), *common)
    batch = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return {"one_by_one": {"total_s": sum(s for s, _ in asked), "answers": [a for _, a in asked]},
            "batch": {"total_s": batch_s, "answers": batch}}


def in_a_row_and_at_once(index: str, questions: list[str], doc: str, tmp: Path) -> dict:
    """The same questions through the server in a row, then from as many threads at once. Each way gets a server
    of its own, so neither finds the other's prompts in the server's cache, and a warm-up question outside the
    clock (not one of those timed) connects and loads."""
    timings = {}
    for way in ("in_a_row_s", "at_once_s"):
        server = start_server(ServerConfig(embedded_gguf(), PORT + 1, parallel=CONCURRENT), tmp / f"server-{way}.log")
        try:
            qa = LongDocQA(index_dir=index, generator=f"http://127.0.0.1:{PORT + 1}/v1",
                           generator_concurrency=CONCURRENT)
            qa.ask(WARM_UP, doc=doc, mode="rag")
            answers: list = [None] * len(questions)
            started = time.perf_counter()
            if way == "in_a_row_s":
                answers = [qa.ask(q, doc=doc, mode="rag") for q in questions]
            else:
                threads = [threading.Thread(target=lambda i=i: answers.__setitem__(
                    i, qa.ask(questions[i], doc=doc, mode="rag"))) for i in range(len(questions))]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            timings[way] = time.perf_counter() - started
            timings.setdefault("errors", []).extend(a.error for a in answers if a.error)
        finally:
            stop_server(server)
    return timings


contract, contract_tokens = pick_contract(size["tokens"])
questions = QUESTIONS[: size["questions"]]
with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp_name:
    tmp = Path(tmp_name)
    index = str(tmp / "index")
    base_env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    longdoc(base_env, "ingest", str(contract), "--index", index)
    common = ["--doc", contract.name, "--mode", "full_document", "--index", index]
    server = start_server(ServerConfig(embedded_gguf(), PORT, parallel=CONCURRENT), tmp / "server.log")
    try:
        results = {
            "in-process": one_by_one_and_batch(base_env, questions, common, tmp, "in-process"),
            "server": one_by_one_and_batch({**base_env, "LONGDOC_GENERATOR": URL}, questions, common, tmp, "server"),
        }
    finally:
        stop_server(server)
    concurrent = in_a_row_and_at_once(index, QUESTIONS[:CONCURRENT], contract.name, tmp)

table = Table(title=f"{len(questions)} questions, full_document, {contract.name[:60]} ({contract_tokens:,} tokens)")
for column in ("generator", "way", "total s", "s per question", "mean prefill s", "mean generate s", "failed"):
    table.add_column(column, justify="right")
for backend, runs in results.items():
    for way, run in (("longdoc ask x%d" % len(questions), runs["one_by_one"]), ("longdoc batch", runs["batch"])):
        rows = run["answers"]
        table.add_row(backend, way, f"{run['total_s']:.1f}", f"{run['total_s'] / len(questions):.2f}",
                      f"{sum(a['timings'].get('prefill_s', 0) for a in rows) / len(rows):.2f}",
                      f"{sum(a['timings'].get('generate_s', 0) for a in rows) / len(rows):.2f}",
                      str(sum(bool(a.get("error")) for a in rows)))
console.print(table)
local, remote = results["in-process"], results["server"]
ratios = {
    "server batch / server one by one": remote["batch"]["total_s"] / remote["one_by_one"]["total_s"],
    "in-process batch / in-process one by one": local["batch"]["total_s"] / local["one_by_one"]["total_s"],
    "server one by one / in-process one by one": remote["one_by_one"]["total_s"] / local["one_by_one"]["total_s"],
    "server batch / in-process batch": remote["batch"]["total_s"] / local["batch"]["total_s"],
    f"server, {CONCURRENT} at once / {CONCURRENT} in a row": concurrent["at_once_s"] / concurrent["in_a_row_s"],
}
for name, value in ratios.items():
    console.print(f"{name} = {value:.2f}x")
console.print(f"server, {CONCURRENT} rag questions: {concurrent['in_a_row_s']:.1f} s in a row, "
              f"{concurrent['at_once_s']:.1f} s at once" + (f"; errors: {concurrent['errors']}" if concurrent["errors"] else ""))

OUT.mkdir(parents=True, exist_ok=True)
path = OUT / ("bench_server_quick.json" if size is QUICK else "bench_server.json")
path.write_text(json.dumps({
    "bench": "server",
    "contract": contract.name,
    "contract_tokens": contract_tokens,
    "questions": questions,
    "server": {"kind": "llama.cpp (xllamacpp)", "gguf": embedded_gguf().name, "yarn_factor": 4, "slots": CONCURRENT},
    "runs": {backend: {way: {"total_s": round(run["total_s"], 2), "timings": [a["timings"] for a in run["answers"]],
                             "errors": [a["error"] for a in run["answers"] if a.get("error")]}
                       for way, run in runs.items()} for backend, runs in results.items()},
    "concurrency": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in concurrent.items()},
    "ratios": {k: round(v, 3) for k, v in ratios.items()},
    "models": {backend: runs["batch"]["answers"][0]["model"] for backend, runs in results.items()},
    "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
}, indent=2), encoding="utf-8")
console.print(f"wrote {path.relative_to(ROOT)}")
