"""Follow-up questions: does the second turn of a conversation retrieve from the document the first was about?

A library of dev contracts. Each conversation opens with a question that names its contract ("Who are the
parties to the Sparkling agreement?"), answered by the model; then each follow-up, asked as the second turn,
names nothing ("When does it expire?", "Which law governs it?"). A follow-up counts as found when one of its
5 passages overlaps a gold span of its CUAD category in that contract. Four ways to search it:

- as typed, over the whole library (no conversation);
- the rule (`followup_rewrite = "rule"`): the document in focus, and the previous subject for a follow-up without one;
- the model's rewrite (`followup_rewrite = "model"`), searched in the document the rule chose;
- the model's rewrite alone, over the whole library (does the rewrite name the contract?).

    python benchmarks/bench_followups.py
"""

import json
import logging
import re
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from app import LongDocQA
from app.evals.datasets import CUAD_DIR, load_cuad, require_dev_data
from app.evals.recall import write_documents

OUT = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / "out" / "followups"
CONTRACTS = 10  # every 4th dev contract by name
TOP_K = 5
OPENING = "Who are the parties to the {name} agreement?"
FOLLOW_UPS = {  # CUAD category -> the follow-up as a user types it after the opening question
    "Expiration Date": "When does it expire?",
    "Governing Law": "Which law governs it?",
    "Renewal Term": "Does it renew automatically?",
    "Termination For Convenience": "Can either side end it early without cause?",
    "Anti-Assignment": "Can it be assigned to someone else?",
    "Cap On Liability": "Is there a cap on liability?",
}
_SUFFIX = re.compile(r"(?:,?\s*(?:inc|corp|corporation|co|ltd|llc|holdings?)\.?)+$", re.IGNORECASE)

require_dev_data(CUAD_DIR)
logging.basicConfig(level=logging.WARNING)
console = Console(width=150, record=True)


def company(name: str) -> str:
    """How a user names a contract: its company, as the file name starts, without Inc/Corp ("Sparklingspringwater")."""
    head = re.split(r"_| - |-EX", name.rsplit(".", 1)[0])[0]
    return _SUFFIX.sub("", head).strip().title()


def found(passages, gold) -> bool:
    return any(p.char_start < e and s < p.char_end for p in passages for s, e in gold)


cuad = load_cuad()
documents = sorted(cuad.documents, key=lambda d: d.name)[::4][:CONTRACTS]
WORK.mkdir(parents=True, exist_ok=True)
qa = LongDocQA(index_dir=WORK / "index", max_new_tokens=48)
have = {d.name for d in qa.documents()}
qa.ingest(write_documents([d for d in documents if d.name not in have], WORK / "docs"))
rewriter = LongDocQA(index_dir=WORK / "index", max_new_tokens=48, followup_rewrite="model")

ways = ["as typed, library", "rule", "model rewrite, rule's document", "model rewrite, library"]
hits = {w: 0 for w in ways}
rows, asked, seconds = [], 0, {"rule": 0.0, "model": 0.0}
for doc in documents:
    gold = {q.category: q.gold for q in cuad.questions if q.doc == doc.name and q.category in FOLLOW_UPS}
    if not gold:
        continue
    opening = OPENING.format(name=company(doc.name))
    rule, model = qa.chat(), rewriter.chat()
    first = rule.ask(opening)
    model.ask(opening)
    for category, follow_up in FOLLOW_UPS.items():
        if category not in gold:
            continue
        asked += 1
        started = time.perf_counter()
        by_rule = rule.resolve(follow_up)
        seconds["rule"] += time.perf_counter() - started
        started = time.perf_counter()
        by_model = model.resolve(follow_up)
        seconds["model"] += time.perf_counter() - started
        searches = {"as typed, library": (follow_up, None), "rule": (by_rule.question, by_rule.doc),
                    "model rewrite, rule's document": (by_model.question, by_model.doc),
                    "model rewrite, library": (by_model.question, None)}
        row = {"doc": doc.name, "opening": opening, "opening_doc": first.searched.doc, "follow_up": follow_up,
               "rule": by_rule.question, "model": by_model.question}
        for way, (text, scope) in searches.items():
            ok = found(qa.retrieve(text, doc=scope, top_k=TOP_K), gold[category])
            hits[way] += ok
            row[way] = ok
        rows.append(row)
        console.print(f"{company(doc.name)}: {follow_up!r} -> rule {by_rule.question!r} in {by_rule.doc}; "
                      f"model {by_model.question!r}", highlight=False)

table = Table("search", "follow-ups found (gold in the 5 passages)", "share",
              title=f"Follow-ups after a question naming the contract: {asked} follow-ups on {len(documents)} dev "
                    f"contracts, library of {len(documents)}")
for way in ways:
    table.add_row(way, str(hits[way]), f"{hits[way] / max(1, asked):.3f}")
console.print(table)
console.print(f"opening questions that named their contract: "
              f"{sum(r['opening_doc'] == r['doc'] for r in rows)}/{len(rows)} follow-up rows; resolving took "
              f"{seconds['rule'] / max(1, asked) * 1000:.0f} ms (rule) and {seconds['model'] / max(1, asked):.1f} s "
              f"(model) per follow-up; generator {qa.settings.generator}", highlight=False)
OUT.mkdir(exist_ok=True)
(OUT / "bench_followups.txt").write_text("python benchmarks/bench_followups.py\n" + console.export_text(),
                                         encoding="utf-8")
(WORK / "rows.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
console.print(f"-> {OUT / 'bench_followups.txt'}")
