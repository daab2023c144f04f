"""Sweep scaling and store throughput (issue: past one machine).

1. The same grid of 8 short trials (sentiment, the embedded model, the baseline searcher,
   seeds 0-7) run sequentially, on 2 local worker processes and on a local 2-CPU Ray; wall
   time of each, each on a fresh SQLite database so none is answered by another's cache.
   Ray's overhead per trial: its wall time minus the 2-worker wall time, per trial, and the
   time `ray.init` took.
2. Cache lookup and write throughput (requests/s) of SQLite and PostgreSQL (a real server
   started on 127.0.0.1, as the tests do), with one writer and with four at once.

    python benchmarks/sweep_scaling.py [--trials 8] [--skip-sweep] [--skip-store]

Writes benchmarks/results/sweep_scaling.json. Run it alone: torch threads are pinned to 1
per trial, so 2 workers use the 2 cores and nothing else should.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "sweep_scaling.json"
os.environ.setdefault("OMP_NUM_THREADS", "1")  # each trial process one thread: 2 workers = 2 cores
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def sweep_times(n_trials: int) -> dict:
    import yaml

    from promptsearch.store.db import Store
    from promptsearch.sweep.executors import LocalExecutor, RayExecutor
    from promptsearch.sweep.run import run_sweep
    from promptsearch.sweep.spec import load_spec

    tmp = Path(tempfile.mkdtemp(prefix="sweep-scaling-"))
    spec_path = tmp / "grid.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "scaling",
                "tasks": ["sentiment"],
                "models": ["embedded"],
                "searchers": ["baseline"],
                "seeds": list(range(n_trials)),
                "resources": {"num_cpus": 1},
            }
        )
    )
    spec = load_spec(spec_path)
    out = {"trials": len(spec.trials)}
    import ray

    for mode, executor in (
        ("sequential", LocalExecutor(1)),
        ("2 local workers", LocalExecutor(2)),
        ("local Ray, 2 CPUs", None),
    ):
        db = str(tmp / f"{mode.split()[0]}.db")
        t0 = time.perf_counter()
        if executor is None:  # Ray: its start-up timed on its own
            ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            out["ray_init_seconds"] = round(time.perf_counter() - t0, 1)
            executor = RayExecutor()
        rows, _ = run_sweep(spec, Store(db), executor, db)
        wall = time.perf_counter() - t0
        if ray.is_initialized():
            ray.shutdown()
        done = sum(r.status == "done" for r in rows.values())
        out[mode] = {"wall_seconds": round(wall, 1), "done": done}
        print(f"{mode}: {wall:.1f} s for {done} trials", flush=True)
    two, r = out["2 local workers"]["wall_seconds"], out["local Ray, 2 CPUs"]["wall_seconds"]
    out["ray_overhead_per_trial_seconds"] = round((r - two) / len(spec.trials), 2)
    return out


WRITER = textwrap.dedent("""
    import sys, time
    from promptsearch.store.db import Store
    s = Store(sys.argv[1]); who = sys.argv[2]; n = int(sys.argv[3])
    t = time.perf_counter()
    for i in range(0, n, 16):  # the cache commits every 16 answers
        s.cache_put([dict(key=f"{who}-{j}", backend="b", kind="loglik", request="{}", response='{"logprob": -1.0}')
                     for j in range(i, min(n, i + 16))])
    print(time.perf_counter() - t)
""")


def store_throughput(n: int = 4000) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from promptsearch.store.db import Store
    from servers import PostgresServer

    tmp = Path(tempfile.mkdtemp(prefix="store-throughput-"))
    pg = PostgresServer(Path(tempfile.mkdtemp(prefix="promptsearch-pg-")))
    out = {}
    try:
        for engine, make in (
            ("sqlite", lambda name: str(tmp / f"{name}.db")),
            ("postgresql", lambda name: pg.fresh_database()),
        ):
            res = {}
            for writers in (1, 4):
                spec = make(f"w{writers}")
                Store(spec)  # schema made first: the writers time writes only
                ps = [
                    subprocess.Popen(
                        [sys.executable, "-c", WRITER, spec, f"p{w}", str(n)], stdout=subprocess.PIPE, text=True
                    )
                    for w in range(writers)
                ]
                took = [float(p.communicate()[0].strip().splitlines()[-1]) for p in ps]  # each writer's own clock
                wall = max(took)
                store = Store(spec)
                keys = [f"p0-{j}" for j in range(n)]
                t1 = time.perf_counter()
                found = store.cache_get(keys)
                look = time.perf_counter() - t1
                assert len(found) == n
                res[f"{writers} writer{'s' * (writers > 1)}"] = {
                    "writes_per_second": round(writers * n / wall),
                    "lookups_per_second": round(n / look),
                }
                print(engine, writers, res[f"{writers} writer{'s' * (writers > 1)}"], flush=True)
            out[engine] = res
    finally:
        pg.stop()
    out["note"] = (
        f"{n} cache rows per writer in commits of 16 (as the cache writes), each writer its own process "
        "(its write loop timed by itself; writes/s = all rows / the slowest writer's time); "
        "lookups: one process reading its n keys in chunks of 500"
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--skip-store", action="store_true")
    args = ap.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if not args.skip_sweep:
        results["sweep"] = sweep_times(args.trials)
    if not args.skip_store:
        results["store"] = store_throughput()
    results["machine"] = f"{os.cpu_count()} CPUs"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
