"""Does the quote state the answer? The quote against the evidence sentence and the generated answer, dev CUAD.

Every short-answer question of the dev contracts (parties, dates, law, terms: the ones with a short gold
answer) is asked as a user asks it (`qa.ask`, default settings, real generation). For each answer:

- overlaps gold: the span shares characters with a gold clause (the generated answer has no offsets);
- holds the answer: the span contains CUAD's short normalised answer: a date in any form ("the 22nd day of
  August 2005" holds "8/22/05"), otherwise every word of each part of it (the parties, split at ";", by full
  name or by the short name in brackets), number words read as digits ("two (2) years" holds "2 years").
  Some gold answers are computed (an expiry date two years after signing) and in no span: every row misses those.

Rows: the generated answer; the top evidence sentence; the quote as `app.quote` finds it; the quote's best
sentence without narrowing to a clause; and the ceiling, whether any sentence of the prompt's passages would
have done. `--data qmsum` asks the meeting queries instead (overlap only). `--ablate` adds the quote with each
of its rules for contracts left out, to show what each adds. `--likelihood` adds the generator's own choice:
of the quote's five best sentences, the one the model is likeliest to write when asked to copy the sentence that
answers the question (the model reads question and sentence together). `--no-generation` generates nothing: the quote
and the evidence are chosen from the question alone over the passages retrieval gives (what the quote is
before an answer exists); it measures the choice of span on every meeting query in minutes, where generating
takes hours (whole-meeting questions are read section by section).

    python benchmarks/bench_quote.py [--quick] [--data qmsum] [--ablate] [--likelihood] [--no-generation]
"""

import argparse
import json
import logging
import re
import time
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

import app.quote
from app import LongDocQA
from app.answer import Answer, Quote
from app.api import load_generator
from app.evals.datasets import (
    CUAD_DIR,
    QMSUM_FILE,
    load_cuad,
    load_qmsum,
    require_dev_data,
)
from app.evals.recall import overlaps, write_documents
from app.evidence import score_sentences, select_evidence
from app.llm.perplexity import model_nll
from app.quote import dates, find_quote, sentence_scores

OUT = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / "out" / "quote"
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="two documents")
parser.add_argument("--data", choices=("cuad", "qmsum"), default="cuad",
                    help="qmsum: meeting queries, whose gold is turns, not a short answer (overlap only)")
parser.add_argument("--ablate", action="store_true", help="also the quote with each of its rules left out")
parser.add_argument("--no-generation", action="store_true",
                    help="choose the quote from the question alone over the retrieved passages; generate nothing")
parser.add_argument("--likelihood", action="store_true",
                    help="also the sentence the generator is likeliest to copy, of the quote's five best (minutes)")
parser.add_argument("--fresh", action="store_true", help="generate the answers again instead of reading them")
args = parser.parse_args()
require_dev_data(CUAD_DIR if args.data == "cuad" else QMSUM_FILE)
logging.basicConfig(level=logging.WARNING)
console = Console()


def words(text: str) -> list[str]:
    text = re.sub(r"\b([a-z]+)\s*\((\d+)\)", r"\2", text.lower())  # "two (2)" -> "2"
    return [NUMBER_WORDS.get(w, w) for w in re.findall(r"[a-z0-9]+", text)]


def holds(span: str, gold: str) -> bool:
    """Whether `span` states CUAD's short answer `gold` (see the module docstring)."""
    if not gold or not span:
        return False
    if re.fullmatch(r"\d{1,2}/\d{1,2}/\d{2,4}", gold):
        return dates(gold)[0] in dates(span)
    have = set(words(span))
    for part in gold.split(";"):
        names = [part.split("(")[0]] + re.findall(r"\(\W*([^)]*?)\W*\)", part)
        if not any(words(n) and set(words(n)) <= have for n in names):
            return False
    return True


data = load_cuad(quick=args.quick) if args.data == "cuad" else load_qmsum(quick=args.quick)
questions = [q for q in data.questions if q.short_answer or args.data == "qmsum"]
WORK = WORK / args.data if args.data != "cuad" else WORK
WORK.mkdir(parents=True, exist_ok=True)
files = write_documents(data.documents, WORK / "docs")
qa = LongDocQA(index_dir=WORK / ("index-quick" if args.quick else "index"))
qa.ingest(files, show_progress=True)



