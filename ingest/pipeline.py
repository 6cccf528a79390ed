"""From the paths a user names to the files to load: folders expanded, unsupported files reported."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ingest.loaders import SUPPORTED_EXTENSIONS
from ingest.types import IngestError


def find_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[IngestError]]:
    """Expand `paths` into supported files, in a stable order, and the reasons for everything skipped.

    Folders are walked recursively in sorted order; hidden files and folders (name starting with ".") inside
    them are passed over silently (editor and OS litter such as .DS_Store). Everything else that cannot be
    loaded, a missing path or an unsupported extension, named directly or found in a folder, becomes an
    IngestError entry so the caller can print one line for each. A file named twice is returned once.

    Example:
        >>> files, skipped = find_files(["sample_docs"])
    """
    files: list[Path] = []
    skipped: list[IngestError] = []
    seen: set[Path] = set()

    def take(path: Path) -> None:
        if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
            skipped.append(IngestError(path, f"unsupported file type {path.suffix or '(no extension)'!r}"))
        elif (key := path.resolve()) not in seen:
            seen.add(key)
            files.append(path)

    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if any(part.startswith(".") for part in child.relative_to(path).parts) or child.is_dir():
                    continue
                if child.is_file():
                    take(child)
                else:  # a link to nothing, a pipe, a socket: named, so that every file found has its line
                    skipped.append(IngestError(child, _not_a_file(child)))
        elif path.is_file():
            take(path)
        else:
            skipped.append(IngestError(path, _not_a_file(path)))
    return files, skipped


def _not_a_file(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "a link to a file that is not there"
    return "not a regular file (a pipe or a device?)" if path.exists() else "no such file or folder"
