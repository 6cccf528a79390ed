"""Which backend holds the library: the `vector_store` setting, read in one place.

    faiss                                     the embedded store in `index_dir` (the default)
    postgresql://USER[:PASS]@HOST:PORT/DB     PostgreSQL with pgvector (`postgres://` too)
    milvus://HOST:PORT[/PREFIX]               Milvus, its gRPC port; PREFIX names the collections (default longdoc)

The engines' clients are imported only when their backend is chosen, so the embedded default needs neither.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from index.base import LibraryMeta, StoreError, VectorStore

EMBEDDED = "faiss"


def _open_faiss(location: str, index_dir: Path, meta: LibraryMeta) -> VectorStore:
    from index.faiss_store import FaissStore

    return FaissStore.open(index_dir, meta)


def _open_pgvector(location: str, index_dir: Path, meta: LibraryMeta) -> VectorStore:
    try:
        from index.pgvector_store import PgVectorStore
    except ImportError as exc:
        raise _missing("PostgreSQL", "pgvector", exc) from None
    return PgVectorStore.open(location, meta)


def _open_milvus(location: str, index_dir: Path, meta: LibraryMeta) -> VectorStore:
    try:
        from index.milvus_store import MilvusStore
    except ImportError as exc:
        raise _missing("Milvus", "milvus", exc) from None
    return MilvusStore.open(location, meta)


def _missing(engine: str, extra: str, exc: ImportError) -> StoreError:
    return StoreError(f"a library on {engine} needs its client ({exc.name} is not installed): "
                      f"pip install 'longdoc-qa[{extra}]'")


# One opener per kind, all with one signature; the scheme of `vector_store` picks the key.
BACKENDS: dict[str, Callable[[str, Path, LibraryMeta], VectorStore]] = {
    EMBEDDED: _open_faiss,
    "postgresql": _open_pgvector,
    "postgres": _open_pgvector,
    "milvus": _open_milvus,
}


def backend_kind(location: str) -> str:
    """The BACKENDS key for a `vector_store` value.

    Raises:
        StoreError: a value that names no backend.
    """
    try:
        kind = EMBEDDED if location == EMBEDDED else urlsplit(location).scheme
    except ValueError:  # urlsplit refuses a malformed host, e.g. an unclosed IPv6 bracket
        kind = ""
    if kind not in BACKENDS or (kind != EMBEDDED and "://" not in location):
        raise StoreError(
            f"vector_store={redact(location)!r} names no backend: use 'faiss', "
            "'postgresql://USER[:PASS]@HOST:PORT/DB' or 'milvus://HOST:PORT'"
        )
    return kind


def open_store(location: str, index_dir: Path, meta: LibraryMeta) -> VectorStore:
    """Open (creating if new) the library `location` names, built with the embedder `meta` describes.

    Example:
        >>> store = open_store("faiss", Path("~/.longdoc/index"), LibraryMeta("embedded:all-MiniLM-L6-v2", 384))
        >>> store = open_store("postgresql://longdoc:pw@127.0.0.1:5432/library", Path(), meta)   # doctest: +SKIP

    Raises:
        StoreError: no such backend, the engine cannot be reached or refuses us, or the library was built
            with another embedder.
    """
    return BACKENDS[backend_kind(location)](location, index_dir, meta)


def recorded_meta(location: str, index_dir: Path) -> dict | None:
    """What an existing embedded library records it was built with (its `LibraryMeta` as a dict), read without
    opening it; None for a new or unreadable one, and for an engine, whose record is read as it is opened."""
    if backend_kind(location) != EMBEDDED:
        return None
    from index.faiss_store import MARKER_FILE

    try:
        found = json.loads((Path(index_dir).expanduser() / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def has_library(index_dir: Path) -> bool:
    """Whether the embedded library's folder holds a library (its marker file), read without opening it."""
    from index.faiss_store import MARKER_FILE

    return (Path(index_dir).expanduser() / MARKER_FILE).is_file()


def redact(location: str) -> str:
    """The URL without its password (in the user part or a `password=` parameter), for messages and `to_dict`."""
    location = _PASSWORD_PARAMETER.sub(r"\1***", location)
    return _USER_PASSWORD.sub(r"\1***\2", location)


# user:password@ after the scheme; password=... in a query string or a key=value connection string
_USER_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^:/@?#]*:)[^/?#]*(@)", re.IGNORECASE)  # to the last @
_PASSWORD_PARAMETER = re.compile(r"((?:^|[?&\s])password=)[^&\s]*", re.IGNORECASE)
