"""Evidence recall: does retrieval bring back the text that answers the question?

For each question with gold evidence (character ranges in its document, from `app.evals.datasets`), the
ranked passages retrieved from that document are scored three ways:

- recall@k: one of the first k passages overlaps a gold range (by at least one character);
- MRR: 1 / the rank of the first overlapping passage among the first `DEPTH` (0 when none);
- recall at an equal budget: a gold range overlaps the first `budget` *generator* tokens of the ranked
  passages, read in rank order (the last passage counts only up to where the budget runs out). Large chunks
  hit more spans at a fixed k simply by covering more text; a fixed number of prompt tokens is what a
  chunking strategy actually has to spend, so this is the fair comparison between strategies.

The scoring works on plain (char_start, char_end, text) rankings, so `benchmarks/bench_ingest.py` scores
llama-index pipelines with exactly the same code; `run_recall` produces the rankings with our own pipeline,
through the public `LongDocQA` API (ingest, then `engine.retrieve` restricted to the question's document).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from rich.table import Table
from tqdm.auto import tqdm

from app.errors import LongDocError
from app.evals.datasets import EvalDocument, EvalQuestion, EvalSet
from app.settings import EMBEDDED_GENERATOR, Settings
from index.stores import backend_kind, redact

logger = logging.getLogger(__name__)

DEPTH = 50  # passages retrieved per question: enough to fill a 2,000-token budget with the smallest chunks
RECALL_K = 5  # passages counted for recall@k: the default top_k
BUDGET_TOKENS = 2000
BUDGET_TOKENIZERS = ("generator", "embedder")  # the first is the default

Ranking = list[tuple[int, int, str]]  # (char_start, char_end, text), best first


# ---- the generator's tokenizer, for the budget ----------------------------------------------------------------


def generator_tokenizer(settings: Settings) -> tuple[Any, str]:
    """The generator's tokenizer, without loading the model, and its name.

    The packaged SmolLM2 (and any `.gguf`) ships its vocabulary inside the GGUF; reading it from there takes
    tens of seconds on 2 cores, so it is reused from the generator's converted-weights cache when that
    exists, else saved once under `cache_dir/tokenizers/`.
    """
    from transformers import AutoTokenizer

    from app.llm.generator import embedded_gguf, gguf_fingerprint

    source = settings.generator
    if source == EMBEDDED_GENERATOR:
        gguf = embedded_gguf()
    elif source.endswith(".gguf"):
        gguf = Path(source).expanduser()
    else:
        return AutoTokenizer.from_pretrained(source), Path(source).name
    key = f"{gguf.stem}-{gguf_fingerprint(gguf)}"
    converted = sorted((settings.cache_dir / "generators").glob(f"{key}-*/tokenizer.json"))
    ours = settings.cache_dir / "tokenizers" / key
    if converted:
        return AutoTokenizer.from_pretrained(converted[0].parent), gguf.stem
    if not (ours / "tokenizer.json").is_file():
        logger.warning("reading the tokenizer of %s (once; it is cached under %s)", gguf.name, ours)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        ours.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(ours)
    return AutoTokenizer.from_pretrained(ours), gguf.stem


class TokenBudget:
    """The part of a ranking that fits in the first `tokens` tokens of `tokenizer`, read in rank order.

    Example:
        >>> budget = TokenBudget(tokenizer, "SmolLM2", tokens=2000)
        >>> budget.covered([(0, 900, text_a), (5000, 12000, text_b)])  # text_a: 300 tokens, text_b: 2,400
        [(0, 900), (5000, 10610)]                                      # text_b up to its 1,700th token
    """

    def __init__(self, tokenizer: Any, name: str, tokens: int = BUDGET_TOKENS) -> None:
        self.tokenizer = tokenizer
        self.name = name
        self.tokens = tokens

    def covered(self, ranking: Ranking) -> list[tuple[int, int]]:
        """Character ranges of the passages (or the first part of the last one) within the budget."""
        left, ranges = self.tokens, []
        for start, end, text in ranking:
            if left <= 0:
                break
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            n = len(enc["input_ids"])
            if n <= left:
                ranges.append((start, end))
            else:  # only the first `left` tokens fit: the passage counts up to the end of the last one
                ranges.append((start, start + int(enc["offset_mapping"][left - 1][1])))
            left -= n
        return ranges


# ---- scoring ------------------------------------------------------------------------------------------------


@dataclass
class QuestionResult:
    """How one question's ranking did against its gold ranges."""

    id: str
    doc: str
    category: str
    short_answer: bool
    first_hit_rank: int | None  # 1-based rank of the first passage overlapping gold, within DEPTH
    hit_at_k: bool
    hit_in_budget: bool
    passages_in_budget: int


