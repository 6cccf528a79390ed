"""Uploaded files onto disk, safely, so the ingestion pipeline can read them like any other file.

A browser sends a file name we do not control ("../../etc/passwd", "C:\\x\\msa.pdf", "<script>.txt"), so
only the base name is kept, restricted to safe characters. Each upload goes in a folder named by its
content hash: the same bytes uploaded twice land on the same path (and the index sees them unchanged),
while two different files that share a name never overwrite each other.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from ingest.loaders import LOADERS

# What the loaders read; the uploader offers only these.
UPLOAD_TYPES = tuple(suffix.lstrip(".") for suffix in LOADERS)

_UNSAFE = re.compile(r"[^\w .,()\-]+")
_MAX_NAME_CHARS = 120


class UploadRejected(ValueError):
    """An upload that is not saved; the message says why, for the per-file error list."""


def safe_filename(name: str) -> str:
    """The base name of `name` with anything but letters, digits, space, `.,_-()` replaced by `_`.

    Example:
        >>> safe_filename("../../etc/pa$$wd.txt")
        'pa_wd.txt'
    """
    base = PureWindowsPath(PurePosixPath(name).name).name  # strips both / and \ directories
    cleaned = _UNSAFE.sub("_", base).strip(" .")
    stem, dot, suffix = cleaned.rpartition(".")
    if not dot:
        stem, suffix = cleaned, ""
    stem = stem[: _MAX_NAME_CHARS - len(suffix) - 1].strip(" .") or "upload"
    return f"{stem}.{suffix}" if suffix else stem


def save_upload(name: str, data: bytes, upload_dir: Path, max_bytes: int) -> Path:
    """Write one upload to `upload_dir/<content hash>/<safe name>` and return that path.

    Raises:
        UploadRejected: the file is too large, empty, or not a supported type.
    """
    filename = safe_filename(name)
    suffix = Path(filename).suffix.lower().lstrip(".")
    if suffix not in UPLOAD_TYPES:
        raise UploadRejected(f"unsupported file type '.{suffix}'; supported: {', '.join(UPLOAD_TYPES)}")
    if not data:
        raise UploadRejected("the file is empty")
    if len(data) > max_bytes:
        raise UploadRejected(f"{len(data) / 2**20:.1f} MB is over the {max_bytes / 2**20:.0f} MB limit (max_file_mb)")
    folder = upload_dir / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    if not path.exists():
        path.write_bytes(data)
    return path
