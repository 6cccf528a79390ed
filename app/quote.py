"""The quote: the shortest span of the passages in the prompt that states the answer, exact in its document.

A small model often writes a wrong sentence with the right clause in front of it; the quote puts the words of
the document that answer the question first, so the user reads those before the model's paraphrase.

How a span is found (benchmarks/bench_quote.py measures each step against the evidence sentence and the
generated answer):

1. Candidates are the sentences of the passages the prompt held (`app.evidence.sentences_with_offsets`).
2. Each is scored by the terms it shares with the question: numbers and dates (compared in
   one normal form, so "May 22, 2000" meets "5/22/00"), capitalised names, and other content words (stemmed,
   so "expire" meets "expiration"), each weighted by how rare it is among the candidates (a word in every
   sentence says nothing); plus the mean embedding similarity to the question and the answer, the evidence
   step's own measure (the answer's own terms are not counted: a small model's answer often names a date from
   the wrong clause, and counting its terms lowered the quote's hits on meetings, benchmarks/bench_quote.py);
   plus a bonus when the sentence holds what the question asks for: the parties (a company or a defined name,
   "between X and Y"; "the entire agreement between the parties" names nobody), a date for "when" or "what
   date" (half of it for a year alone: filings leave dates blank, "the [ ] day of [ ], 2020"), a length of time
   for "how long", "how much notice" or "what period", a clause naming the law that governs ("construed in
   accordance with the laws of") for which law governs; the same again when the sentence defines a term made
   of the question's words ('(the "Effective Date")' for when the agreement becomes effective), again when a
   date follows one of the question's words ("shall expire on June 21, 2000"; for when a document was made,
   any of the words documents say that with: "dated", "entered into", "effective as of"), and again, for when
   the document ends, when the document is the sentence's subject ("This Agreement shall remain in effect ...",
   not "Such termination shall become effective as of ..."); plus, for
   each question word in the sentence's file name, what the rarest shared name would count, so that "the
   co-branding agreement's governing law" is quoted from that agreement when several are retrieved; a word
   the question names the document with (`app.conversation.naming_words`) counts only so, not again as a word
   the sentence shares ("the services agreement" does not make a sentence about services the answer).
   A question asking what the document is called is answered by the title in its opening passage.
3. A heading ("Governing Law and Attornment") states nothing alone: it is quoted with the sentence under it.
4. The best sentence is narrowed to the shortest run of its clauses (split at ; and :, not at commas, which
   also sit inside names like "Acme, Inc.") that still holds every answer term the sentence matched; with no
   answer term matched, the sentence stays whole.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from app.answer import Passage, Quote
from app.conversation import naming_words
from app.evidence import ScoredSentences
from ingest.layout import TextLayout

# words that carry no topic: the question's frame and the contract's boilerplate
STOPWORDS = frozenset("""
a an the of to in on at by for from with without as is are was were be been being this that these those it its
and or nor not no any all each every such which who whom whose what when where how why whether if than then there
shall will may must can could would should do does did has have had agreement party parties under upon into
""".split())
MONTHS = {m: i for i, m in enumerate(
    "january february march april may june july august september october november december".split(), 1)}
_WORD = re.compile(r"[A-Za-z][A-Za-z'&.-]*[A-Za-z]|[A-Za-z]|\d[\d,./-]*\d|\d")
_DATE_WORDS = re.compile(
    r"\b(?:(?P<d1>\d{1,2})(?:st|nd|rd|th)?(?: day)?(?: of)? (?P<m1>[A-Za-z]+)(?:,\s*|\s+)(?P<y1>\d{4})"
    r"|(?P<m2>[A-Za-z]+) (?P<d2>\d{1,2})(?:st|nd|rd|th)?(?:,\s*|\s+)(?P<y2>\d{4}))\b")  # "May 3,2006" too
_DATE_NUMERIC = re.compile(r"\b(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{2,4})\b")
_DATE_ISO = re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b")
_DATE_HYPHENS = re.compile(r"\b(?P<d>\d{1,2})-(?P<m>[A-Za-z]{3,9})-(?P<y>\d{4})\b")  # 30-March-2021
_CLAUSE_END = re.compile(r"[;:]\s+")
_DURATION = re.compile(r"\b(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|twelve|thirty|sixty|ninety)\b"
                       r"(?:\s*\(\d+\))?[\s-]+(?:calendar |business |consecutive )?(?:days?|weeks?|months?|years?)\b",
                       re.IGNORECASE)
_YEAR = re.compile(r"\b(?:19|20)\d\d\b")
# "when" asks a date, except before a gerund: "what did she say when discussing the budget?" asks what was said
_ASKS_DATE = re.compile(r"\bwhen\b(?!\s+\w+ing\b)|\bdate\b|\bwhat day\b", re.IGNORECASE)
_STATES_TERM = re.compile(r"\b(?:continue|remain)s?\b[^.;]{0,40}?\b(?:in (?:full )?(?:force|effect)|for|until"
                          r"|indefinitely|perpetual(?:ly)?|in perpetuity)\b"
                          r"|\bin (?:full )?(?:force|effect) until\b|\banniversary\b|\b(?:is|be) valid (?:for|until)\b"
                          r"|\b(?:agreement|contract) shall (?:automatically )?(?:expire|terminate|end) (?:on|upon|at)\b",
                          re.IGNORECASE)
_ASKS_END = re.compile(r"\bexpir|\bterminat|\bend\b|\bends\b|\bterm\b", re.IGNORECASE)  # answered by a date or a duration
_ASKS_TITLE = re.compile(r"\b(?:name|title)\b.*\b(?P<noun>agreement|contract|lease|plan|amendment|document|report"
                         r"|this)\b", re.IGNORECASE)
_LABEL = re.compile(r"(?:exhibit|source:|page\b|\d+\s*$)", re.IGNORECASE)  # filing labels above a title
_ASKS_PARTIES = re.compile(r"\bwho\b.*\bpart(?:y|ies)\b|\bwhich (?:companies|parties|entities)\b", re.IGNORECASE)
_NAMES_PARTIES = re.compile(r"\b(?:between|among)\b", re.IGNORECASE)  # "by and between X and Y"
# a named organisation or person a party may be: a company form ("Acme, Inc.", "GLAMIS GOLD LTD.") or a
# capitalised name defined in brackets ('Theismann ("Athlete")', "(hereinafter referred to as "Principal")")
_NAMES_ORGANISATION = re.compile(
    r"\b[A-Z][\w&'.-]*,?\s+(?i:inc|incorporated|corp|corporation|company|co|llc|l\.l\.c|ltd|limited|lp|l\.p|plc|gmbh"
    r"|ag|s\.a|n\.a|b\.v|n\.v|pte|trust|bank|bancorp)\b(?![-'])"
    r"|\b[A-Z][\w.&'-]*,?\s+\((?i:the\s+|this\s+|hereinafter(?:\s+referred\s+to\s+as)?\s+)?[\"“][A-Z]")
# a term the document defines: '(the "Effective Date")', '("Initial Term")', '"Commencement Date" means'
_DEFINES = re.compile(r"\(\s*(?:the\s+|this\s+|an?\s+|hereinafter(?:\s+referred\s+to\s+as)?\s+)?"
                      r"[\"“]([^\"”]{2,60})[\"”]"
                      r"|[\"“]([^\"”]{2,60})[\"”]\s+(?:means|shall\s+mean)\b", re.IGNORECASE)
# "which state's law governs", "what is the governing law": answered by the clause naming a law, not the
# many clauses that mention "applicable laws"
_ASKS_LAW = re.compile(r"\blaws?\b.*\bgovern|\bgovern\w*\b.*\blaws?\b", re.IGNORECASE)
_STATES_LAW = re.compile(r"\b(?:governed|construed|interpreted|enforced|governs|govern)\b[^.;]{0,80}?\blaws?\s+of\b"
                         r"|\b(?:governed|construed|interpreted|enforced)\s+(?:by|under|in accordance with)\s+"
                         r"(?:the\s+)?(?:[\w-]+\s+){1,3}laws?\b"  # "governed by California law"
                         r"|\blaws?\s+of\b[^.;]{0,80}?\b(?:shall|will)\s+(?:govern|apply|control)\b", re.IGNORECASE)
_DOCUMENT = r"(?:agreement|contract|amendment|lease|addendum)"
# a question about the document itself ("the agreement", "this contract"), and a sentence whose subject it is:
# "This Agreement shall remain in effect ...", "12.1 This contract shall continue until ...", "THIS AMENDMENT
# (the "Amendment") expires on ..."
_ASKS_OF_DOCUMENT = re.compile(rf"\b(?:the|this)\s+{_DOCUMENT}\b|\bthe\s+{_DOCUMENT}'s\b", re.IGNORECASE)
_DOCUMENT_SUBJECT = re.compile(
    rf"\b(?i:this|the)\s+(?:[A-Z][\w&-]*\s+){{0,4}}(?i:{_DOCUMENT})\b(?:\s*\([^)]{{0,60}}\))?,?\s+"
    r"(?i:shall|will|is|was|has\s+been|becomes?|commences?|continues?|remains?|expires?|terminates?)\b")
_ASKS_DURATION = re.compile(r"\bhow long\b|\bhow much notice\b|\bhow many (?:days|months|years)\b|\bperiod\b"
                            r"|\bfor how long\b", re.IGNORECASE)
_DATE_FRAME = frozenset({"date", "day"})  # the question's frame ("on what date"), not what the date is of
# the words by which a document states the date it was made ("effective as of" among them: a contract that
# gives one date gives it so); a question asking when it was made, entered into, executed, signed or dated asks
# them all. Not a question asking when it becomes effective: that date may differ from the signing's.
_MADE = frozenset(("made", "entered", "executed", "signed", "dated", "effective"))
_ASKS_MADE = _MADE - {"effective"}
_LOWER_WORD = re.compile(r"[a-z]+")
VERB_DATE_WORDS = 6  # words before a date that say what it is the date of: "is dated as of", "shall expire on"
HEADING_WORDS = 8  # a line this short with no date and no full stop is a heading: it states nothing alone
HEADING_GAP = 40  # characters (blank lines, a clause number) between a heading and the sentence under it
NAME_WEIGHT = 1.5  # a capitalised name or a number shared with the answer counts more than a common word
SIMILARITY_WEIGHT = 2.0  # the embedding similarity (about 0.2-0.7) against the term score (about 0-5)
ANSWER_TYPE_BONUS = 3.0  # a sentence that holds the kind of thing the question asks for (parties, a date, a duration)


@dataclass(frozen=True)
class Term:
    """One normalised word, number or date of a text, and whether it names something (a name, number or date)."""

    key: str
    strong: bool


def _date_matches(text: str) -> list[tuple[int, int, str]]:
    """(start, end, m/d/yy) of every date in `text`."""
    out = []
    for m in _DATE_WORDS.finditer(text):
        month = MONTHS.get((m["m1"] or m["m2"]).lower())
        if month:
            out.append((m.start(), m.end(), f"{month}/{int(m['d1'] or m['d2'])}/{(m['y1'] or m['y2'])[-2:]}"))
    for m in _DATE_HYPHENS.finditer(text):
        month = MONTHS.get(m["m"].lower())
        if month:
            out.append((m.start(), m.end(), f"{month}/{int(m['d'])}/{m['y'][-2:]}"))
    for pattern in (_DATE_NUMERIC, _DATE_ISO):
        for m in pattern.finditer(text):
            out.append((m.start(), m.end(), f"{int(m['m'])}/{int(m['d'])}/{m['y'][-2:]}"))
    return out


def dates(text: str) -> list[str]:
    """Every date in `text` in one normal form, m/d/yy: '22nd day of August 2005', '8/22/05', '2005-08-22' and
    '22-August-2005' all '8/22/05'."""
    return [d for _, _, d in _date_matches(text)]


@lru_cache(maxsize=8192)
def terms(text: str) -> frozenset[Term]:
    """The content terms of `text`: stemmed lower-cased words outside STOPWORDS, numbers without commas, dates
    (each as one term). Remembered: the relevance, the quote and the support check read the same passages and
    sentences for every answer."""
    matches = _date_matches(text)
    found = {Term(d, True) for _, _, d in matches}
    for m in _WORD.finditer(text):
        if any(s <= m.start() < e for s, e, _ in matches):
            continue  # a date's day, month and year are the date term, in whatever form it was written
        word = m.group()
        key = word.lower().replace(",", "").strip(".")
        if not key or key in STOPWORDS or (len(key) < 3 and not key.isdigit()):
            continue
        found.add(Term(key if key[0].isdigit() else _stem(key), word[0].isupper() or word[0].isdigit()))
    return frozenset(found)


def answer_type_bonus(question: str, sentence: str) -> float:
    """ANSWER_TYPE_BONUS when the sentence holds what the question asks for: the parties ("between X and Y"), the
    law that governs ("governed by the laws of"), a duration, or a date (when a term ends is stated either way:
    "expires on June 21, 2000" or "for a period of two years"); for when a term ends, once more when the sentence
    says how long the agreement lasts ("shall remain in full force and effect for"), which a renewal or notice
    clause naming a period does not."""
    if _ASKS_PARTIES.search(question):
        named = len(_NAMES_ORGANISATION.findall(sentence))  # "between the parties" names nobody
        return ANSWER_TYPE_BONUS if named and (_NAMES_PARTIES.search(sentence) or named >= 2) else 0.0
    if _ASKS_LAW.search(question):
        return ANSWER_TYPE_BONUS if _STATES_LAW.search(sentence) else 0.0
    if _ASKS_DURATION.search(question):
        return ANSWER_TYPE_BONUS if _DURATION.search(sentence) else 0.0
    if _ASKS_DATE.search(question):
        ends = bool(_ASKS_END.search(question))
        found = 1.0 if dates(sentence) or (ends and _DURATION.search(sentence)) else 0.0
        if not found and _YEAR.search(sentence):
            found = 0.5  # a date left blank or mangled: "the [ ] day of [ ], 2020", "19t h day of March, 2020"
        lasts = ends and _STATES_TERM.search(sentence)  # "shall continue in full force and effect for ..."
        return ANSWER_TYPE_BONUS * (found + bool(lasts))
    return 0.0


def document_term_bonus(question: str, sentence: str) -> float:
    """ANSWER_TYPE_BONUS when the question asks when the document itself ends ("when does the initial term of the
    agreement expire?") and the sentence is about the document itself ("This Agreement shall remain in effect
    for two years", "... shall continue in full force and effect until terminated"): a contract states its
    own term with itself as the subject, while the clauses that merely hold a date or a period are about
    something else ("Such termination shall become effective as of November 1, 2007", "This initial order shall
    be received no later than April 1, 2000"). The answer may hold no date at all (a term that runs until
    terminated), so the sentence need not hold one."""
    if _ASKS_END.search(question) and _ASKS_OF_DOCUMENT.search(question) and _DOCUMENT_SUBJECT.search(sentence):
        return ANSWER_TYPE_BONUS
    return 0.0


def defined_term_bonus(question: str, sentence: str) -> float:
    """ANSWER_TYPE_BONUS when the sentence defines a term made of the question's own words: the contract's
    answer to "when does it become effective" is where "Effective Date" is defined ('made as of May 22, 2000
    (the "Effective Date")'), not the clauses that only use it ("effective as of the Effective Date")."""
    asked = {t.key for t in terms(question)}
    for m in _DEFINES.finditer(sentence):
        defined = {t.key for t in terms(m[1] or m[2])}
        if defined and defined <= asked:
            return ANSWER_TYPE_BONUS
    return 0.0


def verb_date_bonus(question: str, sentence: str) -> float:
    """ANSWER_TYPE_BONUS when a date in the sentence follows a word of the question within VERB_DATE_WORDS words:
    the date of the thing asked about ("when was it signed": "signed on May 3, 2006"; "when does it expire":
    "shall expire on June 21, 2000"; "is dated as of February 4, 2005"), not any date the sentence holds ("a
    racing team in 2005 through 2008", "the term shall continue through November 30, 1998")."""
    if not _ASKS_DATE.search(question):
        return 0.0
    asked = {t.key for t in terms(question)} - _DATE_FRAME  # "the date hereof and continue through ..." is not it
    asks_made = bool(_ASKS_MADE & set(_LOWER_WORD.findall(question.lower())))  # "signed?" is "signed"
    for start, _, _ in _date_matches(sentence):
        before = _LOWER_WORD.findall(sentence[:start].lower())[-VERB_DATE_WORDS:]  # "Dated:" is "dated"
        if asked & {t.key for t in terms(" ".join(before))} or (asks_made and _MADE & set(before)):
            return ANSWER_TYPE_BONUS
    return 0.0


def is_heading(text: str) -> bool:
    """A short line with no date and no closing full stop ("Governing Law and Attornment", "Term and
    Termination:"): it names what follows and states nothing itself."""
    return len(text.split()) <= HEADING_WORDS and not dates(text) and not text.rstrip().endswith((".", ";"))


def _title_in(text: str, noun: str) -> tuple[int, int] | None:
    """(start, end) of the first title naming `noun` in `text`: a run of capitalised words ending in it ("THIS
    CO-BRANDING AGREEMENT", "Software License Agreement"), at least two words, a leading "This"/"The" left out."""
    upper = rf"(?:(?=[A-Z0-9&'.#-]*[A-Z])[A-Z0-9&'.#-]+[ \t]+){{1,8}}{noun.upper()}\b"  # WORDS IN CAPITALS
    title = rf"(?:[A-Z][a-z][\w&'.-]*[ \t]+(?:(?:and|of|for|to|&)[ \t]+)?){{1,8}}{noun.capitalize()}\b"  # Title Case
    found = [m for pattern in (upper, title) for m in re.finditer(pattern, text)]
    for m in sorted(found, key=lambda m: m.start()):
        lead = re.match(r"(?:THIS|This|The|THE)\s+", m.group())
        start = m.start() + (lead.end() if lead else 0)
        if len(text[start:m.end()].split()) >= 2:
            return start, m.end()
    return None


def title_quote(question: str, passages) -> Quote | None:
    """For a question asking what the document is called: in its opening, the first title naming what the
    question calls it ("agreement", "contract"), else the first line that is not an exhibit or page label."""
    asked = _ASKS_TITLE.search(question)
    if not asked:
        return None
    opening = next((p for p in passages if p.char_start == 0), None)
    if opening is None:
        return None
    noun = asked["noun"].lower()
    span = _title_in(opening.text, noun) if noun not in ("document", "this") else None
    if span is None:
        lines = [(m.start() + m.group().index(m.group().strip()), m.group().strip())
                 for m in re.finditer(r"[^\n]+", opening.text)]
        start, text = next(((s, t) for s, t in lines if len(t) >= 3 and not _LABEL.match(t)), (None, ""))
        if start is None:
            return None
        span = (start, start + len(text))
    return on_page(Quote(doc=opening.doc, char_start=opening.char_start + span[0],
                         char_end=opening.char_start + span[1], text=opening.text[span[0]:span[1]]), opening)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer  # PyStemmer, the stemmer the keyword index uses

    return Stemmer.Stemmer("english")


def _stem(word: str) -> str:
    return _stemmer().stemWord(word)


def clauses(start: int, text: str) -> list[tuple[int, int, str]]:
    """(char_start, char_end, text) of every run of consecutive clauses of a sentence starting at `start`."""
    cuts = [0] + [m.end() for m in _CLAUSE_END.finditer(text)] + [len(text)]
    spans = []
    for i in range(len(cuts) - 1):
        for j in range(i + 1, len(cuts)):
            piece = text[cuts[i]:cuts[j]]
            stripped = piece.strip().rstrip(";:,").rstrip()
            if stripped:
                offset = cuts[i] + piece.index(stripped)
                spans.append((start + offset, start + offset + len(stripped), stripped))
    return spans


def find_quote(scored: ScoredSentences, question: str, answer: str, narrow: bool = True) -> Quote | None:
    """The span of the scored sentences that best states `answer` to `question`; None when there are none.

    `narrow=False` keeps the best sentence whole (benchmarks/bench_quote.py measures the narrowing).
    """
    title = title_quote(question, [p for p, _ in scored.sentences])
    if title is not None:
        return title
    candidates = scored.sentences
    if not candidates:
        return None
    scores = sentence_scores(scored, question)
    best = int(np.argmax(scores))
    passage, (start, end, text) = candidates[best]
    if is_heading(text):
        passage, (start, end, text), best = _under_heading(candidates, best)
    matched = {t.key for t in terms(answer)} & {t.key for t in terms(candidates[best][1][2])}
    span = (start, end, text)
    if matched and narrow:
        holding = [c for c in clauses(start, text)
                   if matched <= {t.key for t in terms(c[2])} and not is_heading(c[2])]
        span = min(holding, key=lambda c: c[1] - c[0], default=span)
    return on_page(Quote(doc=passage.doc, char_start=span[0], char_end=span[1], text=span[2],
                         score=round(scores[best], 4)), passage)


def sentence_scores(scored: ScoredSentences, question: str) -> list[float]:
    """How well each of the scored sentences states the answer to `question` (step 2 of the module docstring)."""
    candidates = scored.sentences
    sentence_terms = [{t.key for t in terms(s[2])} for _, s in candidates]
    frequency = Counter(k for keys in sentence_terms for k in keys)
    rarity = {k: math.log(1 + len(candidates) / n) for k, n in frequency.items()}
    asked = {t.key for t in terms(question)}
    rarest = math.log(1 + len(candidates)) * NAME_WEIGHT  # what the rarest shared name would count
    named = {p.doc: asked & _name_terms(p.doc) for p, _ in candidates}
    naming = naming_words(question).split()
    as_asked = {doc: _without_naming(question, naming, doc) for doc in named}  # less the words naming the document
    scores = []
    for (p, s), keys, sim in zip(candidates, sentence_terms, scored.similarity):
        q = as_asked[p.doc]
        scores.append(sum(rarity[t.key] * (NAME_WEIGHT if t.strong else 1.0) for t in terms(q) if t.key in keys)
                      + SIMILARITY_WEIGHT * float(sim) + answer_type_bonus(q, s[2]) + defined_term_bonus(q, s[2])
                      + verb_date_bonus(q, s[2]) + document_term_bonus(q, s[2]) + rarest * len(named[p.doc]))
    return scores


def _name_terms(doc: str) -> set[str]:
    """The terms of a document's file name."""
    return {t.key for t in terms(re.sub(r"[_.]+", " ", Path(doc).stem))}


def _without_naming(question: str, naming: list[str], doc: str) -> str:
    """`question` without the words it names `doc` with (of `naming`, its `app.conversation.naming_words`, those
    that are words of the file name): they count once, as the document's name (`sentence_scores`), and not again
    as words a sentence shares or defines: "the services agreement" does not make a sentence about services, or
    defining "Services", the answer."""
    name = _name_terms(doc)
    for word in naming:
        if {t.key for t in terms(word)} & name:
            question = re.sub(rf"(?<![\w-]){re.escape(word)}(?![\w-])", " ", question, count=1)
    return question


def _under_heading(candidates: list, heading: int) -> tuple[Passage, tuple[int, int, str], int]:
    """(passage, span, index) to quote for a heading: the heading with the sentence under it when both are in
    one passage; the sentence alone when it opens the next retrieved passage (the text between two passages is
    not at hand); the heading alone when the sentence under it was not retrieved."""
    passage, (start, end, text) = candidates[heading]
    after = [(s[0], i) for i, (p, s) in enumerate(candidates)
             if p.doc == passage.doc and end <= s[0] < end + HEADING_GAP]
    if not after:
        return passage, (start, end, text), heading
    nearest = min(after)[1]
    below, (b_start, b_end, b_text) = candidates[nearest]
    if below is passage:
        return passage, (start, b_end, passage.text[start - passage.char_start:b_end - passage.char_start]), heading
    return below, (b_start, b_end, b_text), nearest


def on_page(quote: Quote, passage: Passage) -> Quote:
    """The quote with its page and the rectangles of its text there, from the words of the passage it was cut
    from: a PDF's passages carry them (`Passage.layout`); other formats have no pages to draw on."""
    quote.boxes = TextLayout.decode(passage.layout).boxes(quote.char_start, quote.char_end)
    quote.page = quote.boxes[0].page if quote.boxes else None
    return quote
