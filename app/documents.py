"""Which ingested document a user means: a name, an id, or the path of the file they ingested."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from app.errors import DocumentNotFound
from index.base import DocumentInfo, VectorStore


def document_key(doc: object) -> str:
    """`doc` as the store looks it up: a name, an id or a path as text (a `Path` given for a file's path)."""
    if isinstance(doc, os.PathLike):
        return os.fspath(doc)
    if not isinstance(doc, str):
        raise DocumentNotFound(f"a document is given by its name, id or file path, not {type(doc).__name__} {doc!r}")
    return doc


def content_id(path: Path) -> str:
    """A document's identity is its content: the same bytes under any name are the same document."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def find_document(store: VectorStore, doc: str | os.PathLike) -> DocumentInfo:
    """The document `doc` names: a name or id the store knows, else a file on this machine whose bytes were
    ingested (users pass the same path to `ask --doc` as to `ingest`, and a document's name is only the file's).

    Raises:
        DocumentNotFound: with the names the library holds, or, for a file, that it is not in the library as it
            is now; or `doc` is neither text nor a path.
    """
    doc = document_key(doc)
    info = store.get(doc)
    if info is not None:
        return info
    path = Path(doc)
    if path.is_file():
        info = store.get(content_id(path))
        if info is not None:
            return info
        raise DocumentNotFound(f"{doc} is not in the library as it is now: it was never ingested, or has changed "
                               "since (ingest it to add or update it)")
    names = ", ".join(d.name for d in store.documents()) or "none"
    raise DocumentNotFound(f"no ingested document named {doc!r} (ingested: {names})")
