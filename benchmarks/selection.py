"""Selection you can trust, measured: calibrated searches on the few-shot table's datasets,
the run's pick made the old way (accuracy on the whole dev split against the baselines on the
same examples) and the new way (gold-label probability, racing that keeps candidates within
noise of the leader, and the gate on a held-out confirmation half of dev).

Per run: the test score of what the run returns minus the test score of the best baseline
chosen without test (the best on the whole dev split of the empty, manual and calibrated
16-shot prompts), with its paired bootstrap interval over the test examples; and the
winner's dev-test gap (the search's best: its metric on the dev examples it was selected on,
minus its test score).

    python benchmarks/selection.py [--datasets sst-2/16-42 trec/16-42] [--searchers demos ape]
        [--variants before after] [--max-evals 600]      # runs what is missing, row by row
    python benchmarks/selection.py --table              # the write-up's tables from results/

Budgets are in example scorings (`--max-evals`, dev and train scorings during the search), so
a busy machine changes nothing but the time. One SQLite database for all runs
(benchmarks/out/selection.db): a rerun reads every answer from the cache; results are written
to benchmarks/results/selection.json as each run finishes, and a rerun skips finished rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "benchmarks" / "fewshot_table.yaml"  # the datasets, as the few-shot table loads them
RESULTS = ROOT / "benchmarks" / "results" / "selection.json"
DB = ROOT / "benchmarks" / "out" / "selection.db"
DATASETS = ("sst-2/16-13", "sst-2/16-42", "sst-2/16-100", "mr/16-42", "subj/16-42", "agnews/16-42", "trec/16-42")
SEARCHERS = ("demos", "ape", "mipro", "grips", "gepa")
VARIANTS = {
    "before": {"select_by": "accuracy", "gate": None, "race_level": None},  # Selection.whole_dev()
    "after": {"select_by": "gold_prob", "gate": 0.9, "race_level": 0.8},
    "after+train": {"select_by": "gold_prob", "gate": 0.9, "race_level": 0.8, "select_on": "train+dev"},
}


def tasks() -> dict[str, str]:
    """name -> the task as the sweep resolves it (a JSON string with the changes)."""
    import yaml

    out = {}
    for entry in yaml.safe_load(SPEC.read_text())["tasks"]:
        entry = dict(entry)
        entry["task"] = str((ROOT / entry["task"]).resolve())
        out[entry["name"]] = json.dumps(entry)
    return out


def load() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    tmp.replace(RESULTS)


def row(doc: dict, wall: float, max_evals: int) -> dict:
    from promptsearch.document import RunDocument

    d = RunDocument.from_dict(doc)
    base = max(d.baselines, key=lambda b: b.dev.mean)  # first wins ties, as the runner's baselines are ordered
    own = d.search_best
    seen = next((c for c in d.candidates if c.candidate == own.candidate), None)
    conf = d.confirmation
    vs = base.best_minus_baseline
    return {
        "run_id": d.run_id,
        "returned": d.best.name,
        "returned_baseline": d.best.returned_baseline,
        "test": d.best.test.mean,
        "n_test": d.best.test.n,
        "best_baseline": base.name,
        "best_baseline_test": base.test.mean,
        "vs_best_baseline": vs.to_dict() if vs else None,
        "search_best": own.name,
        "search_best_test": own.test.mean,
        "search_best_selected_on": seen.dev_mean if seen else None,
        "search_best_selected_n": seen.dev_n if seen else None,
        "gap": round(seen.dev_mean - own.test.mean, 4) if seen else None,
        "confirmation": None if conf is None else {"passed": conf.passed, **conf.diff.to_dict()},
        "calls": d.cost.total.calls,
        "search_evals_budget": max_evals,
        "stopped_by": d.stopped_by,
        "wall_seconds": round(wall, 1),
    }


def run(args) -> None:
    from promptsearch.budget import Budget
    from promptsearch.runner import run_search
    from promptsearch.selection import Selection
    from promptsearch.sweep.spec import resolve_task

    known = tasks()
    results = load()
    todo = [(d, s, v) for d in args.datasets for s in args.searchers for v in args.variants]
    todo = [t for t in todo if "/".join(t) not in results]
    print(f"{len(todo)} runs to make ({len(results)} done)", flush=True)
    DB.parent.mkdir(parents=True, exist_ok=True)
    for dataset, searcher, variant in todo:
        key = f"{dataset}/{searcher}/{variant}"
        started = time.time()
        doc = run_search(
            resolve_task(known[dataset]),
            model=args.model,
            searcher=searcher,
            budget=Budget(max_evals=args.max_evals),
            seed=args.seed,
            db=str(DB),
            baseline_shots=16,
            harness="calibrate",
            selection=Selection(**VARIANTS[variant]),
        )
        r = row(doc, time.time() - started, args.max_evals)
        import fcntl

        with open(RESULTS.with_suffix(".lock"), "w") as lock:  # processes on other datasets write here too
            fcntl.flock(lock, fcntl.LOCK_EX)
            results = load()
            results[key] = r
            save(results)
        vs = r["vs_best_baseline"] or {}
        print(
            f"{key}: returned {r['returned']} test {r['test']:.3f} vs {r['best_baseline']} "
            f"{vs.get('diff', 0):+.3f} [{vs.get('ci_low', 0):+.3f}, {vs.get('ci_high', 0):+.3f}], "
            f"gap {r['gap']}, {r['wall_seconds']:.0f} s",
            flush=True,
        )


def summary(rows: dict) -> tuple[list[str], float, float]:
    """(runs below the best baseline with CI < 0, mean test minus the best baseline, mean
    dev-test gap of the winners) over result rows by key. A run that is the best baseline
    itself counts 0."""
    worse = [k for k, v in rows.items() if v["vs_best_baseline"] and v["vs_best_baseline"]["ci_high"] < 0]
    diffs = [v["vs_best_baseline"]["diff"] if v["vs_best_baseline"] else 0.0 for v in rows.values()]
    gaps = [v["gap"] for v in rows.values() if v["gap"] is not None]
    return worse, statistics.mean(diffs), statistics.mean(gaps)


def table(results: dict) -> str:
    lines = []
    for variant in VARIANTS:
        rows = {k: v for k, v in results.items() if k.endswith("/" + variant)}
        if not rows:
            continue
        worse, diff, gap = summary(rows)
        better = [k for k, v in rows.items() if v["vs_best_baseline"] and v["vs_best_baseline"]["ci_low"] > 0]
        returned_base = sum(v["returned_baseline"] for v in rows.values())
        lines.append(
            f"- **{variant}** ({len(rows)} runs): returned a baseline in {returned_base}; worse than the best "
            f"baseline with CI below zero in {len(worse)} ({', '.join(worse) or 'none'}); better with CI above "
            f"zero in {len(better)}; mean test minus best baseline {diff:+.4f}; winners' mean dev-test gap {gap:+.4f}"
        )
    what = "returned and its test, minus best baseline [CI], gap"
    header = "| dataset | searcher | " + " | ".join(f"{v}: {what}" for v in VARIANTS)
    lines += ["", header + " |", "|---|---|" + "---|" * len(VARIANTS)]
    pairs = sorted({tuple(k.split("/")[:3]) for k in results})
    for dataset_a, dataset_b, searcher in pairs:
        cells = []
        for variant in VARIANTS:
            r = results.get(f"{dataset_a}/{dataset_b}/{searcher}/{variant}")
            if r is None:
                cells.append("–")
                continue
            vs = r["vs_best_baseline"]
            ci = f"{vs['diff']:+.3f} [{vs['ci_low']:+.3f}, {vs['ci_high']:+.3f}]" if vs else "(is it)"
            gap = f", {r['gap']:+.3f}" if r["gap"] is not None else ""
            cells.append(f"{r['returned']} {r['test']:.3f}, {ci}{gap}")
        lines.append(f"| {dataset_a}/{dataset_b} | {searcher} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stored_as(store, run_id: str, name: str, tests: dict) -> str:
    """The name a finalist's test scores are stored under. Runs stored before
    `Finalists.named_tests` kept a returned baseline whose prompt is the search's best (mipro's
    first candidate is often the manual prompt) only under the candidate's name."""
    if name in tests:
        return name
    from promptsearch.document import RunDocument

    doc = RunDocument.from_json(store.get_run(run_id).result)
    finalists = [doc.best, doc.search_best, *doc.baselines]
    prompt = next(f.prompt for f in finalists if f.name == name)
    return next((f.name for f in finalists if f.prompt == prompt and f.name in tests), name)


