"""Abstention: does the tool say "the documents do not answer" when, and only when, they do not?

1. Dev CUAD, every (contract, category): questions whose clause the contract has (present) and lacks (absent).
   Each is retrieved as a user asks it and its relevance signals computed (`app.abstain`). Printed: the
   threshold table of the combined relevance (`app.abstain.WEIGHTS`) beside the best passage's cosine alone
   (the rule before), and the weights a logistic regression fits, with the share of absent clauses it catches
   at <= 2% wrong, cross-validated by contract (5 folds), so the figure is not read off the data it was fit on.
2. Other text: the dev QMSum meeting queries (all answerable), the share wrongly abstained at each threshold.
3. Needles in meetings: a made-up fact planted at 0-100% depth of 8K-32K-token haystacks cut from the dev
   meetings, asked with default settings (abstention on). Two phrasings: the question repeats the fact's words,
   or paraphrases them. Every cell must be answered (not abstained) and its quote must hold the code.
4. The model's own "not stated": how often the generated answer says the documents do not state it, on present
   and absent short-answer questions (a sample, generated with abstention off; cached in out/abstain).

    python benchmarks/bench_abstain.py [--quick]
"""

import argparse
import json
import logging
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

from app import LongDocQA
from app.abstain import WEIGHTS, relevance, says_not_stated
from app.answer import Answer
from app.evals.datasets import CUAD_DIR, QMSUM_FILE, load_cuad, load_qmsum, require_dev_data
from app.evals.niah import Needle, found, plant, size_label
from app.evals.recall import write_documents
from app.evidence import score_sentences

OUT = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / "out" / "abstain"
THRESHOLDS = [round(t, 2) for t in np.arange(0.26, 0.47, 0.02)]
WRONG_BUDGET = 0.02  # the most present questions abstention may refuse
NEEDLE_LENGTHS = [8192, 16384, 32768]
NEEDLE_DEPTHS = [0, 25, 50, 75, 100]
# (fact, question): one repeating the fact's words (app.evals.niah's), one paraphrasing them
PHRASINGS = [("The access code for the {vault} vault is {code}.", "What is the access code for the {vault} vault?"),
             ("Staff entering the {vault} archive must type {code} at the door.",
              "Which code opens the door of the {vault} archive?")]
GENERATED_SAMPLE = 60  # short-answer questions of each kind generated for the "not stated" count

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="two contracts, two meetings, 8K needles, 10 generated")
args = parser.parse_args()
require_dev_data(CUAD_DIR, QMSUM_FILE)
logging.basicConfig(level=logging.WARNING)
console = Console(width=160)
WORK.mkdir(parents=True, exist_ok=True)
suffix = "-quick" if args.quick else ""


def signals(qa: LongDocQA, questions) -> list[dict]:
    """The relevance signals of each question, as the engine computes them before generating."""
    rows = []
    for q in tqdm(questions, desc="relevance", unit="question"):
        passages = qa.retrieve(q.question, doc=q.doc)
        r = relevance(q.question, passages, score_sentences(qa.embedder, q.question, "", passages))
        rows.append({"id": q.id, "doc": q.doc, "category": q.category, **r.to_dict()})
    return rows


def caught(scores: np.ndarray, threshold: float) -> float:
    return float(np.mean(scores < threshold)) if len(scores) else 0.0


# ---- 1. dev CUAD ------------------------------------------------------------------------------------------
cuad = load_cuad(quick=args.quick)
qa = LongDocQA(index_dir=WORK / f"index-cuad{suffix}")
qa.ingest(write_documents(cuad.documents, WORK / "cuad"), show_progress=True)
present, absent = signals(qa, cuad.questions), signals(qa, cuad.absent)
score = {kind: np.array([r["score"] for r in rows]) for kind, rows in (("present", present), ("absent", absent))}
cosine = {kind: np.array([r["passage"] for r in rows]) for kind, rows in (("present", present), ("absent", absent))}

