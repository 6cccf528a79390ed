"""Keyword (and dense) search in the PostgreSQL backend at scale: how fast, and how close to exact BM25.

A private PostgreSQL 18 + pgvector (app/local_engines.py) gets a synthetic library through `PgVectorStore.add`:
documents of 40 chunks of 150 words, each from the sentences of three dev contracts (CUAD) drawn at random,
their digits made up (benchmarks/synthetic_library.py), so common contract words ('agreement', 'party',
'law') sit in a large share of all chunks, as in a real library of contracts. Then, for eight contract
questions (governing law, termination, assignment, non-compete, exclusivity, cap, fee, audit):

- keyword_search p50 latency (k=10 and k=50) at several candidate budgets, and how many of the exact BM25
  top 10 each budget finds (exact = every chunk holding any query term scored, i.e. an unlimited budget);
- for comparison, llama-index PGVectorStore's form: ts_rank over an OR'd to_tsquery, every match ranked;
- keyword and dense search restricted to one document, and dense search over the library (HNSW).

Vectors are random (DIM dimensions): search quality is not measured here, only keyword ranking and speed.
HNSW insertion dominates the write time; BENCH_PGVECTOR_HNSW=0 drops the index for a keyword-only run.

Run: .venv/bin/python benchmarks/bench_pgvector.py
     BENCH_PGVECTOR_DOCS=25000 (1M chunks; about 10 minutes to load without HNSW on 2 cores)
     BENCH_PGVECTOR_URL=postgresql://... measures a library loaded before (skips starting a server and loading)
"""

import os
import platform
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import index.pgvector_store as pgvector_store  # noqa: E402
from app.local_engines import free_port, start_postgres  # noqa: E402
from benchmarks import synthetic_library  # noqa: E402
from benchmarks.contract_questions import QUESTIONS as ALL_QUESTIONS  # noqa: E402
from index.base import LibraryMeta  # noqa: E402
from index.stores import open_store  # noqa: E402

DOCS = int(os.environ.get("BENCH_PGVECTOR_DOCS", "2500"))  # 100,000 chunks
URL = os.environ.get("BENCH_PGVECTOR_URL")
HNSW = os.environ.get("BENCH_PGVECTOR_HNSW", "1") == "1"
DIM = int(os.environ.get("BENCH_PGVECTOR_DIM", "8"))
CHUNKS_PER_DOC = 40
WORDS_PER_CHUNK = 150
QUESTIONS = ALL_QUESTIONS[6:14]
BUDGETS = [1_000, 2_000, 5_000, 10_000]
REPEATS = 3  # each question this many times for a p50
SEED = 0
RESULTS = Path(__file__).resolve().parent / "results"  # bench_pgvector_<chunks>.txt

console = Console(width=150, record=True)
synthetic_library.contract_sentences()  # exits with one line if the dev contracts are missing


def add_document(store, n: int, rng: np.random.Generator) -> None:
    paragraphs = synthetic_library.synthetic_document(n, CHUNKS_PER_DOC, WORDS_PER_CHUNK, SEED)
    info, text, chunks = synthetic_library.as_document(f"doc-{n}.txt", paragraphs, WORDS_PER_CHUNK)
    store.add(info, text, chunks, rng.standard_normal((len(chunks), DIM)).astype(np.float32))


def latency_ms(search) -> tuple[float, float]:
    """p50 over the questions, each asked REPEATS times, and the slowest question's median (ms)."""
    per_question = []
    for question in QUESTIONS:
        times = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            search(question)
            times.append(time.perf_counter() - started)
        per_question.append(times)
    every = [t for times in per_question for t in times]
    return 1000 * statistics.median(every), 1000 * max(statistics.median(times) for times in per_question)


def p50_ms(search) -> float:
    return latency_ms(search)[0]