def matched(results: dict, a: str = "before", b: str = "after") -> str:
    """The two ways on the (dataset, searcher) pairs run both ways: mean test minus the best
    baseline, mean dev-test gap of the winners, and runs below the best baseline with CI < 0."""
    pairs = sorted(
        {k.rsplit("/", 1)[0] for k in results if k.endswith("/" + a)}
        & {k.rsplit("/", 1)[0] for k in results if k.endswith("/" + b)}
    )
    if not pairs:
        return ""
    out = []
    for way in (a, b):
        worse, diff, gap = summary({f"{p}/{way}": results[f"{p}/{way}"] for p in pairs})
        out.append(
            f"{way}: test minus best baseline {diff:+.4f}, winners' dev-test gap {gap:+.4f}, "
            f"below the best baseline with CI < 0 in {len(worse)}"
        )
    by_dataset: dict[str, list[float]] = {}
    for p in pairs:
        by_dataset.setdefault(p.rsplit("/", 1)[0], []).append(results[f"{p}/{b}"]["test"] - results[f"{p}/{a}"]["test"])
    cols = ", ".join(f"{d} {statistics.mean(v):+.4f} ({len(v)})" for d, v in sorted(by_dataset.items()))
    every = [x for v in by_dataset.values() for x in v]
    cols += f"; {b} higher in {sum(x > 0.0005 for x in every)}, lower in {sum(x < -0.0005 for x in every)}"
    return (
        f"- {len(pairs)} (dataset, searcher) pairs run {a} and {b}: " + "; ".join(out) + f". Test of {b} minus "
        f"{a}, per dataset (pairs): {cols}; mean of datasets "
        f"{statistics.mean(statistics.mean(v) for v in by_dataset.values()):+.4f}"
    )


