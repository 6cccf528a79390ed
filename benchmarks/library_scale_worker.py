"""The processes bench_library_scale.py starts: each is given one JSON file of parameters and prints one JSON line.

    fill      add documents to a library through `store.add` (a writer of the engine fills)
    baseline  only import the modules the app needs for a backend, and report resident memory
    probe     a fresh app process: import those modules, `open_store`, the first hybrid query, then the timed
              queries, with resident memory read along the way

Run: .venv/bin/python benchmarks/library_scale_worker.py ROLE PARAMS.json   (bench_library_scale.py does)
"""

import importlib
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

role, params = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())


def status_mib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (resident at peak) of this process, from /proc/self/status."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


for module in params["modules"]:
    importlib.import_module(module)

if role == "baseline":
    print(json.dumps({"rss_mib": status_mib("VmRSS")}))
    sys.exit(0)

import numpy as np  # noqa: E402

from benchmarks import synthetic_library  # noqa: E402
from index.base import LibraryMeta  # noqa: E402
from index.retrieval import RETRIEVAL_METHODS  # noqa: E402
from index.stores import open_store  # noqa: E402

meta = LibraryMeta(**params["meta"])
location, index_dir = params["location"], Path(params["index_dir"])

if role == "fill":
    pool = np.load(params["pool_file"])
    numbers = np.load(params["numbers_file"]).tolist()
    store = open_store(location, index_dir, meta)
    started = time.perf_counter()
    for i, n in enumerate(numbers, start=1):
        paragraphs = synthetic_library.synthetic_document(n, params["chunks"], params["words"], params["seed"])
        info, text, chunks = synthetic_library.as_document(f"doc-{n}.txt", paragraphs, params["words"])
        store.add(info, text, chunks,
                  synthetic_library.noisy_vectors(pool, n, params["chunks"], params["noise"], params["seed"]))
        if i % 1000 == 0:
            print(json.dumps({"added": i, "seconds": time.perf_counter() - started}), flush=True)
    store.close()
    print(json.dumps({"added": len(numbers), "seconds": time.perf_counter() - started}), flush=True)
    sys.exit(0)

assert role == "probe", role
hybrid = RETRIEVAL_METHODS["hybrid"]
questions = params["questions"]
vectors = np.load(params["queries_file"])  # (questions, dim), the real embedder's
result = {"rss_imports_mib": status_mib("VmRSS")}

started = time.perf_counter()
store = open_store(location, index_dir, meta)
result["open_s"] = time.perf_counter() - started
result["rss_open_mib"] = status_mib("VmRSS")
hybrid(store, vectors[0], questions[0], 5, None)
result["open_first_answer_s"] = time.perf_counter() - started
result["first_query_s"] = result["open_first_answer_s"] - result["open_s"]


def timed(call, samples: int) -> list[float]:
    """Seconds of `call(i)` for i in range(samples); question i % len(questions)."""
    times = []
    for i in range(samples):
        begun = time.perf_counter()
        call(i % len(questions))
        times.append(time.perf_counter() - begun)
        if len(times) + 1 == params["memory_after"] and "rss_queries_mib" not in result:  # +1: the first query
            result["rss_queries_mib"] = status_mib("VmRSS")
    return times


result["hybrid_s"] = timed(lambda q: hybrid(store, vectors[q], questions[q], 5, None), params["samples"])
result.setdefault("rss_queries_mib", status_mib("VmRSS"))
result["dense50_s"] = timed(lambda q: store.search(vectors[q], 50), params["part_samples"])
result["keyword50_s"] = timed(lambda q: store.keyword_search(questions[q], 50), params["part_samples"])
one = params["one_doc_id"]
result["hybrid_one_doc_s"] = timed(lambda q: hybrid(store, vectors[q], questions[q], 5, one), params["part_samples"])
result["hwm_mib"] = status_mib("VmHWM")
result["hybrid_p50_s"] = statistics.median(result["hybrid_s"])
store.close()
print(json.dumps(result))
