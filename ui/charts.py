"""The two maps of an answer: where each passage sat in the prompt, and where it came from in its document.

Both are Altair (vega-lite) charts, which ship with Streamlit. Passages are coloured by relevance score on
one scale, so the best passage is the darkest block on both maps and the reordering is visible at a glance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import altair as alt
import pandas as pd

from app.answer import Answer, Passage

ZONES = ("start", "middle", "end")
_ZONE_COLOURS = ("#dbeafe", "#f3f4f6", "#dcfce7")
_SCORE_SCHEME = "blues"
PROMPT_MAP_HEIGHT = 96
DOC_MAP_ROW_HEIGHT = 26
# Streamlit squeezes a layered chart's height unless given one; it needs the plot plus the x axis and its title.
_AXIS_PX = 56
# A passage of a few hundred characters in a 300-page document would be under a pixel wide: draw it at
# least this share of the document's length so it can be seen (the tooltip keeps the true offsets).
_MIN_DOC_SHARE = 0.006


def _passage_rows(passages: Sequence[Passage]) -> list[dict]:
    return [
        {
            "label": f"[{p.rank}]",
            "rank": p.rank,
            "score": round(p.score, 3),
            "doc": p.doc,
            "zone": p.prompt_zone or "",
            "start": p.prompt_token_start,
            "end": p.prompt_token_end,
            "char_start": p.char_start,
            "char_end": p.char_end,
            "chunk_start": p.chunk_span[0],  # the retrieved chunk itself; the span above adds `context_chunks`
            "chunk_end": p.chunk_span[1],
        }
        for p in passages
    ]


def zone_bounds(passages: Sequence[Passage]) -> list[tuple[str, int, int]]:
    """The start/middle/end thirds of the passage region (first passage token to last), as the prompt
    builder defines zones (`app.prompt.zone_of`), so the shading agrees with each passage's `prompt_zone`."""
    first = min(p.prompt_token_start for p in passages)
    last = max(p.prompt_token_end for p in passages)
    cuts = [first + (last - first) * i / 3 for i in range(4)]
    return [(zone, round(cuts[i]), round(cuts[i + 1])) for i, zone in enumerate(ZONES)]


def prompt_map(answer: Answer) -> alt.LayerChart | None:
    """The prompt from token 0 to `prompt_tokens`, each passage a block at its token range, over the shaded
    start/middle/end zones. Heights are in pixels (`PROMPT_MAP_HEIGHT` in all).

    Returns None when no passage was placed in the prompt (an abstained or failed question).
    """
    placed = [p for p in answer.passages if p.prompt_token_start is not None and p.prompt_token_end is not None]
    if not placed:
        return None
    total = max(answer.prompt_tokens, max(p.prompt_token_end for p in placed))
    x_scale = alt.Scale(domain=[0, total], nice=False, zero=True)
    zones = pd.DataFrame(zone_bounds(placed), columns=["zone", "start", "end"])
    zones["mid"] = (zones["start"] + zones["end"]) / 2
    whole = (
        alt.Chart(pd.DataFrame({"start": [0], "end": [total]}))
        .mark_rect(color="#f9fafb", stroke="#d1d5db")
        .encode(
            x=alt.X("start:Q", scale=x_scale, title="prompt tokens (instructions, passages, question)"),
            x2="end:Q", y=alt.value(22), y2=alt.value(PROMPT_MAP_HEIGHT - 2),
        )
    )  # fmt: skip
    shading = (
        alt.Chart(zones)
        .mark_rect()
        .encode(
            x=alt.X("start:Q", scale=x_scale),
            x2="end:Q",
            y=alt.value(0),
            y2=alt.value(PROMPT_MAP_HEIGHT),
            color=alt.Color("zone:N", scale=alt.Scale(domain=list(ZONES), range=list(_ZONE_COLOURS)), legend=None),
        )
    )
    zone_labels = (
        alt.Chart(zones)
        .mark_text(baseline="top", dy=4, color="#4b5563", fontSize=12)
        .encode(x=alt.X("mid:Q", scale=x_scale), y=alt.value(0), text="zone:N")
    )
    rows = pd.DataFrame(_passage_rows(placed))
    rows["mid"] = (rows["start"] + rows["end"]) / 2
    blocks = (
        alt.Chart(rows)
        .mark_rect(stroke="white", strokeWidth=1)
        .encode(
            x=alt.X("start:Q", scale=x_scale),
            x2="end:Q",
            y=alt.value(44),
            y2=alt.value(PROMPT_MAP_HEIGHT - 10),
            color=alt.Color("score:Q", scale=alt.Scale(scheme=_SCORE_SCHEME), title="relevance"),
            tooltip=["label", "doc", "score", "zone", "start", "end"],
        )
    )
    labels = (
        alt.Chart(rows)
        .mark_text(baseline="bottom", dy=-3, fontSize=12, fontWeight="bold", color="#111827")
        .encode(x=alt.X("mid:Q", scale=x_scale), y=alt.value(44), text="label:N")
    )
    return (
        alt.layer(whole, shading, zone_labels, blocks, labels)
        .resolve_scale(color="independent")
        .properties(height=PROMPT_MAP_HEIGHT)
    )


