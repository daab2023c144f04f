"""The store: cache entries and runs, on an SQLite file (default) or a PostgreSQL server
(promptsearch/store/engines.py)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from promptsearch.errors import PromptSearchError
from promptsearch.store import engines
from promptsearch.store.engines import BUSY_TIMEOUT_S
from promptsearch.store.models import CacheEntry, CandidateRow, Run, SweepTrial, TestResult

if TYPE_CHECKING:
    from promptsearch.document import RunDocument


def _guarded(doing: str):
    """A database that fails mid-command (a server stopped, a disk full, the connection
    dropped) is one line: what failed, that answers written before it are kept, and what to
    do; not a traceback. Errors the store raises itself pass as they are."""
    import functools

    def wrap(method):
        @functools.wraps(method)
        def inner(self, *args, **kwargs):
            from sqlalchemy.exc import DBAPIError

            try:
                return method(self, *args, **kwargs)
            except DBAPIError as e:
                raw = str(getattr(e, "orig", e)).strip()
                first = raw.splitlines()[0] if raw else type(e).__name__
                raise PromptSearchError(
                    f"The database {self.where} failed while {doing}: {engines.shown(first)}. Answers stored before "
                    "it are kept and nothing was stored half-way; run the same command again once it works."
                ) from None

        return inner

    return wrap


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be made there (checked by making one and removing it): permission
    bits say yes to root in /proc or on a read-only mount, and the write would fail only
    after the model has been prepared and the first answers computed."""
    probe = folder / f".promptsearch-{os.getpid()}.probe"
    try:
        probe.open("x").close()
        probe.unlink()
        return True
    except OSError:
        return False


