"""Questions that name their document: searched as typed, or without the words naming it.

Users name the document they ask about ("Which law governs the eDiets co-branding agreement?"). Searching one
document, the engine leaves the naming words out of the search (`app.conversation.unnamed`). This benchmark asks
every dev CUAD question that says "this agreement" (or "the agreement", "this contract") with the document
named instead, written from its file name as a user would name it: the company at the start of the name and
the kind of agreement at its end ("the Ediets co-branding agreement", "the ALAMOGORDO agency agreement"). Each
is retrieved within its document with the default settings, twice: as the engine does it, and with the naming
words kept (`unnamed` patched to return the question as typed). Printed: recall@5 (a passage overlaps a gold
clause) and the quote chosen over those passages from the question as searched (no generation) overlapping a
gold clause, by category, beside the same questions as CUAD writes them ("this agreement").

    python benchmarks/bench_named.py
"""

import json
import logging
import re
from pathlib import Path
from unittest import mock

from rich.console import Console
from rich.table import Table

import app.engine
from app import LongDocQA
from app.evals.datasets import CUAD_DIR, load_cuad, require_dev_data
from app.evals.recall import overlaps, write_documents
from app.evidence import score_sentences
from app.quote import find_quote

OUT = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / "out" / "named"
_THIS = re.compile(r"\b(?:this|the) (?:agreement|contract)\b", re.IGNORECASE)
_KIND = re.compile(r"EX-[\d.]+[A-Z]?[-_ ]+(?:[\d_]+_EX-[\d.]+[A-Z]?[-_ ]+)?(.*)$")  # "...EX-10.4_Co-Branding Agreement"
_FORM = re.compile(r"(?i)(?:com)?(?:inc|corp|ltd|llc|co|lp|plc|bancshares|financial)+$")  # "EdietsComInc" -> "Ediets"


def named(question: str, doc: str) -> str:
    """`question` with "this agreement" replaced by the document's name as a user writes it."""
    stem = Path(doc).stem
    kind = _KIND.search(stem)
    kind = re.sub(r"[\s,]*\d{4}$", "", kind[1].strip(" ,-_")) if kind else "agreement"
    company = _FORM.sub("", re.split(r"[_,]", stem)[0])
    return _THIS.sub(f"the {company} {kind.lower()}", question)


def measure(qa: LongDocQA, questions: list) -> dict[str, list[tuple[bool, bool]]]:
    """(gold among the five passages, quote overlaps gold) per category."""
    out: dict[str, list[tuple[bool, bool]]] = {}
    for q, text in questions:
        passages = qa.retrieve(text, doc=q.doc)
        searched = app.engine.unnamed(text, q.doc)  # what the engine's quote reads, as its search
        quote = find_quote(score_sentences(qa.embedder, text, "", passages), searched, "")
        out.setdefault(q.category, []).append((
            any(overlaps((p.char_start, p.char_end), q.gold) for p in passages),
            bool(quote and overlaps((quote.char_start, quote.char_end), q.gold))))
    return out


def main() -> None:
    require_dev_data(CUAD_DIR)
    logging.basicConfig(level=logging.WARNING)
    console = Console(width=150)
    data = load_cuad()
    qa = LongDocQA(index_dir=WORK / "index")
    qa.ingest(write_documents(data.documents, WORK / "docs"), show_progress=True)
    asked = [q for q in data.questions if _THIS.search(q.question)]
    rows = {"as CUAD writes them (\"this agreement\")": measure(qa, [(q, q.question) for q in asked])}
    with_names = [(q, named(q.question, q.doc)) for q in asked]
    with mock.patch.object(app.engine, "unnamed", lambda question, name: question):
        rows["document named, searched as typed"] = measure(qa, with_names)
    rows["document named, naming words left out of the search"] = measure(qa, with_names)

    table = Table(title=f"{len(asked)} dev CUAD questions over {len(data.documents)} contracts, each searched in "
                        "its contract; e.g. " + repr(with_names[0][1]))
    table.add_column("questions")
    table.add_column("recall@5", justify="right")
    table.add_column("quote overlaps gold", justify="right")
    summary = {}
    for name, by_category in rows.items():
        flat = [r for rs in by_category.values() for r in rs]
        summary[name] = {"recall_at_5": round(sum(r[0] for r in flat) / len(flat), 3),
                         "quote_overlaps_gold": round(sum(r[1] for r in flat) / len(flat), 3),
                         "by_category": {c: [len(rs), sum(r[0] for r in rs), sum(r[1] for r in rs)]
                                         for c, rs in by_category.items()}}
        table.add_row(name, f"{summary[name]['recall_at_5']:.3f}", f"{summary[name]['quote_overlaps_gold']:.3f}")
    console.print(table)
    for name, s in summary.items():
        console.print(f"{name}, recall@5 by category: "
                      + "; ".join(f"{c} {hit}/{n}" for c, (n, hit, _) in s["by_category"].items()))
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "bench_named.json"
    path.write_text(json.dumps({"bench": "named", "questions": len(asked), "example": with_names[0][1],
                                "summary": summary}, indent=2), encoding="utf-8")
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
