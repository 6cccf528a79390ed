"""Whole-document questions: mode `sections` against plain `rag` top-k, on the dev data.

Three sets of questions, each asked of one document:

1. QMSum specific queries whose gold evidence is several spans (turn ranges): the share of gold spans that
   the answer's passages overlap (for `sections`, the sources of the notes that went into the answer).
2. "List every ..." questions written here from CUAD categories (`LIST_QUESTIONS`), asked of dev contracts
   where the category has several gold spans: the same share.
3. QMSum general queries ("Summarize the whole meeting."): the answer's token F1 against the gold summary.

Each question is answered twice, `rag` (the top 5 passages, one prompt) and `sections` (every section read in
order, a note each, one combining pass), with the default settings otherwise; the time is the whole answer
(retrieval, every generation, evidence) on this machine. A third column controls for the number of passages:
plain top-k retrieval with k = the number of passages the `sections` answer has ("rag, same k": retrieval
only, no answer).

Answers are appended to `out/sections/rows.jsonl` as they come, so a killed run resumes where it stopped.

    python benchmarks/bench_sections.py            # the full run, sized below
    python benchmarks/bench_sections.py --one      # one question of each set, to try it
    python benchmarks/bench_sections.py --spans-only   # sets 1 and 2 only
"""

import argparse
import json
import logging
import re
import string
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from app import LongDocQA
from app.evals.datasets import (
    CUAD_DIR,
    QMSUM_FILE,
    load_cuad,
    load_qmsum,
    load_qmsum_general,
    require_dev_data,
)
from app.evals.recall import write_documents

OUT = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / "out" / "sections"
TOP_K = 5
CUAD_CONTRACTS = 10  # the shortest dev contracts with MIN_LIST_QUESTIONS categories of several spans ...
MIN_LIST_QUESTIONS = 3
LIST_PER_CONTRACT = 1  # ... each asked its LIST_PER_CONTRACT categories with the most gold spans
GENERAL_MEETINGS = 6  # meetings for the general queries, spread evenly over the 35 by length
# "List every ..." questions for CUAD categories whose clauses a contract often has several of.
LIST_QUESTIONS = {
    "License Grant": "List every license granted in this agreement.",
    "Minimum Commitment": "List every minimum order, purchase or payment commitment in this agreement.",
    "Revenue/Profit Sharing": "List every revenue or profit sharing arrangement in this agreement.",
    "Audit Rights": "List every right to audit or inspect books and records in this agreement.",
    "Anti-Assignment": "List every restriction on assigning this agreement or rights under it.",
    "Exclusivity": "List every exclusivity commitment in this agreement.",
    "Non-Transferable License": "List every limit on transferring or sublicensing a license in this agreement.",
    "Affiliate License-Licensee": "List every license that extends to the licensee's affiliates.",
    "Affiliate License-Licensor": "List every license granted by the licensor's affiliates.",
    "Insurance": "List every insurance requirement in this agreement.",
    "Cap On Liability": "List every cap or limit on a party's liability in this agreement.",
    "Uncapped Liability": "List every liability that this agreement leaves uncapped.",
    "Covenant Not To Sue": "List every promise not to sue or contest the other party's rights.",
    "Ip Ownership Assignment": "List every provision that assigns ownership of intellectual property.",
    "Joint Ip Ownership": "List every provision on jointly owned intellectual property.",
    "Non-Compete": "List every restriction on competing in this agreement.",
    "Rofr/Rofo/Rofn": "List every right of first refusal, first offer or first negotiation.",
    "Irrevocable Or Perpetual License": "List every irrevocable or perpetual license in this agreement.",
    "Termination For Convenience": "List every right to terminate this agreement without cause.",
    "Volume Restriction": "List every limit on volume, users or use in this agreement.",
    "Post-Termination Services": "List every obligation that continues after this agreement ends.",
    "Change Of Control": "List every provision triggered by a change of control.",
    "Warranty Duration": "List every warranty and how long it lasts.",
}

