"""The tool's own error types. Their messages are written for the user: the CLI and UI print them as they are."""

from __future__ import annotations


class LongDocError(Exception):
    """Base of every error the tool reports to a user instead of a traceback."""


class DocumentNotFound(LongDocError):
    """A `doc=` names no ingested document."""


class EmptyIndex(LongDocError):
    """A question was asked before any document was ingested."""


class EmptyQuestion(LongDocError):
    """A question with nothing to search for (refused before any model loads)."""


def require_question(question: object) -> None:
    """Refuse what is not a question: not text, only spaces (EmptyQuestion), or no word at all ("?!")."""
    if not isinstance(question, str):
        raise LongDocError(f"the question must be text, got {type(question).__name__}")
    if not question.strip():
        raise EmptyQuestion("the question is empty")
    if not any(ch.isalnum() for ch in question):
        raise EmptyQuestion(f"the question {question.strip()!r} has no words to search for")


class PromptTooLong(LongDocError):
    """The question alone does not fit the model's window."""


def user_errors() -> tuple[type[Exception], ...]:
    """Every error type whose message is meant for the user: the CLI and UI show these without a traceback.

    A function, not a constant, so importing this module does not load the index's dependencies.
    """
    from app.llm.rope import RopeError
    from index.base import StoreError
    from index.embedder import EmbedderError
    from ingest.types import IngestError

    return (LongDocError, RopeError, StoreError, EmbedderError, IngestError)  # SettingsError is a LongDocError
