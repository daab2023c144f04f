"""The `promptsearch` command, one module a command group: run, evaluate (eval), catalog (tasks,
searchers), runs (runs, show, export), reports (leaderboard, report), cache, sweep; common holds what
they share. Nothing heavy is imported at module level: `--help` stays fast."""

# each module registers its commands; imported in the order `--help` lists them
from promptsearch.cli import run, evaluate, catalog, runs, reports, cache, sweep  # noqa: F401, I001
from promptsearch.cli.common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
