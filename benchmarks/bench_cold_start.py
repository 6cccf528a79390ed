"""Cold start of the `longdoc` command: each command timed as a whole process, before and after the change that
makes a command load only what it uses (`--help`, `docs` and `remove` no torch, transformers or llama-index;
`ingest` the embedder only; `ask` both models, as it must).

"Before" is the code of a git worktree of the commit before the change (BENCH_COLD_BEFORE, default
/tmp/coldstart_before: `git worktree add --detach /tmp/coldstart_before <commit>`), run with this venv by putting
the worktree first on PYTHONPATH; "after" is this working tree through `.venv/bin/longdoc`. Before timing, each
side is checked to import `app.cli` from its own tree.

The commands, each in a new process, with the default settings (the packaged embedder and generator, on CPU):

    longdoc --help
    longdoc ingest CONTRACT --index NEW    a dev contract of 10.8 KB (CUAD, tests/fixtures), a new library each run
    longdoc docs --index LIB               LIB: the library the first ingest of that side made
    longdoc ask "Which law governs this agreement?" --doc CONTRACT --top-k 5 --index LIB   a prompt near 1K tokens
    longdoc remove CONTRACT --index COPY   a fresh copy of LIB each run (the copy is not timed)

What "cold" means here: every run is a new Python process, so every import and every model load is paid again.
The operating system's page cache is not dropped (that needs root and says more about the disk than about the
code), so the files of torch, the models and the code are most likely in memory: a first start after a reboot
costs more. "first" is the first run of each command for each side in this benchmark, reported on its own;
the median (with the range) is over all BENCH_COLD_RUNS runs, the first included. Before and after runs
alternate, so a change in the machine's load falls on both.

The ask row also gives the prompt size the answer reports, and the last line the answer's own timings (retrieval,
generation, evidence: the work a warm process would still do), so what remains of the wall time is the start:
imports and loading the two models.

Run: .venv/bin/python benchmarks/bench_cold_start.py   (BENCH_COLD_RUNS=5 by default)
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.run_header import command, run_header  # noqa: E402

BEFORE = Path(os.environ.get("BENCH_COLD_BEFORE", "/tmp/coldstart_before"))
RUNS = int(os.environ.get("BENCH_COLD_RUNS", "5"))
PYTHON = ROOT / ".venv" / "bin" / "python"
LONGDOC = ROOT / ".venv" / "bin" / "longdoc"
CONTRACT = ROOT / "tests" / "fixtures" / "cuad_dev" / "contracts" / \
    "OPTIMIZEDTRANSPORTATIONMANAGEMENT,INC_07_26_2000-EX-6.6-DISTRIBUTOR AGREEMENT.txt"
QUESTION = "Which law governs this agreement?"
TOP_K = 5  # 872 prompt tokens with this contract and question (3: 538, 6: 1,199)
OUT = Path(__file__).resolve().parent / "results" / "bench_cold_start.txt"
# .venv/bin/longdoc's own lines: the same start for the worktree, which the installed script cannot import
ENTRY = "import sys; from app.cli import main; sys.argv[0] = 'longdoc'; sys.exit(main())"

console = Console(width=160, record=True)


def environment(side: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGDOC_") and k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", COLUMNS="200")
    if side == "before":
        env["PYTHONPATH"] = str(BEFORE)  # ahead of the editable install's finder, which maps app/ to this tree
    return env


def launcher(side: str) -> list[str]:
    return [str(LONGDOC)] if side == "after" else [str(PYTHON), "-c", ENTRY]


def check_tree(side: str, cwd: Path) -> Path:
    """Where `app.cli` comes from for `side`, run as the benchmark runs it; exits if it is not that side's tree."""
    tree = ROOT if side == "after" else BEFORE
    found = subprocess.run([str(PYTHON), "-c", "import app.cli, index.stores; print(app.cli.__file__); "
                            "print(index.stores.__file__)"], cwd=cwd, env=environment(side), capture_output=True,
                           text=True, check=True).stdout.split()
    if not all(Path(f).is_relative_to(tree) for f in found):
        sys.exit(f"{side}: app.cli imports from {found}, not from {tree}")
    return tree