parser = argparse.ArgumentParser()
parser.add_argument("--one", action="store_true", help="one question of each set, on the shortest documents")
parser.add_argument("--spans-only", action="store_true",
                    help="the two sets measured by gold spans, not the summaries (minutes instead of most of an hour)")
args = parser.parse_args()
require_dev_data(CUAD_DIR, QMSUM_FILE)
logging.basicConfig(level=logging.WARNING)
console = Console(width=170, record=True)
WORK.mkdir(parents=True, exist_ok=True)
suffix = ("_one" if args.one else "") + ("_spans" if args.spans_only else "")
ROWS = WORK / f"rows{suffix}.jsonl"


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD's token F1: lower case, no punctuation or articles, bag-of-words overlap."""
    def tokens(text: str) -> list[str]:
        text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
        return re.sub(r"\b(a|an|the)\b", " ", text).split()

    p, g = tokens(prediction), tokens(gold)
    same = sum((Counter(p) & Counter(g)).values())
    if not same:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def coverage(gold: list[tuple[int, int]], spans: list[tuple[int, int]]) -> float:
    return sum(any(s < e2 and s2 < e for s2, e2 in spans) for s, e in gold) / len(gold)


# ---- the questions ------------------------------------------------------------------------------------------

qmsum = load_qmsum()
meetings = {d.name: d for d in qmsum.documents}
multi = [q for q in qmsum.questions if len(q.gold) >= 2]
cuad = load_cuad()
contracts = {d.name: d for d in cuad.documents}
listable = {}
for q in cuad.questions:
    if q.category in LIST_QUESTIONS and len(q.gold) >= 2:
        listable.setdefault(q.doc, []).append(q)
picked = sorted((d for d, qs in listable.items() if len(qs) >= MIN_LIST_QUESTIONS),
                key=lambda d: len(contracts[d].text))[:CUAD_CONTRACTS]
lists = [q for d in picked for q in sorted(listable[d], key=lambda q: -len(q.gold))[:LIST_PER_CONTRACT]]
general_docs, general = load_qmsum_general()
by_length = sorted(general, key=lambda g: len(meetings[g.doc].text))
spread = np.linspace(0, len(by_length) - 1, GENERAL_MEETINGS).round().astype(int)
general = [by_length[i] for i in sorted(set(spread))]
if args.one:
    multi = [min(multi, key=lambda q: len(meetings[q.doc].text))]
    lists = [min(lists, key=lambda q: len(contracts[q.doc].text))]
    general = [by_length[0]]

# (set, id, document, question, gold spans, gold summary)
SETS = [("QMSum several spans", [(q.id, q.doc, q.question, q.gold, "") for q in multi]),
        ("CUAD list every", [(q.id, q.doc, LIST_QUESTIONS[q.category], q.gold, "") for q in lists]),
        ("QMSum general", [(f"general-{g.doc}", g.doc, g.question, [], g.answer) for g in general])]
if args.spans_only:
    SETS = SETS[:2]
needed = {doc for _, rows in SETS for _, doc, *_ in rows}
texts = {**{d.name: d for d in general_docs}, **contracts, **meetings}

qa = LongDocQA(index_dir=WORK / "index")
have = {d.name for d in qa.documents()}
missing = [texts[name] for name in sorted(needed - have)]
if missing:
    qa.ingest(write_documents(missing, WORK / "docs"), show_progress=True)
gen = qa.engine.generator

# ---- answering (resumable) ----------------------------------------------------------------------------------

done = {}
if ROWS.exists():
    for line in ROWS.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        done[(row["id"], row["mode"])] = row
