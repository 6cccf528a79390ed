"""Needle in a haystack: can the tool find one planted fact at every depth of a long document?

A fresh fact ("The access code for the Larkspur vault is 7391-QX.") is planted at a depth of a haystack cut to a
length in generator tokens, and the tool is asked for it. The fact is made up, so the model cannot know it from
training: a right answer means the fact was read. Each cell (length x depth) is one document, asked once per
mode, side by side:

- `rag` with each reorder strategy: the haystack is ingested into a temporary index through `LongDocQA` (the
  user's own chunking and retrieval settings), and retrieval is restricted to that document. Whether the
  needle's chunk reached the prompt is recorded apart from the answer, so a miss can be read as the
  retriever's or the 135M model's.
- `full_document` with each RoPE scaling (`yarn`, `none`): the whole haystack is the prompt, for the lengths
  the scaling's window allows; the others are marked too long.

Scoring: the answer contains the code (case and spaces ignored). The relevance threshold is set to 0 so that the
model always reads; abstention is measured by the recall eval, not here.
"""

from __future__ import annotations

import json
import random
import re
import string
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from rich.table import Table
from tqdm.auto import tqdm

from app.errors import LongDocError, PromptTooLong
from app.evals.datasets import DEV_CONTRACTS, missing_data  # the default haystack; or --haystack with one's own
from app.reorder import REORDERERS
from app.settings import Settings

QUICK_LENGTHS = [1024, 2048]
QUICK_DEPTHS = [0, 50, 100]
FULL_LENGTHS = [2048, 8192, 16384]
FULL_DEPTHS = [0, 25, 50, 75, 100]
SCALINGS = ["yarn", "none"]
MAX_NEW_TOKENS = 48  # the answer is one short sentence; also the reserve the prompt leaves for it

# Made-up names, so that no vault and no code is something the model has seen.
VAULTS = ["Larkspur", "Quillfeather", "Marrowdale", "Thistlebrook", "Ombervane", "Calderwick", "Fennimore",
          "Brackenholt", "Wyndstone", "Saltmere", "Corriwick", "Dunmarrow", "Ivelthorpe", "Kestrelmoor"]
NEEDLE = "The access code for the {vault} vault is {code}."
QUESTION = "What is the access code for the {vault} vault?"
# A place to plant the needle: just after a sentence end or a line break.
_BOUNDARY = re.compile(r"[.!?;:]\s+|\n\s*")


def parse_sizes(text: str) -> list[int]:
    """'1k,2k,512' -> [1024, 2048, 512]: token counts, with k meaning 1,024.

    Example:
        >>> parse_sizes("2k,8k,512")
        [2048, 8192, 512]
    """
    sizes = []
    for raw in text.split(","):
        raw = raw.strip().lower()
        try:
            sizes.append(int(float(raw[:-1]) * 1024) if raw.endswith("k") else int(raw))
        except ValueError:
            raise LongDocError(f"{raw!r} is not a length: use tokens like 512 or 2k") from None
    if not sizes or min(sizes) <= 0:
        raise LongDocError(f"lengths must be positive, got {text!r}")
    return sizes


def size_label(tokens: int) -> str:
    return f"{tokens // 1024}k" if tokens % 1024 == 0 else str(tokens)


@dataclass
class Needle:
    vault: str
    code: str

    @property
    def sentence(self) -> str:
        return NEEDLE.format(vault=self.vault, code=self.code)

    @property
    def question(self) -> str:
        return QUESTION.format(vault=self.vault)

    @classmethod
    def fresh(cls, rng: random.Random) -> "Needle":
        code = f"{rng.randint(1000, 9999)}-{rng.choice(string.ascii_uppercase)}{rng.choice(string.ascii_uppercase)}"
        return cls(vault=rng.choice(VAULTS), code=code)


def found(answer: str, code: str) -> bool:
    """The answer contains the code, ignoring case and whitespace (a model may write '7391 - QX')."""
    squash = lambda s: re.sub(r"\s+", "", s).upper()  # noqa: E731
    return squash(code) in squash(answer)


