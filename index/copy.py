"""Moving a library between backends without embedding again: `longdoc index copy --to URL`.

Every document goes across with its text, chunk records, stored vectors and names, one atomic `add` each, so
a copy stopped half-way leaves whole documents behind and running it again finishes it: a document already
in the target (same content, same chunking) is not copied twice, only given any names it lacks there.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from index.base import DocumentInfo, StoreError, VectorStore


@dataclass
class CopyReport:
    """What a copy did: documents copied, and documents the target already held."""

    copied: list[DocumentInfo] = field(default_factory=list)
    present: list[DocumentInfo] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def chunks(self) -> int:
        return sum(d.chunks for d in self.copied)


def copy_library(source: VectorStore, target: VectorStore, show_progress: bool = False) -> CopyReport:
    """Copy every document of `source` into `target`, in the order they were added.

    Raises:
        StoreError: the two libraries hold vectors of different embedders; or either engine fails (the
            documents copied until then stay, whole).
    """
    if source.meta != target.meta:
        raise StoreError(
            f"{source.where} holds {source.meta.embedder} vectors ({source.meta.dim} dimensions, "
            f"{source.meta.precision}) and {target.where} {target.meta.embedder} ({target.meta.dim}, "
            f"{target.meta.precision}): a copy keeps the vectors, so both must come from one embedder"
        )
    started = time.perf_counter()
    report = CopyReport()
    for info in tqdm(source.documents(), desc="Copying", unit="doc", disable=not show_progress):
        there = target.get(info.doc_id)
        if there is None or there.chunking != info.chunking:
            first = dataclasses.replace(info, aliases=[])
            there = target.add(first, source.document_text(info.doc_id), source.chunks(info.doc_id),
                               source.vectors(info.doc_id))
            report.copied.append(info)
        else:
            report.present.append(info)
        for name in info.names:  # one at a time: each may have to be taken from another document there
            if name not in there.names:
                there = target.add_name(info.doc_id, name)
    report.seconds = time.perf_counter() - started
    return report