out = ROWS.open("a", encoding="utf-8")
total = sum(len(rows) for _, rows in SETS) * 2
n = 0
for set_name, rows in SETS:
    for qid, doc, question, gold, summary in rows:
        for mode in ("rag", "sections"):
            n += 1
            if (qid, mode) in done:
                continue
            started = time.perf_counter()
            answer = qa.ask(question, doc=doc, mode=mode, top_k=TOP_K)
            seconds = time.perf_counter() - started
            used = [x for x in answer.notes if x.used]
            sources = [] if mode == "sections" and not used else answer.passages
            row = {"set": set_name, "id": qid, "doc": doc, "mode": mode, "question": question,
                   "doc_tokens": gen.count_tokens(texts[doc].text), "seconds": round(seconds, 2),
                   "spans": [(p.char_start, p.char_end) for p in sources], "gold": gold,
                   "answer": answer.answer, "abstained": answer.abstained,
                   "sections": len(answer.notes), "read": sum(1 for x in answer.notes if x.prompt_tokens),
                   "used": len(used), "notes": [[x.section, x.used, x.text] for x in answer.notes], "f1": round(token_f1(answer.answer, summary), 4) if summary else None}
            if gold and mode == "sections":  # the control: plain retrieval of as many passages
                k = max(1, len(sources))
                same_k = qa.retrieve(question, doc=doc, top_k=k)
                row["same_k_spans"] = [(p.char_start, p.char_end) for p in same_k]
            done[(qid, mode)] = row
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
            console.print(f"[{n}/{total}] {set_name} {qid} {mode}: {seconds:.1f} s, {len(sources)} passages"
                          + (f", {row['read']}/{row['sections']} sections read" if mode == "sections" else ""),
                          highlight=False)
out.close()

# ---- the table ----------------------------------------------------------------------------------------------

table = Table("questions", "n", "measure", "rag top-5", "sections", "rag, same k", "passages rag / sections",
              "sections read / in doc", "doc tokens (mean)", "s per doc rag / sections",
              title="Whole-document questions: sections against rag (SmolLM2-135M, default settings)")
for set_name, rows in SETS:
    rag = [done[(qid, "rag")] for qid, *_ in rows]
    sec = [done[(qid, "sections")] for qid, *_ in rows]
    if rows[0][4]:  # a summary: token F1
        measure, a, b, c = "token F1", np.mean([r["f1"] for r in rag]), np.mean([r["f1"] for r in sec]), None
    else:
        measure = "gold spans covered"
        a = np.mean([coverage(r["gold"], r["spans"]) for r in rag])
        b = np.mean([coverage(r["gold"], r["spans"]) for r in sec])
        c = np.mean([coverage(r["gold"], r["same_k_spans"]) for r in sec])
    table.add_row(
        set_name, str(len(rows)), measure, f"{a:.3f}", f"{b:.3f}", "" if c is None else f"{c:.3f}",
        f"{np.mean([len(r['spans']) for r in rag]):.1f} / {np.mean([len(r['spans']) for r in sec]):.1f}",
        f"{np.mean([r['read'] for r in sec]):.1f} / {np.mean([r['sections'] for r in sec]):.1f}",
        f"{np.mean([r['doc_tokens'] for r in sec]):,.0f}",
        f"{np.mean([r['seconds'] for r in rag]):.1f} / {np.mean([r['seconds'] for r in sec]):.1f}",
    )
console.print(table)
console.print(f"sized: {len(multi)} QMSum queries with several gold spans (all of the dev set's), {len(lists)} list "
              f"questions on {len({q.doc for q in lists})} contracts (the shortest dev contracts with "
              f"{MIN_LIST_QUESTIONS}+ listable categories, {LIST_PER_CONTRACT} each), {len(general)} general "
              f"queries (meetings spread evenly by length); sections_tokens {qa.settings.sections_tokens}, "
              f"notes {qa.settings.section_note_tokens} tokens, combined answer {qa.settings.sections_answer_tokens}",
              highlight=False)
OUT.mkdir(exist_ok=True)
report = OUT / f"bench_sections{suffix}.txt"
report.write_text("python benchmarks/bench_sections.py" + (" --one" if args.one else "")
                  + (" --spans-only" if args.spans_only else "") + "\n"
                  + console.export_text(), encoding="utf-8")
console.print(f"-> {report}")
