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
    the spec's `retries`; a trial that fails with an error is recorded as failed.

    A worker's orders (the trial and the database, whose URL may hold a password) go down
    its stdin, never on its command line, where any local user could read them with `ps`.
    The pipe stays open while the sweep lives: a worker that sees it close (the sweep was
    killed) stops its run, marks its trial interrupted and exits."""

    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)

    def prepare(self) -> None:
        """Nothing to join: workers are started per trial."""

    def run(self, spec: Spec, trials: list[Trial], db: str | None, on_event: Event) -> None:
        queue = deque((t, 0) for t in trials)
        running: dict[subprocess.Popen, tuple[Trial, int, dict]] = {}
        while queue or running:
            while queue and len(running) < self.workers:
                trial, attempt = queue.popleft()
                proc = subprocess.Popen(
                    [sys.executable, "-m", "promptsearch.sweep.worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
                try:
                    proc.stdin.write(json.dumps({"config": trial.config(), "db": db, "trial": trial.key()}) + "\n")
                    proc.stdin.flush()
                except BrokenPipeError:  # it died before reading its orders: its exit status says how below
                    pass
                state = {"result": None, "error": None}
                threading.Thread(target=self._read, args=(proc, trial, state, on_event), daemon=True).start()
                running[proc] = (trial, attempt, state)
                on_event(trial, "start", proc.pid)
            for proc in [p for p in running if p.poll() is not None]:
                trial, attempt, state = running.pop(proc)
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
                deadline = time.time() + 5
                while state.get("reading", True) and time.time() < deadline:
                    time.sleep(0.01)  # the reader thread takes the last lines
                if proc.returncode == 0 and state["result"] is not None:
                    on_event(trial, "done", state["result"])
                elif proc.returncode < 0 and attempt < spec.retries:
                    on_event(trial, "retry", f"worker ended by signal {-proc.returncode}")
                    queue.appendleft((trial, attempt + 1))
                else:
                    why = state["error"] or (
                        f"worker ended by signal {-proc.returncode}"
                        if proc.returncode < 0
                        else f"worker exited with status {proc.returncode}"
                    )
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
    local Ray for the sweep (`num_cpus` CPUs, default all), else an existing cluster
    (`HOST:PORT` of its head, or `ray://HOST:10001` through Ray Client).

    `prepare` joins the cluster before the sweep writes anything: an address where nothing
    answers is one line within seconds. Trials go to the cluster as it has room for them
    (its CPUs and GPUs over each trial's), so "started" means started."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.address, self.num_cpus = address, num_cpus
        self._started_here = False

    def prepare(self) -> None:
        ray = _ray()
        if ray.is_initialized():
            return
        if self.address is None:
            ray.init(num_cpus=self.num_cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            self._started_here = True
            return
        if self.address.startswith("ray://"):
            import importlib.util

            if importlib.util.find_spec("grpc") is None:
                raise PromptSearchError(
                    f"Ray address '{self.address}' goes through Ray Client, which needs grpcio: "
                    "pip install 'promptsearch[ray]' (it brings ray[client])."
                )
        _reachable(self.address)
        try:
            ray.init(address=self.address, logging_level="ERROR", log_to_driver=False)
        except Exception as e:  # noqa: BLE001 - Ray raises many kinds; the user needs one line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PromptSearchError(f"Cannot join the Ray cluster at '{self.address}': {first}") from None
        self._started_here = True  # our connection: shut down when the sweep ends

    def run(self, spec: Spec, trials: list[Trial], db: str | None, on_event: Event) -> None:
        ray = _ray()
        self.prepare()
        need = {"CPU": spec.resources.get("num_cpus", 1), "GPU": spec.resources.get("num_gpus", 0)}
        task = ray.remote(_remote_trial).options(num_cpus=need["CPU"], num_gpus=need["GPU"], max_retries=spec.retries)
        have = ray.cluster_resources()
        room = min([int(have.get(k, 0) // v) for k, v in need.items() if v > 0] or [len(trials)])
        queue, refs = deque(trials), {}
        try:
            while queue or refs:
                while queue and len(refs) < max(1, room):
                    t = queue.popleft()
                    refs[task.remote(t.config(), db)] = t
                    on_event(t, "start", None)
                ready, _ = ray.wait(list(refs), num_returns=1)
                for ref in ready:
                    trial = refs.pop(ref)
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
            if self._started_here:
                ray.shutdown()
                self._started_here = False


def _reachable(address: str, timeout: float = 3.0) -> None:
    """One line, within `timeout` seconds, when nothing listens at a Ray address (Ray itself
    retries for minutes). `auto` and other non-HOST:PORT forms are left to Ray."""
    import socket

    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep:
        if address.startswith("ray://"):
            host, port = hostport, "10001"
        else:
            return
    try:
        port_n = int(port)
    except ValueError:
        raise PromptSearchError(
            f"Ray address '{address}': '{port}' is not a port; write HOST:PORT or ray://HOST:10001."
        ) from None
    try:
        with socket.create_connection((host.strip("[]"), port_n), timeout=timeout):
            pass
    except OSError as e:
        why = "nothing listens there" if isinstance(e, ConnectionRefusedError) else (e.strerror or type(e).__name__)
        raise PromptSearchError(
            f"Cannot reach the Ray cluster at '{address}' ({why}); start one there with "
            "`ray start --head`, or leave out --ray-address for a local Ray."
        ) from None
