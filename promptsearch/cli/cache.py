"""`promptsearch cache stats` and `cache clear`: the model-request cache."""

from __future__ import annotations

from typing import Optional

import typer

from promptsearch.cli.common import DbOpt, cache_app, console, did_you_mean, open_store


@cache_app.command("stats")
def cache_stats(db: Optional[str] = DbOpt):
    """Cached answers per model and request kind."""
    from rich.table import Table

    store = open_store(db)
    rows = store.cache_stats()
    table = Table(title=f"Cache in {store.where}", title_justify="left")
    for col in ("model", "kind", "entries", "tokens"):
        table.add_column(col, justify="right" if col in ("entries", "tokens") else "left")
    for r in rows:
        table.add_row(r["backend"], r["kind"], str(r["entries"]), f"{r['tokens']:,}")
    size = store.size_bytes()
    con = console()
    con.print(table)
    con.print(
        f"{sum(r['entries'] for r in rows)} entries"
        + (f"; database file {size / 1e6:.1f} MB" if size is not None else "")
    )


@cache_app.command("clear")
def cache_clear(
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Only this model's entries (as shown by `cache stats`)."
    ),
    db: Optional[str] = DbOpt,
):
    """Delete cached answers (runs are kept)."""
    from promptsearch.errors import PromptSearchError

    store = open_store(db)
    if model:
        known = sorted({r["backend"] for r in store.cache_stats()})
        if model not in known:
            raise PromptSearchError(
                f"No cached answers of model {model!r} in {store.where}; nothing deleted."
                f"{did_you_mean(model, known)}" + (f" Models in the cache: {', '.join(known)}." if known else "")
            )
    n = store.cache_clear(model)
    console().print(f"Deleted {n} cached answers.")
