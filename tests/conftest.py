"""Tests never reach a model hub: every model comes from an installed package."""

import os
from pathlib import Path

import pytest

DEV_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared beside the checkout, as in CI

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# A developer's own longdoc.toml or LONGDOC_* variables must not change what the tests see.
for _name in [n for n in os.environ if n.startswith("LONGDOC_")]:
    del os.environ[_name]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Say plainly what is missing, rather than let the tests that read dev documents fail one by one."""
    if not DEV_DATA.is_dir():
        pytest.exit(f"the tests read dev documents from {DEV_DATA}, which does not exist: check out shared/ "
                    "beside this repository (CI has it there)", returncode=4)