class Store:
    """An SQLite file is created on the first write, so a command that fails, a dry run or a
    read of a new path leaves nothing behind; reads of a missing file find nothing. A
    PostgreSQL URL is connected to (and its schema made) at once, so a bad one fails first."""

    def __init__(self, path: str | Path):
        self.url = str(path) if engines.is_url(path) else None
        self._engine = None
        if self.url is not None:
            self.path = None
            self.where = engines.shown(self.url)  # messages and records: never the password
            self._engine = engines.postgres_engine(self.url)
            return
        self.path = Path(path).expanduser()
        self.where = str(self.path)
        if self.path.is_dir():
            raise PromptSearchError(
                f"Database path '{self.path}' is a folder; give a file path (e.g. {self.path / 'promptsearch.db'})."
            )
        if self.path.exists():
            _ = self.engine  # an existing file is checked now: not a database, no permission
        else:
            ancestor = next(p for p in self.path.parents if p.exists())
            if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK) or not _can_create_in(ancestor):
                raise PromptSearchError(
                    f"Cannot create database '{self.path}': '{ancestor}' is not a writable folder; "
                    "set PROMPTSEARCH_DB or use --db."
                )

    @property
    def engine(self):
        if self._engine is None:
            self._engine = self._open()
        return self._engine

    def _open(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PromptSearchError(
                f"Cannot create the folder for database '{self.path}': {e.strerror}; set PROMPTSEARCH_DB or --db."
            ) from None
        engine = engines.sqlite_engine(self.path)
        engines.create_sqlite_schema(engine, self.where)
        return engine

    def checkpoints(self, home: Path | None = None) -> Path:
        """Where this database's checkpointing runs keep their folders."""
        from promptsearch.settings import get_settings

        return engines.checkpoint_dir(self.url or self.path, home or get_settings().home)

    def size_bytes(self) -> int | None:
        """The SQLite file's size (None on a server)."""
        if self.path is None:
            return None
        return self.path.stat().st_size if self.path.exists() else 0

    def _readable(self) -> bool:
        """Whether there is anything to read (a missing file is never created by a read)."""
        return self._engine is not None or (self.path is not None and self.path.exists())

    # --- cache ---------------------------------------------------------------------
    @_guarded("reading the cache")
    def cache_get(self, keys: list[str]) -> dict[str, Any]:
        from sqlmodel import Session, col, select

        found: dict[str, Any] = {}
        if not self._readable():
            return found
        with Session(self.engine) as s:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                for key, resp in s.exec(
                    select(CacheEntry.key, CacheEntry.response).where(col(CacheEntry.key).in_(chunk))
                ):
                    found[key] = json.loads(resp)
        return found

    @_guarded("writing answers to the cache")
    def cache_put(self, rows: Iterable[dict[str, Any]]) -> None:
        """Insert answers in one transaction; a concurrent writer's identical entry wins quietly."""
        rows = list(rows)
        if not rows:
            return
        now = time.time()
        for r in rows:
            r.setdefault("created", now)
        engines.insert_ignoring_duplicates(self.engine, CacheEntry, rows)

    @_guarded("reading the cache")
    def cache_stats(self) -> list[dict[str, Any]]:
        from sqlalchemy import func
        from sqlmodel import Session, select

        if not self._readable():
            return []
        with Session(self.engine) as s:
            q = select(CacheEntry.backend, CacheEntry.kind, func.count(), func.sum(CacheEntry.n_tokens)).group_by(
                CacheEntry.backend, CacheEntry.kind
            )
            return [dict(backend=b, kind=k, entries=n, tokens=t or 0) for b, k, n, t in s.exec(q)]

    @_guarded("clearing the cache")
    def cache_clear(self, backend: str | None = None) -> int:
        from sqlalchemy import delete

        if not self._readable():
            return 0
        stmt = delete(CacheEntry)
        if backend:
            stmt = stmt.where(CacheEntry.backend == backend)
        with self.engine.begin() as conn:
            n = conn.execute(stmt).rowcount
        if self.path is not None:
            with sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S) as raw:
                raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return n

    # --- runs ----------------------------------------------------------------------
    @_guarded("storing the run")
    def save_run(self, run: Run, candidates: list[CandidateRow], tests: list[TestResult]) -> None:
        """All of a run's rows in one transaction: a run is stored whole or not at all."""
        from sqlmodel import Session

        with Session(self.engine) as s:
            s.add(run)
            s.flush()
            s.add_all(candidates)
            s.add_all(tests)
            s.commit()

    @_guarded("storing the run")
    def save_document(self, doc: RunDocument, tests, started: float) -> None:
        """A run document (runner.py) with its candidates and every test scoring (`tests`:
        (finalist name, EvalResult) pairs), in one transaction."""
        best = doc.best
        run = Run(
            id=doc.run_id,
            created=started,
            task=doc.task.name,
            task_hash=doc.task.hash,
            searcher=doc.searcher.name,
            model=doc.model_name,
            harness=doc.harness,
            seed=doc.seed,
            best_name=best.name,
            best_text=best.prompt,
            dev_score=best.dev.mean if best.dev else None,
            test_score=best.test.mean if best.test else None,
            result=json.dumps(doc.to_dict(), ensure_ascii=False, allow_nan=False),
        )
        cands = [
            CandidateRow(
                run_id=run.id,
                step=c.step,
                name=c.name,
                text=c.prompt,
                candidate=json.dumps(c.candidate),
                dev_score=c.dev_mean,
                dev_n=c.dev_n,
            )
            for c in doc.candidates
        ]
        rows = [
            TestResult(run_id=run.id, candidate=name, example_id=eid, score=s, prediction=p)
            for name, r in tests
            for eid, s, p in zip(r.example_ids, r.scores, r.predictions)
        ]
        self.save_run(run, cands, rows)

    @_guarded("listing runs")
    def runs(self, task: str | None = None, limit: int = 50) -> list[Run]:
        from sqlmodel import Session, col, select

        if not self._readable():
            return []
        with Session(self.engine) as s:
            q = select(Run).order_by(col(Run.created).desc()).limit(limit)
            if task:
                q = q.where(Run.task == task)
            return list(s.exec(q))

    @_guarded("reading a run")
    def get_run(self, run_id: str) -> Run:
        from sqlmodel import Session, col, select

        if not self._readable():
            raise PromptSearchError(
                f"Run '{run_id}': no such run in {self.where} (no database there yet); "
                "list runs with `promptsearch runs`."
            )
        with Session(self.engine) as s:
            run = s.get(Run, run_id)
            if run is None:
                # a unique prefix, or a unique tail (the short id `promptsearch runs` shows)
                matches = list(s.exec(select(Run).where(col(Run.id).startswith(run_id)).limit(3)))
                if not matches:
                    matches = list(s.exec(select(Run).where(col(Run.id).endswith(run_id)).limit(3)))
                if len(matches) == 1:
                    return matches[0]
                hint = "ambiguous prefix" if matches else "no such run"
                raise PromptSearchError(f"Run '{run_id}': {hint} in {self.where}; list runs with `promptsearch runs`.")
            return run

    @_guarded("reading a run")
    def run_candidates(self, run_id: str) -> list[CandidateRow]:
        from sqlmodel import Session, select

        if not self._readable():
            return []
        with Session(self.engine) as s:
            return list(s.exec(select(CandidateRow).where(CandidateRow.run_id == run_id).order_by(CandidateRow.step)))

    @_guarded("reading a run")
    def run_tests(self, run_id: str) -> list[TestResult]:
        from sqlmodel import Session, select

        if not self._readable():
            return []
        with Session(self.engine) as s:
            return list(s.exec(select(TestResult).where(TestResult.run_id == run_id)))

    # --- sweep trials (promptsearch/sweep) -------------------------------------------
    @_guarded("reading sweep trials")
    def trials(self, keys: list[str]) -> dict[str, SweepTrial]:
        from sqlmodel import Session, col, select

        if not self._readable() or not keys:
            return {}
        with Session(self.engine) as s:
            return {t.key: t for t in s.exec(select(SweepTrial).where(col(SweepTrial.key).in_(keys)))}

    @_guarded("writing a sweep trial")
    def put_trial(self, trial: SweepTrial) -> None:
        from sqlmodel import Session

        trial.updated = time.time()
        with Session(self.engine) as s:
            s.merge(trial)
            s.commit()
