"""What every command shares: errors as one line, the options, the console and progress bar,
and small formatting helpers. Nothing heavy is imported here: `--help` stays fast."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from promptsearch.records import redact  # light: json and re only

INTERRUPTED = "Interrupted. Answers received so far are in the cache; run the same command again to resume."


class _Group(TyperGroup):
    """Turns user errors into one line on stderr and exit code 2 (no traceback), and
    Ctrl-C into a short note and exit code 130."""

    def invoke(self, ctx):
        from promptsearch.errors import PromptSearchError

        _log_to_stderr()
        try:
            return super().invoke(ctx)
        except _usage_errors() as e:  # a bad flag or value: one line, like every other input error
            where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
            typer.echo(f"Error: {e.format_message()}{where}", err=True)
            raise typer.Exit(2) from None
        except PromptSearchError as e:
            typer.echo(f"Error: {redact(str(e))}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt as e:  # a resumable run says how to continue it; others resume from the cache
            typer.echo(getattr(e, "message", None) or INTERRUPTED, err=True)
            raise typer.Exit(130) from None


def _usage_errors() -> tuple[type, ...]:
    """click's UsageError, from the copy of click typer uses (typer 0.2x ships its own)."""
    found = []
    for mod in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(__import__(mod, fromlist=["UsageError"]).UsageError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


class _StderrLines(logging.Handler):
    """Plain "Warning: ..." lines on whatever stderr is now (tests swap it per command)."""

    def emit(self, record) -> None:
        sys.stderr.write(f"Warning: {redact(record.getMessage())}\n")


def _log_to_stderr() -> None:
    """Warnings from promptsearch (a server retrying, say) as plain lines on stderr."""
    logger = logging.getLogger("promptsearch")
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        logger.addHandler(_StderrLines())
        logger.setLevel(logging.WARNING)
        logger.propagate = False


app = typer.Typer(
    cls=_Group,
    help="Automatic prompt search: find the prompt that makes a model do your task best, "
    "and prove it on held-out data against baselines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cache_app = typer.Typer(cls=_Group, help="Inspect or clear the model-request cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

TaskOpt = typer.Option(
    "sentiment", "--task", "-t", help="Built-in task name, a .jsonl/.csv/.json/.tsv file or folder, or hf:NAME."
)
ModelOpt = typer.Option(
    None,
    "--model",
    "-m",
    help="embedded (default), hf:<hub id or local folder>, or openai:<model>[,api=completions] "
    "for OpenAI or any OpenAI-compatible server. Env: PROMPTSEARCH_MODEL.",
)
BaseUrlOpt = typer.Option(
    None,
    "--base-url",
    help="OpenAI-compatible server for openai:<model> models, e.g. http://127.0.0.1:8000/v1 "
    "(vLLM, llama.cpp, transformers serve). Env: OPENAI_BASE_URL.",
)
ConcurrencyOpt = typer.Option(
    None,
    "--concurrency",
    min=1,
    help="Requests in flight to a server at once. Env: PROMPTSEARCH_CONCURRENCY (default 8).",
)
DbOpt = typer.Option(
    None,
    "--db",
    help="SQLite database file or PostgreSQL URL (postgresql+psycopg://USER@HOST:5432/DB). "
    "Env: PROMPTSEARCH_DB (default ~/.promptsearch/promptsearch.db).",
)
ScorerOpt = typer.Option(
    None,
    "--scorer",
    help="Scorer name (default: the task's metric): accuracy, exact_match, contains, f1, exact_set, or a plug-in.",
)
JsonOpt = typer.Option(False, "--json", help="Print the result as one JSON document (schema in the README).")
HarnessOpt = typer.Option(
    "zero-shot",
    "--harness",
    help="How prompts are run: zero-shot, fewshot:k=4, cot, sc:n=5,temperature=0.7, "
    "or a combination such as fewshot:k=4+cot+sc:n=5.",
)


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


class Bar:
    """Adapts the evaluator's (label, done, total) callback to one rich progress bar."""

    def __init__(self, enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description:<42}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console(stderr=True),
            transient=True,
            disable=not enabled,
        )
        self.task_id = None
        self.label = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, label: str, done: int, total: int) -> None:
        if label != self.label or self.task_id is None:
            if self.task_id is not None:
                self.progress.remove_task(self.task_id)
            from promptsearch.text import shorten

            self.task_id = self.progress.add_task(shorten(label, 42), total=total)
            self.label = label
        self.progress.update(self.task_id, completed=done, total=total)

    def phase(self, message: str) -> None:
        self.progress.console.print(f"[bold]›[/bold] {message}")


def parse_options(options: list[str]) -> dict[str, str]:
    from promptsearch.errors import PromptSearchError

    out = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PromptSearchError(f"Option '{item}' must look like key=value (e.g. -o shots=8).")
        out[key.strip()] = value.strip()
    return out


def fmt_score(score: Optional[dict]) -> str:
    from promptsearch.report.leaderboard import format_score

    return format_score(score, with_n=False)


def dollars(cost: dict) -> str:
    if cost.get("unpriced_calls"):
        known = f"${cost['dollars']:.4f} + " if cost.get("dollars") else ""
        return f"{known}{cost['unpriced_calls']} calls at an unknown price"
    return f"${cost.get('dollars', 0.0):.4f}"


def cost_line(cost: dict) -> str:
    return (
        f"{cost['calls']} model calls, {cost['tokens']:,} tokens, {cost['cache_hits']} cache hits, "
        f"{cost['seconds']:.1f} s in the model, {dollars(cost)}"
    )


def configure_flags(base_url: Optional[str], concurrency: Optional[int]) -> None:
    from promptsearch.settings import configure

    configure()  # this command's flags only
    configure(openai_base_url=base_url, concurrency=concurrency)


def write_file(path: Path, text: str) -> None:
    """Write whole or not at all: a temp file renamed into place."""
    from promptsearch.errors import PromptSearchError

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise PromptSearchError(f"Cannot write '{path}': {e.strerror}.") from None


def did_you_mean(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f" Did you mean: {close[0]}?" if close else ""


def open_store(db: Optional[str]):
    from promptsearch.settings import get_settings
    from promptsearch.store.db import Store

    return Store(db or get_settings().db_path)
