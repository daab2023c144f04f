"""Where trials run: local worker processes (default) or Ray tasks.

Both report events through one callback, `on_event(trial, kind, info)`: kind is `start`,
`phase` (a running trial's current phase, local processes only), `done` (info: the result),
`failed` (info: the error line) or `retry` (its worker died; started again)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Callable

from promptsearch.errors import PromptSearchError
from promptsearch.sweep.spec import Spec, Trial

Event = Callable[[Trial, str, object], None]


class LocalExecutor:
    """`workers` trials at a time, each in its own `python -m promptsearch.sweep.worker`
    process. A process that dies by a signal (killed, out of memory) is started again, up to
    the spec's `retries`; a trial that fails with an error is recorded as failed."""

    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)

    def run(self, spec: Spec, trials: list[Trial], db: str | None, on_event: Event) -> None:
        queue = deque((t, 0) for t in trials)
        running: dict[subprocess.Popen, tuple[Trial, int, dict]] = {}
        while queue or running:
            while queue and len(running) < self.workers:
                trial, attempt = queue.popleft()
                proc = subprocess.Popen([sys.executable, "-m", "promptsearch.sweep.worker", json.dumps(trial.config()),
                                         db or ""], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                state = {"result": None, "error": None}
                threading.Thread(target=self._read, args=(proc, trial, state, on_event), daemon=True).start()
                running[proc] = (trial, attempt, state)
                on_event(trial, "start", proc.pid)
            for proc in [p for p in running if p.poll() is not None]:
                trial, attempt, state = running.pop(proc)
                deadline = time.time() + 5
                while state.get("reading", True) and time.time() < deadline:
                    time.sleep(0.01)  # the reader thread takes the last lines
                if proc.returncode == 0 and state["result"] is not None:
                    on_event(trial, "done", state["result"])
                elif proc.returncode < 0 and attempt < spec.retries:
                    on_event(trial, "retry", f"worker ended by signal {-proc.returncode}")
                    queue.appendleft((trial, attempt + 1))
                else:
                    why = state["error"] or (f"worker ended by signal {-proc.returncode}" if proc.returncode < 0
                                             else f"worker exited with status {proc.returncode}")
                    on_event(trial, "failed", why)
            time.sleep(0.05)

    @staticmethod
    def _read(proc, trial: Trial, state: dict, on_event: Event) -> None:
        state["reading"] = True
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("phase: "):
                on_event(trial, "phase", line[7:])
            elif line.startswith("result: "):
                state["result"] = json.loads(line[8:])
            elif line.startswith("error: "):
                state["error"] = line[7:]
        state["reading"] = False


def _ray():
    try:
        import ray
    except ImportError:
        raise PromptSearchError("--ray needs Ray, which is not installed: pip install 'promptsearch[ray]'") from None
    return ray


def _remote_trial(config: dict, db: str | None) -> dict:
    from promptsearch.errors import PromptSearchError as Known
    from promptsearch.sweep.worker import run_trial

    try:
        return {"result": run_trial(config, db)}
    except Known as e:  # a trial's own error: recorded, not retried
        return {"error": str(e).splitlines()[0]}


class RayExecutor:
    """One Ray task per trial with the spec's `num_cpus`/`num_gpus`; Ray starts a trial again
    when its worker dies (`max_retries` = the spec's `retries`). `address`: None starts a
    local Ray for the sweep (`num_cpus` CPUs, default all), else an existing cluster."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.address, self.num_cpus = address, num_cpus

    def run(self, spec: Spec, trials: list[Trial], db: str | None, on_event: Event) -> None:
        ray = _ray()
        started_here = not ray.is_initialized()
        if started_here:
            kwargs = {"address": self.address} if self.address else {"num_cpus": self.num_cpus, "include_dashboard": False}
            ray.init(**kwargs, logging_level="ERROR", log_to_driver=False)
        task = ray.remote(_remote_trial).options(num_cpus=spec.resources.get("num_cpus", 1),
                                                 num_gpus=spec.resources.get("num_gpus", 0), max_retries=spec.retries)
        refs = {}
        for t in trials:
            refs[task.remote(t.config(), db)] = t
            on_event(t, "start", None)
        try:
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    trial = refs[ref]
                    try:
                        out = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - the worker died past its retries, or crashed
                        on_event(trial, "failed", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                        continue
                    if "error" in out:
                        on_event(trial, "failed", out["error"])
                    else:
                        on_event(trial, "done", out["result"])
        finally:
            if started_here:
                ray.shutdown()
