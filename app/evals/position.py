"""Lost in the middle: accuracy by where the gold passage sits among k, and what each reorder strategy does.

Rebuilds the multi-document test of Liu et al. ("Lost in the Middle", arXiv 2307.03172) on the Natural Questions
oracle set: each question's gold passage goes among k-1 distractors that contain none of its answers, chosen
as the question's nearest neighbours by embedding among the other questions' passages (hard, on-topic
distractors, as a retriever would return them). The prompt is the product's own (`PromptBuilder`, the system
prompt, the passage headers) and the answer is the product's generator's.

Two rankings, each followed by every strategy in `REORDERERS`:

- `placed`: the distractors in similarity order with the gold put at retrieval rank 0, k/4, k/2, 3k/4, k-1. With
  the strategy `none` the prompt position is that rank, so its line is the paper's U-curve; the other lines
  say what a strategy makes of a gold passage the retriever ranked there.
- `retriever`: all k ranked by embedding similarity to the question, the gold where it falls.

Scoring, as in the paper: the normalised answer contains any normalised gold answer.
"""

from __future__ import annotations

import json
import re
import string
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from rich.table import Table
from tqdm.auto import tqdm

from app.answer import Passage
from app.errors import LongDocError
from app.evals.datasets import DATA_ROOT, missing_data
from app.reorder import REORDERERS
from app.settings import Settings

NQ_ORACLE = DATA_ROOT / "nq_dev" / "nq-open-oracle-dev.jsonl"
MAX_NEW_TOKENS = 32  # NQ answers are a few words; the paper's scoring only needs them to appear

QUICK_N, QUICK_KS = 5, [10]
FULL_N, FULL_KS = 50, [10, 20]


