"""Kill an ingest with SIGKILL at random moments, many times: the library must open, lose nothing that finished,
and hold nothing twice, on every backend (the engines are real servers; see engine_fixtures).

A child process adds (and now and then removes) small documents with cheap 8-dimensional vectors, printing
each operation before it starts and again once it has returned. The parent kills it after a random delay,
replays the log, and checks the index against what every confirmed operation promised. An operation cut off
by the kill may or may not have happened; either outcome is allowed, nothing else is.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from index.base import LibraryMeta
from index.stores import open_store

RUNS = 30
MAX_DELAY_S = 0.3  # after the child says it is ready; an add takes a few milliseconds
REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, sys
from pathlib import Path
import numpy as np
from index.base import DocumentInfo, LibraryMeta
from index.stores import open_store
from ingest.types import Chunk

location, index_dir, run = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
store = open_store(location, index_dir, LibraryMeta("fake:8", 8))
rng = np.random.default_rng(run)
print("ready", flush=True)
for op in range(10_000):
    live = [d.name for d in store.documents()]
    if live and rng.random() < 0.15:
        name = live[int(rng.integers(len(live)))]
        print("start remove", name, flush=True)
        store.remove(name)
    else:
        name = f"doc-{int(rng.integers(120))}.txt"  # a small pool: many adds replace an earlier version
        paragraphs = [f"run {run} op {op} paragraph {j} " * 5 for j in range(int(rng.integers(1, 20)))]
        text = "\n".join(paragraphs)
        doc_id = hashlib.sha256(text.encode()).hexdigest()[:16]
        chunks, start = [], 0
        for j, p in enumerate(paragraphs):
            chunks.append(Chunk(doc_id, name, j, p, start, start + len(p), 5))
            start += len(p) + 1
        vectors = rng.standard_normal((len(chunks), 8)).astype(np.float32)
        n = len(chunks)
        info = DocumentInfo(doc_id, name, "txt", name, 1, n, 5 * n, len(text), "2025-01-01T00:00:00Z")
        print("start add", name, doc_id, flush=True)
        store.add(info, text, chunks, vectors)
    print("done", flush=True)
"""


def run_and_kill(location: str, index_dir: Path, run: int, rng: random.Random) -> list[str]:
    """Start the child, let it work for a random moment, SIGKILL it; its output lines, the cut-off one dropped."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, location, str(index_dir), str(run)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline() == "ready\n"
    time.sleep(rng.uniform(0, MAX_DELAY_S))
    child.send_signal(signal.SIGKILL)
    out, _ = child.communicate()
    assert child.returncode == -signal.SIGKILL, "the child finished before it was killed"
    return [line for line in out.split("\n")[:-1]]  # the part after the last newline may be cut mid-line


def replay(lines: list[str], allowed: dict[str, set[str | None]]) -> bool:
    """Update, per name, the states the index may be in (a doc_id, or None for absent); True if cut mid-operation."""
    pending: tuple[str, str | None] | None = None
    for line in lines:
        if line == "done":
            name, state = pending
            allowed[name] = {state}  # a finished operation fixes the state
            pending = None
        else:
            _, verb, name, *doc_id = line.split()
            pending = (name, doc_id[0] if verb == "add" else None)
    if pending is not None:
        name, state = pending
        allowed.setdefault(name, {None}).add(state)  # it may or may not have reached its commit
    return pending is not None


def test_sigkill_during_ingest_loses_nothing_that_finished(library: tuple[str, Path]) -> None:
    location, index_dir = library
    rng = random.Random(9)
    allowed: dict[str, set[str | None]] = {}
    confirmed = killed_mid_op = 0
    started = time.perf_counter()
    for run in range(RUNS):
        lines = run_and_kill(location, index_dir, run, rng)
        confirmed += lines.count("done")
        killed_mid_op += replay(lines, allowed)

    store = open_store(location, index_dir, LibraryMeta("fake:8", 8))
    docs = store.documents()
    state = {d.name: d.doc_id for d in docs}
    losses = [name for name, states in allowed.items() if state.get(name) not in states]
    print(
        f"\n{RUNS} runs killed with SIGKILL ({killed_mid_op} in the middle of an add or remove), "
        f"{confirmed} operations confirmed, {len(docs)} documents in the index, {len(losses)} losses, "
        f"{time.perf_counter() - started:.1f} s"
    )
    assert confirmed > 0 and killed_mid_op > 0  # kills landed while work was going on, not only at start-up
    assert losses == []
    assert set(state) <= set(allowed)
    # None twice: one entry per document and per name, every chunk once, vectors and records in step.
    assert len({d.doc_id for d in docs}) == len({d.name for d in docs}) == len(docs)
    chunk_ids = [c.chunk_id for c in store.chunks()]
    assert len(chunk_ids) == len(set(chunk_ids)) == len(store) == sum(d.chunks for d in docs)
    for d in docs:
        text = store.document_text(d.doc_id)
        assert all(text[c.char_start : c.char_end] == c.text for c in store.chunks(d.doc_id))

    # The next write clears what the killed writers left behind.
    store.remove(docs[0].name)
    assert len(store.documents()) == len(docs) - 1
    if location == "faiss":
        assert len(list((index_dir / "segments").iterdir())) == len(docs) - 1
        assert not list(index_dir.glob("*.tmp-*"))
    store.close()
