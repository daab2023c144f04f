"""The database engines a Store runs on: an SQLite file (the default: WAL mode and a busy
timeout, so two processes can write one file) or a PostgreSQL server given by URL
(`postgresql+psycopg://user@host:5432/promptsearch`), which a team or a sweep's workers share.

Both get the same sqlmodel tables. Racing writers are safe on both: cache rows go in with
insert-on-conflict-do-nothing, and PostgreSQL's schema is created under an advisory lock,
so workers that start at once do not collide creating it."""

from __future__ import annotations

import re
import time
from pathlib import Path

from promptsearch.errors import PromptSearchError

BUSY_TIMEOUT_S = 60
SCHEMA_LOCK = 0x70726F6D  # PostgreSQL advisory lock id held while the schema is created


# database URL schemes (with or without +driver): such a spec is a URL, never a file name,
# so a malformed one ("postgresql+psycopg:/db") gets a line rather than an SQLite file
_SCHEME = re.compile(r"^(postgres|postgresql|sqlite|mysql|mariadb|oracle|mssql|cockroachdb)(\+\w+)?:", re.I)


def is_url(spec: str | Path) -> bool:
    return isinstance(spec, str) and ("://" in spec or bool(_SCHEME.match(spec)))


def shown(url: str) -> str:
    """The URL as messages and records show it: its password never."""
    from promptsearch.records import redact

    return redact(url)


def checkpoint_dir(spec: str | Path, home: Path) -> Path:
    """Where runs that checkpoint keep their folders: beside an SQLite file
    (`promptsearch.db` -> `promptsearch.db.checkpoints/`), under PROMPTSEARCH_HOME for a
    server (`checkpoints/HOST_PORT_DB/`, this machine's own)."""
    if is_url(spec):
        from sqlalchemy.engine import make_url

        u = make_url(spec)
        return home / "checkpoints" / re.sub(r"[^\w.-]+", "_", f"{u.host or 'local'}_{u.port or ''}_{u.database or ''}")
    p = Path(spec).expanduser()
    return p.with_name(p.name + ".checkpoints")


def sqlite_engine(path: Path):
    from sqlalchemy import create_engine, event

    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _pragmas(conn, _):
        cur = conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


def create_sqlite_schema(engine, where: str) -> None:
    from sqlalchemy.exc import DatabaseError, OperationalError
    from sqlmodel import SQLModel

    attempt = 0
    while True:
        try:
            SQLModel.metadata.create_all(engine)
            return
        except (OperationalError, DatabaseError) as e:
            msg = str(getattr(e, "orig", e))
            attempt += 1
            # Another process created a table between our check and our CREATE, or held a lock
            # that SQLite's busy handler does not wait for (a WAL file being reset as its last
            # connection closes): look again.
            if not any(s in msg for s in ("already exists", "database is locked")) or attempt >= 10:
                raise PromptSearchError(
                    f"Cannot use database '{where}': {msg}; check the path and its permissions, or use --db."
                ) from None
            time.sleep(0.05 * attempt)


def postgres_engine(url: str):
    """An engine on the server, its schema made; one line for a bad URL, a missing driver or
    a server that cannot be reached."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
    from sqlmodel import SQLModel

    where = shown(url)
    try:
        u = make_url(url)
        u.port  # noqa: B018 - a port that is not a number fails here, not at connect
    except (ArgumentError, ValueError):
        raise PromptSearchError(
            f"Database URL '{where}' does not parse; write it as postgresql+psycopg://USER@HOST:5432/DBNAME."
        ) from None
    if u.drivername.split("+")[0] == "postgres":  # the short scheme psql and Heroku use
        u = u.set(drivername="postgresql" + u.drivername[len("postgres") :])
    if u.get_backend_name() != "postgresql":
        raise PromptSearchError(
            f"Database URL '{where}': only PostgreSQL URLs (postgresql+psycopg://...) or an "
            "SQLite file path are supported."
        )
    if u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")  # psycopg 3, not the older psycopg2
    elif u.drivername != "postgresql+psycopg":
        raise PromptSearchError(
            f"Database URL '{where}': driver '{u.drivername.partition('+')[2]}' is not one "
            "promptsearch uses; write postgresql+psycopg://... (psycopg 3)."
        )
    try:
        engine = create_engine(u, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    except (ModuleNotFoundError, NoSuchModuleError):
        raise PromptSearchError(
            "A PostgreSQL database needs the psycopg driver, which is not installed: "
            "pip install 'promptsearch[postgres]'"
        ) from None
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK})
            SQLModel.metadata.create_all(conn)
    except DBAPIError as e:
        first = (
            str(getattr(e, "orig", e)).strip().splitlines()[0]
            if str(getattr(e, "orig", e)).strip()
            else type(e).__name__
        )
        raise PromptSearchError(
            f"Cannot use database '{where}': {shown(first)}; check that the server is running "
            "and the URL (user, host, port, database name)."
        ) from None
    return engine


def insert_ignoring_duplicates(engine, table, rows: list[dict]) -> None:
    """Rows in one transaction; a row whose key another writer stored first is skipped
    (INSERT ... ON CONFLICT DO NOTHING, or SQLite's INSERT OR IGNORE)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        stmt = insert(table).on_conflict_do_nothing()
    else:
        from sqlalchemy.dialects.sqlite import insert

        stmt = insert(table).prefix_with("OR IGNORE")
    with engine.begin() as conn:
        conn.execute(stmt, rows)
