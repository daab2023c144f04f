"""`promptsearch tasks` and `promptsearch searchers`: what can be run."""

from __future__ import annotations

from promptsearch.cli.common import app, console


@app.command()
def tasks():
    """List built-in and plug-in tasks, and the file formats `--task` accepts."""
    from rich.table import Table

    from promptsearch import registry
    from promptsearch.errors import PromptSearchError

    table = Table(title="Tasks", title_justify="left")
    table.add_column("name")
    table.add_column("splits and labels")
    for name in registry.tasks.names():
        try:
            summary = registry.tasks.get(name)().summary()
        except PromptSearchError as e:
            summary = f"(unavailable: {e})"
        table.add_row(name, summary)
    con = console()
    con.print(table)
    con.print(
        "Also: --task FILE.jsonl | FILE.csv | FILE.json (list or Instruction Induction) | RLPrompt folder "
        "| hf:NAME[:CONFIG]"
    )


@app.command()
def searchers():
    """List searchers and their options (set with -o key=value)."""
    from rich.table import Table

    from promptsearch import registry

    con = console()
    for name in registry.searchers.names():
        cls = registry.searchers.get(name)
        table = Table(
            title=f"{name}: {(cls.__doc__ or '').strip().splitlines()[0] if cls.__doc__ else ''}", title_justify="left"
        )
        table.add_column("option")
        table.add_column("type")
        table.add_column("default")
        table.add_column("help")
        for opt, typ, default, help_ in cls.config_help():
            table.add_row(opt, typ, repr(default), help_)
        con.print(table)