def overlaps(a: tuple[int, int], gold: Iterable[tuple[int, int]]) -> bool:
    return any(a[0] < e and s < a[1] for s, e in gold)


def score_question(q: EvalQuestion, ranking: Ranking, k: int, budget: TokenBudget) -> QuestionResult:
    """Score one ranking (best first) of passages from `q.doc` against `q.gold`."""
    hits = [overlaps((s, e), q.gold) for s, e, _ in ranking[:DEPTH]]
    first = hits.index(True) + 1 if True in hits else None
    in_budget = budget.covered(ranking)
    return QuestionResult(
        q.id, q.doc, q.category, q.short_answer,
        first_hit_rank=first,
        hit_at_k=first is not None and first <= k,
        hit_in_budget=any(overlaps(r, q.gold) for r in in_budget),
        passages_in_budget=len(in_budget),
    )


def summarise(results: list[QuestionResult]) -> dict[str, float]:
    """recall@k, MRR, recall at the budget and passages per budget over `results` (a group of questions)."""
    if not results:
        return {"n": 0, "recall_at_k": float("nan"), "mrr": float("nan"), "recall_at_budget": float("nan"),
                "passages_in_budget": float("nan")}
    return {
        "n": len(results),
        "recall_at_k": float(np.mean([r.hit_at_k for r in results])),
        "mrr": float(np.mean([1.0 / r.first_hit_rank if r.first_hit_rank else 0.0 for r in results])),
        "recall_at_budget": float(np.mean([r.hit_in_budget for r in results])),
        "passages_in_budget": float(np.mean([r.passages_in_budget for r in results])),
    }


def groups(results: list[QuestionResult]) -> dict[str, dict[str, float]]:
    """Summaries for all questions, the short-answer ones (when any), and each category (when several)."""
    out = {"all": summarise(results)}
    if any(r.short_answer for r in results):
        out["short_answer"] = summarise([r for r in results if r.short_answer])
    categories = sorted({r.category for r in results})
    if len(categories) > 1:
        for c in categories:
            out[f"category:{c}"] = summarise([r for r in results if r.category == c])
    return out


