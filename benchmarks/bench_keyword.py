"""The first keyword search after an upload: bm25s rebuilt over every chunk (today) against index.keyword.

Today the store drops its bm25s index on any change and rebuilds it, tokenising every chunk again, on the next
keyword search, so every upload costs the next question time in proportion to the library. `KeywordIndex`
keeps postings and counts up to date instead. This measures both in one run, on synthetic libraries of 1K and
10K documents of 40 chunks of 150 words each: sentences of three dev contracts (CUAD) drawn at random and
shuffled, their numbers replaced by random ones of the same length (so each document brings new terms, as
dates, amounts and clause numbers do), then cut into chunks (benchmarks/synthetic_library.py).

For each size:
- first search after an upload: bm25s tokenising and indexing all chunks of the library plus the new document
  and answering one question, the store's code path (once: it takes 40 s at 10K); against KeywordIndex.add of
  the new document and the same search (median of UPLOADS uploads, each removed again but the last); the ratio;
- search latency, p50 over the questions each asked several times, over the whole library and restricted to
  one document (bm25s scores every chunk and slices, as the store does); the top 10 must come back the same;
- memory: each index built once more in a forked copy of this process, which reports how far its resident
  memory grew, held once built (freed memory handed back to the system first) and at its peak (VmHWM).
  tracemalloc would count exactly, but slowed the KeywordIndex build twelvefold, and 10K documents past the
  time this run is meant to take.

Building KeywordIndex from nothing is one add per document; its time is printed too. 100K documents are left
out of the default run: at the 10K run's rate the adds alone would take eight minutes, and bm25s as long again.

Run: .venv/bin/python benchmarks/bench_keyword.py   (BENCH_KEYWORD_DOCS=1000,10000 by default)
"""

import ctypes
import gc
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bm25s
import numpy as np
import Stemmer
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import synthetic_library  # noqa: E402
from benchmarks.contract_questions import QUESTIONS as ALL_QUESTIONS  # noqa: E402
from benchmarks.run_header import command, run_header  # noqa: E402
from index.keyword import STOPWORDS, TOKEN_PATTERN, KeywordIndex  # noqa: E402

SIZES = [int(n) for n in os.environ.get("BENCH_KEYWORD_DOCS", "1000,10000").split(",")]
CHUNKS_PER_DOC = 40
WORDS_PER_CHUNK = 150
QUESTIONS = ALL_QUESTIONS[6:14]  # governing law, termination, assignment, non-compete, exclusivity, cap, fee, audit
REPEATS = 5  # each question asked this many times for the latency p50
UPLOADS = 5  # KeywordIndex's add + search is timed on this many new documents
TOP_K = 10
SEED = 0
OUT = Path(__file__).resolve().parent / "results" / "bench_keyword.txt"

console = Console(width=150, record=True)
synthetic_library.contract_sentences()  # exits with one line if the dev contracts are missing
stemmer = Stemmer.Stemmer("english")


def synthetic_document(n: int) -> list[str]:
    """Document n: shuffled sentences of three contracts, numbers made up, cut into 40 chunks of 150 words."""
    return synthetic_library.synthetic_document(n, CHUNKS_PER_DOC, WORDS_PER_CHUNK, SEED)


def bm25s_build(texts: list[str]) -> bm25s.BM25:
    """What the store does on the first keyword search after a change: tokenise and index every chunk."""
    tokens = bm25s.tokenize(texts, stopwords=STOPWORDS, stemmer=stemmer, token_pattern=TOKEN_PATTERN,
                            show_progress=False)
    bm25 = bm25s.BM25()
    bm25.index(tokens, show_progress=False)
    return bm25


def bm25s_search(bm25: bm25s.BM25, query: str, k: int, lo: int = 0, hi: int | None = None) -> list[tuple[int, float]]:
    """The store's keyword_search: every chunk scored, the window [lo, hi) ranked; (chunk number, score)."""
    tokens = bm25s.tokenize([query], stopwords=STOPWORDS, stemmer=stemmer, token_pattern=TOKEN_PATTERN,
                            return_ids=False, show_progress=False)[0]
    tokens = [t for t in tokens if t in bm25.vocab_dict]
    if not tokens:
        return []
    scores = bm25.get_scores(tokens)
    window = scores[lo:hi]
    hits = np.flatnonzero(window > 0)
    best = hits[np.argsort(-window[hits], kind="stable")[:k]]
    return [(lo + int(i), float(window[i])) for i in best]


