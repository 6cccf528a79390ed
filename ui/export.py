"""The session's answers as downloads: JSON in the answer format of docs/answer.md, and a flat CSV for spreadsheets."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd

from app.answer import Answer


def answers_json(answers: Sequence[Answer]) -> str:
    """A JSON list of answers, each exactly as `longdoc ask --json` prints it."""
    return json.dumps([a.to_dict() for a in answers], ensure_ascii=False, indent=2)


def answers_csv(answers: Sequence[Answer]) -> str:
    """One row an answer; its passages as "[rank] doc p. N (zone)" joined by "; " so a cell stays readable."""
    rows = [
        {
            "question": a.question,
            "answer": a.answer,
            "abstained": a.abstained,
            "error": a.error or "",
            "mode": a.mode,
            "passages": "; ".join(
                f"[{p.rank}] {p.doc}" + (f" p. {p.page}" if p.page is not None else "") + f" ({p.prompt_zone or 'not in prompt'})"
                for p in sorted(a.passages, key=lambda p: p.rank)
            ),
            "evidence": " | ".join(e.text.strip() for e in a.evidence),
            "prompt_tokens": a.prompt_tokens,
            "total_s": a.timings.get("total_s", ""),
        }
        for a in answers
    ]
    columns = ["question", "answer", "abstained", "error", "mode", "passages", "evidence", "prompt_tokens", "total_s"]
    return pd.DataFrame(rows, columns=columns).to_csv(index=False)
