"""`longdoc eval ...`: evaluations a user runs on their own machine, each writing a table, JSON and a plot.

`eval_app` is a plain typer group, one command per function; the main CLI mounts it with
`app.add_typer(eval_app, name="eval")`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from app.errors import user_errors
from app.evals.recall import BUDGET_TOKENIZERS, BUDGET_TOKENS, RECALL_K
from app.settings import CHUNKERS, PIN_OPENING_CHOICES, RETRIEVERS, Settings

OUT = Path("eval-results")  # where each evaluation writes, unless --out says otherwise
eval_app = typer.Typer(help="Measure retrieval and long-context reading on your own setup.", no_args_is_help=True)
console = Console()
log = logging.getLogger(__name__)


@eval_app.command()
def recall(
    data: Annotated[str, typer.Option(help="cuad, qmsum, ectsum, a folder laid out like cuad_dev or ectsum_dev, or a "
                                           "QMSum-style .jsonl.")] = "cuad",
    quick: Annotated[bool, typer.Option("--quick", help="Two short documents: under a minute on 2 cores.")] = False,
    chunker: Annotated[Optional[str], typer.Option(help=f"{', '.join(CHUNKERS)} (default from settings).")] = None,
    retriever: Annotated[Optional[str], typer.Option(help=f"{', '.join(RETRIEVERS)} (default from settings).")] = None,
    pin_opening: Annotated[Optional[str], typer.Option(help=f"{', '.join(PIN_OPENING_CHOICES)}: keep the document's "
                                                            "opening among the passages (default from settings).")] = None,
    context_chunks: Annotated[Optional[int], typer.Option(help="Chunks of context handed on with each passage, "
                                                          "on each side (default from settings).")] = None,
    vector_store: Annotated[Optional[str], typer.Option(help="Measure on this engine (postgresql://..., milvus://...), "
                                                    "which must be empty; default: an embedded library in a "
                                                    "temporary folder.")] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Passages counted for recall@k.")] = RECALL_K,
    budget: Annotated[int, typer.Option(min=1, help="Generator tokens of ranked passages for the equal-budget recall.")] = BUDGET_TOKENS,
    budget_tokenizer: Annotated[str, typer.Option(help=f"Count the budget in {' or '.join(BUDGET_TOKENIZERS)} tokens.")] = BUDGET_TOKENIZERS[0],
    out: Annotated[Path, typer.Option(help="Folder for the JSON and PNG.")] = OUT,
) -> None:
    """Evidence recall@k, MRR and recall at an equal token budget on a question set with gold spans."""
    from app.errors import LongDocError
    from app.evals.datasets import load_eval_set
    from app.evals.recall import recall_table, run_recall, write_report

    if budget_tokenizer not in BUDGET_TOKENIZERS:
        raise typer.BadParameter(f"{budget_tokenizer!r} is not one of {', '.join(BUDGET_TOKENIZERS)}",
                                 param_hint="--budget-tokenizer")
    _output_folder(out)
    try:
        eval_set = load_eval_set(data, quick=quick)
        if not eval_set.questions:
            raise LongDocError(f"--data {data}: no questions with gold evidence in it")
        settings = Settings.load(chunker=chunker, retriever=retriever, pin_opening=pin_opening,
                                 context_chunks=context_chunks, vector_store=vector_store or "faiss")
    except ValueError as exc:  # SettingsError is a ValueError
        raise typer.BadParameter(str(exc)) from None
    except LongDocError as exc:  # DataMissing: the dev data is not beside the repository
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"{eval_set.name}: {len(eval_set.documents)} documents, {len(eval_set.questions)} questions")
    try:
        report = run_recall(eval_set, settings, k=k, budget_tokens=budget, budget_tokenizer=budget_tokenizer,
                            show_progress=True)
    except user_errors() as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(recall_table(report))
    console.print(f"ingested {report.doc_tokens:,} tokens into {report.chunks} chunks in {report.ingest_s:.1f} s")
    json_path, png_path = write_report(report, out)
    console.print(f"wrote {json_path} and {png_path}")


@eval_app.command()
def niah(
    quick: Annotated[bool, typer.Option("--quick", help="1k and 2k tokens at depths 0, 50, 100: minutes on 2 cores.")] = False,
    lengths: Annotated[Optional[str], typer.Option(help="Haystack lengths in tokens, e.g. 2k,8k,16k.")] = None,
    depths: Annotated[Optional[str], typer.Option(help="Needle depths in percent, e.g. 0,25,50,75,100.")] = None,
    haystack: Annotated[Optional[list[Path]], typer.Option(help="A file or folder to cut haystacks from (repeat for more; default: the dev contracts).")] = None,
    modes: Annotated[str, typer.Option(help="rag, full_document, or both as rag,full_document: full_document at 16K "
                                             "takes minutes per question on 2 cores.")] = "rag,full_document",
    out: Annotated[Path, typer.Option(help="Folder for niah.json and the heatmaps.")] = OUT,
    adapter: Annotated[Optional[Path], typer.Option(help="A `longdoc adapt` folder: the same needles without it "
                                                         "(out/before) and with it merged into the generator "
                                                         "(out/after), full_document in the configured scaling only; "
                                                         "the haystack defaults to the documents it held out.")] = None,
) -> None:
    """Needle in a haystack: a planted fact at each depth of documents of each length, rag (each reorder
    strategy) beside full_document (yarn and no RoPE scaling); a table, JSON and one heatmap per mode."""
    from app.errors import LongDocError
    from app.evals.niah import FULL_DEPTHS, FULL_LENGTHS, QUICK_DEPTHS, QUICK_LENGTHS, SCALINGS, parse_sizes, run_niah
    from app.reorder import REORDERERS

    _output_folder(out)
    try:
        sizes = parse_sizes(lengths) if lengths else (QUICK_LENGTHS if quick else FULL_LENGTHS)
        where = _whole_numbers(depths, "--depths") if depths else (QUICK_DEPTHS if quick else FULL_DEPTHS)
        if not all(0 <= d <= 100 for d in where):
            raise typer.BadParameter(f"depths are percentages from 0 to 100, got {depths}")
        chosen = [m.strip() for m in modes.split(",") if m.strip()]
        if not chosen or not set(chosen) <= {"rag", "full_document"}:
            raise typer.BadParameter(f"modes are rag and/or full_document, got {modes!r}")
        missing = [str(p) for p in haystack or [] if not p.exists()]
        if missing:  # said before the models load
            raise LongDocError(f"--haystack {', '.join(missing)}: no such file or folder")
        settings = Settings.load()
        if adapter is not None:
            from app.adapt import held_out_files

            haystack = haystack or held_out_files(adapter)
        scalings = (settings.rope_scaling,) if adapter is not None else tuple(SCALINGS)
        runs = [("", settings)] if adapter is None else [
            ("before", settings), ("after", settings.replace(generator_adapter=str(adapter)))]
        reports = [(label, run_niah(run_settings, sizes, where, haystack or [],
                                    strategies=tuple(REORDERERS) if "rag" in chosen else (),
                                    scalings=scalings if "full_document" in chosen else ()))
                   for label, run_settings in runs]
    except ValueError as exc:  # a depth that is not a number; SettingsError
        raise typer.BadParameter(str(exc)) from None
    except LongDocError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    for label, report in reports:
        if label:
            console.print(f"[bold]{label}[/bold]: {report.model.get('adapter') or 'no adapter'}", highlight=False)
        console.print(report.table())
        paths = report.save(out / label)
        console.print(f"{len(report.cells)} questions in {report.seconds:.0f} s; wrote {', '.join(map(str, paths))}")
    if adapter is not None:
        before, after = (r.summary() for _, r in reports)
        for key in before:
            console.print(f"{key}: {before[key]['correct']}/{before[key]['ran']} before, "
                          f"{after[key]['correct']}/{after[key]['ran']} with the adapter", highlight=False)


@eval_app.command()
def position(
    quick: Annotated[bool, typer.Option("--quick", help="5 questions, k=10, gold at 0, k/2, k-1: minutes on 2 cores.")] = False,
    k: Annotated[Optional[str], typer.Option("--k", help="Passages per prompt, e.g. 10,20.")] = None,
    n: Annotated[Optional[int], typer.Option("--n", min=1, help="Questions (the first n of the file).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="The NQ oracle .jsonl (default: the dev copy).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for position.json and position.png.")] = OUT,
) -> None:
    """Lost in the middle: accuracy with the gold passage at each rank among k hard distractors, under each
    reorder strategy and under a retriever's own ranking; a table, JSON and the U-curve plot."""
    from app.errors import LongDocError
    from app.evals.position import FULL_KS, FULL_N, NQ_ORACLE, QUICK_KS, QUICK_N, run_position

    _output_folder(out)
    try:
        ks = _whole_numbers(k, "--k") if k else (QUICK_KS if quick else FULL_KS)
        report = run_position(Settings.load(), n or (QUICK_N if quick else FULL_N), ks, quick=quick,
                              data=data or NQ_ORACLE)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    except LongDocError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    for table in report.tables():
        console.print(table)
    paths = report.save(out)
    console.print(f"{len(report.trials)} prompts in {report.seconds:.0f} s; wrote {', '.join(map(str, paths))}")


def _output_folder(out: Path) -> None:
    """Make the folder an evaluation writes to, or say why it cannot be: before hours of work, not after."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(f"{out}: cannot be the results folder ({exc.strerror})", param_hint="--out") \
            from None


def _whole_numbers(text: str, option: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"whole numbers separated by commas, e.g. 10,20; got {text!r}",
                                 param_hint=option) from None
