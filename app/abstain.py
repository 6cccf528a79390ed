"""Abstention: whether the retrieved passages answer the question at all, decided before the model reads them.

A question about a clause the document lacks still retrieves its five nearest passages, and a small model
answers from whatever it is given; so the engine decides first whether anything retrieved is about the
question. Three signals, each about 0-1, higher meaning more relevant:

- `passage`: the cosine of the best passage to the question, what retrieval ranked by;
- `sentence`: the cosine of the best single sentence of the passages. A one-sentence answer inside a chunk
  of unrelated prose (a fact in a meeting, a planted needle) scores high here while its chunk scores low;
- `coverage`: the share of the question's content terms (stemmed, `app.quote.terms`) the passages hold.

They are combined as a weighted mean, `relevance = 0.3 passage + 0.5 sentence + 0.2 coverage`, and the engine
abstains when it is below `Settings.min_relevance`. The weights are a logistic regression's on the dev CUAD
contracts (present against absent clauses), rounded; benchmarks/bench_abstain.py fits them again, prints the
threshold table, and checks on meeting transcripts that a needle is never abstained on.

After generation, an answer in which the model itself says the passages do not state it (`says_not_stated`)
is marked abstained too, its words kept. The embedded 135M model never says so (none of 60 absent and 60
present short-answer clauses in benchmarks/bench_abstain.py), so on it everything rests on the relevance; a
bigger model that says so is believed, since it can only turn an answer into an abstention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from app.answer import Passage
from app.evidence import ScoredSentences
from app.quote import terms

WEIGHTS = {"passage": 0.3, "sentence": 0.5, "coverage": 0.2}
_NOT_STATED = re.compile(r"\bnot (?:stated|mentioned|specified|provided|given|found)|\bdo(?:es)? not (?:say|state|"
                         r"mention|specify)|\bno (?:information|mention)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Relevance:
    """How relevant the retrieved passages are to the question, by each signal and combined (`score`)."""

    passage: float
    sentence: float
    coverage: float

    @property
    def score(self) -> float:
        return sum(weight * getattr(self, name) for name, weight in WEIGHTS.items())

    def to_dict(self) -> dict[str, float]:
        return {"score": round(self.score, 4), "passage": round(self.passage, 4),
                "sentence": round(self.sentence, 4), "coverage": round(self.coverage, 4)}


def relevance(question: str, passages: Sequence[Passage], scored: ScoredSentences) -> Relevance:
    """The signals for `passages` retrieved for `question`; `scored` holds their sentences scored against the
    question alone (`app.evidence.score_sentences` with no answer)."""
    if not passages:
        return Relevance(0.0, 0.0, 0.0)
    wanted = {t.key for t in terms(question)}
    held = set().union(*({t.key for t in terms(p.text)} for p in passages))
    return Relevance(
        passage=max(p.score for p in passages),
        sentence=float(scored.similarity.max()) if len(scored.similarity) else 0.0,
        coverage=len(wanted & held) / len(wanted) if wanted else 1.0,  # nothing asked for is missing
    )


def says_not_stated(answer: str) -> bool:
    """Whether the model's answer says the passages do not hold the answer ("The contract does not specify ...")."""
    return bool(_NOT_STATED.search(answer))
