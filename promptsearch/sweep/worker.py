"""One trial = one ordinary run (the runner's `run_search`), in whatever process an executor
gives it. A trial whose earlier attempt was killed picks up that run's checkpoints where the
searcher keeps them (same configuration, no live owner), and its answers from the cache.

    python -m promptsearch.sweep.worker   # what the local executor starts

reads one JSON line from stdin ({"config": ..., "db": ..., "trial": KEY}: never on the
command line, where `ps` shows it), prints `phase: ...` lines while it runs and
`result: {...}` (or `error: ...`) at the end. Its stdin stays open while the sweep lives;
when it closes (the sweep was killed), the run is interrupted as by Ctrl-C (answers so far
are in the cache), the trial is marked interrupted, and the worker exits."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, Callable


def _resumable(config: dict, db: str | None) -> str | None:
    """An interrupted run of exactly this configuration (its checkpoints), if one is there."""
    from promptsearch.runfolder import interrupted_runs
    from promptsearch.settings import get_settings

    want = {
        "task": config["task"],
        "model": config["model"],
        "searcher": config["searcher"],
        "options": config["options"],
        "seed": config["seed"],
        "harness": config["harness"],
    }
    for run in interrupted_runs(db or get_settings().db_path):
        try:
            args = json.loads((run.path / "run.json").read_text())
        except (OSError, ValueError):
            continue
        if {k: args.get(k) for k in want} == want:
            return run.run_id
    return None


def run_arguments(config: dict) -> dict[str, Any]:
    """The runner's arguments for a trial's configuration (a task with changes goes in loaded)."""
    from promptsearch.budget import Budget
    from promptsearch.sweep.spec import resolve_task

    return {
        "task": resolve_task(config["task"]),
        "model": config["model"],
        "searcher": config["searcher"],
        "options": config["options"],
        "budget": Budget(**config["budget"]),
        "seed": config["seed"],
        "harness": None if config["harness"] == "zero-shot" else config["harness"],
        "baseline_shots": config.get("baseline_shots"),
        "selection": config.get("selection"),
    }


def run_trial(config: dict, db: str | None, phase: Callable[[str], None] | None = None) -> dict[str, Any]:
    from promptsearch.document import RunDocument
    from promptsearch.runner import run_search

    resume = _resumable(config, db)
    if resume and phase:
        phase(f"resuming run {resume} from its checkpoints")
    if resume:
        doc = run_search(config["task"], resume=resume, db=db, phase=phase)
    else:  # a task with changes goes in loaded (such runs keep no resume arguments; the cache still replays them)
        doc = run_search(**run_arguments(config), db=db, phase=phase)
    run = RunDocument.from_dict(doc)
    best = run.best
    return {
        "run_id": run.run_id,
        "dev": best.dev.mean,
        "test": best.test.mean,
        "returned": best.name if best.returned_baseline else "",
        "search_test": run.search_best.test.mean,
        "calls": run.cost.search.calls,
        "cache_hits": run.cost.search.cache_hits,
    }


ORPHANED = "the sweep that started this worker ended (killed?); run the sweep again to finish it"


def _watch_parent(done: threading.Event, orphaned: threading.Event, db: str | None, key: str | None) -> None:
    """Interrupt the run when stdin closes: the sweep process that holds its other end died."""
    sys.stdin.read()
    orphaned.set()
    if done.is_set():
        return
    import _thread

    _thread.interrupt_main()  # a KeyboardInterrupt in the run: the cache keeps every answer so far

    def hard_stop() -> None:  # a run that does not reach Python code again still ends
        _mark_interrupted(db, key)
        os._exit(3)

    threading.Timer(60, hard_stop).start()


def _mark_interrupted(db: str | None, key: str | None) -> None:
    if not key:
        return
    from promptsearch.settings import get_settings
    from promptsearch.store.db import Store

    try:
        store = Store(db or get_settings().db_path)
        row = store.trials([key]).get(key)
        if row is not None and row.status == "running":
            row.status, row.error = "interrupted", ORPHANED
            store.put_trial(row)
    except Exception:  # noqa: BLE001 - best effort: a rerun starts every unfinished trial anyway
        pass


def main() -> None:
    from promptsearch.errors import PromptSearchError
    from promptsearch.records import redact

    line = sys.stdin.readline()
    if not line.strip():  # started by hand, or the sweep died before it wrote the orders
        print("error: no trial on stdin; the sweep starts workers itself", flush=True)
        sys.exit(2)
    orders = json.loads(line)
    config, db, key = orders["config"], orders.get("db") or None, orders.get("trial")
    done, orphaned = threading.Event(), threading.Event()
    threading.Thread(target=_watch_parent, args=(done, orphaned, db, key), daemon=True).start()

    def if_orphaned() -> None:
        """The sweep is gone, so nobody records how this trial ended: a rerun starts it again
        (its answers come from the cache)."""
        if orphaned.is_set():
            _mark_interrupted(db, key)
            sys.exit(130)

    def phase(message: str) -> None:
        print("phase: " + " ".join(str(message).split()), flush=True)

    try:
        result = run_trial(config, db, phase)
        done.set()
        time.sleep(0.05)  # a sweep that died just now: let the watchdog see it
        if_orphaned()
        print("result: " + json.dumps(result), flush=True)
    except KeyboardInterrupt:
        done.set()
        _mark_interrupted(db, key)
        sys.exit(130)
    except BrokenPipeError:  # the sweep died as the result went out
        _mark_interrupted(db, key)
        sys.exit(130)
    except PromptSearchError as e:
        if_orphaned()
        print("error: " + redact(str(e)).splitlines()[0], flush=True)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - recorded with the trial; the sweep goes on
        if_orphaned()
        print(f"error: {type(e).__name__}: {redact(str(e)).splitlines()[0] if str(e) else ''}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