def p50_ms(search) -> float:
    """Median milliseconds of `search(question)` over the questions, each asked REPEATS times."""
    times = []
    for _ in range(REPEATS):
        for question in QUESTIONS:
            started = time.perf_counter()
            search(question)
            times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS: resident now, VmHWM: resident at peak)."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def memory_mib(build) -> tuple[float, float]:
    """Run `build()` in a forked copy of this process: the MiB its resident memory grew, held after, and at peak.

    A forked child starts with the parent's pages mapped, so the growth is what `build` allocated. Freed memory
    goes back to the system (malloc_trim) before each reading, else what the parent or bm25s's token lists
    freed would count, and the peak is reset to the start (writing 5 to clear_refs).
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
        gc.collect()
        trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        start = status_mib("VmRSS")
        built = build()
        gc.collect()
        trim(0)
        held, peak = status_mib("VmRSS") - start, status_mib("VmHWM") - start
        os.write(write_end, f"{held} {peak}".encode())
        del built
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        held, peak = (float(x) for x in answer.read().split())
    os.waitpid(pid, 0)
    return held, peak


def keyword_index(docs: list[list[str]]) -> KeywordIndex:
    index = KeywordIndex()
    for n, texts in enumerate(docs):
        index.add(f"doc{n}", texts)
    return index


commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
header = run_header(command("BENCH_KEYWORD_"), f"commit {commit} + index/keyword.py, numpy {np.__version__}, "
                                               f"bm25s {bm25s.__version__}")
console.print(header, highlight=False, soft_wrap=True)

first_table = Table("documents", "chunks", "bm25s rebuild + search (s)", "KeywordIndex add + search (ms, p50)",
                    "of which add (ms, p50)", "x faster", "KeywordIndex build, all adds (s)",
                    title="first keyword search after uploading one document of 40 chunks")
search_table = Table("documents", "bm25s p50 (ms)", "KeywordIndex p50 (ms)", "bm25s p50, one doc (ms)",
                     "KeywordIndex p50, one doc (ms)", "same top 10",
                     title=f"search latency, p50 of {len(QUESTIONS)} questions x {REPEATS}, k={TOP_K}")
memory_table = Table("documents", "bm25s held (MiB)", "bm25s rebuild peak (MiB)", "KeywordIndex held (MiB)",
                     "KeywordIndex build peak (MiB)", "KeywordIndex / bm25s held", "terms",
                     title="memory: growth of resident memory while building, held after and at peak")

for size in SIZES:
    started = time.perf_counter()
    library = [synthetic_document(n) for n in range(size)]
    uploads = [synthetic_document(n) for n in range(size, size + UPLOADS)]
    docs = library + uploads[-1:]  # the library after the last upload
    texts_after = [t for d in docs for t in d]
    console.print(f"{size} documents: {len(texts_after):,} chunks generated in {time.perf_counter() - started:.1f} s",
                  highlight=False)

    started = time.perf_counter()
    index = keyword_index(library)
    build_s = time.perf_counter() - started
    add_times, first_times = [], []
    for n, upload in enumerate(uploads):
        if n:
            index.remove(f"doc{size}")
        started = time.perf_counter()
        index.add(f"doc{size}", upload)
        add_times.append(time.perf_counter() - started)
        index.search(QUESTIONS[0], TOP_K)
        first_times.append(time.perf_counter() - started)
    add_s, new_first_s = statistics.median(add_times), statistics.median(first_times)

    started = time.perf_counter()
    bm25 = bm25s_build(texts_after)
    bm25s_search(bm25, QUESTIONS[0], TOP_K)
    old_first_s = time.perf_counter() - started

    one = size // 2  # restricted searches ask about one document in the middle of the library
    lo, hi = one * CHUNKS_PER_DOC, (one + 1) * CHUNKS_PER_DOC
    same = all(
        [(f"doc{c // CHUNKS_PER_DOC}", c % CHUNKS_PER_DOC, s) for c, s in bm25s_search(bm25, q, TOP_K, *window)]
        == index.search(q, TOP_K, key)
        for q in QUESTIONS for window, key in (((0, None), None), ((lo, hi), f"doc{one}"))
    )
    old_p50 = p50_ms(lambda q: bm25s_search(bm25, q, TOP_K))
    new_p50 = p50_ms(lambda q: index.search(q, TOP_K))
    old_one_p50 = p50_ms(lambda q: bm25s_search(bm25, q, TOP_K, lo, hi))
    new_one_p50 = p50_ms(lambda q: index.search(q, TOP_K, f"doc{one}"))
    terms = index.vocabulary_size
    bm25 = index = None  # freed before the next size is built

    old_held, old_peak = memory_mib(lambda: bm25s_build(texts_after))
    new_held, new_peak = memory_mib(lambda: keyword_index(docs))

    first_table.add_row(f"{size:,}", f"{len(texts_after):,}", f"{old_first_s:.2f}", f"{1000 * new_first_s:.1f}",
                        f"{1000 * add_s:.1f}", f"{old_first_s / new_first_s:,.0f}", f"{build_s:.1f}")
    search_table.add_row(f"{size:,}", f"{old_p50:.1f}", f"{new_p50:.1f}", f"{old_one_p50:.1f}", f"{new_one_p50:.2f}",
                         "yes" if same else "NO")
    memory_table.add_row(f"{size:,}", f"{old_held:,.0f}", f"{old_peak:,.0f}", f"{new_held:,.0f}", f"{new_peak:,.0f}",
                         f"{new_held / old_held:.2f}", f"{terms:,}")
    console.print(f"{size} documents done", highlight=False)

console.print(first_table)
console.print(search_table)
console.print(memory_table)
OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text(console.export_text(), encoding="utf-8")
console.print(f"wrote {OUT}", highlight=False)
