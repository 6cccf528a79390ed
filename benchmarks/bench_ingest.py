"""Ingestion, side by side in one run: llama-index's default pipeline, its SemanticSplitter pipeline, and ours.

On the dev CUAD contracts, QMSum meetings and ECTSum earnings calls (`../shared/data`; the calls' questions are
the cloze questions `longdoc eval recall --data ectsum` builds from their bullets), each pipeline goes from files to a persisted
index, then every question is asked of its own document. Reported per pipeline:

- ingest throughput: document tokens (all-MiniLM-L6-v2 word pieces, each counted once) per second, from
  reading the files to the persisted index; the embedder is loaded beforehand and shared by every pipeline;
- the same for ours semantic's chunks through the embedder alone, which bounds what any pipeline that embeds
  all the text with this model in float32 can reach; and ours semantic with the embedder's linear layers in
  int8 (`embed_int8`), the one change found that goes past that bound, at some cost in recall;
- the share of the text actually embedded: all-MiniLM-L6-v2 reads 254 word pieces of a chunk (256 with
  [CLS]/[SEP]) and silently drops the rest; llama-index also spends some of them on its metadata header;
- evidence recall@5 and recall within the first 2,000 generator tokens of the ranked passages (the fair
  figure: big chunks hit more spans at a fixed k by covering more text), on CUAD short-answer categories,
  all CUAD categories, QMSum and ECTSum; scored by `app.evals.recall`, the code behind `longdoc eval recall`.
  Ours is scored with dense and hybrid retrieval alone (the chunking compared), and "engine": the engine's
  own retrieval, hybrid plus the document's opening chunk where its structure calls for it (contracts, not
  transcripts or calls: `pin_opening`), which is what a question actually gets.

The llama-index pipelines are its defaults: SimpleDirectoryReader (which puts `file_path` in the text it
embeds), SentenceSplitter(1024, 200) or SemanticSplitterNodeParser(buffer 1, 95th percentile), a
VectorStoreIndex over FaissVectorStore(IndexFlatIP), persisted. One index per document, so a question
searches its own document, as ours does with `doc=`. llama-index-embeddings-huggingface is not installed,
so a 10-line BaseEmbedding wraps the same SentenceTransformer object (normalised, like HuggingFaceEmbedding).
Each pipeline embeds in batches of its own default size: 10 texts for llama-index, `embed_batch_size` (8) for ours.

Run: .venv/bin/python benchmarks/bench_ingest.py   (writes benchmarks/results/bench_ingest.{json,png})
     BENCH_CUAD_DOCS=6 BENCH_QMSUM_DOCS=2 BENCH_ECTSUM_DOCS=2 BENCH_PIPELINES=default,semantic-splitter,ours BENCH_TAG=_small ...
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import faiss
import matplotlib
import numpy as np
from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.node_parser import SemanticSplitterNodeParser, SentenceSplitter
from llama_index.core.schema import MetadataMode, QueryBundle
from llama_index.vector_stores.faiss import FaissVectorStore
from pydantic import PrivateAttr
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

from app.api import LongDocQA
from app.evals.datasets import (
    CUAD_DIR,
    ECTSUM_DIR,
    QMSUM_FILE,
    CollapsedText,
    EvalSet,
    load_cuad,
    load_ectsum,
    load_qmsum,
    require_dev_data,
)
from app.evals.recall import (
    BUDGET_TOKENS,
    DEPTH,
    TokenBudget,
    embedded_share,
    generator_tokenizer,
    score_question,
    summarise,
    write_documents,
)
from app.settings import Settings
from index.retrieval import RETRIEVAL_METHODS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# ---- settings -----------------------------------------------------------------------------------------------
# Sizes and pipelines can be cut from the environment: SemanticSplitter embeds every sentence, which on 2
# shared cores takes minutes per contract. A subset is spread over the set (every n-th document).
CUAD_DOCS = int(os.environ.get("BENCH_CUAD_DOCS", 0)) or None  # None = all 41 contracts
QMSUM_DOCS = int(os.environ.get("BENCH_QMSUM_DOCS", 0)) or None  # None = all 35 meetings
ECTSUM_DOCS = int(os.environ.get("BENCH_ECTSUM_DOCS", 0)) or None  # None = all 20 calls
PIPELINES = os.environ.get("BENCH_PIPELINES", "default,semantic-splitter,ours,ours-int8").split(",")
INT8 = "semantic, int8 embedder"  # "ours-int8": ours semantic with embed_int8
TAG = os.environ.get("BENCH_TAG", "")  # output name suffix, so runs of different sizes do not overwrite
K = 5
BUDGET = BUDGET_TOKENS  # generator tokens
LLAMA_EMBED_BATCH = 10  # llama-index's default embed_batch_size; ours comes from Settings
# llama-index's are dense; "engine" is the engine's own retrieval: hybrid plus, where the document's structure
# calls for it, its opening chunk at rank 2 (QueryEngine._pin_opening), what `longdoc ask` puts before the model
OUR_RETRIEVERS = os.environ.get("BENCH_RETRIEVERS", "dense,hybrid,engine").split(",")
SAME_INDEX = ("(hybrid)", "(engine)")  # rows that search the dense row's index: one ingest figure for all
OUT = Path(__file__).resolve().parent / "results"
BASELINE = "llama-index default"
# ---------------------------------------------------------------------------------------------------------------

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
logging.getLogger("llama_index.core.readers.file.base").setLevel(logging.ERROR)  # "readers-file not found": .txt needs none
console = Console()


class SentenceTransformerEmbedding(BaseEmbedding):
    """llama-index's embedding interface over an already loaded SentenceTransformer (what HuggingFaceEmbedding
    does, without its package): normalised vectors, documents in batches of `embed_batch_size`."""

    _model: Any = PrivateAttr()

    def __init__(self, model: Any, **kwargs: Any) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2", embed_batch_size=LLAMA_EMBED_BATCH, **kwargs)
        self._model = model

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._model.encode_query(query, normalize_embeddings=True).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._model.encode_document(texts, batch_size=self.embed_batch_size, normalize_embeddings=True).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)


def llama_ingest(name: str, parser: Any, embed_model: BaseEmbedding, paths: list[Path], persist: Path):
    """Files to one persisted FAISS-backed VectorStoreIndex per document; returns ({doc name: index}, seconds)."""
    started = time.perf_counter()
    indexes = {}
    for path in tqdm(paths, desc=name, unit="file"):
        documents = SimpleDirectoryReader(input_files=[path]).load_data()
        storage = StorageContext.from_defaults(vector_store=FaissVectorStore(faiss_index=faiss.IndexFlatIP(384)))
        index = VectorStoreIndex.from_documents(documents, storage_context=storage, embed_model=embed_model,
                                                transformations=[parser])
        storage.persist(persist_dir=str(persist / path.name))
        indexes[path.name] = index
    return indexes, time.perf_counter() - started


def llama_chunks(index: Any, text: str, embedder: Any) -> tuple[list[tuple[int, int, str, int]], int]:
    """(char_start, char_end, text, word pieces the embedder reads of it) per node, and how many nodes had to
    be located by whitespace-collapsed search because llama-index could not find them in the text."""
    chunks, relocated, collapsed = [], 0, None
    for node in index.docstore.docs.values():
        content = node.get_content(metadata_mode=MetadataMode.NONE)
        embedded = node.get_content(metadata_mode=MetadataMode.EMBED)
        header = embedded[: len(embedded) - len(content)] if embedded.endswith(content) else ""
        limit = max(0, embedder.max_tokens - (embedder.count_tokens(header) if header else 0))
        start, end = node.start_char_idx, node.end_char_idx
        if start is None or text[start:end] != content:
            collapsed = collapsed or CollapsedText(text)
            start, end = collapsed.find(content) or (0, 0)
            relocated += 1
        chunks.append((start, end, content, limit))
    return sorted(chunks), relocated


def score(eval_set: EvalSet, rank: Any, budget: TokenBudget, desc: str,
          vectors: np.ndarray) -> dict[str, dict[str, float]]:
    """Recall groups for `eval_set`, with `rank(question, vector) -> [(start, end, text)]` giving each ranking
    and `vectors` the questions' vectors from the embedder that built the index."""
    results = [score_question(q, rank(q, vectors[i]), K, budget)
               for i, q in enumerate(tqdm(eval_set.questions, desc=desc, unit="q"))]
    out = {"all": summarise(results)}
    if any(r.short_answer for r in results):
        out["short_answer"] = summarise([r for r in results if r.short_answer])
    out["misses_short_answer"] = [r.id for r in results if r.short_answer and not r.hit_in_budget]
    return out


