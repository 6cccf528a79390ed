"""`longdoc`: the terminal way in. Each command parses, calls the library (`LongDocQA`, or for the model and
engine commands the module that runs them) and prints; nothing more.

The tool's own errors (`LongDocError`, `SettingsError`) print as one red line and exit 1, never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from app.batch import Question
from app.conversation import searched_line
from app.errors import EmptyIndex, LongDocError, user_errors
from app.evals.cli import eval_app
from app.settings import MODES, REORDER_CHOICES, Settings, SettingsError

if TYPE_CHECKING:
    from app.answer import Answer, Passage

app = typer.Typer(help="Ask questions of documents too long for a model to read at once.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

IndexOpt = Annotated[Optional[Path], typer.Option("--index", help="Index directory (default from settings).")]
DocOpt = Annotated[Optional[str], typer.Option("--doc", help="Restrict to one ingested document: its name, id or file path.")]
TopKOpt = Annotated[Optional[int], typer.Option("--top-k", help="Passages to retrieve.")]
ReorderOpt = Annotated[
    Optional[str], typer.Option("--reorder", help=f"Prompt order: {', '.join(REORDER_CHOICES)}.")
]
ModeOpt = Annotated[Optional[str], typer.Option("--mode", help=f"{', '.join(MODES)}.")]
ContextOpt = Annotated[Optional[int], typer.Option("--context-chunks",
                                                  help="Chunks of text around each passage handed on with it.")]


def _qa(index: Path | None, *, existing: bool = False, **overrides):
    """The library; with `existing`, for a command that only reads it, refused when the embedded library's folder
    holds none (a mistyped --index is said at once, not made into a new, empty library after loading the
    embedder)."""
    from app.api import LongDocQA  # heavy imports only for commands that need the models
    from index.stores import EMBEDDED, backend_kind, has_library

    settings = Settings.load(index_dir=index, **overrides)
    if existing and backend_kind(settings.vector_store) == EMBEDDED and not has_library(settings.index_dir):
        raise EmptyIndex(f"no library at {settings.index_dir} yet: `longdoc ingest PATH"
                         f"{'' if index is None else f' --index {index}'}` makes one")
    return LongDocQA(settings=settings)


def _answer_options(top_k: int | None, reorder: str | None, mode: str | None, context_chunks: int | None) -> dict:
    """The answer options given on the command line, as settings overrides: checked as the library opens, so a
    bad value fails at once instead of after seconds of loading models."""
    given = {"top_k": top_k, "reorder": reorder, "mode": mode, "context_chunks": context_chunks}
    return {k: v for k, v in given.items() if v is not None}


def command(fn: Callable | None = None, *, group: typer.Typer | None = None, name: str | None = None):
    """Register a subcommand (on `app`, or on `group` as `name`) whose tool errors print as one red line and exit
    1, never as a traceback."""
    if fn is None:
        return functools.partial(command, group=group, name=name)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except user_errors() as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return (group or app).command(name)(wrapper)


@command
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files or folders.")],
    index: IndexOpt = None,
) -> None:
    """Ingest files and folders (pdf, docx, html, md, txt, vtt, srt); one line per skipped file with the reason."""
    if any(not p.strip() for p in paths):  # an unset shell variable: Path("") is ".", the whole current folder
        raise typer.BadParameter("an empty path was given; name a file or a folder ('.' for this one)",
                                 param_hint="PATHS")
    report = _qa(index).ingest([Path(p) for p in paths], show_progress=True)
    for file, reason in report.skipped:
        err.print(f"[yellow]skipped[/yellow] {file}: {reason}", highlight=False, soft_wrap=True)  # one line a file
    for name, info in report.duplicates:
        console.print(f"{name}: the same content as {info.name}; stored once, it answers to both names",
                      highlight=False)
    console.print(
        f"{len(report.ingested)} ingested ({report.chunks} chunks, {report.tokens:,} tokens), "
        f"{len(report.unchanged)} unchanged, {len(report.duplicates)} duplicate, {len(report.skipped)} skipped "
        f"in {report.seconds:.1f} s"
    )


@command
def docs(index: IndexOpt = None) -> None:
    """List the ingested documents."""
    qa = _qa(index, existing=True)
    documents = qa.documents()
    if not documents:
        console.print("The library is empty: `longdoc ingest PATH` adds documents.")
        return
    # A record per document rather than a table: a terminal of 80 columns cut the names to "ediets_co…", and the
    # name and the id (or any 4 or more of its first characters) are what `--doc` and `remove` take.
    for d in documents:
        also = f" (also {', '.join(d.names[1:])})" if len(d.names) > 1 else ""
        ingested = datetime.fromisoformat(d.ingested_at).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        facts = [d.doc_id, d.doc_type, *([f"{d.pages} pages"] if d.pages else []), f"{d.chunks} chunks",
                 f"{d.tokens:,} tokens", f"ingested {ingested}"]
        console.print(f"{d.names[0]}{also}\n    " + " · ".join(facts), markup=False, highlight=False, soft_wrap=True)
    console.print(f"{len(documents)} documents, {sum(d.chunks for d in documents):,} chunks, "
                  f"{sum(d.tokens for d in documents):,} tokens", highlight=False)
    for d in documents:  # scans: a line each at the end
        if d.ocr_pages:
            console.print(f"{d.name}: {d.ocr_note}", highlight=False, soft_wrap=True)
    for name, reason in qa.damaged().items():
        err.print(f"[red]cannot be read:[/red] {name} ({reason}): ingest its file again, or `longdoc remove {name}`",
                  highlight=False, soft_wrap=True)


@command(name="settings")
def show_settings(
    names: Annotated[Optional[list[str]], typer.Argument(help="Settings to show (default: all).")] = None,
) -> None:
    """Every setting: its value here (defaults, longdoc.toml, LONGDOC_* variables), what it does, what it takes."""
    settings = Settings.load()
    values, fields = settings.to_dict(), settings.described()
    unknown = sorted(set(names or ()) - set(fields))
    if unknown:
        raise SettingsError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(fields)}")
    table = Table("setting", "value", "what it does", show_lines=True)
    for name, (help_text, default, allowed) in fields.items():
        if names and name not in names:
            continue
        value = json.dumps(values[name]) if isinstance(values[name], str) else str(values[name])
        changed = f"\n[dim](default {json.dumps(default) if isinstance(default, str) else default})[/dim]" \
            if default is not None and values[name] != default else ""
        table.add_row(name, value + changed, help_text + (f" [dim]({allowed})[/dim]" if allowed else ""))
    console.print(table)
    console.print("Set one in longdoc.toml (`top_k = 8`) or the environment (LONGDOC_TOP_K=8).", highlight=False)


@command
def remove(doc: Annotated[str, typer.Argument(help="Document name, id or file path.")], index: IndexOpt = None) -> None:
    """Remove a document and its chunks from the index (or one of its names, when it has several)."""
    info = _qa(index, existing=True).remove(doc)
    others = [n for n in info.names if n != doc]
    if doc in info.names and others:
        console.print(f"removed the name {doc}; the document stays as {', '.join(others)}")
    else:
        console.print(f"removed {info.name} ({info.chunks} chunks)")


@command
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    doc: DocOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer JSON.")] = False,
    top_k: TopKOpt = None,
    reorder: ReorderOpt = None,
    mode: ModeOpt = None,
    context_chunks: ContextOpt = None,
    index: IndexOpt = None,
) -> None:
    """Answer one question, with the passages behind it and where each sat."""
    qa = _qa(index, existing=True, **_answer_options(top_k, reorder, mode, context_chunks))
    if as_json:
        with ReadingBar() as bar:
            answer = qa.ask(question, doc=doc, on_progress=bar.update)
        print(json.dumps(answer.to_dict(), ensure_ascii=False))
        return
    _print_passages(_print_streamed(lambda bar: qa.stream(question, doc=doc, on_progress=bar.update)))


CHAT_COMMANDS = {
    "/doc NAME": "keep to one document (its name, id or file path)",
    "/all": "search the whole library",
    "/quit": "stop (or Ctrl-D)",
}


@command
def chat(
    doc: DocOpt = None,
    top_k: TopKOpt = None,
    reorder: ReorderOpt = None,
    mode: ModeOpt = None,
    context_chunks: ContextOpt = None,
    index: IndexOpt = None,
) -> None:
    """Ask questions one after another; a follow-up ("when does it expire?") searches the document the
    conversation is about. The models load once, so each answer after the first costs only its own time.
    Reads lines until /quit or the end of input; exits 1 if any question or command failed."""
    try:
        import readline  # noqa: F401  (imported, it gives input() line editing and the session's history)
    except ImportError:  # not on every platform
        pass
    qa = _qa(index, existing=True, **_answer_options(top_k, reorder, mode, context_chunks))
    conversation = qa.chat(doc=doc)  # a wrong --doc fails here, before the models load
    with err.status("Loading the models"):
        model = qa.model_info()
    err.print(f"{model.name}, a window of {model.context_window:,} tokens. Ask a question; "
              + "; ".join(f"{c}: {what}" for c, what in CHAT_COMMANDS.items()), highlight=False)
    failed = False
    while True:
        try:
            line = input("? ").strip()  # the prompt given to input(), so that readline redraws it when editing
        except (EOFError, KeyboardInterrupt):
            console.print()  # the shell's prompt on a line of its own
            break
        word, _, rest = line.partition(" ") if line.startswith("/") else ("", "", "")
        if word == "/quit":
            break
        try:
            if word == "/all":
                conversation.widen()
                err.print("searching the whole library", highlight=False)
            elif word == "/doc":
                conversation.focus_on(rest.strip() or None)
                err.print(f"searching {conversation.focus or 'the whole library'}", highlight=False)
            elif word:
                raise LongDocError(f"unknown command {word!r}; commands: {', '.join(CHAT_COMMANDS)}")
            elif line:
                answer = _print_streamed(lambda bar: conversation.stream(line, on_progress=bar.update))
                console.print(f"[dim]{searched_line(answer)}[/dim]", highlight=False)
                _print_passages(answer)
        except user_errors() as exc:  # one question's error: the conversation goes on
            err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            failed = True
    if failed:
        raise typer.Exit(1)


def _print_streamed(events: Callable[["ReadingBar"], Iterator[str | Answer]]) -> Answer:
    """Print an answer's text as it is generated (a reading bar on stderr first, for the modes that read a
    document before answering) and return the finished Answer."""
    answer = None
    with ReadingBar() as bar:
        for event in events(bar):
            if isinstance(event, str):
                bar.close()
                console.print(event, end="", highlight=False, markup=False)
            else:
                answer = event
    console.print()
    return answer


class ReadingBar:
    """A Rich progress bar while a document is read before the answer starts: section by section (mode
    `sections`, each note printed as it comes) or whole (`full_document`, in tokens: minutes on a CPU)."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task = None

    def update(self, event) -> None:
        from app.sections import SectionProgress  # not at the top: `longdoc --help` imports this module

        sections = isinstance(event, SectionProgress)
        if self._progress is None:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), console=err, transient=True)
            self._progress.start()
            how = "section by section" if sections else "whole (tokens)"
            self._task = self._progress.add_task(f"Reading {event.doc} {how}", total=event.total)
        self._progress.update(self._task, completed=event.done)
        if sections and event.note is not None:
            used = "used" if event.note.used else "not used"
            if event.note.used and event.note.reason:  # a note quoting its passages says so
                used += f"; {event.note.reason}"
            err.print(f"section {event.done} of {event.total} ({used}): {event.note.text or event.note.reason}",
                      highlight=False, markup=False, soft_wrap=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> "ReadingBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chars(p: Passage) -> str:
    """A passage's span; with `context_chunks`, the retrieved chunk's own span inside it."""
    own = f" (chunk {p.chunk_start}-{p.chunk_end})" if p.chunk_start is not None else ""
    return f"{p.char_start}-{p.char_end}{own}"


def _print_passages(answer) -> None:
    # Passages of one document name it once, in the title: a column of the same name, cut to fit, says nothing.
    one_doc = len({p.doc for p in answer.passages}) == 1
    title = f"mode: {answer.mode}" + (f" · {answer.passages[0].doc}" if one_doc else "")
    headers = ("rank", "score", *(() if one_doc else ("document",)), "where", "chars", "prompt #", "zone")
    table = Table(*headers, title=title)
    for p in answer.passages:
        where = ", ".join(x for x in (p.section and p.section[:40], p.page and f"p. {p.page}",
                                      p.speakers and "/".join(p.speakers)) if x)
        zone = p.prompt_zone or ("not used" if p.prompt_index is None else "")
        table.add_row(str(p.rank), f"{p.score:.3f}", *(() if one_doc else (p.doc,)), where, _chars(p),
                      "" if p.prompt_index is None else str(p.prompt_index), zone)
    console.print(table)
    if answer.notes:
        used = sum(n.used for n in answer.notes)
        console.print(f"[bold]sections[/bold] {len(answer.notes)} read in order, {used} noted into the answer; "
                      "each passage is the source of the note with its rank", highlight=False)
    if answer.relevance:
        r = answer.relevance
        console.print(f"[bold]relevance[/bold] {r['score']:.2f} (best passage {r['passage']:.2f}, best sentence "
                      f"{r['sentence']:.2f}, {r['coverage']:.0%} of the question's words found)", highlight=False)
    if answer.support is not None and answer.support.sentences:
        console.print(f"[bold]support[/bold] {answer.support.verdict}", highlight=False)
        for s in answer.support.sentences:
            if not s.supported:
                console.print(f"  [red]unsupported[/red] {s.text} [dim]({s.reason})[/dim]", highlight=False)
    if answer.quote is not None:
        q = answer.quote
        page = f" p. {q.page}" if q.page is not None else ""
        console.print(f"[bold]quote[/bold] {q.doc}{page} {q.char_start}-{q.char_end}: {q.text}", highlight=False)
    for e in answer.evidence:
        console.print(f"[bold]evidence[/bold] {e.doc} {e.char_start}-{e.char_end}: {e.text}", highlight=False)
    t = answer.timings
    console.print(
        f"[dim]{answer.prompt_tokens} prompt tokens, {answer.completion_tokens} generated; "
        + ", ".join(f"{k} {v:.2f}" for k, v in t.items()) + "[/dim]"
    )


@command
def batch(
    questions: Annotated[Path, typer.Argument(help="Question file: .txt, .jsonl or .csv.")],
    out: Annotated[Path, typer.Option("--out", help="Answer file to write, anew unless --resume; each answer appended as it comes.")],
    doc: DocOpt = None,
    each_doc: Annotated[bool, typer.Option("--each-doc", help="Ask every question of every document.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    resume: Annotated[bool, typer.Option("--resume", help="Skip ids already in --out.")] = False,
    top_k: TopKOpt = None,
    reorder: ReorderOpt = None,
    mode: ModeOpt = None,
    context_chunks: ContextOpt = None,
    index: IndexOpt = None,
) -> None:
    """Answer a whole file of questions; exits 1 if any question failed."""
    from app.batch import AnswerWriter, answer_all, expand_each_doc, group_by_doc, read_questions

    if doc and each_doc:
        raise LongDocError("--doc and --each-doc cannot be used together")
    rows = read_questions(questions)
    if out.resolve() == questions.resolve():  # the answers would overwrite the questions before any is asked
        raise LongDocError(f"--out {out} is the question file itself: write the answers to another file")
    qa = _qa(index, existing=True, **_answer_options(top_k, reorder, mode, context_chunks))
    if each_doc:
        rows = expand_each_doc(rows, [d.name for d in qa.documents()])
    elif doc:
        rows = [Question(id=q.id, question=q.question, doc=doc, error=q.error) for q in rows]
    writer = AnswerWriter(out, fmt, resume)
    todo = group_by_doc([q for q in rows if q.id not in writer.done])
    docs = {q.id: q.doc for q in todo}
    counts = {"answered": 0, "abstained": 0, "failed": 0}
    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err) as progress:
        task = progress.add_task("Answering", total=len(todo), rate="")
        for n, answer in enumerate(answer_all(qa, todo), 1):
            writer.write(answer, docs.get(answer.id))
            key = "failed" if answer.error else "abstained" if answer.abstained else "answered"
            counts[key] += 1
            if answer.error:
                err.print(f"[red]failed[/red] {answer.id}: {answer.error}", highlight=False)
            rate = n / (time.perf_counter() - started)
            progress.update(task, advance=1, rate=f"{rate * 60:.1f} q/min")
    writer.close()
    seconds = time.perf_counter() - started
    skipped = len(rows) - len(todo)
    console.print(
        f"{counts['answered']} answered, {counts['abstained']} abstained, {counts['failed']} failed"
        + (f", {skipped} already done" if skipped else "")
        + f" in {seconds:.1f} s ({seconds / max(1, len(todo)):.2f} s per question) -> {out}"
    )
    if counts["failed"]:
        raise typer.Exit(1)


@command
def ui(port: Annotated[int, typer.Option(min=1, max=65535, help="Local port.")] = 8501,
       index: IndexOpt = None) -> None:
    """Serve the browser UI on localhost."""
    _require_free_port(port)
    env = dict(os.environ)
    if index is not None:
        env["LONGDOC_INDEX_DIR"] = str(index)
    script = Path(__file__).resolve().parent.parent / "ui" / "streamlit_app.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "minimal"]  # no "Deploy" button or developer menu for the people asking
    console.print(f"longdoc-qa UI on http://localhost:{port}")
    # the server takes this process's place, so stopping the UI by its PID stops the server (a child process
    # would outlive its parent's SIGTERM and keep the port)
    os.execve(sys.executable, cmd, env)


def _require_free_port(port: int) -> None:
    """Refuse a port something already listens on, before announcing a server there."""
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise LongDocError(f"port {port} on 127.0.0.1 is not free ({exc.strerror}): choose another with --port") \
                from None


PPL_SCALINGS = "none,linear,dynamic,yarn"  # `ppl`'s comparison: the unscaled baseline first
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


@command
def ppl(
    file: Annotated[Optional[Path], typer.Argument(help="A text file (or any supported document); with --adapter, "
                                                        "default: the documents the adapter held out.")] = None,
    lengths: Annotated[str, typer.Option(help="Context lengths, e.g. 2k,4k,8k,16k.")] = "2k,4k,8k,16k",
    scaling: Annotated[Optional[str], typer.Option(help=f"RoPE scalings to compare (default: {PPL_SCALINGS}; "
                                                        "with --adapter, the configured one).")] = None,
    out: Annotated[Path, typer.Option(help="Plot file: .png, .svg or .pdf.")] = Path("ppl.png"),
    adapter: Annotated[Optional[Path], typer.Option(help="A `longdoc adapt` folder: adds the row with the adapter "
                                                         "merged (after), beside the same scaling without (before)."
                                                    )] = None,
) -> None:
    """Perplexity by position segment for each RoPE scaling, as a table and a plot."""
    from app.evals.niah import parse_sizes
    from app.llm.perplexity import run_ppl

    if out.suffix.lower() not in PLOT_SUFFIXES or out.is_dir():  # said now, not after the scoring
        raise LongDocError(f"--out {out}: the plot is a file ending in {', '.join(PLOT_SUFFIXES)}")
    settings = Settings.load()
    scaling = scaling or (settings.rope_scaling if adapter else PPL_SCALINGS)
    report = run_ppl(file, parse_sizes(lengths), [s.strip() for s in scaling.split(",")],
                     settings.generator_config(), out, adapter=adapter)
    console.print(report.table())
    console.print(f"plot: {out}")


@command
def adapt(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to train on (any format ingest reads).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the adapter; one holding a checkpoint is continued.")],
    seq_len: Annotated[Optional[str], typer.Option("--seq-len", help="Tokens per training sequence, e.g. 2k, 16k "
                                                                     "(default from settings: adapt_seq_len).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Training steps, one sequence each.")] = None,
    rope_factor: Annotated[Optional[float], typer.Option("--rope-factor", help="RoPE scaling factor "
                                                         "(the scaling is rope_scaling: yarn by default).")] = None,
    lora_rank: Annotated[Optional[int], typer.Option("--lora-rank", help="LoRA rank.")] = None,
    learning_rate: Annotated[Optional[float], typer.Option("--learning-rate",
                                                           help="Peak learning rate.")] = None,
    held_out: Annotated[Optional[float], typer.Option("--held-out", help="Fraction of the "
                                                      "documents, whole, kept out of training and scored.")] = None,
) -> None:
    """Continue pre-training the generator on your documents: YaRN-scaled, LoRA adapters, next-token loss; then
    held-out perplexity before and after. Answer with it by setting generator_adapter to the --out folder."""
    from app.adapt import adapt as run_adapt  # the library is not needed: no embedder, no index
    from app.evals.niah import parse_sizes

    sizes = parse_sizes(seq_len) if seq_len else [None]
    if len(sizes) != 1:
        raise LongDocError(f"--seq-len takes one length, e.g. 16k, got {seq_len!r}")
    report = run_adapt(paths, out, Settings.load(rope_factor=rope_factor), show_progress=True, seq_len=sizes[0],
                       steps=steps, lora_rank=lora_rank, learning_rate=learning_rate, held_out=held_out)
    losses = report.losses
    console.print(f"{report.steps} steps at {report.seq_len:,} tokens ({len(report.train_documents)} documents, "
                  f"{report.train_sequences} sequences); loss {losses[0]:.3f} at step 1, {_mean(losses[-10:]):.3f} "
                  f"over the last {min(10, len(losses))}; {report.tokens_per_s:,.0f} tokens/s", highlight=False)
    if report.ppl_before is None:
        console.print("no documents held out: nothing scored (use --held-out and two or more documents)")
    else:
        table = Table("positions", "before", "after",
                      title=f"Held-out perplexity ({len(report.held_out_documents)} documents, "
                            f"{report.eval_sequences} sequences)")
        for row in report.segments:
            table.add_row(f"{row['start']:,}-{row['end']:,}", f"{row['ppl_before']:.2f}", f"{row['ppl_after']:.2f}")
        table.add_row("all", f"{report.ppl_before:.2f}", f"{report.ppl_after:.2f}", style="bold")
        console.print(table)
    console.print(f"adapter: {out}  (answer with it: LONGDOC_GENERATOR_ADAPTER={out}, or generator_adapter in "
                  "longdoc.toml)", highlight=False, soft_wrap=True)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


@command
def serve(
    gguf: Annotated[Optional[Path], typer.Argument(help="A GGUF file (default: the packaged SmolLM2).")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 8080,
    rope_factor: Annotated[Optional[float], typer.Option(min=1, help="YaRN factor (default from settings; 1 = none).")] = None,
    native_window: Annotated[Optional[int], typer.Option(min=1, help="The model's trained window (default: the GGUF's).")] = None,
    parallel: Annotated[int, typer.Option(min=1, help="Requests decoded at once, sharing one KV buffer.")] = 4,
) -> None:
    """Serve a GGUF through llama.cpp's own server with YaRN, on 127.0.0.1: an OpenAI-compatible generator."""
    from app.llm.generator import embedded_gguf
    from app.llm.llama_server import ServerConfig, run_until_signalled
    from app.llm.llama_server import native_window as gguf_window

    path = gguf or embedded_gguf()
    if not path.is_file():
        raise LongDocError(f"{path}: {'a folder, not' if path.is_dir() else 'no such'} GGUF file")
    _require_free_port(port)
    factor = Settings.load().rope_factor if rope_factor is None else rope_factor
    config = ServerConfig(path, port, rope_factor=factor, native_window=native_window or gguf_window(path),
                          parallel=parallel)
    url = f"http://127.0.0.1:{port}/v1"
    console.print(f"serving {path.name} on {url}: window {config.context_window:,} tokens (YaRN x{factor:g} over "
                  f"{config.native_window:,}), {parallel} at once. Ctrl-C stops it.\n"
                  f"  LONGDOC_GENERATOR={url} longdoc ask \"...\"", highlight=False)
    run_until_signalled(config)


index_app = typer.Typer(help="Move a library between the embedded store and an engine.", no_args_is_help=True)


@command(group=index_app, name="copy")
def index_copy(
    to: Annotated[str, typer.Option("--to", help="Target: an engine URL (postgresql://..., milvus://...) or a "
                                                  "folder for the embedded store.")],
    source: Annotated[Optional[str], typer.Option("--from", help="Source, the same way (default: the "
                                                                  "configured vector_store and --index).")] = None,
    index: IndexOpt = None,
) -> None:
    """Copy every document, its chunks, vectors and names to another backend, without embedding again."""
    overrides = {} if source is None else _library_overrides(source)
    if "index_dir" in overrides and index is not None:
        raise LongDocError("give the source folder once: --from FOLDER or --index FOLDER")
    with _qa(overrides.pop("index_dir", index), existing=True, **overrides) as qa:
        report = qa.copy_library(**_library_overrides(to), show_progress=True)
    console.print(f"{len(report.copied)} copied ({report.chunks} chunks), {len(report.present)} already there, "
                  f"in {report.seconds:.1f} s", highlight=False)


def _library_overrides(location: str) -> dict:
    """`vector_store` (and `index_dir` for a folder) from a URL or a folder path."""
    if not location.strip():  # Path("") is the working directory: never what an empty argument meant
        raise LongDocError("an empty library location: give a folder or an engine's URL")
    if "://" in location:
        return {"vector_store": location}
    return {"vector_store": "faiss", "index_dir": Path(location)}


@command
def engine(
    kind: Annotated[str, typer.Argument(help="postgres (PostgreSQL + pgvector) or milvus (milvus-lite).")],
    data_dir: Annotated[Path, typer.Option(help="Where the engine keeps its data.")] = Path("~/.longdoc/engine"),
    port: Annotated[Optional[int], typer.Option(min=1024, max=65535, help="Port on 127.0.0.1 (default: the "
                                                "engine's usual one, 5432 or 19530).")] = None,
) -> None:
    """Run a vector engine on 127.0.0.1 to try a backend; a new PostgreSQL gets the role and database `longdoc`,
    with the password in LONGDOC_ENGINE_PASSWORD (default: longdoc)."""
    from app.local_engines import start_milvus, start_postgres, wait_until_signalled
    from index.stores import redact

    if kind not in ("postgres", "milvus"):
        raise LongDocError(f"engine {kind!r}: choose postgres or milvus")
    if data_dir.expanduser().exists() and not data_dir.expanduser().is_dir():
        raise LongDocError(f"--data-dir {data_dir}: a file; the engine keeps its data in a folder")
    data_dir = data_dir.expanduser() / kind
    if kind == "postgres":
        password = os.environ.get("LONGDOC_ENGINE_PASSWORD", "longdoc")
        running = start_postgres(data_dir, port or 5432, password)
        url = running.url if "LONGDOC_ENGINE_PASSWORD" not in os.environ else redact(running.url)
    else:
        running = start_milvus(data_dir, port or 19530)
        url = running.url
    console.print(f"{kind} on 127.0.0.1 (pid {running.pid}), data in {data_dir}. Ctrl-C stops it.\n"
                  f"  LONGDOC_VECTOR_STORE={url} longdoc ingest ...", highlight=False, soft_wrap=True)
    wait_until_signalled(running)


app.add_typer(index_app, name="index")
app.add_typer(eval_app, name="eval")


def main() -> None:
    given = os.environ.get("LONGDOC_LOG_LEVEL", "warning")
    level = given.upper()
    if level not in logging.getLevelNamesMapping():
        err.print(f"[red]error:[/red] LONGDOC_LOG_LEVEL: {given!r} is not one of debug, info, warning, error, critical",
                  highlight=False, soft_wrap=True)
        sys.exit(1)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # transformers' "Loading weights" bar on every start says nothing to a user. Switched off in huggingface_hub,
    # whose setting transformers takes when it is imported, so that commands without a model never import it
    # (cold start): the same as transformers.utils.logging.disable_progress_bar().
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    app()
