"""Transcripts: WebVTT, SRT, and plain "Speaker: text" lines (QMSum style); each speaker turn becomes a span.

For subtitles the document text is rebuilt from the cues, one turn a line as "Speaker: words" (consecutive
cues of one speaker join into one turn whose timestamp runs from its first cue's start to its last cue's end),
so a chunk shows who spoke. For "Speaker: text" files the text is the file content exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ingest.loaders.text import decode_text
from ingest.types import IngestError, ParsedDocument, ReadOptions, Span

# "Name: words" where the name is short, starts with a letter and holds no sentence punctuation;
# QMSum names look like "Project Manager", "Grad B", "The Chair (Hon. Anthony Rota (Nipissing, Lib.))".
_SPEAKER_LINE = re.compile(r"^(?P<speaker>[^\W\d_][^:\n]{0,150}?)[ \t]*:(?:[ \t]+(?P<rest>[^\n]*))?[ \t]*$", re.MULTILINE)
# A file counts as a transcript when most of its non-blank lines are speaker lines and speakers repeat.
MIN_TURNS = 3
MIN_SPEAKER_LINE_SHARE = 0.6

_TIMING = re.compile(
    r"^[ \t]*(?P<start>(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})[ \t]+-->[ \t]+(?P<end>(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})[^\n]*$",
    re.MULTILINE,
)
_VOICE = re.compile(r"<v(?:\.[^ \t>]*)?[ \t]+([^>]+)>")
_TAG = re.compile(r"<[^>]*>")


def looks_like_speaker_lines(text: str) -> bool:
    """True when `text` reads as "Speaker: text" turns rather than prose that happens to hold a colon.

    A line met more than once counts once: page furniture repeats word for word ("Source: ACME INC, 8-K,
    3/20/2020" under every page of a filed contract), while a meeting's turns, even "Okay.", carry a speaker and
    only sometimes repeat.
    """
    lines = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    matches = [m for line in lines if (m := _SPEAKER_LINE.match(line))]
    if len(matches) < MIN_TURNS or len(matches) < MIN_SPEAKER_LINE_SHARE * len(lines):
        return False
    return len({m.group("speaker").strip() for m in matches}) < len(matches)


def parse_speaker_lines(path: Path, text: str, name: str) -> ParsedDocument:
    """Turn spans from a "Speaker: text" file; a line without a speaker continues the turn before it."""
    turns: list[Span] = []
    for m in _SPEAKER_LINE.finditer(text):
        turns.append(Span(m.start(), m.end(), m.group("speaker").strip()))
    # each turn runs to the start of the next, so continuation lines belong to their speaker
    turns = [Span(t.start, nxt.start if nxt else len(text), t.label) for t, nxt in zip(turns, turns[1:] + [None])]
    return ParsedDocument(name=name, source=path, doc_type="transcript", text=text, turns=turns)


@dataclass
class _Cue:
    start: str
    end: str
    speaker: str | None
    words: str


def _cues(text: str) -> list[_Cue]:
    """Cues of a WebVTT or SRT file: a timing line, then text lines until a blank line."""
    cues = []
    for m in _TIMING.finditer(text):
        body_end = text.find("\n\n", m.end())
        body = text[m.end() : body_end if body_end >= 0 else len(text)].strip()
        voice = _VOICE.search(body)
        speaker = voice.group(1).strip() if voice else None
        words = " ".join(_TAG.sub("", body).split())
        if speaker is None and (named := _SPEAKER_LINE.match(words)):
            speaker, words = named.group("speaker").strip(), (named.group("rest") or "").strip()
        if words:
            cues.append(_Cue(m.group("start"), m.group("end"), speaker, words))
    return cues


def load_subtitles(path: Path, data: bytes, name: str, options: ReadOptions) -> ParsedDocument:
    """A .vtt or .srt file: one turn per run of cues by one speaker, timestamp "start --> end" in `meta`."""
    raw = decode_text(path, data).replace("\r\n", "\n").replace("\r", "\n")
    kind = path.suffix.lower().lstrip(".")
    if kind == "vtt" and not raw.lstrip().startswith("WEBVTT"):
        raise IngestError(path, "not a WebVTT file (no WEBVTT header)")
    cues = _cues(raw)
    if not cues:
        raise IngestError(path, f"no {kind.upper()} cues with text found")
    merged: list[_Cue] = []
    for cue in cues:
        if merged and cue.speaker is not None and cue.speaker == merged[-1].speaker:
            merged[-1] = _Cue(merged[-1].start, cue.end, cue.speaker, f"{merged[-1].words} {cue.words}")
        else:
            merged.append(cue)
    parts: list[str] = []
    turns: list[Span] = []
    pos = 0
    for cue in merged:
        line = f"{cue.speaker}: {cue.words}" if cue.speaker else cue.words
        turns.append(Span(pos, pos + len(line), cue.speaker or "", meta=f"{cue.start} --> {cue.end}"))
        parts.append(line)
        pos += len(line) + 1  # the "\n" joining turns
    return ParsedDocument(name=name, source=path, doc_type=kind, text="\n".join(parts), turns=turns)
