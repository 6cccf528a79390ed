"""The sidebar: add documents, the library, remove a document, and the question settings.

Ingestion and removal write the shared index, so they take the same lock as generation (`ui.app.engine`).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app.answer import ModelInfo
from app.api import LongDocQA
from app.conversation import Conversation
from app.errors import LongDocError
from app.ingestion import IngestReport
from app.settings import MODES, REORDER_CHOICES
from index.base import DocumentInfo
from ui.uploads import UPLOAD_TYPES, UploadRejected, save_upload


@dataclass
class QueryOptions:
    """What the settings panel chose for the next question; passed straight to `Conversation.stream` (the
    document searched is the conversation's focus, which the panel sets)."""

    top_k: int
    reorder: str
    mode: str
    context_chunks: int


def save_uploads(qa: LongDocQA, files) -> tuple[list[Path], list[tuple[str, str]]]:
    """Save uploads under `<index_dir>/uploads`; returns the saved paths and (file, reason) for rejected ones."""
    upload_dir = qa.settings.index_dir / "uploads"
    max_bytes = int(qa.settings.max_file_mb * 2**20)
    saved, rejected = [], []
    for f in files:
        try:
            saved.append(save_upload(f.name, f.getvalue(), upload_dir, max_bytes))
        except UploadRejected as exc:
            rejected.append((f.name, str(exc)))
    return saved, rejected


def ingest_uploads(qa: LongDocQA, lock: threading.Lock, files, conversation: Conversation) -> None:
    """Save and ingest uploads inside an `st.status` with a progress bar; every failed file gets its reason.

    One document uploaded goes into the conversation's focus: "this agreement" in the next question means it.
    Several widen the search to the whole library."""
    with st.status(f"Adding {len(files)} file(s)…", expanded=True) as status:
        paths, failed = save_uploads(qa, files)
        report = IngestReport()
        if paths:
            bar = st.progress(0.0, text="Waiting for the index…")

            def on_file(path: Path, i: int, n: int) -> None:
                bar.progress(i / n, text=f"{i + 1}/{n}: {path.name}")

            try:
                with lock:
                    report = qa.ingest(paths, on_file=on_file)
            except LongDocError as exc:
                failed.append(("upload", str(exc)))
            bar.progress(1.0, text="Done")
        failed += [(Path(file).name, reason) for file, reason in report.skipped]
        added = [d.name for d in report.ingested + report.unchanged] + [name for name, _ in report.duplicates]
        if added:
            conversation.focus_on(added[0] if len(added) == 1 else None)
        st.session_state.ingest_log = ingest_messages(report, failed)
        render_ingest_log()
        state = "error" if failed and not (report.ingested or report.unchanged or report.duplicates) else "complete"
        status.update(label=ingest_label(report, failed), state=state, expanded=bool(failed))


def ingest_label(report: IngestReport, failed: list[tuple[str, str]]) -> str:
    parts = [f"{len(report.ingested)} added"]
    if report.unchanged:
        parts.append(f"{len(report.unchanged)} already in the library")
    if report.duplicates:
        parts.append(f"{len(report.duplicates)} duplicate")
    if failed:
        parts.append(f"{len(failed)} failed")
    return ", ".join(parts) + f" ({report.seconds:.1f} s)"


def ingest_messages(report: IngestReport, failed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(kind, text) lines kept in the session, so a failed file's reason stays on screen after the next rerun."""
    lines = [("success", f"Added {d.name}: {d.chunks} chunks, {d.tokens:,} tokens") for d in report.ingested]
    lines += [("info", f"{d.name} is already in the library") for d in report.unchanged]
    lines += [("info", f"{name} has the same content as {d.name}: stored once, it answers to both names")
              for name, d in report.duplicates]
    lines += [("error", f"{name}: {reason}") for name, reason in failed]
    return lines


def render_ingest_log() -> None:
    for kind, text in st.session_state.get("ingest_log", []):
        getattr(st, kind)(text)


def render_upload(qa: LongDocQA, lock: threading.Lock, conversation: Conversation) -> None:
    st.subheader("Add documents")
    with st.form("upload", clear_on_submit=True, border=False):
        files = st.file_uploader(
            "PDF, Word, HTML, Markdown, text, or VTT/SRT transcripts",
            type=list(UPLOAD_TYPES),
            accept_multiple_files=True,
            max_upload_size=math.ceil(qa.settings.max_file_mb),
        )
        submitted = st.form_submit_button("Add to library", type="primary")
    if submitted and files:
        ingest_uploads(qa, lock, files, conversation)
    else:
        render_ingest_log()


def describe(doc: DocumentInfo) -> str:
    """One line under a document's name: "pdf · 12 pages · 40 chunks · 9,800 tokens · 2026-11-25 12:35"."""
    parts = [doc.doc_type]
    if doc.pages:
        parts.append(f"{doc.pages} page{'s' * (doc.pages != 1)}")
    parts += [f"{doc.chunks} chunks", f"{doc.tokens:,} tokens", doc.ingested_at.replace("T", " ")[:16]]
    if doc.aliases:
        parts.append(f"also named {', '.join(doc.aliases)}")
    if doc.ocr_pages:
        parts.append(doc.ocr_note)  # "2 pages read by OCR, mean confidence 94; low on p. 3"
    return " · ".join(parts)


def remove_selected(qa: LongDocQA, lock: threading.Lock) -> None:
    """`on_click` of the Remove button: runs before the script, so the library drawn after it is current."""
    name = st.session_state.remove_choice
    try:
        with lock:
            qa.remove(name)
        st.session_state.ingest_log = [("info", f"Removed {name}")]
    except LongDocError as exc:
        st.session_state.ingest_log = [("error", str(exc))]


def render_library(qa: LongDocQA, lock: threading.Lock, docs: list[DocumentInfo]) -> None:
    st.subheader(f"Library ({len(docs)})")
    if not docs:
        st.caption("No documents yet.")
        return
    damaged = qa.damaged()
    with st.container(height=min(300, 70 * len(docs)), border=False):
        for doc in docs:
            if doc.name in damaged:  # listed so it can be removed; upload it again to mend it
                st.markdown(f"**{doc.name}**  \n:red[cannot be read ({damaged[doc.name]}): upload it again or "
                            "remove it]")
            else:
                st.markdown(f"**{doc.name}**  \n:gray[{describe(doc)}]")
    with st.popover("Remove a document", width="stretch"):
        st.selectbox("Document", [d.name for d in docs], key="remove_choice")
        st.button("Remove", on_click=remove_selected, args=(qa, lock), type="primary")


def render_model(qa: LongDocQA, model: ModelInfo | None) -> None:
    """RoPE scaling with the effective window, and how the model decodes. These are the loaded model's; before
    the first question loads it (some seconds), the configured scaling is shown without loading it."""
    s = qa.settings
    if model is None:
        scaling = "none" if s.rope_scaling == "none" else f"{s.rope_scaling} × {s.rope_factor:g}"
        st.caption(f"RoPE scaling: {scaling}. The effective window is shown once the model is loaded.")
        return
    rope = model.rope_scaling or {}
    scaling = f"{rope.get('rope_type', 'none')} × {rope.get('factor', 1):g}" if rope else "none"
    native = rope.get("original_max_position_embeddings")
    if model.backend == "openai":
        scaling = scaling if rope else "not reported by the server"
        how = f"Server: {model.server}  \nTokens counted by: {model.tokenizer}"
        window = "Window (the server's)"
    else:
        how = (f"Decoding: {model.decode_weights} weights, {model.kv_cache_dtype} KV cache, "
               f"{model.attn_implementation} attention")
        window = "Effective window"
    st.caption(
        f"Model: {model.name}  \nRoPE scaling: {scaling}"
        + (f" (native {native:,})" if native else "")
        + f"  \n{window}: **{model.context_window:,} tokens**  \n{how}"
    )


def render_settings(qa: LongDocQA, docs: list[DocumentInfo], conversation: Conversation) -> QueryOptions:
    s = qa.settings
    st.subheader("Question settings")
    names = [d.name for d in docs]
    if conversation.focus not in names:  # removed since it was in focus
        conversation.widen()
    st.session_state.focus_choice = conversation.focus or ""  # "": the whole library (None would show no choice)
    st.selectbox(
        "Documents searched", ["", *names], format_func=lambda n: n or "All documents", key="focus_choice",
        on_change=lambda: conversation.focus_on(st.session_state.focus_choice or None),
        help="The conversation's document in focus: the one you uploaded last, named, or the last answer drew on.",
    )
    top_k = st.slider("Passages retrieved (top-k)", 1, 20, min(s.top_k, 20))
    reorder = st.selectbox(
        "Passage order in the prompt", REORDER_CHOICES, index=REORDER_CHOICES.index(s.reorder),
        help="important_first_last puts the best passages at the start and end, where models read best.",
    )
    mode = st.selectbox(
        "Mode", MODES, index=MODES.index(s.mode),
        help="rag: retrieved passages only; full_document: the whole document when it fits the window; sections: "
             "the document read section by section, a note each, then combined; auto: pick.",
    )
    with_context = st.toggle(
        "Passages with the text around them", value=s.context_chunks > 0,
        help="Each retrieved passage handed to the model with the chunk before and after it (context_chunks): "
             "finds more of what a meeting decided, at about 2.4 times the prompt.",
    )
    context_chunks = max(s.context_chunks, 1) if with_context else 0
    return QueryOptions(top_k=top_k, reorder=reorder, mode=mode, context_chunks=context_chunks)


def render_sidebar(qa: LongDocQA, lock: threading.Lock,
                   conversation: Conversation) -> tuple[QueryOptions, list[DocumentInfo]]:
    """Draw the sidebar; returns the chosen question settings and the library as it stands after any change."""
    with st.sidebar:
        st.title("longdoc-qa")
        render_upload(qa, lock, conversation)
        docs = qa.documents()
        render_library(qa, lock, docs)
        st.divider()
        options = render_settings(qa, docs, conversation)
    return options, docs
