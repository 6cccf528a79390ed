"""The longdoc-qa browser app: `streamlit run ui/streamlit_app.py` (what `longdoc ui` runs).

Not named `app.py`: Streamlit puts this folder first on sys.path, where such a file would hide the `app` package.

The script reruns top to bottom on every interaction: it draws the sidebar, then every answer of this
session again, then handles a new question, streaming its answer as the model writes it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import streamlit as st

from app.answer import Answer
from app.api import LongDocQA
from app.conversation import Conversation
from app.errors import user_errors
from app.sections import SectionProgress
from ui.answer_view import render_answer
from ui.export import answers_csv, answers_json
from ui.sidebar import QueryOptions, render_model, render_sidebar

if TYPE_CHECKING:
    from app.engine import ReadingProgress  # the engine (and torch) load with the models, not with the page

log = logging.getLogger(__name__)


@st.cache_resource(show_spinner="Opening the index…")
def engine() -> tuple[LongDocQA, threading.Lock]:
    """One LongDocQA for every browser session (the models load once), with the lock that serialises the
    sessions' uploads and removals. Questions take no lock here: the engine admits one at a time to the
    in-process model and `generator_concurrency` at a time to a server."""
    return LongDocQA(), threading.Lock()


def text_pieces(events: Iterator[str | Answer], final: list[Answer]) -> Iterator[str]:
    """The text pieces of `LongDocQA.stream` for `st.write_stream`; the closing Answer goes into `final`."""
    for event in events:
        if isinstance(event, Answer):
            final.append(event)
        else:
            yield event


def stream_answer(conversation: Conversation, question: str, options: QueryOptions) -> Answer:
    """Stream one answer onto the page and return it; a failure comes back as an Answer carrying `error`.

    A sections answer shows a bar, "Reading DOC: section i of n", while the sections are read, before the combined
    answer streams; a document read whole, "Reading DOC: t of n tokens, read whole" (minutes on a CPU)."""
    final: list[Answer] = []
    placeholder = st.empty()
    try:
        with placeholder.container(), st.spinner("Finding passages and reading them…"):
            progress = st.empty()

            def on_progress(event: ReadingProgress) -> None:
                where = (f"section {event.done} of {event.total}" if isinstance(event, SectionProgress)
                         else f"{event.done:,} of {event.total:,} tokens, read whole")
                progress.progress(event.done / max(1, event.total), text=f"Reading {event.doc}: {where}")

            events = conversation.stream(question, **vars(options), on_progress=on_progress)
            st.write_stream(text_pieces(events, final))
    except user_errors() as exc:  # the tool's own errors: their message, as the command line prints it
        return Answer(question=question, error=str(exc))
    except Exception as exc:  # the page shows a message, the server log keeps the traceback
        log.exception("question failed: %s", question)
        return Answer(question=question, error=f"Unexpected error ({type(exc).__name__}: {exc}). See the server log.")
    placeholder.empty()
    return final[0]


def render_empty_library() -> None:
    st.info(
        "The library is empty. Add documents in the sidebar (PDF, Word, HTML, Markdown, text or "
        "VTT/SRT transcripts), then ask a question about them.",
        icon=":material/upload_file:",
    )


def render_focus(conversation: Conversation) -> None:
    """Which documents the next question searches, with one click to widen to the whole library."""
    if conversation.focus is None:
        st.caption("Questions search **the whole library**. A document you upload, name or ask about comes into "
                   "focus.")
        return
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.caption(f"Questions search **{conversation.focus}** (the document in focus).")
    right.button("Search the whole library", on_click=conversation.widen, key="widen", icon=":material/travel_explore:")


def render_history(qa: LongDocQA, history: list[Answer], doc_lengths: dict[str, int]) -> None:
    for i, answer in enumerate(history):
        with st.chat_message("user"):
            st.markdown(answer.question)
        with st.chat_message("assistant"):
            render_answer(qa, answer, doc_lengths, key=f"a{i}")


def render_downloads(history: list[Answer]) -> None:
    st.subheader(f"This session ({len(history)} question{'s' * (len(history) != 1)})")
    if not history:
        st.caption("Answers can be downloaded once you have asked a question.")
        return
    left, right = st.columns(2)
    left.download_button("JSON", answers_json(history), "answers.json", "application/json", on_click="ignore")
    right.download_button("CSV", answers_csv(history), "answers.csv", "text/csv", on_click="ignore")


def main() -> None:
    st.set_page_config(page_title="longdoc-qa", page_icon=":material/description:", layout="wide")
    try:
        qa, lock = engine()
    except user_errors() as exc:  # a setting, an engine out of reach, a spoiled library: said, not a traceback
        st.error(f"Cannot open the index: {exc}")
        st.stop()
    history: list[Answer] = st.session_state.setdefault("history", [])
    if "conversation" not in st.session_state:  # one a browser session; turns and focus carry across questions
        st.session_state.conversation = qa.chat()
    conversation: Conversation = st.session_state.conversation
    options, docs = render_sidebar(qa, lock, conversation)
    model_and_downloads = st.sidebar.container()  # filled last, so they include this run's answer

    st.header("Ask your documents")
    doc_lengths = {d.name: d.chars for d in docs}
    if not docs:
        render_empty_library()
    render_history(qa, history, doc_lengths)
    question = st.chat_input(
        "Ask a question about your documents" if docs else "Add a document first", disabled=not docs
    )
    if question:
        focus = conversation.focus
        with st.chat_message("user"):
            st.markdown(question)
        with st.chat_message("assistant"):
            answer = stream_answer(conversation, question, options)
            render_answer(qa, answer, doc_lengths, key=f"a{len(history)}")
        history.append(answer)
        if conversation.focus != focus:  # the sidebar's "Documents searched" was drawn before: draw it again
            st.rerun()
    if docs:
        render_focus(conversation)
    with model_and_downloads:
        render_model(qa, next((a.model for a in reversed(history) if a.model), None))
        st.divider()
        render_downloads(history)


main()