def load_haystack(paths: Sequence[Path], tokenizer, min_tokens: int) -> tuple[str, list[tuple[int, int]]]:
    """The haystack text (files joined by blank lines) and its token offsets, long enough for `min_tokens`.

    Files are read in order only until there is enough text, so the dev set's 41 contracts are not all tokenized
    for a 2K run. Any format the tool ingests works: each file goes through the ingest loaders.

    Raises:
        LongDocError: no files, or fewer tokens in them than the longest length asks for.
    """
    from ingest.loaders import load_document
    from ingest.pipeline import find_files
    from ingest.types import IngestError

    files, _ = find_files(paths)
    if not files:
        raise LongDocError(f"no readable haystack files in {', '.join(map(str, paths))}")
    parts: list[str] = []
    chars = 0
    for path in files:
        try:
            text = load_document(path).text.strip()
        except IngestError:
            continue
        parts.append(text)
        chars += len(text)
        if chars > 6 * min_tokens:  # contracts run about 4 characters a token; 6 leaves room
            break
    text = "\n\n".join(parts)
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) < min_tokens:
        raise LongDocError(f"the haystack has {len(offsets)} tokens, fewer than the {min_tokens} asked for: "
                           "pass more files with --haystack or smaller --lengths")
    return text, offsets


def plant(text: str, offsets: Sequence[tuple[int, int]], length: int, depth: int, needle: str,
          needle_tokens: int) -> tuple[str, int]:
    """The haystack cut so that, with the needle, it is about `length` tokens, and the needle's character offset.

    The needle goes at the last sentence boundary before `depth` percent of the cut text (at the very start for
    0, at the very end for 100), so it never splits a sentence of the haystack.
    """
    keep = max(1, length - needle_tokens)
    cut = offsets[keep][0] if keep < len(offsets) else len(text)
    hay = text[:cut].rstrip()
    if depth <= 0:
        at = 0
    elif depth >= 100:
        at = len(hay)
    else:
        target = offsets[int(keep * depth / 100)][0]
        ends = [m.end() for m in _BOUNDARY.finditer(hay, 0, target)]
        at = ends[-1] if ends else 0
    before, after = hay[:at], hay[at:]
    lead = "" if not before or before[-1].isspace() else "\n"
    trail = "" if not after or after[0].isspace() else " "
    return before + lead + needle + trail + after, len(before) + len(lead)


def planted_cells(text: str, offsets: Sequence[tuple[int, int]], tokenizer, lengths: Sequence[int],
                  depths: Sequence[int], rng: random.Random) -> Iterator[tuple[int, int, Needle, str, int]]:
    """Each (length, depth) cell in order, as (length, depth, needle, haystack, the needle's character offset): a
    fresh needle from `rng` planted in `text` cut to that length (`plant`). The same `rng` seed gives the same
    needles, so two runs (a model before and after adapting) are asked the same."""
    for n in lengths:
        for d in depths:
            needle = Needle.fresh(rng)
            needle_tokens = len(tokenizer(" " + needle.sentence + " ", add_special_tokens=False)["input_ids"])
            haystack, offset = plant(text, offsets, n, d, needle.sentence, needle_tokens)
            yield n, d, needle, haystack, offset


@dataclass
class NiahCell:
    """One question about one haystack in one mode."""

    mode: str  # "rag" or "full_document"
    variant: str  # the reorder strategy (rag) or the RoPE scaling (full_document)
    length: int  # haystack tokens, needle included
    depth: int  # percent of the way in
    needle_offset: int  # character offset of the needle in the document (planted at a sentence boundary)
    code: str
    question: str
    answer: str = ""
    correct: bool | None = None  # None: not run (the prompt does not fit the window)
    needle_in_prompt: bool | None = None  # rag only: the needle's chunk is among the prompt's passages
    needle_prompt_index: int | None = None
    needle_zone: str | None = None
    prompt_tokens: int = 0
    seconds: float = 0.0
    skipped: str | None = None