def with_budget(budget: int, search):
    """`search` run with pgvector_store.CANDIDATE_BUDGET set to `budget`."""
    def run(question):
        saved, pgvector_store.CANDIDATE_BUDGET = pgvector_store.CANDIDATE_BUDGET, budget
        try:
            return search(question)
        finally:
            pgvector_store.CANDIDATE_BUDGET = saved
    return run


# ---- the library ----------------------------------------------------------------------------------------------

engine = None
if URL is None:
    data_dir = Path(tempfile.mkdtemp(prefix="bench_pgvector_"))
    engine = start_postgres(data_dir, free_port(), secrets.token_hex(8))
    URL = engine.url
store = open_store(URL, Path(), LibraryMeta(f"fake:{DIM}", DIM))
loaded = len(store.documents())
if loaded < DOCS:
    if not HNSW:
        with store._session() as conn:
            conn.execute("DROP INDEX IF EXISTS longdoc_chunks_embedding")
    rng = np.random.default_rng(SEED)
    started = time.perf_counter()
    for n in range(loaded, DOCS):
        add_document(store, n, rng)
        if (n + 1) % 1000 == 0:
            rate = (n + 1 - loaded) * CHUNKS_PER_DOC / (time.perf_counter() - started)
            console.print(f"{n + 1:,} documents loaded, {rate:,.0f} chunks/s")
    load_s = time.perf_counter() - started
    new_chunks = (DOCS - loaded) * CHUNKS_PER_DOC
    console.print(f"loaded {DOCS - loaded:,} documents ({new_chunks:,} chunks) in {load_s:.0f} s, "
                  f"{new_chunks / load_s:,.0f} chunks/s through PgVectorStore.add "
                  f"({'with' if HNSW else 'without'} the HNSW index)")
with store._session() as conn:
    conn.execute("VACUUM ANALYZE longdoc_chunks")
    conn.execute("VACUUM ANALYZE longdoc_terms")
    has_hnsw = conn.execute("SELECT to_regclass('longdoc_chunks_embedding')").fetchone()[0] is not None
    sizes = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('longdoc_chunks')), "
                         "pg_size_pretty(pg_relation_size('longdoc_chunks_tsv')), count(*) "
                         "FROM longdoc_terms").fetchone()
n_chunks = len(store)
console.print(f"{n_chunks:,} chunks; chunks table with indexes {sizes[0]}, GIN index {sizes[1]}, {sizes[2]:,} terms")

# ---- the terms of each question --------------------------------------------------------------------------------

with store._session() as conn:
    terms = {q: conn.execute(pgvector_store.QUERY_TERMS_SQL, (q,)).fetchall() for q in QUESTIONS}
table = Table(title="question terms: chunks holding each (df)")
table.add_column("question")
table.add_column("lexemes (df), rarest first")
for q in QUESTIONS:
    table.add_row(q, ", ".join(f"{lexeme} ({df:,})" for lexeme, df in terms[q]))
console.print(table)

# ---- keyword search: budgets against exact BM25 ----------------------------------------------------------------

exact_hits = {q: with_budget(10**9, lambda q: store.keyword_search(q, 10))(q) for q in QUESTIONS}
exact = {q: [c.chunk_id for c, _ in hits] for q, hits in exact_hits.items()}
exact_score = {q: sum(score for _, score in hits) for q, hits in exact_hits.items()}
exact_ms = latency_ms(with_budget(10**9, lambda q: store.keyword_search(q, 10)))

table = Table(title=f"keyword_search over {n_chunks:,} chunks: p50 of {len(QUESTIONS)} questions x {REPEATS}")
for column in ("candidate budget", "k=10 p50 / slowest (ms)", "k=50 p50 (ms)", "exact top 10 found (of 80)",
               "BM25 of top 10 / exact's", "fewest found"):
    table.add_column(column)