def retrieved_only(q) -> SimpleNamespace:
    """What an answer holds before generation: the retrieved passages and the evidence for the question alone."""
    passages = qa.retrieve(q.question, doc=q.doc)
    evidence = select_evidence(score_sentences(qa.embedder, q.question, "", passages))
    return SimpleNamespace(answer="", passages=passages, evidence=evidence, abstained=False)


def generated(questions) -> dict:
    """The answers, generated once and kept (WORK/answers*.jsonl), so the quote's variants are measured on the
    same answers; --fresh generates them again."""
    cache = WORK / ("answers-quick.jsonl" if args.quick else "answers.jsonl")
    answers = {}
    if cache.exists() and not args.fresh:
        answers = {row["id"]: Answer.from_dict(row)
                   for row in map(json.loads, cache.read_text(encoding="utf-8").splitlines())}
    with cache.open("w" if args.fresh else "a", encoding="utf-8") as fh:
        for q in tqdm([q for q in questions if q.id not in answers], desc="answers", unit="question"):
            answers[q.id] = qa.ask(q.question, doc=q.doc, id=q.id)
            fh.write(json.dumps(answers[q.id].to_dict(), ensure_ascii=False) + "\n")
    return answers


started = time.perf_counter()
answers = {q.id: retrieved_only(q) for q in questions} if args.no_generation else generated(questions)
seconds = time.perf_counter() - started


ANSWER_TYPE_BONUS_RULE = app.quote.answer_type_bonus


def _old_parties_rule(question: str, sentence: str) -> float:
    """The parties bonus for any sentence saying "between", as before parties had to be named."""
    if app.quote._ASKS_PARTIES.search(question):
        return app.quote.ANSWER_TYPE_BONUS if app.quote._NAMES_PARTIES.search(sentence) else 0.0
    return ANSWER_TYPE_BONUS_RULE(question, sentence)


# each rule for contracts, left out by patching app.quote for one find_quote call
ABLATIONS = {
    "quote without: parties must be named": {"answer_type_bonus": _old_parties_rule},
    "quote without: the defined term": {"defined_term_bonus": lambda question, sentence: 0.0},
    "quote without: heading with its sentence": {"is_heading": lambda text: False},
    "quote without: a year alone as half a date": {"_YEAR": re.compile(r"(?!)")},
    "quote without: the date of the asked verb": {"verb_date_bonus": lambda question, sentence: 0.0},
    "quote without: the clause naming the law": {"_ASKS_LAW": re.compile(r"(?!)")},
    "quote without: the document as its term's subject": {"document_term_bonus": lambda question, sentence: 0.0},
} if args.ablate else {}


def quote_without(patches: dict, scored, question: str, answer: str):
    with ExitStack() as stack:
        for name, value in patches.items():
            stack.enter_context(mock.patch.object(app.quote, name, value))
        return find_quote(scored, question, answer)


LIKELIEST_OF = 5  # the quote's best sentences the generator chooses among
COPY_PROMPT = "Question: {question}\nThe sentence of the document that answers the question:"
COPY_TOKENS = 120  # a sentence's first tokens scored (a long one's start says what it is about)
generator = load_generator(qa.settings) if args.likelihood else None


def copy_logprob(question: str, sentence: str) -> float:
    """The generator's mean log-probability per token of writing `sentence` as the answer to `question`."""
    tokenizer = generator.tokenizer
    prompt = tokenizer(COPY_PROMPT.format(question=question), add_special_tokens=False).input_ids
    target = tokenizer(" " + sentence, add_special_tokens=False).input_ids[:COPY_TOKENS]
    return -float(model_nll(generator.model, prompt + target)[len(prompt) - 1:].mean())


def likeliest_copy(scored, question: str) -> Quote | None:
    """The generator's choice: of the quote's LIKELIEST_OF best sentences, the one it is likeliest to copy when
    asked for the sentence that answers the question (it reads question and sentence together, where the quote's
    terms and embeddings read them apart). A title question keeps the quote's title."""
    title = app.quote.title_quote(question, [p for p, _ in scored.sentences])
    if title is not None or not scored.sentences:
        return title
    best = np.argsort(-np.array(sentence_scores(scored, question)), kind="stable")[:LIKELIEST_OF]
    chosen = max(best, key=lambda i: copy_logprob(question, scored.sentences[i][1][2]))
    passage, (start, end, text) = scored.sentences[chosen]
    return Quote(doc=passage.doc, char_start=start, char_end=end, text=text, score=0.0)


