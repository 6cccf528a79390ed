"""The support check: for each sentence of the answer, whether the passages in the prompt state it.

A sentence's claims are its names, numbers and dates: each must appear in some passage (dates in any form:
"May 22, 2000" supports "5/22/00"; words stemmed and case-folded, `app.quote.terms`). A sentence that names
nothing and only restates the question ("The agreement becomes effective on the date of the agreement.")
asserts nothing the passages could state, and is unsupported. Any other sentence that names nothing is held to
what it says: it is supported when a passage sentence is close to it in meaning (embedding similarity at least
`SIMILAR_ENOUGH`). benchmarks/bench_support.py measures the check against labelled answer sentences. The check works with any model, because it reads only the answer and the
passages; it says which words the passages do not hold, so the page can show the reason.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from app.answer import Passage, SentenceSupport, Support
from app.evidence import ScoredSentences, split_sentences
from app.quote import terms
from index.embedder import Embedder

SIMILAR_ENOUGH = 0.6  # cosine of an answer sentence without names or numbers to its closest passage sentence
_YEAR = re.compile(r"\b(?:1[89]|20)\d\d\b")
# A number that opens a line as a clause's label ("15.2 Jurisdiction and Venue.", "Section 7. Term", "3) Fees")
# names the clause; the passage does not state it as a value, so "The law governing the agreement is 15.2." must
# not find its number there. A number with a unit opening a line ("30 days ...") is a value and stays.
_CLAUSE_LABEL = re.compile(r"^[ \t]*(?:(?:section|article|clause)[ \t]+)?(?:\d+\.(?:\d+\.?)*|\(?\d+\))(?=[ \t])",
                           re.IGNORECASE | re.MULTILINE)
FRAME = frozenset(t.key for t in terms("answer question document text"))  # words that frame an answer, not content


def answer_sentences(answer: str) -> list[str]:
    """The answer cut into sentences where the evidence cuts passages: "7.2" or "Inc. pays" end none."""
    return [text for _, _, text in split_sentences(answer, min_chars=2)]


def claims(sentence: str) -> set[str]:
    """The normalised names, numbers and dates a sentence asserts. Its first word is not a name for being
    capitalised, unless it is in capitals throughout."""
    first, _, rest = sentence.partition(" ")
    head = first if first.isupper() or first[:1].isdigit() else first.lower()
    return {t.key for t in terms(f"{head} {rest}") if t.strong}


def check_support(embedder: Embedder, question: str, answer: str, passages: Sequence[Passage],
                  scored: ScoredSentences) -> Support:
    """Each answer sentence with whether the passages state it, the passage sentence that does, and why not."""
    sentences = answer_sentences(answer)
    if not sentences or not scored.sentences:
        return Support(verdict="unchecked", sentences=[])
    asked = {t.key for t in terms(question)} | FRAME
    known = set().union(*({t.key for t in terms(_CLAUSE_LABEL.sub("", p.text))} for p in passages))
    known |= {y for p in passages for y in _YEAR.findall(p.text)}  # "2000" alone, though "May 22, 2000" is one date
    passage_terms = [{t.key for t in terms(s[2])} for _, s in scored.sentences]
    similarity = embedder.embed_documents(sentences) @ scored.vectors.T  # (answer sentences, passage sentences)
    checked = []
    for i, sentence in enumerate(sentences):
        wanted = claims(sentence)
        if wanted:
            missing = sorted(wanted - known)
            best = int(np.argmax([len(wanted & keys) + float(similarity[i, j])
                                  for j, keys in enumerate(passage_terms)]))
            supported = not missing
            reason = "" if supported else "not in the passages: " + ", ".join(missing)
        elif not {t.key for t in terms(sentence)} - asked:
            best, supported, reason = 0, False, "says nothing the question did not"
        else:
            best = int(np.argmax(similarity[i]))
            supported = float(similarity[i, best]) >= SIMILAR_ENOUGH
            reason = "" if supported else (f"no passage sentence says this (closest similarity "
                                           f"{float(similarity[i, best]):.2f})")
        passage, (start, end, _) = scored.sentences[best]
        checked.append(SentenceSupport(text=sentence, supported=supported, reason=reason,
                                       doc=passage.doc if supported else None,
                                       char_start=start if supported else None,
                                       char_end=end if supported else None))
    held = sum(s.supported for s in checked)
    verdict = "supported" if held == len(checked) else "unsupported" if held == 0 else "partly supported"
    return Support(verdict=verdict, sentences=checked)