for budget in BUDGETS:
    search = with_budget(budget, lambda q: store.keyword_search(q, 10))
    hits = {q: search(q) for q in QUESTIONS}
    found = {q: len(set(exact[q]) & {c.chunk_id for c, _ in hits[q]}) for q in QUESTIONS}
    score = statistics.mean(sum(s for _, s in hits[q]) / exact_score[q] for q in QUESTIONS)
    worst = min(found, key=found.get)
    p50, slowest = latency_ms(search)
    table.add_row(f"{budget:,}", f"{p50:.0f} / {slowest:.0f}",
                  f"{p50_ms(with_budget(budget, lambda q: store.keyword_search(q, 50))):.0f}",
                  f"{sum(found.values())}", f"{score:.3f}", f"{found[worst]}/10: {worst}")
table.add_row("unlimited (exact BM25)", f"{exact_ms[0]:.0f} / {exact_ms[1]:.0f}", "", "80", "1.000", "")


def ts_rank_all_matches(question: str) -> list:
    """llama-index PGVectorStore's sparse query: ts_rank of an OR'd to_tsquery, every match ranked."""
    words = re.sub(r"(?!\b\.\b)\W+", " ", question).strip().replace(" ", "|")
    with store._session() as conn:
        return conn.execute(
            "SELECT doc_id, idx, ts_rank(tsv, q) AS rank FROM longdoc_chunks, to_tsquery('english', %s) q "
            "WHERE tsv @@ q ORDER BY rank DESC LIMIT 10", (words,)).fetchall()


ts_rank_found = sum(len(set(exact[q]) & {f"{d}:{i}" for d, i, _ in ts_rank_all_matches(q)}) for q in QUESTIONS)
table.add_row("ts_rank, all matches (llama-index's form)", "{:.0f} / {:.0f}".format(*latency_ms(ts_rank_all_matches)),
              "", f"{ts_rank_found}", "", "")
console.print(table)

# ---- one document, and dense ------------------------------------------------------------------------------------

one = store.documents()[len(store.documents()) // 2]
query_vec = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
query_vec /= np.linalg.norm(query_vec)
table = Table(title="other searches, p50 (ms)")
table.add_column("search")
table.add_column("p50 (ms)")
table.add_row("keyword_search, one document, k=10",
              f"{p50_ms(lambda q: store.keyword_search(q, 10, doc_id=one.doc_id)):.1f}")
table.add_row("search (dense), one document, k=10",
              f"{p50_ms(lambda q: store.search(query_vec, 10, doc_id=one.doc_id)):.1f}")
if has_hnsw:
    table.add_row("search (dense, HNSW), library, k=50", f"{p50_ms(lambda q: store.search(query_vec, 50)):.1f}")
with store._session() as conn:
    plan = [row[0] for row in conn.execute("EXPLAIN " + pgvector_store.DENSE_ONE_DOCUMENT_SQL, {
        "query": pgvector_store._vector_literal(query_vec), "doc_id": one.doc_id, "k": 10})]
scan = re.compile(r"(Bitmap |Seq )?(Heap |Index Only |Index )?Scan( using \w+)? on \w+")
scans = sorted({m.group(0) for m in map(scan.search, plan) if m})
table.add_row("one-document dense plan", "; ".join(scans))
console.print(table)

store.close()
if engine is not None:
    engine.stop()
    shutil.rmtree(data_dir)

reused = "BENCH_PGVECTOR_URL=(a library loaded before) " if os.environ.get("BENCH_PGVECTOR_URL") else ""
header = (f"# {reused}BENCH_PGVECTOR_DOCS={DOCS} .venv/bin/python benchmarks/bench_pgvector.py   "
          f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores shared, "
          f"PostgreSQL 18 + pgvector 0.8.5, default settings: shared_buffers 128MB; "
          f"{'with' if has_hnsw else 'without'} the HNSW index; vectors of {DIM} dimensions)\n")
out = RESULTS / f"bench_pgvector_{n_chunks // 1000}k.txt"
RESULTS.mkdir(exist_ok=True)
out.write_text(header + console.export_text())
print(f"wrote {out}")