def ceiling(scored, gold, short_answer: str) -> tuple[bool, bool]:
    """Whether any sentence of the passages overlaps the gold clause, and whether any holds the short answer."""
    sentences = [s for _, s in scored.sentences]
    return (any(overlaps((s[0], s[1]), gold) for s in sentences),
            any(holds(s[2], short_answer) for s in sentences))


rows: dict[str, list[tuple[bool, bool, int]]] = {k: [] for k in (
    *(("generated answer",) if not args.no_generation else ()), "evidence (top sentence)", "quote",
    "quote: sentence, not narrowed", *ABLATIONS, *(("the generator's choice of the quote's 5 best",)
                                                   if args.likelihood else ()))}
rows["ceiling: the best sentence of the passages"] = []
records = []
for q in questions:
    a = answers[q.id]
    scored = score_sentences(qa.embedder, q.question, a.answer, a.passages)
    spans = {
        "evidence (top sentence)": a.evidence[0] if a.evidence else None,
        "quote": find_quote(scored, q.question, a.answer),
        "quote: sentence, not narrowed": find_quote(scored, q.question, a.answer, narrow=False),
        **{name: quote_without(patches, scored, q.question, a.answer) for name, patches in ABLATIONS.items()},
    }
    if args.likelihood:
        spans["the generator's choice of the quote's 5 best"] = likeliest_copy(scored, q.question)
    if not args.no_generation:
        rows["generated answer"].append((False, holds(a.answer, q.answer), len(a.answer)))
    for name, span in spans.items():
        if span is None:
            rows[name].append((False, False, 0))
        else:
            rows[name].append((overlaps((span.char_start, span.char_end), q.gold), holds(span.text, q.answer),
                               span.char_end - span.char_start))
    rows["ceiling: the best sentence of the passages"].append((*ceiling(scored, q.gold, q.answer), None))
    records.append({"id": q.id, "category": q.category, "question": q.question, "gold_answer": q.answer,
                    "answer": a.answer, "abstained": a.abstained,
                    **{name: (span.text if span else None) for name, span in spans.items()}})

kind = "short-answer questions, dev CUAD contracts" if args.data == "cuad" else "queries, dev QMSum meetings"
table = Table(title=f"{len(questions)} {kind.split(',')[0]} over {len(data.documents)} {kind.split(', ')[1]}")
for column in ("what the user reads", "overlaps gold clause", "holds the gold answer", "median chars"):
    table.add_column(column, justify="right")
summary = {}
for name, results in rows.items():
    n = len(results)
    lengths = sorted(r[2] for r in results if r[2] is not None)  # the ceiling is no one span
    summary[name] = {"overlaps_gold": round(sum(r[0] for r in results) / n, 3),
                     "holds_answer": round(sum(r[1] for r in results) / n, 3),
                     "median_chars": lengths[len(lengths) // 2] if lengths else None}
    table.add_row(name, "" if name == "generated answer" else f"{summary[name]['overlaps_gold']:.3f}",
                  f"{summary[name]['holds_answer']:.3f}" if args.data == "cuad" else "(no short answer)",
                  str(summary[name]["median_chars"] or ""))
console.print(table)
by_category: dict[str, list[int]] = {}  # category -> [questions, quotes overlapping the gold clause]
for q, (overlapping, _, _) in zip(questions, rows["quote"]):
    counts = by_category.setdefault(q.category, [0, 0])
    counts[0] += 1
    counts[1] += overlapping
if args.data == "cuad":
    console.print("quote overlaps the gold clause, by category: "
                  + "; ".join(f"{c} {hit} of {n}" for c, (n, hit) in by_category.items()))
console.print(f"{seconds:.0f} s answering this run")
OUT.mkdir(parents=True, exist_ok=True)
path = OUT / (f"bench_quote{'' if args.data == 'cuad' else '_' + args.data}{'_quick' if args.quick else ''}"
              f"{'_no_generation' if args.no_generation else ''}.json")
path.write_text(json.dumps({"bench": "quote", "questions": len(questions), "summary": summary,
                            "quote_overlaps_by_category": by_category,
                            "seconds": round(seconds, 1), "answers": records}, indent=2, ensure_ascii=False),
                encoding="utf-8")
console.print(f"wrote {path}")
