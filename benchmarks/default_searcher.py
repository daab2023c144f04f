"""Which searcher and harness a bare `promptsearch run --task T` should use: a small measured
comparison on the embedded model with each searcher's default options.

For each built-in task (sentiment, complaints) and each setting, one run as the CLI makes it
(seed 0, no budget but a 150 s safety cap on the search, baselines at 4 shots), from an empty
cache (its own database). Recorded: the search's own best on dev and test, what the run
returned (the best on dev of the search's best and the baselines), and the wall time. The
default is the setting with the best mean test score among those that finish within about
a minute here.

    python benchmarks/default_searcher.py           # resumes: skips settings already in results/
    python benchmarks/default_searcher.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "default_searcher.json"
DB = ROOT / "benchmarks" / "out" / "default_searcher.db"
TASKS = ("sentiment", "complaints")
SETTINGS = [  # (searcher, harness)
    ("baseline", "zero-shot"),
    ("baseline", "calibrate"),
    ("demos", "zero-shot"),
    ("demos", "calibrate"),
    ("ape", "zero-shot"),
    ("ape", "calibrate"),
    ("autoprompt", "calibrate"),
]
CAP_SECONDS = 150


def run_one(task: str, searcher: str, harness: str) -> dict:
    from promptsearch.budget import Budget
    from promptsearch.runner import run_search
    from promptsearch.selection import Selection

    t0 = time.time()
    doc = run_search(
        task,
        model="embedded",
        searcher=searcher,
        harness=harness,
        seed=0,
        db=str(DB),
        budget=Budget(max_seconds=CAP_SECONDS),
        selection=Selection.whole_dev(),  # the pick these results were made with (before the gate)
    )
    sb = doc.get("search_best", doc["best"])
    return {
        "task": task,
        "searcher": searcher,
        "harness": harness,
        "search_dev": sb["dev"]["mean"],
        "search_test": sb["test"]["mean"],
        "test_n": sb["test"]["n"],
        "picked": doc["best"].get("picked", "search"),
        "picked_name": doc["best"]["name"],
        "run_test": doc["best"]["test"]["mean"],
        "wall_seconds": round(time.time() - t0, 1),
        "search_seconds": doc["cost"]["search"]["seconds"],
        "stopped_by": doc["stopped_by"],
        "run_id": doc["run_id"],
    }


def table(results: dict) -> str:
    lines = [
        "| searcher | harness | "
        + " | ".join(f"{t} test (search's best) | {t} run returns" for t in TASKS)
        + " | mean test (run) | wall s (mean) |",
        "|---|---|" + "---|---|" * len(TASKS) + "---|---|",
    ]
    for searcher, harness in SETTINGS:
        rs = [results.get(f"{t}|{searcher}|{harness}") for t in TASKS]
        if not all(rs):
            continue
        cells = []
        for r in rs:
            cells += [
                f"{r['search_test']:.3f}",
                f"{r['run_test']:.3f}" + (f" ({r['picked_name']})" if r["picked"] == "baseline" else ""),
            ]
        lines.append(
            f"| {searcher} | {harness} | "
            + " | ".join(cells)
            + f" | {statistics.mean(r['run_test'] for r in rs):.3f}"
            + f" | {statistics.mean(r['wall_seconds'] for r in rs):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if args.table:
        print(table(results))
        return
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    DB.parent.mkdir(parents=True, exist_ok=True)
    for searcher, harness in SETTINGS:
        for task in TASKS:
            key = f"{task}|{searcher}|{harness}"
            if key in results:
                continue
            print(f"== {key}", flush=True)
            results[key] = run_one(task, searcher, harness)
            r = results[key]
            print(
                f"   search's best test {r['search_test']:.3f}, run returns {r['run_test']:.3f} "
                f"({r['picked']}), {r['wall_seconds']:.0f} s",
                flush=True,
            )
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
