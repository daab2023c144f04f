"""The store on a real PostgreSQL server started on 127.0.0.1 by the tests (conftest's
`postgres`): racing writers, every command on a URL, passwords never kept, bad URLs one line.
(The store and cache tests in test_store.py run on both engines through the `db` fixture.)"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptsearch.cli import app
from promptsearch.errors import PromptSearchError
from promptsearch.store import Store

runner = CliRunner()


def test_four_processes_write_one_fresh_database_schema_included(postgres):
    url = postgres.fresh_database()  # empty: the four race to create the schema too
    script = textwrap.dedent(f"""
        import sys, time
        from promptsearch.store import Store
        from promptsearch.store.models import Run, CandidateRow, TestResult
        s = Store({url!r})
        who = sys.argv[1]
        for i in range(60):
            row = dict(backend="b", kind="loglik", request="{{}}", response="{{}}")
            s.cache_put([dict(row, key=f"{{who}}-{{i}}-{{j}}") for j in range(5)])
            s.cache_put([dict(key=f"common-{{i}}", backend="b", kind="loglik", request="{{}}", response="{{}}")])
        for i in range(10):
            s.save_run(Run(id=f"{{who}}-{{i}}", created=time.time(), task="t", task_hash="h", searcher="s", model="m"),
                       [CandidateRow(run_id=f"{{who}}-{{i}}", step=0, name="c", text="t", candidate="{{}}")],
                       [TestResult(run_id=f"{{who}}-{{i}}", candidate="c", example_id="e", score=1.0, prediction="p")])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, w], stderr=subprocess.PIPE) for w in "abcd"]
    codes = [p.wait(timeout=180) for p in procs]
    assert codes == [0, 0, 0, 0], [p.stderr.read().decode()[-500:] for p in procs]
    store = Store(url)
    assert sum(r["entries"] for r in store.cache_stats()) == 4 * 60 * 5 + 60  # the shared keys once each
    assert len(store.runs(limit=100)) == 40


def test_every_command_works_on_a_url_and_the_password_is_never_kept(postgres, fake_backend_registered, monkeypatch):
    url = postgres.fresh_database()
    pw = postgres.PASSWORD
    r = runner.invoke(app, ["run", "--model", "fake:x", "--db", url, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert pw not in r.output and doc["db"].startswith("postgresql+psycopg://***@127.0.0.1")
    run_id = doc["run_id"]
    monkeypatch.setenv("PROMPTSEARCH_DB", url)  # the environment works as --db does
    outputs = []
    for args in (
        ["runs"],
        ["show", run_id],
        ["cache", "stats"],
        ["leaderboard"],
        ["leaderboard", "-f", "json"],
        ["report", run_id, "-o", "r.html"],
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
        outputs.append(res.output)
    assert run_id[-4:] in outputs[0] and "Task hash" in outputs[1] and "loglik" in outputs[2]
    assert "manual-1" in outputs[3] or "sentiment" in outputs[3]
    assert all(pw not in o for o in outputs) and pw not in open("r.html").read()
    # nothing stored holds it: every text column of every table
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        for table in ("run", "candidaterow", "testresult", "cacheentry"):
            rows = conn.execute(f"SELECT * FROM {table}").fetchall()
            assert rows and not any(pw in str(v) for row in rows for v in row), table


def test_bad_urls_unreachable_servers_and_a_missing_driver_are_one_line(postgres, monkeypatch):
    from servers import free_port

    cases = [
        (f"postgresql+psycopg://u:{postgres.PASSWORD}@127.0.0.1:{free_port()}/x", "server is running"),
        (postgres.url("postgres").replace(postgres.PASSWORD, "wrong-pw"), "password authentication failed"),
        ("postgresql+psycopg://u@127.0.0.1:notaport/x", "does not parse"),
        ("mysql://u@127.0.0.1/x", "only PostgreSQL"),
        ("postgresql+psycopg:/broken", "does not parse"),  # one slash: a URL that does not parse, not a file name
        (
            f"postgresql+nosuchdrv://u:{postgres.PASSWORD}@127.0.0.1/x",
            "driver 'nosuchdrv' is not one promptsearch uses",
        ),
    ]
    for url, says in cases:
        r = runner.invoke(app, ["runs", "--db", url])
        assert r.exit_code == 2 and says in r.output, (url, r.output)
        assert (
            len(r.output.strip().splitlines()) == 1
            and postgres.PASSWORD not in r.output
            and "Traceback" not in r.output
        )
    assert not list(Path.cwd().glob("postgresql*"))  # no SQLite file made of a malformed URL
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(PromptSearchError, match=r"pip install 'promptsearch\[postgres\]'"):
        Store(postgres.url("postgres"))


def test_a_server_that_stops_mid_run_is_one_line_and_keeps_what_was_written(tmp_path, monkeypatch):
    """`pg_ctl stop -m fast` while demos races: one line and exit 2, not a traceback; the
    answers written before it stay, no run is stored, and the rerun reads them back."""
    import tempfile

    from fakes import FakeBackend
    from promptsearch import registry
    from servers import PostgresServer

    if PostgresServer.binaries() is None:
        pytest.skip("no PostgreSQL server binaries here")
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="promptsearch-pg-stop-")))
    try:
        url = server.fresh_database()

        class StopsTheServer(FakeBackend):
            def loglikelihood(self, requests, soft_prompt=None):
                if len(self.requests) >= 300 and not stopped:
                    server.stop("fast")
                    stopped.append(True)
                return super().loglikelihood(requests, soft_prompt)

        stopped: list = []
        monkeypatch.setitem(registry.backends._entries, "fake", lambda spec, settings: StopsTheServer())
        r = runner.invoke(app, ["run", "--model", "fake:x", "--searcher", "demos", "--db", url])
        assert stopped and r.exit_code == 2, r.output
        lines = r.stderr.strip().splitlines()  # the run's phase lines, then the error
        assert (
            "Traceback" not in r.output
            and lines[-1].startswith("Error: The database")
            and sum(line.startswith("Error") for line in lines) == 1
        ), r.stderr
        assert "failed while" in lines[-1] and PostgresServer.PASSWORD not in r.stderr
        server.start()
        store = Store(url)
        assert store.runs() == []  # nothing stored half-way
        kept = sum(row["entries"] for row in store.cache_stats())
        assert kept >= 300  # every answer written before the stop
        again = FakeBackend()
        monkeypatch.setitem(registry.backends._entries, "fake", lambda spec, settings: again)
        r = runner.invoke(app, ["run", "--model", "fake:x", "--searcher", "demos", "--db", url])
        assert r.exit_code == 0, r.output
        assert len(again.requests) <= sum(row["entries"] for row in Store(url).cache_stats()) - kept
    finally:
        server.stop()
