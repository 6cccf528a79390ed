"""The tool's own error types. Their messages are written for the user: the CLI and UI print them as they are."""

from __future__ import annotations


class LongDocError(Exception):
    """Base of every error the tool reports to a user instead of a traceback."""


class DocumentNotFound(LongDocError):
    """A `doc=` names no ingested document."""


class EmptyIndex(LongDocError):
    """A question was asked before any document was ingested."""


class PromptTooLong(LongDocError):
    """The question alone does not fit the model's window."""
