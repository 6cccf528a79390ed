"""Which ingested document a user means: a name, an id, or the path of the file they ingested."""

from __future__ import annotations

import hashlib
from pathlib import Path

from app.errors import DocumentNotFound
from index.base import DocumentInfo, VectorStore


def content_id(path: Path) -> str:
    """A document's identity is its content: the same bytes under any name are the same document."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def find_document(store: VectorStore, doc: str) -> DocumentInfo:
    """The document `doc` names: a name or id the store knows, else a file on this machine whose bytes were
    ingested (users pass the same path to `ask --doc` as to `ingest`, and a document's name is only the file's).

    Raises:
        DocumentNotFound: with the names the library holds, or, for a file, that it is not in the library as it
            is now.
    """
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
