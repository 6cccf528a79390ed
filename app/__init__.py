"""longdoc-qa: question answering over long documents with a YaRN-extended local Llama.

`from app import LongDocQA` is the public entry point; see `app.api`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.api import LongDocQA


def __getattr__(name: str):
    # Imported on first use: `import app.settings` (e.g. from the CLI's --help) should not load torch.
    if name == "LongDocQA":
        from app.api import LongDocQA

        return LongDocQA
    raise AttributeError(name)


__all__ = ["LongDocQA"]