# ---- run ------------------------------------------------------------------------------------------------------
require_dev_data(CUAD_DIR, QMSUM_FILE, ECTSUM_DIR)
sets = {"cuad": load_cuad(), "qmsum": load_qmsum(), "ectsum": load_ectsum()}
for name, limit in (("cuad", CUAD_DOCS), ("qmsum", QMSUM_DOCS), ("ectsum", ECTSUM_DOCS)):
    if limit:
        s = sets[name]
        keep = {d.name for d in s.documents[:: max(1, len(s.documents) // limit)][:limit]}
        sets[name] = EvalSet(name, [d for d in s.documents if d.name in keep],
                             [q for q in s.questions if q.doc in keep], [q for q in s.absent if q.doc in keep])
work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
paths = {name: write_documents(s.documents, work / "docs" / name) for name, s in sets.items()}

settings = Settings.load()
our_settings = {"semantic": {"chunker": "semantic"}, "fixed": {"chunker": "fixed"}}
if "ours-int8" in PIPELINES:
    our_settings[INT8] = {"chunker": "semantic", "embed_int8": True}
ours = {label: LongDocQA(settings=settings.replace(index_dir=work / f"ours-{i}", **values))
        for i, (label, values) in enumerate(our_settings.items())}
embedder = ours["semantic"].embedder  # llama-index's pipelines embed with this very model object
embed_model = SentenceTransformerEmbedding(embedder.model)
gen_tokenizer, gen_name = generator_tokenizer(settings)
budget = TokenBudget(gen_tokenizer, gen_name, BUDGET)
doc_tokens = {name: sum(embedder.count_tokens(d.text) for d in s.documents) for name, s in sets.items()}
embedder.embed_documents(["warm-up"])  # first-call costs are not ingestion
# Every llama-index pipeline asks the same questions with the same model: embed them once, in batches.
query_vectors = {name: embedder.embed_queries([q.question for q in s.questions]) for name, s in sets.items()}

rows: dict[str, dict[str, Any]] = {}
embed_only: dict[str, float] = {}  # seconds the embedder alone takes over ours semantic's chunks, per set
parsers = {
    BASELINE: lambda: SentenceSplitter(chunk_size=1024, chunk_overlap=200),
    "llama-index SemanticSplitter": lambda: SemanticSplitterNodeParser(embed_model=embed_model),
}
if "semantic-splitter" not in PIPELINES:
    del parsers["llama-index SemanticSplitter"]
for label, make_parser in parsers.items():
    row = rows[label] = {"ingest": {}, "recall": {}}
    for name, s in sets.items():
        indexes, seconds = llama_ingest(f"{label} / {name}", make_parser(), embed_model, paths[name], work / label / name)
        read = total = relocated = n_chunks = 0
        chunk_lists = {}
        for doc in s.documents:
            chunks, moved = llama_chunks(indexes[doc.name], doc.text, embedder)
            r, t = embedded_share(embedder.tokenizer, doc.text, [(a, b, lim) for a, b, _, lim in chunks])
            read, total, relocated, n_chunks = read + r, total + t, relocated + moved, n_chunks + len(chunks)
            chunk_lists[doc.name] = chunks
        row["ingest"][name] = {"seconds": seconds, "tokens": doc_tokens[name], "chunks": n_chunks,
                               "embedded_share": read / total, "nodes_relocated": relocated}
        retrievers = {d: ix.as_retriever(similarity_top_k=DEPTH) for d, ix in indexes.items()}

        def rank(q, vector, retrievers=retrievers):
            hits = retrievers[q.doc].retrieve(QueryBundle(q.question, embedding=vector.tolist()))
            return [(n.node.start_char_idx or 0, n.node.end_char_idx or 0, n.node.get_content()) for n in hits]

        # nodes llama-index could not place carry no offsets; score them where whitespace-collapsed search found them
        placed = {d: {c[2]: (c[0], c[1]) for c in chunks} for d, chunks in chunk_lists.items()}

        def rank_placed(q, vector, rank=rank, placed=placed):
            return [(*placed[q.doc].get(text, (a, b)), text) for a, b, text in rank(q, vector)]

        row["recall"][name] = score(s, rank_placed, budget, f"{label} / {name} questions", query_vectors[name])

for chunker, qa in ours.items():
    if chunker != INT8 and "ours" not in PIPELINES:
        continue
    # in batches, with the embedder that built this index; `embed_queries` remembers them for "engine" below
    vectors = {name: qa.embedder.embed_queries([q.question for q in s.questions]) for name, s in sets.items()}
    for retriever in OUR_RETRIEVERS:
        rows[f"ours {chunker} ({retriever})"] = {"ingest": {}, "recall": {}}
    for name, s in sets.items():
        console.print(f"ours {chunker} / {name}: ingesting {len(paths[name])} files")
        report = qa.ingest(paths[name])
        assert not report.skipped, report.skipped
        read = total = 0
        for info in report.ingested:
            text = qa.document_text(info.name)
            r, t = embedded_share(embedder.tokenizer, text,
                                  [(c.char_start, c.char_end, embedder.max_tokens) for c in qa.store.chunks(info.doc_id)])
            read, total = read + r, total + t
        doc_ids = {info.name: info.doc_id for info in report.ingested}
        if chunker == "semantic":  # the same chunks through the embedder alone: what no pipeline can go below
            stored = [qa.store.chunks(info.doc_id) for info in report.ingested]
            started = time.perf_counter()
            for chunks in stored:
                embedder.embed_documents([c.text for c in chunks], n_tokens=[c.n_tokens for c in chunks])
            embed_only[name] = time.perf_counter() - started
        for retriever in OUR_RETRIEVERS:
            row = rows[f"ours {chunker} ({retriever})"]
            row["ingest"][name] = {"seconds": report.seconds, "tokens": doc_tokens[name], "chunks": report.chunks,
                                   "embedded_share": read / total, "nodes_relocated": 0}

            def rank(q, vector, retriever=retriever, qa=qa, doc_ids=doc_ids):
                if retriever == "engine":  # the question's vector is remembered from the batch embedding above
                    return [(p.char_start, p.char_end, p.text) for p in qa.retrieve(q.question, q.doc, DEPTH)]
                # index.retrieval.retrieve() minus the query embedding, which was done once for all questions
                hits = RETRIEVAL_METHODS[retriever](qa.store, vector, q.question, DEPTH, doc_ids[q.doc])
                return [(h.chunk.char_start, h.chunk.char_end, h.chunk.text) for h in hits]

            row["recall"][name] = score(s, rank, budget, f"ours {chunker} ({retriever}) / {name} questions",
                                        vectors[name])
shutil.rmtree(work, ignore_errors=True)

# ---- report ---------------------------------------------------------------------------------------------------
for row in rows.values():
    ing = row["ingest"]
    seconds, tokens = sum(v["seconds"] for v in ing.values()), sum(v["tokens"] for v in ing.values())
    row["tokens_per_s"] = tokens / seconds
    row["embedded_share"] = sum(v["embedded_share"] * v["tokens"] for v in ing.values()) / tokens
base = rows[BASELINE]

ingest_table = Table("pipeline", f"chunks ({'/'.join(sets)})", "seconds", "tokens/s", "x default", "share embedded",
                     title=f"Ingest, files to persisted index ({sum(doc_tokens.values()):,} document tokens, "
                           f"{os.cpu_count()} cores)")
for label, row in rows.items():
    if label.endswith(SAME_INDEX):
        continue
    ing = row["ingest"]
    ingest_table.add_row(label.removesuffix(" (dense)"), "/".join(str(v["chunks"]) for v in ing.values()),
                         f"{sum(v['seconds'] for v in ing.values()):.1f}", f"{row['tokens_per_s']:,.0f}",
                         f"{row['tokens_per_s'] / base['tokens_per_s']:.2f}", f"{row['embedded_share']:.1%}")
console.print(ingest_table)
if embed_only:
    ceiling = sum(doc_tokens.values()) / sum(embed_only.values())
    console.print(f"ours semantic's chunks through the embedder alone (no reading, chunking or storing): "
                  f"{sum(embed_only.values()):.1f} s, {ceiling:,.0f} tokens/s, {ceiling / base['tokens_per_s']:.2f} x default: "
                  "the most any pipeline embedding all the text with this model in float32 can reach")

columns = [("cuad", "short_answer"), ("cuad", "all"), ("qmsum", "all"), ("ectsum", "all")]
recall_table = Table("pipeline", *[f"{d} {g}\nR@{K} | R@{BUDGET}tok | MRR" for d, g in columns],
                     title=f"Evidence recall (points vs {BASELINE} at equal budget)")
for label, row in rows.items():
    cells = []
    for d, g in columns:
        m, b = row["recall"][d][g], base["recall"][d][g]
        diff = 100 * (m["recall_at_budget"] - b["recall_at_budget"])
        cells.append(f"{m['recall_at_k']:.3f} | {m['recall_at_budget']:.3f} ({diff:+.1f}) | {m['mrr']:.3f}")
    recall_table.add_row(label, *cells)
console.print(recall_table)
n_questions = {d: (len(s.questions), sum(q.short_answer for q in s.questions)) for d, s in sets.items()}
console.print(f"questions: {n_questions} (all, short-answer); budget in {budget.name} tokens")

OUT.mkdir(parents=True, exist_ok=True)
result = {
    "settings": {"k": K, "budget_tokens": BUDGET, "budget_tokenizer": budget.name, "embed_batch": {"llama-index": LLAMA_EMBED_BATCH, "ours": settings.embed_batch_size},
                 "cpu_count": os.cpu_count(), "documents": {d: len(s.documents) for d, s in sets.items()},
                 "questions": n_questions, "doc_tokens": doc_tokens},
    "pipelines": rows,
    "embedder_alone_s": embed_only,
}
(OUT / f"bench_ingest{TAG}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1, 2]})
dense = [label for label in rows if not label.endswith(SAME_INDEX)]
ax1.barh([lb.removesuffix(" (dense)") for lb in dense], [rows[lb]["tokens_per_s"] for lb in dense], color="tab:gray")
for y, lb in enumerate(dense):
    ax1.text(rows[lb]["tokens_per_s"], y, f" {rows[lb]['embedded_share']:.0%} embedded", va="center", fontsize=8)
ax1.set_xlabel("document tokens / s (files to persisted index)")
ax1.invert_yaxis()
x = np.arange(len(columns))
width = 0.8 / len(rows)
for i, (label, row) in enumerate(rows.items()):
    ax2.bar(x + i * width - 0.4 + width / 2, [row["recall"][d][g]["recall_at_budget"] for d, g in columns],
            width, label=label)
ax2.set_xticks(x, [f"{d} {g.replace('_', '-')}" for d, g in columns])
ax2.set_ylim(0, 1.25)  # headroom for the legend above the bars
ax2.set_ylabel(f"evidence recall in the first {BUDGET} generator tokens")
ax2.legend(fontsize=7, loc="upper center", ncol=3)
fig.tight_layout()
fig.savefig(OUT / f"bench_ingest{TAG}.png", dpi=120)
console.print(f"wrote {OUT / f'bench_ingest{TAG}.json'} and {OUT / f'bench_ingest{TAG}.png'}")