def run(side: str, args: list[str], cwd: Path) -> tuple[float, str]:
    """Seconds of one whole `longdoc ARGS` process of `side`, and what it printed; exits on a failure."""
    started = time.perf_counter()
    done = subprocess.run([*launcher(side), *args], cwd=cwd, env=environment(side), capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{side}: longdoc {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return seconds, done.stdout + done.stderr


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True).stdout.strip()


if not BEFORE.is_dir():
    sys.exit(f"no 'before' tree at {BEFORE}: git worktree add --detach {BEFORE} <commit before the change>")
if not CONTRACT.is_file():
    sys.exit(f"{CONTRACT} is missing")

versions = subprocess.run([str(PYTHON), "-c", "import importlib.metadata as m; print(' '.join(f'{p} ' + "
                           "m.version(p) for p in ('torch', 'transformers', 'sentence-transformers', "
                           "'llama-index-core')))"], capture_output=True, text=True).stdout.strip()
dirty = " + working tree" if git("status", "--porcelain", "--", "app", "index", "ingest") else ""
header = run_header(command("BENCH_COLD_"), f"before = commit {git('rev-parse', '--short', 'HEAD', cwd=BEFORE)} "
                    f"in {BEFORE}, after = commit {git('rev-parse', '--short', 'HEAD')}{dirty}, "
                    f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')}, {versions}")
console.print(header, highlight=False, soft_wrap=True)

SIDES = ("before", "after")
COMMANDS = ("--help", "ingest", "docs", "ask", "remove")
times: dict[tuple[str, str], list[float]] = {(s, c): [] for s in SIDES for c in COMMANDS}
printed: dict[tuple[str, str], str] = {}

with tempfile.TemporaryDirectory(prefix="bench_cold_start_") as scratch:
    work = Path(scratch)
    for side in SIDES:
        console.print(f"{side}: app.cli from {check_tree(side, work)}", highlight=False)
    for n in range(RUNS):
        for side in SIDES:
            library = work / side / "library"  # the first ingest of this side makes it
            target = library if n == 0 else work / side / f"ingest{n}"
            args = {
                "--help": ["--help"],
                "ingest": ["ingest", str(CONTRACT), "--index", str(target)],
                "docs": ["docs", "--index", str(library)],
                "ask": ["ask", QUESTION, "--doc", CONTRACT.name, "--top-k", str(TOP_K), "--index", str(library)],
                "remove": ["remove", CONTRACT.name, "--index", str(work / side / "removing")],
            }
            for name in COMMANDS:
                if name == "remove":
                    shutil.rmtree(work / side / "removing", ignore_errors=True)
                    shutil.copytree(library, work / side / "removing")
                seconds, output = run(side, args[name], work)
                times[side, name].append(seconds)
                printed.setdefault((side, name), output)
            if n:
                shutil.rmtree(target)  # only the first ingest's library is used again
        console.print(f"run {n + 1} of {RUNS} done", highlight=False)

for name, expect in (("ingest", "1 ingested"), ("docs", CONTRACT.name), ("remove", f"removed {CONTRACT.name}")):
    for side in SIDES:
        if expect not in printed[side, name]:
            sys.exit(f"{side}: {name} printed no {expect!r}:\n{printed[side, name]}")


def answer_text(output: str) -> str:
    """The streamed answer: what `ask` prints before its table of passages."""
    return output.split("mode: ")[0].strip()


def figures(output: str) -> tuple[str, str]:
    """The prompt tokens and the answer's own timings from `ask`'s last line."""
    line = next(line for line in reversed(output.splitlines()) if "prompt tokens" in line)
    tokens = re.search(r"([\d,]+) prompt tokens", line).group(1)
    return tokens, line.split("generated; ")[-1].strip()


tokens = {side: figures(printed[side, "ask"]) for side in SIDES}
same_answer = answer_text(printed["before", "ask"]) == answer_text(printed["after", "ask"])

table = Table("command", "before: first (s)", "before: median \\[range] (s)", "after: first (s)",
              "after: median \\[range] (s)", "after / before (median)",
              title=f"longdoc, each command a new process, {RUNS} runs each (page cache warm)")
for name in COMMANDS:
    row = [f"longdoc {name}" + (f" (top-k {TOP_K}, {tokens['after'][0]} prompt tokens)" if name == "ask" else "")]
    for side in SIDES:
        values = times[side, name]
        row += [f"{values[0]:.2f}", f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"]
    row.append(f"{statistics.median(times['after', name]) / statistics.median(times['before', name]):.2f}")
    table.add_row(*row)
console.print(table)
for side in SIDES:
    console.print(f"{side}: ask's first answer reports {tokens[side][0]} prompt tokens; {tokens[side][1]}",
                  highlight=False)
console.print(f"the same answer before and after: {'yes' if same_answer else 'NO'}; after: "
              f"{answer_text(printed['after', 'ask'])!r}", highlight=False, soft_wrap=True)

console.print(f"load average at the end {os.getloadavg()[0]:.1f} (a run beside other work shows in the ranges)",
              highlight=False)
OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text(console.export_text(), encoding="utf-8")
console.print(f"-> {OUT.relative_to(ROOT)}", highlight=False)
