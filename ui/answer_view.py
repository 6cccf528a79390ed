"""One answer on the page: the text with linked citations, the evidence, the passages and the two maps.

Every element of an answer gets a key built from the answer's position in the history, so the same
answer drawn again on the next rerun keeps its state and two answers never collide.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence

import pandas as pd
import streamlit as st

from app.answer import Answer, Evidence, Passage
from app.api import LongDocQA
from app.conversation import searched_line
from ui.charts import display_height, document_map, prompt_map, short_name
from ui.page_view import render_quote_page

# "[2]" or "[1, 3]": the model cites passages by their retrieval rank (app/prompt.py `passage_header`).
_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def passage_anchor(key: str, rank: int) -> str:
    return f"{key}-p{rank}"


def link_citations(text: str, ranks: set[int], key: str) -> str:
    """Markdown with each cited rank that names a shown passage turned into a link to that passage's row."""

    def link(match: re.Match) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        if not all(n in ranks for n in numbers):
            return match.group(0)
        return "[" + ", ".join(f"[{n}](#{passage_anchor(key, n)})" for n in numbers) + "]"

    return _CITATION.sub(link, text)


def mark_unsupported(answer: Answer) -> str:
    """The answer's text, HTML-escaped, each sentence the passages do not state underlined, its reason as the
    tooltip. Sentences are found in order in the text, so a repeated sentence marks the right occurrence."""
    text = answer.answer
    if answer.support is None or answer.generated:  # an extractive answer is the document's own words
        return html.escape(text)
    out, cursor = [], 0
    for sentence in answer.support.sentences:
        at = text.find(sentence.text, cursor)
        if at < 0:
            continue
        out.append(html.escape(text[cursor:at]))
        piece = html.escape(sentence.text)
        if not sentence.supported:
            piece = (f'<span class="unsupported" title="{html.escape(sentence.reason, quote=True)}" '
                     f'style="text-decoration: underline wavy #c0392b; text-underline-offset: 3px">{piece}</span>')
        out.append(piece)
        cursor = at + len(sentence.text)
    out.append(html.escape(text[cursor:]))
    return "".join(out)


def highlight(passage: Passage, evidence: Sequence[Evidence]) -> str:
    """The passage text as HTML, with the evidence sentences that fall inside it marked and the context around
    the retrieved chunk (`context_chunks`) in grey.

    Evidence offsets index the whole document, as passage offsets do, so the overlap is found by offsets,
    never by searching for the sentence text (which may occur twice).
    """
    marks = [(max(e.char_start, passage.char_start) - passage.char_start,
              min(e.char_end, passage.char_end) - passage.char_start)
             for e in evidence if e.doc == passage.doc and e.char_start < passage.char_end and e.char_end > passage.char_start]
    chunk = tuple(at - passage.char_start for at in passage.chunk_span)
    cuts = sorted({0, len(passage.text), *chunk, *(x for span in marks for x in span)})
    out = []
    for start, end in zip(cuts, cuts[1:]):
        piece = html.escape(passage.text[start:end])
        if any(s <= start and end <= e for s, e in marks):
            piece = f"<mark>{piece}</mark>"
        if not chunk[0] <= start < chunk[1]:
            piece = f'<span class="context" style="color: #888">{piece}</span>'
        out.append(piece)
    return f'<div style="white-space: pre-wrap; font-size: 0.9rem; line-height: 1.5">{"".join(out)}</div>'


def where(passage: Passage) -> str:
    """Page, section and speakers, whichever the document has: "p. 3 · 12. Governing Law"."""
    parts = []
    if passage.page is not None:
        parts.append(f"p. {passage.page}")
    if passage.section:
        parts.append(passage.section)
    if passage.speakers:
        parts.append(", ".join(passage.speakers))
    return " · ".join(parts)


