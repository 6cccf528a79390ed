"""Would an int8 embedder make ingesting fast enough? Speed and retrieval agreement, float32 against int8, in one run.

Ingestion is bound by the embedder (all-MiniLM-L6-v2 in float32); half llama-index's default speed with all
the text embedded needs it about 1.3-1.6x faster per word piece (benchmarks/bench_ingest.py). torch's dynamic
int8 quantization of the linear layers (fbgemm: int8 weights, activations quantized per batch) is the usual
way to get that on a CPU, and what the `embed_int8` setting does (with per-channel scales), so this measures, on semantic chunks of dev contracts (the default chunker settings; oversized pieces are
cut with its model-free word-piece vectors, where `longdoc ingest` uses static word vectors) and their CUAD
questions:

- word pieces embedded per second, float32 and int8 (per-tensor and per-channel weight scales), each the best
  of two passes, the variants interleaved so a busy machine slows them alike; and the ratio to float32;
- what int8 does to the vectors: cosine to the float32 vector of the same chunk, and, for each question, how
  many of the five chunks float32 ranks first int8 also ranks in its first five (dense retrieval).

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_embed_int8.py   (10 contracts; BENCH_CUAD_DOCS=n)
"""

import copy
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

from app.evals.datasets import CUAD_DIR, load_cuad, require_dev_data
from app.settings import Settings
from index.embedder import Embedder
from ingest.chunkers import make_chunker
from ingest.loaders.text import text_document

DOCS = int(os.environ.get("BENCH_CUAD_DOCS", 10))
TOP = 5
PASSES = 2

warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.ao.quantization points to torchao
warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")  # same deprecation
console = Console(width=150)
require_dev_data(CUAD_DIR)
settings = Settings.load()
fp32 = Embedder.load(settings.embedder, batch_size=settings.embed_batch_size)
cuad = load_cuad()
docs = cuad.documents[:: max(1, len(cuad.documents) // DOCS)][:DOCS]
chunker = make_chunker("semantic", fp32.tokenizer, fp32.max_tokens)
chunks: dict[str, list[str]] = {}
for d in docs:
    chunks[d.name] = [c.text for c in chunker.chunk(text_document(Path(d.name), d.text, d.name), d.name)]
texts = [t for d in docs for t in chunks[d.name]]
questions = [q for q in cuad.questions if q.doc in chunks]
word_pieces = sum(fp32.count_tokens(t) for t in texts)

variants = {
    "float32": fp32,
    "int8, per-tensor scales": Embedder("int8, per-tensor scales", quantize_dynamic(
        copy.deepcopy(fp32.model), {torch.nn.Linear: default_dynamic_qconfig}, dtype=torch.qint8),
        batch_size=settings.embed_batch_size),
    "int8, per-channel scales (embed_int8)": Embedder.load(settings.embedder, settings.embed_batch_size, int8=True),
}

seconds = {label: float("inf") for label in variants}
vectors = {}
for e in variants.values():
    e.embed_documents(texts[:8])  # first-call costs
for _ in range(PASSES):
    for label, e in variants.items():
        started = time.perf_counter()
        vectors[label] = e.embed_documents(texts, show_progress=True)
        seconds[label] = min(seconds[label], time.perf_counter() - started)


def top_chunks(label: str) -> list[set[int]]:
    """Per question, the indices (into `texts`) of the TOP chunks of its own document, by that variant."""
    e, v = variants[label], vectors[label]
    q = e.embed_queries([q.question for q in questions])
    offsets = np.cumsum([0] + [len(chunks[d.name]) for d in docs])
    start = {d.name: int(offsets[i]) for i, d in enumerate(docs)}
    out = []
    for qi, question in enumerate(questions):
        lo = start[question.doc]
        sims = v[lo : lo + len(chunks[question.doc])] @ q[qi]
        out.append({lo + int(j) for j in np.argsort(-sims)[:TOP]})
    return out


reference = top_chunks("float32")
table = Table("embedder", "word pieces / s", "x float32", "cosine to float32 (mean / min)",
              f"float32's top {TOP} kept (mean over questions)",
              title=f"{len(texts)} semantic chunks of {len(docs)} dev contracts ({word_pieces:,} word pieces), "
                    f"{len(questions)} CUAD questions, {torch.get_num_threads()} threads, best of {PASSES}")
for label in variants:
    cos = np.sum(vectors[label] * vectors["float32"], axis=1)
    kept = np.mean([len(a & b) / TOP for a, b in zip(reference, top_chunks(label))])
    table.add_row(label, f"{word_pieces / seconds[label]:,.0f}", f"{seconds['float32'] / seconds[label]:.2f}",
                  f"{cos.mean():.4f} / {cos.min():.4f}", f"{kept:.1%}")
console.print(table)