names = list(WEIGHTS)
X = np.array([[r[n] for n in names] for r in present + absent])
y = np.array([0] * len(present) + [1] * len(absent))  # 1: absent
contract = {d.name: i for i, d in enumerate(cuad.documents)}
groups = np.array([contract[r["doc"]] for r in present + absent])


def best_point(p_absent: np.ndarray) -> tuple[float, float]:
    """(absent caught, present refused) at the threshold catching most absent within WRONG_BUDGET."""
    best = (0.0, 0.0)
    for t in np.unique(p_absent):
        wrong, right = np.mean(p_absent[y == 0] >= t), np.mean(p_absent[y == 1] >= t)
        if wrong <= WRONG_BUDGET and right > best[0]:
            best = (float(right), float(wrong))
    return best


fit = LogisticRegression(C=10, max_iter=1000).fit(X, y)
fitted = -fit.coef_[0] / -fit.coef_[0].sum()
cross = np.zeros(len(y))
for fold in range(5):
    test = groups % 5 == fold
    if test.all() or not test.any():
        continue
    cross[test] = LogisticRegression(C=10, max_iter=1000).fit(X[~test], y[~test]).predict_proba(X[test])[:, 1]
cv_point = best_point(cross) if len(set(groups % 5)) > 1 else (float("nan"), float("nan"))
console.print("weights fitted on all dev contracts (normalised): "
              + ", ".join(f"{n} {w:.3f}" for n, w in zip(names, fitted))
              + "; committed (app.abstain.WEIGHTS): " + ", ".join(f"{n} {w}" for n, w in WEIGHTS.items()))
console.print(f"cross-validated by contract: catches {cv_point[0]:.1%} of absent clauses, "
              f"refusing {cv_point[1]:.1%} of present ones")

# ---- 2. meetings: every query has an answer ------------------------------------------------------------------
qmsum = load_qmsum(quick=args.quick)
qa_meetings = LongDocQA(index_dir=WORK / f"index-qmsum{suffix}")
qa_meetings.ingest(write_documents(qmsum.documents, WORK / "qmsum"), show_progress=True)
meetings = signals(qa_meetings, qmsum.questions)
meeting_score, meeting_cosine = (np.array([r[k] for r in meetings]) for k in ("score", "passage"))

# ---- 3. needles in meetings, default settings ----------------------------------------------------------------
lengths = NEEDLE_LENGTHS[:1] if args.quick else NEEDLE_LENGTHS
rng = random.Random(0)
tokenizer = qa.engine.generator.tokenizer
parts, chars = [], 0
for document in load_qmsum().documents:  # meetings joined until long enough (about 4 characters a token)
    parts.append(document.text)
    chars += len(document.text)
    if chars > 6 * max(lengths):
        break