def passages_frame(passages: Sequence[Passage]) -> pd.DataFrame:
    """The passages table, best first; the short columns come first so they are never scrolled out of view."""
    return pd.DataFrame(
        [
            {
                "rank": p.rank,
                "score": p.score,
                "prompt zone": p.prompt_zone or "not in prompt",
                "prompt tokens": (
                    f"{p.prompt_token_start}–{p.prompt_token_end}" if p.prompt_token_start is not None else ""
                ),
                "document": p.doc,
                "page / section / speaker": where(p),
            }
            for p in sorted(passages, key=lambda p: p.rank)
        ]
    )


QUOTE_CONTEXT_CHARS = 240  # of the quote's passage shown on each side of it


def quote_in_context(answer: Answer) -> str | None:
    """The quote marked inside the passage text around it, as HTML; None without a quote or its passage.

    Offsets place it, as for the evidence: the text around comes from the passage that holds the quote.
    """
    q = answer.quote
    holder = next((p for p in answer.passages if p.doc == q.doc and p.char_start <= q.char_start
                   and q.char_end <= p.char_end), None) if q else None
    if holder is None:
        return None
    start = q.char_start - holder.char_start
    end = q.char_end - holder.char_start
    lo, hi = max(0, start - QUOTE_CONTEXT_CHARS), min(len(holder.text), end + QUOTE_CONTEXT_CHARS)
    before, quoted, after = holder.text[lo:start], holder.text[start:end], holder.text[end:hi]
    return (f'<div style="white-space: pre-wrap; line-height: 1.5">{"…" if lo else ""}{html.escape(before)}'
            f'<mark class="quote" style="background: #ffe08a; font-weight: 600">{html.escape(quoted)}</mark>'
            f'{html.escape(after)}{"…" if hi < len(holder.text) else ""}</div>'
            f'<small>{html.escape(q.doc)}, characters {q.char_start:,}–{q.char_end:,}</small>')


def render_quote(qa: LongDocQA, answer: Answer, key: str) -> None:
    """The quote in the text around it and, for a PDF, on its page."""
    shown = quote_in_context(answer)
    if shown is None or answer.abstained:
        return
    st.markdown("**Quote**: the words of the document that state the answer")
    st.html(shown)
    render_quote_page(qa, answer, key)


def render_evidence(answer: Answer) -> None:
    if not answer.evidence:
        return
    st.markdown("**Evidence**")
    for e in answer.evidence:
        source = f"{html.escape(e.doc)}, characters {e.char_start:,}–{e.char_end:,}"
        st.markdown(f"> {html.escape(e.text.strip())}  \n> <small>{source}</small>", unsafe_allow_html=True)


def render_passages(answer: Answer, key: str) -> None:
    """The passages table, then one expander a passage (best first) with its text and evidence marked."""
    if answer.abstained:
        st.markdown("**Closest passages**, all below the relevance threshold")
    else:
        st.markdown("**Passages**")
    st.dataframe(
        passages_frame(answer.passages),
        hide_index=True,
        column_config={
            "score": st.column_config.NumberColumn(format="%.3f"),
            # the file name whole: at "medium" a name like sandridge_operations_agreement.docx was cut off
            "document": st.column_config.TextColumn(width="large"),
            "page / section / speaker": st.column_config.TextColumn(width="medium"),
        },
        key=f"{key}-table",
    )
    for p in sorted(answer.passages, key=lambda p: p.rank):
        st.markdown(f'<span id="{passage_anchor(key, p.rank)}"></span>', unsafe_allow_html=True)
        label = " · ".join(part for part in (f"[{p.rank}] {short_name(p.doc)}", where(p), f"score {p.score:.3f}") if part)
        with st.expander(label, key=f"{key}-exp-{p.rank}"):
            st.caption(
                f"{p.doc}, characters {p.char_start:,}–{p.char_end:,}"
                + (f" (the retrieved chunk {p.chunk_start:,}–{p.chunk_end:,}, the rest in grey is the text around it)"
                   if p.chunk_start is not None else "") + "; "
                + (f"prompt position {p.prompt_index + 1} ({p.prompt_zone})" if p.prompt_index is not None else "not in the prompt")
            )
            st.html(highlight(p, answer.evidence))