def gold_ranks(k: int, quick: bool = False) -> list[int]:
    """0-based ranks to put the gold at: 0, k/4, k/2, 3k/4, k-1 (quick: 0, k/2, k-1), without repeats.

    Example:
        >>> gold_ranks(10)
        [0, 2, 5, 7, 9]
    """
    ranks = [0, k // 2, k - 1] if quick else [0, k // 4, k // 2, 3 * k // 4, k - 1]
    return sorted(set(ranks))


def normalize(text: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces (Unicode-composed first)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def contains_answer(text: str, answers: Sequence[str]) -> bool:
    norm = normalize(text)
    return any(normalize(a) and normalize(a) in norm for a in answers)


@dataclass
class NQItem:
    index: int
    question: str
    answers: list[str]
    title: str
    text: str


def load_nq(path: Path) -> list[NQItem]:
    """Every question of the oracle file with its answers and its one gold passage (`ctxs[0]`)."""
    if not path.is_file():
        if path.is_relative_to(DATA_ROOT):  # the default: the dev copy, not beside the repository
            raise missing_data(path, instead="pass --data with the NQ oracle .jsonl")
        raise LongDocError(f"{path}: no such file; pass --data with the NQ oracle .jsonl (nq-open-oracle-dev)")
    items = []
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            try:
                row = json.loads(line)
                gold = row["ctxs"][0]
                items.append(NQItem(i, row["question"], list(row["answers"]), gold["title"], gold["text"]))
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                raise LongDocError(f"{path}, line {i + 1}: not a question of the NQ oracle file "
                                   f"({type(exc).__name__}: {exc})") from None
    if not items:
        raise LongDocError(f"{path}: no questions in it")
    return items


def hard_distractors(items: list[NQItem], pool: np.ndarray, queries: np.ndarray, chosen: Sequence[int],
                     count: int) -> dict[int, list[int]]:
    """For each chosen question, the `count` most similar other passages that contain none of its answers.

    Args:
        pool: (len(items), dim) unit vectors of every gold passage; queries: (len(chosen), dim) of the questions.
    Returns:
        question index -> distractor indices, most similar first.
    """
    out = {}
    for qi, i in enumerate(chosen):
        order = np.argsort(-(pool @ queries[qi]))
        picks = []
        for j in order:
            cand = items[j]
            if j == i or cand.text == items[i].text or contains_answer(cand.text, items[i].answers):
                continue
            picks.append(int(j))
            if len(picks) == count:
                break
        out[i] = picks
    return out


@dataclass
class PositionTrial:
    """One prompt: a question, k passages in a ranking, a strategy, and where the gold passage ended up."""

    question_index: int
    k: int
    ranking: str  # "placed" (gold put at gold_rank) or "retriever" (embedding-similarity order)
    strategy: str
    gold_rank: int  # 0-based rank of the gold passage in the ranking
    gold_position: int  # 0-based place of the gold passage in the prompt, after the strategy
    answer: str
    correct: bool
    prompt_tokens: int


@dataclass
class PositionReport:
    questions: int
    ks: list[int]
    ranks: dict[int, list[int]]
    strategies: list[str]
    model: dict
    data: str
    trials: list[PositionTrial] = field(default_factory=list)
    seconds: float = 0.0

    def _select(self, **where) -> list[PositionTrial]:
        return [t for t in self.trials if all(getattr(t, k) == v for k, v in where.items())]

    def placed(self, k: int, strategy: str) -> list[dict]:
        """Per gold rank: accuracy and the gold's mean prompt position under the strategy."""
        rows = []
        for r in self.ranks[k]:
            ts = self._select(k=k, ranking="placed", strategy=strategy, gold_rank=r)
            if ts:
                rows.append({"gold_rank": r, "accuracy": _mean([t.correct for t in ts]),
                             "gold_position": _mean([t.gold_position for t in ts]), "n": len(ts)})
        return rows

    def retriever(self, k: int, strategy: str) -> dict:
        ts = self._select(k=k, ranking="retriever", strategy=strategy)
        return {"accuracy": _mean([t.correct for t in ts]), "gold_rank": _mean([t.gold_rank for t in ts]),
                "gold_position": _mean([t.gold_position for t in ts]), "n": len(ts)}

    def tables(self) -> list[Table]:
        tables = []
        for k in self.ks:
            table = Table(title=f"Lost in the middle, k={k}, {self.questions} questions: accuracy @ the gold's mean "
                                "prompt position, by the gold's retrieval rank (0 = best)")
            table.add_column("strategy", no_wrap=True)
            for r in self.ranks[k]:
                table.add_column(f"rank {r}", justify="right", no_wrap=True)
            table.add_column("retriever's ranking", justify="right", no_wrap=True)
            for s in self.strategies:
                cells = [f"{row['accuracy']:.0%} @{row['gold_position']:.1f}" for row in self.placed(k, s)]
                ret = self.retriever(k, s)
                table.add_row(s, *cells, f"{ret['accuracy']:.0%} @{ret['gold_position']:.1f}")
            tables.append(table)
        return tables

    def to_dict(self) -> dict:
        return {
            "eval": "position",
            "data": self.data,
            "questions": self.questions,
            "ks": self.ks,
            "gold_ranks": {str(k): v for k, v in self.ranks.items()},
            "model": self.model,
            "seconds": round(self.seconds, 1),
            "summary": {str(k): {s: {"placed": self.placed(k, s), "retriever": self.retriever(k, s)}
                                 for s in self.strategies} for k in self.ks},
            "trials": [asdict(t) for t in self.trials],
        }

    def save(self, out: Path) -> list[Path]:
        """Write position.json and position.png (one panel per k, one line per strategy)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out.mkdir(parents=True, exist_ok=True)
        json_path, png_path = out / "position.json", out / "position.png"
        json_path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        fig, axes = plt.subplots(1, len(self.ks), figsize=(5.5 * len(self.ks), 4.2), squeeze=False)
        for ax, k in zip(axes[0], self.ks):
            for s in self.strategies:
                rows = self.placed(k, s)
                ax.plot([r["gold_rank"] + 1 for r in rows], [r["accuracy"] for r in rows], marker="o",
                        label=s + (" (= gold at that prompt position)" if s == "none" else ""))
            ax.set_xticks([r + 1 for r in self.ranks[k]])
            ax.set_ylim(-0.03, 1.03)
            ax.set_xlabel(f"gold passage's retrieval rank among k={k}")
            ax.set_ylabel("accuracy (answer contains a gold answer)")
            ax.set_title(f"k={k}, {self.questions} NQ questions", fontsize=10)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8, title="reorder strategy", title_fontsize=8)
        fig.suptitle(f"Lost in the middle: {self.model.get('name', '')}", fontsize=11)
        fig.tight_layout()
        fig.savefig(png_path, dpi=120)
        plt.close(fig)
        return [json_path, png_path]


def _mean(values: Sequence[float]) -> float:
    return round(float(np.mean(values)), 3) if len(values) else float("nan")


def run_position(
    settings: Settings,
    n: int,
    ks: Sequence[int],
    quick: bool = False,
    data: Path = NQ_ORACLE,
    strategies: Sequence[str] = tuple(REORDERERS),
    show_progress: bool = True,
) -> PositionReport:
    """Build every prompt with the product's PromptBuilder, answer with the product's Generator, score.

    Args:
        settings: model and embedder choices (the user's).
        n: questions, the first n of the file (a fixed set, so runs compare).
        ks: passages per prompt; quick: gold at 0, k/2, k-1 only.

    Returns:
        PositionReport; `.save(out)` writes position.json and position.png.

    Example:
        >>> report = run_position(Settings.load(), n=2, ks=[4], quick=True)  # doctest: +SKIP
        >>> report.retriever(4, "important_first_last")["gold_position"]     # doctest: +SKIP
        0.0
    """
    from app.llm.generator import Generator
    from app.prompt import PromptBuilder
    from index.embedder import Embedder

    started = time.perf_counter()
    items = load_nq(data)
    if not 1 <= n <= len(items) or min(ks) < 2 or max(ks) > len(items):
        raise LongDocError(f"need 1 <= n <= {len(items)} and 2 <= k <= {len(items)}; got n={n}, k={list(ks)}")
    chosen = list(range(n))
    embedder = Embedder.load(settings.embedder, batch_size=settings.embed_batch_size, int8=settings.embed_int8)
    pool = embedder.embed_documents([f"{it.title}. {it.text}" for it in items], show_progress=show_progress)
    queries = embedder.embed_queries([items[i].question for i in chosen])
    distractors = hard_distractors(items, pool, queries, chosen, max(ks) - 1)

    gen = Generator.load(settings.generator_config())
    builder = PromptBuilder(gen.tokenizer, gen.context_window, MAX_NEW_TOKENS)
    report = PositionReport(questions=n, ks=list(ks), ranks={k: gold_ranks(k, quick) for k in ks},
                            strategies=list(strategies), model=asdict(gen.info), data=str(data))
    answers: dict[tuple[int, ...], str] = {}  # identical prompts (e.g. the retriever's ranking) run once

    jobs = []
    for k in ks:
        for qi, i in enumerate(chosen):
            others = distractors[i][: k - 1]
            for r in report.ranks[k]:
                jobs.append((k, i, "placed", others[:r] + [i] + others[r:]))
            sims = pool[[i] + others] @ queries[qi]
            jobs.append((k, i, "retriever", [([i] + others)[j] for j in np.argsort(-sims, kind="stable")]))
    bar = tqdm(total=len(jobs) * len(strategies), desc="Lost in the middle", unit="prompt", disable=not show_progress)
    for k, i, ranking, order in jobs:
        qv = queries[chosen.index(i)]
        for s in strategies:
            ranked = [Passage(rank=r + 1, score=round(float(pool[j] @ qv), 4), doc=items[j].title, doc_id=f"nq{j}",
                              char_start=0, char_end=len(items[j].text), text=items[j].text)
                      for r, j in enumerate(order)]
            plan = builder.build(items[i].question, ranked, REORDERERS[s])
            if plan.dropped:
                raise LongDocError(f"k={k} passages do not fit the {gen.context_window}-token window")
            key = tuple(plan.input_ids)
            if key not in answers:
                answers[key] = gen.generate(plan.input_ids, max_new_tokens=MAX_NEW_TOKENS).text
            report.trials.append(PositionTrial(
                question_index=i, k=k, ranking=ranking, strategy=s, gold_rank=order.index(i),
                gold_position=next(p.prompt_index for p in plan.passages if p.doc_id == f"nq{i}"),
                answer=answers[key], correct=contains_answer(answers[key], items[i].answers),
                prompt_tokens=len(plan.input_ids),
            ))
            bar.update()
    bar.close()
    report.seconds = time.perf_counter() - started
    return report