@dataclass
class NiahReport:
    """Every cell, the setup that produced them, and the views on them: table, heatmaps, JSON."""

    lengths: list[int]
    depths: list[int]
    haystack: list[str]
    model: dict
    settings: dict
    cells: list[NiahCell] = field(default_factory=list)
    seconds: float = 0.0

    def modes(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys((c.mode, c.variant) for c in self.cells))

    def grid(self, mode: str, variant: str, key: str = "correct") -> list[list[float | None]]:
        """lengths x depths of 1.0 / 0.0, or None where the cell did not run."""
        by = {(c.length, c.depth): getattr(c, key) for c in self.cells if (c.mode, c.variant) == (mode, variant)}
        return [[None if by.get((n, d)) is None else float(by[(n, d)]) for d in self.depths] for n in self.lengths]

    def summary(self) -> dict[str, dict]:
        out = {}
        for mode, variant in self.modes():
            ran = [c for c in self.cells if (c.mode, c.variant) == (mode, variant) and c.correct is not None]
            row = {"correct": sum(c.correct for c in ran), "ran": len(ran),
                   "accuracy": round(sum(c.correct for c in ran) / len(ran), 3) if ran else None}
            if mode == "rag":
                row["needle_in_prompt"] = sum(bool(c.needle_in_prompt) for c in ran)
            out[f"{mode}/{variant}"] = row
        return out

    def table(self) -> Table:
        table = Table(title=f"Needle in a haystack: correct of {len(self.depths)} depths, by haystack length")
        table.add_column("mode")
        table.add_column("strategy / scaling")
        for n in self.lengths:
            table.add_column(size_label(n), justify="right")
        table.add_column("all", justify="right")
        rows = []
        for mode, variant in self.modes():
            if mode == "rag" and all(r[0] != "rag" for r in rows):  # retrieval does not depend on the strategy: one row, above them
                rows.append((mode, variant, "needle_in_prompt"))
            rows.append((mode, variant, "correct"))
        for mode, variant, key in rows:
            grid = self.grid(mode, variant, key)
            cells = [_fraction([x for x in row if x is not None]) for row in grid]
            every = [x for row in grid for x in row if x is not None]
            label = "retrieval: needle in prompt" if key == "needle_in_prompt" else variant
            table.add_row(mode, label, *cells, _fraction(every, percent=True))
        return table

    def to_dict(self) -> dict:
        return {
            "eval": "niah",
            "lengths": self.lengths,
            "depths": self.depths,
            "haystack": self.haystack,
            "model": self.model,
            "settings": self.settings,
            "summary": self.summary(),
            "seconds": round(self.seconds, 1),
            "cells": [asdict(c) for c in self.cells],
        }

    def save(self, out: Path) -> list[Path]:
        """Write niah.json and one heatmap PNG per mode (plus the rag retrieval map); return the paths."""
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "niah.json"]
        paths[0].write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        for mode, variant in self.modes():
            path = out / f"niah_{mode}_{variant}.png"
            title = f"{mode}, {'reorder' if mode == 'rag' else 'RoPE'} {variant}: the answer has the code"
            _heatmap(self.grid(mode, variant), self.lengths, self.depths, title, self.model.get("name", ""), path)
            paths.append(path)
        rag = [v for m, v in self.modes() if m == "rag"]
        if rag:
            path = out / "niah_rag_retrieval.png"
            _heatmap(self.grid("rag", rag[0], "needle_in_prompt"), self.lengths, self.depths,
                     "rag retrieval: the needle's chunk is in the prompt", self.model.get("name", ""), path)
            paths.append(path)
        return paths


def _fraction(values: list[float], percent: bool = False) -> str:
    if not values:
        return "n/a"
    hits = int(sum(values))
    return f"{hits}/{len(values)} ({hits / len(values):.0%})" if percent else f"{hits}/{len(values)}"