def render_maps(answer: Answer, doc_lengths: Mapping[str, int], key: str) -> None:
    """The prompt map, then the document map, each the full width: side by side, the document names left the
    document map a bar a few pixels wide, its 0% and 100% labels touching."""
    prompt_chart, doc_chart = prompt_map(answer), document_map(answer, doc_lengths)
    if prompt_chart is not None:
        st.markdown("**Prompt map**: where each section's note sat in the combining prompt (each passage "
                    "at the place of the note it is a source of)" if answer.mode == "sections" else
                    "**Prompt map**: where each passage sat in the prompt (models read the start and end best)")
        st.altair_chart(prompt_chart, width="stretch", height=display_height(prompt_chart), key=f"{key}-prompt-map")
    if doc_chart is not None:
        st.markdown("**Document map**: where each passage came from in its document")
        st.altair_chart(doc_chart, width="stretch", height=display_height(doc_chart), key=f"{key}-doc-map")


def render_notes(answer: Answer) -> None:
    """Mode `sections`: every section read, in order, with its note and whether it went into the answer."""
    if not answer.notes:
        return
    used = sum(n.used for n in answer.notes)
    with st.expander(f"Sections read: {len(answer.notes)}, {used} noted into the answer"):
        for n in answer.notes:
            place = f"Section {n.section} · characters {n.char_start:,}–{n.char_end:,} · relevance {n.relevance:.2f}"
            if n.used:
                sources = ", ".join(f"[{rank}]" for rank in n.sources)
                why = f"  \n:orange[{html.escape(n.reason)}]" if n.reason else ""  # a note quoting its passages
                st.markdown(f"**{place} · note citing {sources}**{why}  \n{html.escape(n.text)}")
            else:
                st.markdown(f":gray[{place} · not used: {html.escape(n.reason)}]")


def render_meta(answer: Answer) -> None:
    timings = answer.timings or {}
    parts = [f"mode {answer.mode}"]
    if answer.prompt_tokens:
        parts.append(f"{answer.prompt_tokens:,} prompt tokens")
    if answer.model:
        parts.append(f"{answer.model.name} (window {answer.model.context_window:,})")
    if answer.relevance:
        parts.append(f"relevance {answer.relevance['score']:.2f}")
    if "total_s" in timings:
        parts.append(f"{timings['total_s']:.1f} s")
    st.caption(" · ".join(parts))
    searched = searched_line(answer, lambda name: f"**{name}**")
    if searched:
        st.caption(searched)


def render_answer_text(answer: Answer, key: str) -> None:
    """The answer itself, or why there is none: the error, or that no passage was relevant enough (then the model
    never read them); an answer in which the model says the passages do not state it is shown with a note."""
    if answer.error:
        st.error(answer.error)
    elif answer.abstained and not answer.prompt_tokens:  # refused before the model read anything
        r = answer.relevance or {}
        why = (f" (relevance {r['score']:.2f}: best passage {r['passage']:.2f}, best sentence {r['sentence']:.2f}, "
               f"{r['coverage']:.0%} of the question's words found)") if r else ""
        st.info(
            f"No passage in the library was relevant enough to answer this question{why}. "
            "Try rephrasing it, choosing another document, or adding the document that holds the answer."
        )
    else:
        st.markdown(link_citations(mark_unsupported(answer), {p.rank for p in answer.passages}, key),
                    unsafe_allow_html=True)
        if answer.support is not None and answer.support.verdict != "supported":
            st.caption(f"Support check: {answer.support.verdict}. Underlined: what the passages do not state "
                       "(hover for why).")
        if answer.generated:
            st.caption(f"The model's own answer: {answer.generated}")
        if answer.abstained:
            st.caption("The model says the passages do not state this: check the passages below.")


def render_answer(qa: LongDocQA, answer: Answer, doc_lengths: Mapping[str, int], key: str) -> None:
    """The whole answer: text, metadata and evidence, then the two maps, then the passages."""
    render_answer_text(answer, key)
    if answer.error:
        return
    render_meta(answer)
    render_notes(answer)
    render_quote(qa, answer, key)
    render_evidence(answer)
    if answer.passages:
        render_maps(answer, doc_lengths, key)
        render_passages(answer, key)
