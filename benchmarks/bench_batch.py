"""20 questions over one ~12K-token dev contract in full_document mode: `longdoc ask` one by one vs `longdoc batch`.

Both run as a user runs them, as separate `longdoc` processes against the same index, in one run so the machine's
load is shared alike. One by one, every process loads the models and prefills the whole contract again; the batch
loads once and prefills the contract once, reusing its KV cache for every question (target: the batch in at most 0.3x the time).
On 2 CPU cores one `longdoc ask` at 12K tokens takes about five minutes, so twenty take well over an hour:
`--sample N` times N of the questions one by one (spread over the list) and scales their mean to all of them,
which the output says; each one-by-one run does the same work whatever the question, bar the answer's length.
--quick asks 5 questions of a ~4K-token contract.

    python benchmarks/bench_batch.py [--quick] [--sample N]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks.contract_questions import QUESTIONS, pick_contract  # noqa: E402

FULL = {"questions": 20, "tokens": 12_000}
QUICK = {"questions": 5, "tokens": 4_000}
GOAL = 0.3
OUT = ROOT / "benchmarks" / "results"

args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
args.add_argument("--quick", action="store_true", help="5 questions over a ~4K-token contract")
args.add_argument("--sample", type=int, default=0, help="time only this many questions one by one, and scale")
options = args.parse_args()
size = QUICK if options.quick else FULL
console = Console()

# This environment's `longdoc` console script, as a user runs it; without an install, the same entry point.
SCRIPT = Path(sys.executable).with_name("longdoc")
LONGDOC = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-c", "from app.cli import main; main()"]
env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def longdoc(*argv: str) -> tuple[float, str]:
    """Run one `longdoc` command as a user would; its wall time and stdout. A failure stops the benchmark."""
    started = time.perf_counter()
    done = subprocess.run([*LONGDOC, *argv], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"longdoc {' '.join(argv[:2])} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout


contract, contract_tokens = pick_contract(size["tokens"])
questions = QUESTIONS[: size["questions"]]
with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
    index = str(Path(tmp) / "index")
    longdoc("ingest", str(contract), "--index", index)
    common = ["--doc", contract.name, "--mode", "full_document", "--index", index]

    step = len(questions) / options.sample if 0 < options.sample < len(questions) else 1
    timed = [questions[int(i * step)] for i in range(round(len(questions) / step))]
    one_by_one = []
    for q in tqdm(timed, desc="longdoc ask, one by one", unit="question"):
        seconds, stdout = longdoc("ask", q, "--json", *common)
        one_by_one.append((seconds, json.loads(stdout)))

    qfile = Path(tmp) / "questions.txt"
    qfile.write_text("\n".join(questions) + "\n", encoding="utf-8")
    answers_file = Path(tmp) / "answers.jsonl"
    console.print(f"longdoc batch, {len(questions)} questions ...")
    batch_s, _ = longdoc("batch", str(qfile), "--out", str(answers_file), *common)
    batch = [json.loads(line) for line in answers_file.read_text(encoding="utf-8").splitlines()]

one_s = sum(s for s, _ in one_by_one) * len(questions) / len(timed)  # scaled when --sample timed fewer
sampled = f" (timed {len(timed)} of {len(questions)}, scaled)" if len(timed) < len(questions) else ""
ratio = batch_s / one_s
errors = [a["id"] for a in batch if a.get("error")] + [a["id"] for _, a in one_by_one if a.get("error")]
table = Table(title=f"{len(questions)} questions, full_document, {contract.name[:60]} ({contract_tokens:,} tokens)")
for column in ("way", "total s", "s per question", "prompt tokens", "mean prefill s", "mean generate s"):
    table.add_column(column, justify="right")
for way, total, rows in (("longdoc ask x%d%s" % (len(questions), sampled), one_s, [a for _, a in one_by_one]),
                         ("longdoc batch", batch_s, batch)):
    table.add_row(way, f"{total:.1f}", f"{total / len(questions):.1f}",
                  f"{sum(a['prompt_tokens'] for a in rows) / len(rows):,.0f}",
                  f"{sum(a['timings'].get('prefill_s', 0) for a in rows) / len(rows):.2f}",
                  f"{sum(a['timings'].get('generate_s', 0) for a in rows) / len(rows):.2f}")
console.print(table)
console.print(f"batch / one by one = {ratio:.2f}x ({'meets' if ratio <= GOAL else 'misses'} the {GOAL}x goal)"
              + (f"; failed: {', '.join(errors)}" if errors else ""))

OUT.mkdir(parents=True, exist_ok=True)
path = OUT / ("bench_batch_quick.json" if size is QUICK else "bench_batch.json")
path.write_text(json.dumps({
    "bench": "batch",
    "contract": contract.name,
    "contract_tokens": contract_tokens,
    "questions": questions,
    "one_by_one": {"total_s": round(one_s, 2), "timed_questions": timed, "per_question_s": [round(s, 2) for s, _ in one_by_one],
                   "timings": [a["timings"] for _, a in one_by_one]},
    "batch": {"total_s": round(batch_s, 2), "timings": [a["timings"] for a in batch]},
    "ratio": round(ratio, 3),
    "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],  # a shared machine slows both ways, not alike
    "goal": GOAL,
    "model": batch[0]["model"] if batch else None,
    "answers": [{"question": a["question"], "batch": a["answer"],
                 "one_by_one": next((b["answer"] for _, b in one_by_one if b["question"] == a["question"]), None)}
                for a in batch],
}, indent=2), encoding="utf-8")
console.print(f"wrote {path.relative_to(ROOT)}")
