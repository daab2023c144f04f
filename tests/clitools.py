"""Running the CLI in tests and checking what a failing command prints."""

import json

from typer.testing import CliRunner

from promptsearch.cli import app

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, list(args), env=env)


def one_line_error(r, code=2):
    """A failing command's one line: exit `code`, no traceback, one line on stderr."""
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr


def strict_json(text):
    """JSON as any parser reads it: NaN and Infinity refused."""

    def no_constants(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=no_constants)
