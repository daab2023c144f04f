"""Soft prompts (PEFT) on SST-2 (RLPrompt 16-shot splits) and on `complaints`, embedded model.

Settings with the searcher's defaults (seed 0): prompt tuning, P-tuning and prefix tuning,
each on SST-2 splits 16-13, 16-42 and 16-100 (full 1,821-sentence test, the task's template
"Review: {input}\\nSentiment:" with negative/positive) and on the built-in `complaints`; and
prompt tuning started from the best discrete prompt stored for the same split (`init=best`:
the AutoPrompt runs of `autoprompt_sst2.py`, which share this database). Baselines as in
`autoprompt_sst2.py`: the empty prompt and two manual instructions, no k-shot baseline.

    python benchmarks/soft_prompts.py            # resumes: skips settings already in results/
    python benchmarks/soft_prompts.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from autoprompt_sst2 import DATA, DB, MANUAL, SPLITS, TEMPLATES, run_all  # noqa: E402  (same data, database, loop)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "soft_prompts.json"
METHODS = ("prompt", "ptuning", "prefix")


def settings():
    for method in METHODS:
        for split in SPLITS:
            yield {"task": "sst-2", "split": split, "method": method, "init": "text"}
    for split in SPLITS:
        yield {"task": "sst-2", "split": split, "method": "prompt", "init": "best"}
    for method in METHODS:
        yield {"task": "complaints", "split": "-", "method": method, "init": "text"}


def key(s: dict) -> str:
    return f"{s['task']}|{s['split']}|{s['method']}|init={s['init']}"


def run_one(s: dict) -> dict:
    from promptsearch.runner import run_search
    from promptsearch.selection import Selection
    from promptsearch.tasks.loaders import load_task

    if s["task"] == "sst-2":
        template, labels = TEMPLATES["task"]
        task = replace(load_task(str(DATA / s["split"])), template=template, labels=labels, instructions=MANUAL)
    else:
        task = load_task(s["task"])
    t0 = time.time()
    doc = run_search(
        task,
        model="embedded",
        searcher="soft",
        options={"method": s["method"], "init": s["init"]},
        seed=0,
        db=str(DB),
        baseline_shots=0,
        selection=Selection.whole_dev(),  # the pick these results were made with (before the gate)
    )
    notes = doc["record"]["searcher_notes"]
    base = {b["name"]: {"test": b["test"]["mean"], "diff": b["best_minus_baseline"]} for b in doc["baselines"]}
    return {
        **s,
        "run_id": doc["run_id"],
        "dev": doc["best"]["dev"]["mean"],
        "test": doc["best"]["test"]["mean"],
        "test_n": doc["best"]["test"]["n"],
        "baselines": base,
        "init_text": notes.get("init_text"),
        "init_from": notes.get("init_from"),
        "readout": notes.get("readout"),
        "steps": len(notes["steps"]),
        "search_calls": doc["cost"]["search"]["calls"],
        "wall_seconds": round(time.time() - t0, 1),
        "stopped_by": doc["stopped_by"],
    }


def table(results: dict) -> str:
    rows = [
        "| task | split | method | init | dev | test | readout dev | empty | best manual "
        "| best − best manual [95% CI] | steps | wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list] = {}
    for r in results.values():
        groups.setdefault((r["task"], r["method"], r["init"]), []).append(r)
    for (task, method, init), rs in groups.items():
        rs.sort(key=lambda r: SPLITS.index(r["split"]) if r["split"] in SPLITS else 0)
        for r in rs:
            b = r["baselines"]
            manual = max((n for n in b if n.startswith("manual")), key=lambda n: b[n]["test"], default="empty")
            d = b[manual]["diff"]
            ro = f"{r['readout']['dev']:.3f}" if r.get("readout") and "dev" in r["readout"] else "–"
            rows.append(
                f"| {task} | {r['split']} | {method} | {init} | {r['dev']:.3f} | **{r['test']:.4f}** | {ro} | "
                f"{b['empty']['test']:.4f} | {b[manual]['test']:.4f} ({manual}) | {d['diff']:+.3f} "
                f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] | {r['steps']} | {r['wall_seconds']:.0f} s |"
            )
        if len(rs) > 1:
            tests = [r["test"] for r in rs]
            rows.append(
                f"| | | | | **mean ± sd** | **{statistics.mean(tests):.4f} ± {statistics.stdev(tests):.4f}** "
                "| | | | | | |"
            )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--only", nargs="*", default=[], help="run only settings whose key contains all of these")
    args = ap.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if args.table:
        print(table(results))
        return
    run_all(settings(), key, run_one, RESULTS, results, args.only)


if __name__ == "__main__":
    main()