def _heatmap(grid: list[list[float | None]], lengths: list[int], depths: list[int], title: str, model: str,
             path: Path) -> None:
    """Rows are lengths, columns depths; green = found, red = missed, grey = did not fit the window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    data = np.array([[np.nan if x is None else x for x in row] for row in grid], dtype=float)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(depths) + 2.5), 0.7 * len(lengths) + 1.8))
    cmap = plt.get_cmap("RdYlGn").with_extremes(bad="#d0d0d0")  # cells too long for the window are grey
    ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for i, row in enumerate(grid):
        for j, x in enumerate(row):
            dark = x is not None and not 0.2 < x < 0.8  # the colour map's ends are dark
            ax.text(j, i, "too long" if x is None else f"{x:.0%}", ha="center", va="center", fontsize=9,
                    color="white" if dark else "black")
    ax.set_xticks(range(len(depths)), [f"{d}%" for d in depths])
    ax.set_yticks(range(len(lengths)), [size_label(n) for n in lengths])
    ax.set_xlabel("needle depth in the document")
    ax.set_ylabel("document length (tokens)")
    ax.set_title(f"{title}\n{model}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_niah(
    settings: Settings,
    lengths: Sequence[int],
    depths: Sequence[int],
    haystack: Sequence[Path] = (),
    strategies: Sequence[str] = tuple(REORDERERS),
    scalings: Sequence[str] = tuple(SCALINGS),
    seed: int = 0,
    show_progress: bool = True,
) -> NiahReport:
    """Plant, ingest, ask in every mode, score. The index is temporary; the user's own is never touched.

    Args:
        settings: the user's settings (chunking, retrieval, model); the library (an embedded one in a temporary
            folder, whatever vector_store says) and min_relevance are overridden.
        lengths: haystack lengths in generator tokens, needle included.
        depths: needle depths in percent.
        haystack: files or folders to cut haystacks from (default: the dev CUAD contracts, concatenated).
        strategies: reorder strategies for `rag`; scalings: RoPE scalings for `full_document`.

    Returns:
        NiahReport; `.save(out)` writes the JSON and the heatmaps.

    Raises:
        LongDocError: no haystack given and the dev contracts are not beside the repository (`DataMissing`),
            or too little text in the haystack.

    Example:
        >>> report = run_niah(Settings.load(), [1024], [0, 100])   # doctest: +SKIP
        >>> report.summary()["rag/important_first_last"]["accuracy"]  # doctest: +SKIP
        1.0
    """
    from app.api import LongDocQA
    from app.engine import QueryEngine
    from app.llm.generator import Generator

    started = time.perf_counter()
    sources = [Path(p) for p in haystack] or [DEV_CONTRACTS]
    if not haystack and not DEV_CONTRACTS.is_dir():
        raise missing_data(DEV_CONTRACTS, instead="pass --haystack with files or folders of your own")
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="longdoc-niah-") as tmp:
        tmp_dir = Path(tmp)
        run_settings = settings.replace(vector_store="faiss", index_dir=tmp_dir / "index", min_relevance=0.0,
                                        max_new_tokens=MAX_NEW_TOKENS)
        qa = LongDocQA(settings=run_settings)
        engines = {s: QueryEngine(run_settings.replace(rope_scaling=s), qa.store, qa.embedder,
                                  lambda s=s: Generator.load(run_settings.replace(rope_scaling=s).generator_config()))
                   for s in scalings if s != run_settings.rope_scaling}
        engines[run_settings.rope_scaling] = qa.engine  # the rag runs' generator, loaded once
        tokenizer = qa.engine.generator.tokenizer
        text, offsets = load_haystack(sources, tokenizer, max(lengths))

        docs: list[tuple[int, int, Needle, str, int]] = []
        files: list[Path] = []
        for n, d, needle, haystack, offset in planted_cells(text, offsets, tokenizer, lengths, depths, rng):
            path = tmp_dir / f"haystack_{size_label(n)}_depth{d:03d}.txt"
            path.write_text(haystack, encoding="utf-8")
            files.append(path)
            docs.append((n, d, needle, path.name, offset))
        qa.ingest(files, show_progress=show_progress)

        runs = [("rag", s) for s in strategies] + [("full_document", s) for s in scalings]
        report = NiahReport(
            lengths=list(lengths), depths=list(depths), haystack=[str(p) for p in sources],
            model=asdict(qa.model_info()),
            settings={k: run_settings.to_dict()[k] for k in ("generator", "embedder", "chunker", "chunk_max_tokens",
                                                            "retriever", "top_k", "max_new_tokens")},
        )
        bar = tqdm(total=len(docs) * len(runs), desc="Needle in a haystack", unit="ask", disable=not show_progress)
        for n, d, needle, name, offset in docs:
            for mode, variant in runs:
                cell = NiahCell(mode=mode, variant=variant, length=n, depth=d, needle_offset=offset, code=needle.code,
                                question=needle.question)
                engine = qa.engine if mode == "rag" else engines[variant]
                try:
                    answer = engine.ask(needle.question, doc=name, mode=mode,
                                        reorder=variant if mode == "rag" else None)
                except PromptTooLong as exc:
                    cell.skipped = str(exc)
                else:
                    cell.answer = answer.answer
                    cell.correct = found(answer.answer, needle.code)
                    cell.prompt_tokens = answer.prompt_tokens
                    cell.seconds = answer.timings.get("total_s", 0.0)
                    if mode == "rag":
                        hit = next((p for p in answer.passages if p.prompt_index is not None and needle.code in p.text),
                                   None)
                        cell.needle_in_prompt = hit is not None
                        if hit is not None:
                            cell.needle_prompt_index, cell.needle_zone = hit.prompt_index, hit.prompt_zone
                report.cells.append(cell)
                bar.update()
        bar.close()
    report.seconds = time.perf_counter() - started
    return report