def embedded_share(tokenizer: Any, text: str, chunks: Iterable[tuple[int, int, int]]) -> tuple[int, int]:
    """(document tokens the embedder actually reads, all document tokens).

    `chunks` are (char_start, char_end, limit): an embedder reads at most `limit` word pieces of a chunk's
    text and silently drops the rest (the model's input limit, less whatever the pipeline puts before the
    text, e.g. llama-index's metadata header). A document token counts as read when its characters lie
    inside the read part of at least one chunk, so overlapping chunks are not counted twice.
    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)  # (n_tokens, 2)
    read = np.zeros(len(text) + 1, dtype=np.int32)  # +1 at a read range's start, -1 at its end
    for start, end, limit in chunks:
        piece = tokenizer(text[start:end], add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        if len(piece["input_ids"]) > limit:
            end = start + (int(piece["offset_mapping"][limit - 1][1]) if limit > 0 else 0)
        read[start] += 1
        read[end] -= 1
    covered = np.cumsum(read)[:-1] > 0  # (len(text),) character is inside a read range
    inside = covered[offsets[:, 0]] & covered[np.maximum(offsets[:, 1] - 1, offsets[:, 0])]
    return int(inside.sum()), len(offsets)


# ---- our pipeline -------------------------------------------------------------------------------------------


@dataclass
class RecallReport:
    """One `longdoc eval recall` run: the settings it ran with, ingestion figures and the scores."""

    data: str
    chunker: str
    retriever: str
    pin_opening: str  # the `pin_opening` setting the passages were retrieved with
    context_chunks: int  # the `context_chunks` setting: chunks of context handed on with each passage
    k: int
    budget_tokens: int
    budget_tokenizer: str
    embedder: str
    embedder_precision: str  # "float32" or "int8" (the `embed_int8` setting)
    vector_store: str  # the backend's kind: faiss, postgresql or milvus
    documents: int
    chunks: int
    doc_tokens: int
    ingest_s: float
    questions: int
    unlocated_gold: int
    groups: dict[str, dict[str, float]]
    results: list[QuestionResult] = field(default_factory=list)

    @property
    def title(self) -> str:
        int8 = ", int8 embedder" if self.embedder_precision == "int8" else ""
        engine = f", on {self.vector_store}" if self.vector_store != "faiss" else ""
        pin = f", opening pinned {self.pin_opening}" if self.pin_opening != "auto" else ""
        context = f", {self.context_chunks} chunk(s) of context each side" if self.context_chunks else ""
        return f"{self.data}: {self.chunker} chunks, {self.retriever} retrieval{pin}{context}{int8}{engine}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_documents(documents: list[EvalDocument], folder: Path) -> list[Path]:
    """Write each document's text verbatim (UTF-8, newlines untranslated), so offsets index the file."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in documents:
        path = folder / doc.name
        path.write_bytes(doc.text.encode("utf-8"))
        paths.append(path)
    return paths


def budget_for(settings: Settings, embedder: Any, which: str, tokens: int) -> TokenBudget:
    """The budget in the generator's tokens, or in the embedder's when asked or when the generator's
    tokenizer cannot be read (the fallback is logged and named in every output)."""
    if which not in BUDGET_TOKENIZERS:
        raise ValueError(f"budget tokenizer {which!r} is not one of {', '.join(BUDGET_TOKENIZERS)}")
    if which == "generator":
        try:
            tokenizer, name = generator_tokenizer(settings)
            return TokenBudget(tokenizer, f"generator:{name}", tokens)
        except (LongDocError, OSError, ValueError, ImportError) as exc:
            logger.warning("generator tokenizer unavailable (%s); counting the budget in embedder tokens", exc)
    return TokenBudget(embedder.tokenizer, f"embedder:{embedder.name}", tokens)