def pooled(results: dict) -> str:
    """Per (searcher, way): what the runs return against the calibrated 16-shot baseline on the
    pooled test examples of every column measured, with the paired bootstrap interval (the
    issue's seven-column aim, over the columns there are)."""
    from promptsearch.evaluation.stats import paired_bootstrap
    from promptsearch.store.db import Store

    store, lines = Store(str(DB)), []
    for searcher in SEARCHERS:
        for variant in VARIANTS:
            rows = {k: r for k, r in results.items() if k.endswith(f"/{searcher}/{variant}")}
            a, b, cols = [], [], []
            for key, r in sorted(rows.items()):
                tests: dict = {}
                for t in store.run_tests(r["run_id"]):
                    tests.setdefault(t.candidate, {})[t.example_id] = t.score
                got, base = tests.get(stored_as(store, r["run_id"], r["returned"], tests)), tests.get("16-shot")
                if not got or not base:
                    continue
                ids = sorted(got)
                a += [got[i] for i in ids]
                b += [base[i] for i in ids]
                cols.append((key.rsplit("/", 2)[0], sum(got.values()) / len(got), sum(base.values()) / len(base)))
            if len(cols) < 2:
                continue
            d = paired_bootstrap(a, b)
            mean_a = statistics.mean(c[1] for c in cols)
            mean_b = statistics.mean(c[2] for c in cols)
            lines.append(
                f"- {searcher} {variant}, {len(cols)} of {len(DATASETS)} columns ({', '.join(c[0] for c in cols)}): "
                f"mean of columns {mean_a:.4f} against the calibrated 16-shot's {mean_b:.4f}; pooled over {d.n:,} "
                f"test examples {d.diff:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}]"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--searchers", nargs="+", default=list(SEARCHERS), choices=SEARCHERS)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--max-evals", type=int, default=600, help="example scorings per search")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table", action="store_true", help="print the tables from the results file and exit")
    args = ap.parse_args()
    if args.table:
        print(table(load()))
        print()
        print(matched(load()))
        print(matched(load(), "after", "after+train"))
        print(pooled(load()))
        return
    try:
        import torch

        torch.set_num_threads(int(os.environ.get("PROMPTSEARCH_THREADS", "1")))
    except ImportError:
        pass
    run(args)


if __name__ == "__main__":
    sys.exit(main())
