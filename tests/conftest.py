"""Tests never reach a model hub: every model comes from an installed package."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# A developer's own longdoc.toml or LONGDOC_* variables must not change what the tests see.
for _name in [n for n in os.environ if n.startswith("LONGDOC_")]:
    del os.environ[_name]