hay = "\n\n".join(parts)
offsets = tokenizer(hay, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
needles = []
with tempfile.TemporaryDirectory(prefix="longdoc-needles-") as tmp:
    qa_needles = LongDocQA(index_dir=Path(tmp) / "index")
    for fact, ask in PHRASINGS:
        for n in lengths:
            for depth in NEEDLE_DEPTHS:
                needle = Needle.fresh(rng)
                sentence, question = fact.format(vault=needle.vault, code=needle.code), ask.format(vault=needle.vault)
                needle_tokens = len(tokenizer(" " + sentence + " ", add_special_tokens=False)["input_ids"])
                text, _ = plant(hay, offsets, n, depth, sentence, needle_tokens)
                path = Path(tmp) / f"meetings_{size_label(n)}_{depth:03d}_{len(needles)}.txt"
                path.write_text(text, encoding="utf-8")
                qa_needles.ingest([path])
                a = qa_needles.ask(question, doc=path.name)
                needles.append({"phrasing": ask.split(" {")[0], "length": n, "depth": depth, "code": needle.code,
                                "abstained": a.abstained, "relevance": a.relevance,
                                "quote": a.quote.text if a.quote else None,
                                "quote_holds_code": bool(a.quote and found(a.quote.text, needle.code)),
                                "answer_holds_code": found(a.answer, needle.code), "answer": a.answer})
needle_scores = np.array([c["relevance"]["score"] for c in needles])

# ---- 4. the model's own "not stated" -------------------------------------------------------------------------
sample = GENERATED_SAMPLE if not args.quick else 10
pick = random.Random(1)
asked = {"present": [q for q in cuad.questions if q.short_answer], "absent": [q for q in cuad.absent if q.short_answer]}
asked = {k: pick.sample(v, min(sample, len(v))) for k, v in asked.items()}
cache = WORK / f"generated{suffix}.jsonl"
generated = {}
if cache.exists():
    generated = {row["id"]: Answer.from_dict(row) for row in map(json.loads, cache.read_text(encoding="utf-8").splitlines())}
open_qa = LongDocQA(settings=qa.settings.replace(min_relevance=0.0))
started = time.perf_counter()
with cache.open("a", encoding="utf-8") as fh:
    for q in tqdm([q for qs in asked.values() for q in qs if q.id not in generated], desc="generate", unit="question"):
        generated[q.id] = open_qa.ask(q.question, doc=q.doc, id=q.id)
        fh.write(json.dumps(generated[q.id].to_dict(), ensure_ascii=False) + "\n")
not_stated = {k: float(np.mean([says_not_stated(generated[q.id].answer) for q in qs])) if qs else 0.0
              for k, qs in asked.items()}

# ---- report --------------------------------------------------------------------------------------------------
table = Table("threshold", "absent caught", "present refused", "meetings refused", "needles refused",
              "cosine alone: absent caught", "present refused", "meetings refused",
              title=f"abstention: {len(absent)} absent and {len(present)} present CUAD clauses, "
                    f"{len(meeting_score)} meeting queries, {len(needles)} needles")
rows = []
for t in THRESHOLDS:
    row = {"threshold": t, "absent_caught": caught(score["absent"], t), "present_refused": caught(score["present"], t),
           "meetings_refused": caught(meeting_score, t), "needles_refused": int(np.sum(needle_scores < t)),
           "cosine_absent_caught": caught(cosine["absent"], t), "cosine_present_refused": caught(cosine["present"], t),
           "cosine_meetings_refused": caught(meeting_cosine, t)}
    rows.append(row)
    table.add_row(f"{t:.2f}", *(f"{row[k]:.1%}" for k in ("absent_caught", "present_refused", "meetings_refused")),
                  str(row["needles_refused"]),
                  *(f"{row[k]:.1%}" for k in ("cosine_absent_caught", "cosine_present_refused", "cosine_meetings_refused")))
console.print(table)
default = qa.settings.min_relevance
console.print(f"default min_relevance {default}: needles answered {sum(not c['abstained'] for c in needles)}/"
              f"{len(needles)}, quote holds the code {sum(c['quote_holds_code'] for c in needles)}/{len(needles)}, "
              f"generated answer holds it {sum(c['answer_holds_code'] for c in needles)}/{len(needles)}; "
              f"lowest needle relevance {needle_scores.min():.3f}")
console.print(f"model says 'not stated' (abstention off): {not_stated['present']:.1%} of {len(asked['present'])} "
              f"present, {not_stated['absent']:.1%} of {len(asked['absent'])} absent short-answer questions "
              f"({time.perf_counter() - started:.0f} s generating this run)")

OUT.mkdir(parents=True, exist_ok=True)
path = OUT / f"bench_abstain{'_quick' if args.quick else ''}.json"
path.write_text(json.dumps({
    "bench": "abstain", "weights": WEIGHTS, "fitted_weights": dict(zip(names, map(float, fitted))),
    "cross_validated": {"absent_caught": cv_point[0], "present_refused": cv_point[1], "budget": WRONG_BUDGET},
    "default_min_relevance": default, "thresholds": rows, "needles": needles, "not_stated": not_stated,
    "counts": {"present": len(present), "absent": len(absent), "meeting_queries": len(meeting_score)},
}, indent=2, ensure_ascii=False), encoding="utf-8")
console.print(f"wrote {path}")