def run_recall(
    eval_set: EvalSet,
    settings: Settings,
    k: int = RECALL_K,
    budget_tokens: int = BUDGET_TOKENS,
    budget_tokenizer: str = BUDGET_TOKENIZERS[0],
    show_progress: bool = False,
) -> RecallReport:
    """Ingest `eval_set` into a fresh index with `settings` (chunker, retriever, embedder) and score recall.

    Every question is asked of its own document only (`doc=`), as a user asks about one contract or meeting.

    Raises:
        AssertionError: the ingested text of a document differs from the text the gold offsets index.
    """
    from app.api import LongDocQA  # torch and the embedder: only when an evaluation runs

    with tempfile.TemporaryDirectory(prefix="longdoc-eval-") as tmp:
        tmp_path = Path(tmp)
        paths = write_documents(eval_set.documents, tmp_path / "docs")
        # An embedded library in a folder of its own, or the engine library `vector_store` names, which must be
        # empty: what this run adds is removed again at the end, and nothing of the user's is ever touched.
        qa = LongDocQA(settings=settings.replace(index_dir=tmp_path / "index"))
        if qa.documents():
            qa.close()
            raise LongDocError(f"{redact(settings.vector_store)} holds documents: measure recall on an empty library "
                               "(a new database or collection prefix)")
        started = time.perf_counter()
        report = qa.ingest(paths, show_progress=show_progress)
        ingest_s = time.perf_counter() - started
        try:
            if report.skipped:
                raise RuntimeError(f"documents not ingested: {report.skipped}")
            for doc in eval_set.documents:
                if qa.document_text(doc.name) != doc.text:  # the contract every offset relies on
                    raise AssertionError(f"{doc.name}: ingested text differs from the evaluation text")
            budget = budget_for(settings, qa.embedder, budget_tokenizer, budget_tokens)

            results = []
            for q in tqdm(eval_set.questions, desc="Questions", unit="q", disable=not show_progress):
                passages = qa.retrieve(q.question, doc=q.doc, top_k=max(k, DEPTH))
                results.append(score_question(q, [(p.char_start, p.char_end, p.text) for p in passages], k, budget))
            logger.info("recall over %d questions in %.1f s", len(results), time.perf_counter() - started - ingest_s)
        finally:
            for info in report.ingested:
                qa.remove(info.doc_id)
            qa.close()

    return RecallReport(
        data=eval_set.name,
        chunker=settings.chunker,
        retriever=settings.retriever,
        pin_opening=settings.pin_opening,
        context_chunks=settings.context_chunks,
        k=k,
        budget_tokens=budget_tokens,
        budget_tokenizer=budget.name,
        embedder=settings.embedder,
        embedder_precision=qa.embedder.precision,
        vector_store=backend_kind(settings.vector_store),
        documents=len(report.ingested),
        chunks=report.chunks,
        doc_tokens=report.tokens,
        ingest_s=round(ingest_s, 3),
        questions=len(results),
        unlocated_gold=eval_set.unlocated,
        groups=groups(results),
        results=results,
    )


# ---- output -------------------------------------------------------------------------------------------------


def recall_table(report: RecallReport) -> Table:
    """The groups as a rich table: one row per group, recall@k, MRR and recall at the budget."""
    table = Table(
        "group", "n", f"recall@{report.k}", "MRR", f"recall@{report.budget_tokens} tok", "passages/budget",
        title=f"{report.title} (budget in {report.budget_tokenizer} tokens)",
    )
    for name, g in report.groups.items():
        table.add_row(name.removeprefix("category:"), str(g["n"]), f"{g['recall_at_k']:.3f}", f"{g['mrr']:.3f}",
                      f"{g['recall_at_budget']:.3f}", f"{g['passages_in_budget']:.1f}")
    return table


def recall_plot(report: RecallReport, path: Path) -> None:
    """Bars of recall@k and recall at the budget for the overall groups and the short-answer categories."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    short = {r.category for r in report.results if r.short_answer}
    names = [n for n in report.groups if not n.startswith("category:") or n.removeprefix("category:") in short]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 2), 4.2))
    for offset, key, label in ((-0.2, "recall_at_k", f"recall@{report.k}"),
                               (0.2, "recall_at_budget", f"recall @ {report.budget_tokens} tokens")):
        ax.bar(x + offset, [report.groups[n][key] for n in names], width=0.4, label=label)
    ax.set_xticks(x, [f"{n.removeprefix('category:')}\n(n={report.groups[n]['n']})" for n in names],
                  rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("evidence recall")
    ax.set_title(report.title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: RecallReport, out: Path) -> tuple[Path, Path]:
    """`recall_<data>_<chunker>_<retriever>[_pin-<always|never>][_context-<n>][_int8].json` and `.png` in `out`;
    returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    int8 = "_int8" if report.embedder_precision == "int8" else ""
    pin = f"_pin-{report.pin_opening}" if report.pin_opening != "auto" else ""
    context = f"_context-{report.context_chunks}" if report.context_chunks else ""
    stem = f"recall_{report.data}_{report.chunker}_{report.retriever}{pin}{context}{int8}"
    json_path, png_path = out / f"{stem}.json", out / f"{stem}.png"
    json_path.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    recall_plot(report, png_path)
    return json_path, png_path
