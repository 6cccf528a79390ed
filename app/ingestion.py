"""Files into the index: find, hash, skip the unchanged, parse, chunk, embed, store; one report at the end.

Each file is stored on its own (atomically, by the store), so a bad or interrupted file never costs the
files before it, and the next file still goes in.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from tqdm.auto import tqdm

from app.documents import content_id
from index.base import DocumentInfo, StoreError, VectorStore
from index.embedder import Embedder
from ingest import IngestError
from ingest.chunkers import Chunker
from ingest.loaders import load_document, reading_signature
from ingest.pipeline import find_files
from ingest.types import ReadOptions

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """What one `ingest` call did: new or replaced documents, unchanged ones, duplicates, and skipped files with
    reasons.

    A duplicate is a file whose bytes are already in the library under another name (a signed and a final
    copy): it is stored once and the document answers to both names, so `doc="<either name>"` finds it.
    """

    ingested: list[DocumentInfo] = field(default_factory=list)
    unchanged: list[DocumentInfo] = field(default_factory=list)
    duplicates: list[tuple[str, DocumentInfo]] = field(default_factory=list)  # (the file's name, the document)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    seconds: float = 0.0

    @property
    def chunks(self) -> int:
        return sum(d.chunks for d in self.ingested)

    @property
    def tokens(self) -> int:
        return sum(d.tokens for d in self.ingested)


def ingest_files(
    paths: Iterable[str | Path],
    store: VectorStore,
    embedder: Embedder,
    chunker: Chunker,
    max_bytes: int,
    show_progress: bool = False,
    on_file: Callable[[Path, int, int], None] | None = None,
    options: ReadOptions = ReadOptions(),
) -> IngestReport:
    """Ingest files and folders into `store`, file by file: a file that cannot be read, parsed or stored is
    reported in `skipped` with its reason, and the others go on.

    Args:
        paths: files or folders (folders are walked for supported files).
        max_bytes: files larger than this are skipped with a reason.
        on_file: called as (path, i, n) before each file, for a UI progress bar.
        options: how files are read (OCR of PDF pages without a text layer; its progress bar shows with
            `show_progress`).
    """
    started = time.perf_counter()
    files, errors = find_files(paths)
    report = IngestReport(skipped=[(e.path, e.reason) for e in errors])
    first: dict[str, tuple[Path, str]] = {}  # each name's first file in this call, and its content id
    damaged = set(store.damaged())  # documents whose files were lost: ingested again even when unchanged
    for i, path in enumerate(tqdm(files, desc="Ingesting", unit="file", disable=not show_progress)):
        if on_file:
            on_file(path, i, len(files))
        name = path.name
        try:
            doc_id = content_id(path)
        except OSError as exc:
            report.skipped.append((str(path), f"cannot read: {exc.strerror or exc}"))
            continue
        earlier, earlier_id = first.setdefault(name, (path, doc_id))
        if earlier_id != doc_id:  # a document is known by its file name: the second would replace the first
            report.skipped.append((str(path), f"another file named {name} comes first in this ingest ({earlier}), "
                                              "with other content: rename one to ingest both"))
            continue
        try:
            signature = " | ".join(s for s in (chunker.signature, reading_signature(path, options)) if s)
            existing = store.get(doc_id)
            if existing is not None and existing.chunking == signature and doc_id not in damaged:
                if name in existing.names:
                    report.unchanged.append(existing)
                else:  # the same bytes under another name: one more name for the stored document, nothing embedded
                    report.duplicates.append((name, store.add_name(doc_id, name)))
                continue
        except StoreError as exc:  # an engine that went away: this file fails, the next may find it back
            report.skipped.append((str(path), str(exc)))
            continue
        try:
            doc = load_document(path, max_bytes=max_bytes, name=name,
                                options=dataclasses.replace(options, show_progress=show_progress))
            chunks = chunker.chunk(doc, doc_id)
        except IngestError as exc:
            report.skipped.append((exc.path, exc.reason))
            continue
        if not chunks:
            report.skipped.append((str(path), "no text to index"))
            continue
        vectors = embedder.embed_documents(
            [c.text for c in chunks], show_progress=show_progress, n_tokens=[c.n_tokens for c in chunks]
        )
        info = DocumentInfo(
            doc_id=doc_id,
            name=name,
            doc_type=doc.doc_type,
            source=str(path),
            pages=len(doc.pages),
            chunks=len(chunks),
            tokens=embedder.count_tokens(doc.text),  # whole text once: overlapping windows would double count
            chars=len(doc.text),
            ingested_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            chunking=signature,
            ocr_pages=doc.ocr.pages if doc.ocr else 0,
            ocr_confidence=doc.ocr.confidence if doc.ocr else None,
            ocr_low_pages=list(doc.ocr.low_pages) if doc.ocr else [],
        )
        try:
            report.ingested.append(store.add(info, doc.text, chunks, vectors))
            damaged.discard(doc_id)
        except StoreError as exc:  # the write is atomic: nothing of this file is stored, the rest go on
            report.skipped.append((str(path), f"not stored: {exc}"))
            continue
        log.info("ingested %s: %d chunks", name, len(chunks))
    report.seconds = time.perf_counter() - started
    return report