def document_map(answer: Answer, doc_lengths: Mapping[str, int]) -> alt.LayerChart | None:
    """One row a passage (best first): the whole document as a grey bar from 0 to 100 %, and the passage
    at its position as a share of the document's length; with `context_chunks`, the retrieved chunk as the
    block and the text handed on around it as a paler band.

    `doc_lengths` maps a document name to the length of its extracted text in characters. Returns None when
    there are no passages or their documents are no longer in the library.
    """
    rows = [r for r in _passage_rows(sorted(answer.passages, key=lambda p: p.rank)) if doc_lengths.get(r["doc"])]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    several = frame["doc"].nunique() > 1
    frame["row"] = frame["label"] + (" " + frame["doc"].map(short_name) if several else "")
    lengths = frame["doc"].map(doc_lengths)
    frame["from"] = frame["chunk_start"] / lengths
    frame["to"] = (frame["chunk_end"] / lengths).clip(lower=frame["from"] + _MIN_DOC_SHARE)
    frame["context_from"] = frame["char_start"] / lengths
    frame["context_to"] = frame["char_end"] / lengths
    x_scale = alt.Scale(domain=[0, 1], nice=False)
    y = alt.Y(
        "row:N", sort=list(frame["row"]), title=None,
        scale=alt.Scale(paddingInner=0.35), axis=alt.Axis(labelLimit=220, ticks=False, domain=False, labelOverlap=False),
    )  # fmt: skip
    whole = (
        alt.Chart(frame.assign(start=0.0, end=1.0))
        .mark_bar(color="#e5e7eb")
        .encode(
            # five labels, the end ones kept inside the plot, so "0%" and "100%" never meet at its edges
            x=alt.X("start:Q", scale=x_scale, title="position in the document",
                    axis=alt.Axis(format="%", values=[0, 0.25, 0.5, 0.75, 1], labelFlush=True, labelOverlap=True)),
            x2="end:Q",
            y=y,
        )
    )
    tooltip = ["label", "doc", "score", "char_start", "char_end", "chunk_start", "chunk_end"]
    context = (
        alt.Chart(frame[(frame["char_start"] != frame["chunk_start"]) | (frame["char_end"] != frame["chunk_end"])])
        .mark_bar(color="#bfdbfe")
        .encode(x=alt.X("context_from:Q", scale=x_scale), x2="context_to:Q", y=y, tooltip=tooltip)
    )
    blocks = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("from:Q", scale=x_scale),
            x2="to:Q",
            y=y,
            color=alt.Color("score:Q", scale=alt.Scale(scheme=_SCORE_SCHEME), title="relevance"),
            tooltip=tooltip,
        )
    )
    return alt.layer(whole, context, blocks).properties(height=document_map_height(len(frame)))


def document_map_height(n_rows: int) -> int:
    return DOC_MAP_ROW_HEIGHT * n_rows


def short_name(name: str, limit: int = 40) -> str:
    """A long file name cut in the middle, keeping its end (the extension and usually the title)."""
    if len(name) <= limit:
        return name
    keep = (limit - 1) // 2
    return f"{name[:keep]}…{name[-keep:]}"


def display_height(chart: alt.LayerChart) -> int:
    """The pixel height to give `st.altair_chart` for one of these charts."""
    return int(chart.height) + _AXIS_PX
