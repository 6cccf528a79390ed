"""Real engines for the backend tests: PostgreSQL + pgvector and milvus-lite, started once per test session on
127.0.0.1 by the project's own code (app/local_engines.py) and stopped by their PIDs at the end.

Each test gets a library of its own on them (a fresh database; a fresh collection prefix), so tests cannot see
each other's documents. Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Callable, Iterator

import pytest

from app.local_engines import LocalEngine, free_port, start_milvus, start_postgres
from index.base import LibraryMeta, VectorStore
from index.stores import open_store

BACKENDS = ("faiss", "postgresql", "milvus")


@pytest.fixture(scope="session")
def postgres_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEngine]:
    engine = start_postgres(tmp_path_factory.mktemp("postgres"), free_port(), secrets.token_hex(8))
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def milvus_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEngine]:
    engine = start_milvus(tmp_path_factory.mktemp("milvus") / "data", free_port())
    yield engine
    engine.stop()


def new_postgres_library(engine: LocalEngine) -> str:
    """The URL of a new, empty database on `engine`."""
    import psycopg

    name = f"lib_{secrets.token_hex(6)}"
    with psycopg.connect(engine.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return engine.url.rsplit("/", 1)[0] + "/" + name


def new_milvus_library(engine: LocalEngine) -> str:
    """The URL of a collection prefix no other test uses on `engine`."""
    return f"{engine.url}/lib_{secrets.token_hex(6)}"


@pytest.fixture(params=BACKENDS)
def library(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """(vector_store, index_dir) of a new, empty library on each backend in turn."""
    if request.param == "faiss":
        return "faiss", tmp_path / "index"
    if request.param == "postgresql":
        return new_postgres_library(request.getfixturevalue("postgres_engine")), tmp_path / "index"
    return new_milvus_library(request.getfixturevalue("milvus_engine")), tmp_path / "index"


@pytest.fixture
def open_library(library: tuple[str, Path]) -> Iterator[Callable[..., VectorStore]]:
    """Opens a store on the test's library, as often as a test wants (each a separate client); closes them all."""
    opened: list[VectorStore] = []

    def _open(embedder: str = "fake:8", dim: int = 8, precision: str = "float32") -> VectorStore:
        store = open_store(library[0], library[1], LibraryMeta(embedder, dim, precision))
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()
