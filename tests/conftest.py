"""Tests never reach a model hub: every model comes from an installed package. They read no data from outside
the repository either: the real documents they need ship in `tests/fixtures/` (see its SOURCES.md)."""

import os
from pathlib import Path

# Laid out like the dev data (`cuad_dev/`, `qmsum_dev/val.jsonl`, `nq_dev/`), so the eval loaders read it as is.
FIXTURES = Path(__file__).resolve().parent / "fixtures"

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# A developer's own longdoc.toml or LONGDOC_* variables must not change what the tests see.
for _name in [n for n in os.environ if n.startswith("LONGDOC_")]:
    del os.environ[_name]

# The real engines (PostgreSQL + pgvector, milvus-lite) and the `library` fixture over every backend.
pytest_plugins = ["engine_fixtures"]
