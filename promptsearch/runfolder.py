"""A checkpointing run's folder, and everything that reads or removes one: made when the run
starts (its arguments and the owning process in `run.json`), claimed by the process that
resumes it, removed when the run finishes or fails before it checkpointed anything; listed
by `promptsearch runs` only when no live process owns it, and read by `run --resume`."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptsearch.errors import PromptSearchError
from promptsearch.settings import get_settings


class RunFolder:
    """One run's folder (`checkpoint_root(db) / RUN_ID`); searchers write checkpoints in it."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def of(cls, store, run_id: str) -> "RunFolder":
        return cls(store.checkpoints() / run_id)

    def start(self, args: dict[str, Any], resumable: bool) -> None:
        """Make it, with the arguments that resume the run and this process as its owner."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._write({**args, "pid": os.getpid(), "started": args.get("started", time.time()), "resumable": resumable})

    def claim(self) -> None:
        """This process owns it now (a resumed run)."""
        if (self.path / "run.json").exists():
            self._write({**self.args(), "pid": os.getpid()})

    def args(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "run.json").read_text())
        except (OSError, ValueError):
            return {}

    @property
    def resumable(self) -> bool:
        args = self.args()
        return bool(args) and args.get("resumable", True)

    def drop_if_empty(self, nothing_scored: bool = False) -> None:
        """Remove it when it holds nothing to resume: only its run.json (no checkpoint was
        written), or whatever a search that scored no candidate left (its answers are in
        the cache; a rerun gets as far for free)."""
        if self.path.is_dir() and (nothing_scored or all(p.name == "run.json" for p in self.path.iterdir())):
            self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _write(self, args: dict) -> None:
        (self.path / "run.json").write_text(json.dumps(args))


def checkpoint_root(db_path: str | Path) -> Path:
    """Where checkpointing runs keep their folders: beside an SQLite database
    (`promptsearch.db` -> `promptsearch.db.checkpoints/RUN/`); for a PostgreSQL URL, under
    PROMPTSEARCH_HOME (store/engines.py)."""
    from promptsearch.store.engines import checkpoint_dir

    return checkpoint_dir(db_path, get_settings().home)


@dataclass
class Interrupted:
    """A checkpoint folder whose run neither finished nor is running now."""

    run_id: str
    path: Path
    searcher: str
    task: str
    started: float | None
    bytes: int
    resumable: bool = True  # False: started with arguments that were objects (a loaded task): remove, not resume


def interrupted_runs(db_path: str | Path) -> list[Interrupted]:
    """Checkpoint folders beside the database that no live process owns: runs that were
    interrupted (Ctrl-C, a kill, a crash) and can be resumed or removed."""
    root = checkpoint_root(db_path)
    out = []
    for d in sorted(root.glob("*")) if root.is_dir() else []:
        try:
            args = json.loads((d / "run.json").read_text())
        except (OSError, ValueError):
            args = {}
        if _alive(args.get("pid")):
            continue
        size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        out.append(
            Interrupted(
                d.name,
                d,
                str(args.get("searcher", "?")),
                str(args.get("task", "?")),
                args.get("started"),
                size,
                bool(args) and args.get("resumable", True),
            )
        )
    return out


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def resumable_args(run_id: str, db: str | None) -> tuple[str, dict]:
    """The arguments an interrupted, checkpointing run started with."""
    runs = checkpoint_root(db or get_settings().db_path)
    found = [p for p in runs.glob("*") if p.name == run_id or p.name.endswith(run_id)] if runs.is_dir() else []
    if len(found) != 1 or not (found[0] / "run.json").exists():
        done = ""
        try:
            from promptsearch.store.db import Store

            done = Store(db or get_settings().db_path).get_run(run_id).id
        except PromptSearchError:
            pass
        if done:
            raise PromptSearchError(
                f"Run {done} finished and is stored; there is nothing to resume (see `promptsearch show {done}`)."
            )
        raise PromptSearchError(
            f"No interrupted run '{run_id}' to resume in {runs}; only searchers that checkpoint "
            "(rl) can be resumed, by the id printed when the run started."
        )
    args = json.loads((found[0] / "run.json").read_text())
    if not args.get("resumable", True):
        raise PromptSearchError(
            f"Run {found[0].name} was started with a loaded task or model (the Python API, or a "
            "sweep task with changes), which its folder cannot hold, so it cannot be resumed from "
            "there; start it again the same way (its answers come from the cache), and "
            "`promptsearch runs --clean` removes the folder."
        )
    return found[0].name, args
