"""The few-shot classification table: every searcher on the same RLPrompt 16-shot splits,
the same target model and the same budget (in the shape of RLPrompt's Table 2).

Datasets: SST-2 (splits 16-13, 16-42, 16-100), MR, SUBJ, AG News and TREC (16-42; more with
`--seeds`). Test sets whole up to 2,000 examples; AG News on a fixed stratified 2,000
(`--agnews-full` runs all 7,600). Rows: the empty prompt, the best manual prompt (RLPrompt's
template and verbalizer, and the task's natural one), 4- and 16-shot in-context, APE,
AutoPrompt with and without label search, RL (instruction and tokens), prompt tuning,
P-tuning, prefix tuning and prompt tuning from the best discrete prompt. Every search gets
the same budget (`--budget-seconds`, default 600 s of search, or `--budget-calls`).

    python benchmarks/fewshot_table.py [--rows ape autoprompt ...] [--datasets sst-2 mr]  # resumes
    python benchmarks/fewshot_table.py --table [--datasets ...]  # the markdown table from results/
    python benchmarks/fewshot_table.py --device cuda --seeds 16-13 16-21 16-42 16-87 16-100  # the GPU table
    python benchmarks/fewshot_table.py --ray --workers 8 --threads 1  # the trials spread over a local Ray

The grid is the sweep spec `benchmarks/fewshot_table.yaml` (each row a searcher, its options
and harness; each dataset a task with its manual instruction): this script picks the trials
for the rows, datasets and seed folders asked for, runs them with the sweep's executors
(`--workers N` local processes, or `--ray [--ray-address ...]`), and turns each finished
run into the table's rows. One SQLite database (cache, runs and trials) for the whole
table, so a rerun or an interrupted run resumes where it stopped; results in `benchmarks/results/fewshot_table.json`, or
`fewshot_table_cuda.json` (and `out/fewshot_table_cuda.db`) with `--device cuda`, so a GPU
run is kept as a second table (`--table --device cuda` prints it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "rlprompt"
RESULTS = ROOT / "benchmarks" / "results" / "fewshot_table.json"
DB = ROOT / "benchmarks" / "out" / "fewshot_table.db"
SPEC = ROOT / "benchmarks" / "fewshot_table.yaml"  # the grid: every row as a sweep trial
DATASETS = ("sst-2", "mr", "subj", "agnews", "trec")
# RLPrompt's left-to-right template "{sentence} {prompt}" and verbalizers (fsc_helpers.py)
RLPROMPT_LABELS = {
    "sst-2": ["terrible", "great"],
    "mr": ["terrible", "great"],
    "subj": ["subjective", "objective"],
    "agnews": ["World", "Sports", "Business", "Tech"],
    "trec": ["Description", "Entity", "Expression", "Human", "Location", "Number"],
}
MANUAL = {
    "sst-2": "Is the following movie review positive or negative?",
    "mr": "Is the following movie review positive or negative?",
    "subj": "Is the following text subjective or objective?",
    "agnews": "What is the topic of the following news article?",
    "trec": "What kind of answer does the following question ask for?",
}
ROWS = {  # row name -> (searcher, options) ; None: a baseline scored directly
    "empty": None,
    "manual (natural)": None,
    "manual (RLPrompt)": None,
    "4-shot": None,
    "16-shot": None,
    "ape": ("ape", {}),
    "autoprompt": ("autoprompt", {}),
    "autoprompt + label search": ("autoprompt", {"search_labels": "true"}),
    "rl (instruction)": ("rl", {"style": "instruction"}),
    "rl (tokens)": ("rl", {"style": "tokens"}),
    "prompt tuning": ("soft", {"method": "prompt"}),
    "p-tuning": ("soft", {"method": "ptuning"}),
    "prefix tuning": ("soft", {"method": "prefix"}),
    "prompt tuning from best discrete": ("soft", {"method": "prompt", "init": "best"}),
}
# Calibrated rows (promptsearch/evaluation/calibration.py): the baselines under each mode, and
# searches under the default mode. Every score of such a row (search and test) is calibrated.
MODES = ("contextual", "domain", "batch")
HARNESS: dict[str, str] = {}
ROWS["demos"] = ("demos", {})
# the black-box optimizers (searchers/opro.py, grips.py, mipro.py, gepa.py), the target as proposer
for _name in ("opro", "grips", "mipro", "gepa"):
    ROWS[_name] = (_name, {})
for _base in ("manual (natural)", "4-shot", "16-shot"):
    for _mode in MODES:
        ROWS[f"{_base} · {_mode}"] = None
        HARNESS[f"{_base} · {_mode}"] = f"calibrate:mode={_mode}"
for _row, _spec in {
    "demos": ("demos", {}),
    "demos (16 shots)": ("demos", {"shots": "16"}),
    "ape": ROWS["ape"],
    "rl (instruction)": ROWS["rl (instruction)"],
    "autoprompt + label search": ROWS["autoprompt + label search"],
    "prompt tuning": ROWS["prompt tuning"],
    "grips": ("grips", {}),
    "mipro": ("mipro", {}),
    "mipro (16 shots)": ("mipro", {"shots": "16"}),
}.items():
    ROWS[f"{_row} · calibrated"] = _spec
    HARNESS[f"{_row} · calibrated"] = "calibrate"


def packed(scores: list[float]) -> str | list[float]:
    """Per-example test scores, kept for the paired bootstrap: '0110...' for 0/1 scores."""
    return (
        "".join(str(int(s)) for s in scores) if all(s in (0.0, 1.0) for s in scores) else [round(s, 4) for s in scores]
    )


def unpacked(scores: str | list[float]) -> list[float]:
    return [float(c) for c in scores] if isinstance(scores, str) else list(scores)


# --- the table as a sweep (benchmarks/fewshot_table.yaml) ------------------------------------

BASELINE_ROWS = {"empty": "empty", "manual-1": "manual (natural)", "4-shot": "4-shot", "16-shot": "16-shot"}


def where(trial) -> tuple[str, str]:
    """(dataset, seed folder) of a trial: its task's name is 'DATASET/16-SEED[ rlprompt]'."""
    from promptsearch.sweep.spec import task_name

    dataset, seed = task_name(trial.task).split()[0].split("/")
    return dataset, seed


def trial_rows(trial) -> dict[str, str]:
    """The table's rows a trial fills: row name -> the candidate of its run that is that row
    (a baseline candidate's name, or "" for the search's own best)."""
    from promptsearch.sweep.spec import task_name

    harness = trial.harness
    opts = dict(trial.options)
    if trial.searcher == "baseline":
        if task_name(trial.task).endswith(" rlprompt"):  # RLPrompt's template and verbalizers: the empty candidate
            return {"manual (RLPrompt)": "empty"}
        wanted = ["16-shot"] if opts.get("shots") == "16" else ["empty", "manual-1", "4-shot"]
        suffix = "" if harness == "zero-shot" else f" · {harness.split('mode=')[-1]}"
        rows = {BASELINE_ROWS[c] + suffix: c for c in wanted}
        return {r: c for r, c in rows.items() if r in ROWS}
    for row, spec in ROWS.items():
        if spec and spec == (trial.searcher, opts) and (harness == "calibrate") == row.endswith(" · calibrated"):
            return {row: ""}
    return {}


def sweep_trials(spec, rows: list[str], datasets: list[str], seeds: list[str] | None, model: str, budget) -> list:
    """The spec's trials that fill the chosen rows on the chosen datasets and seed folders,
    with the model and search budget given here."""
    chosen = []
    for t in spec.trials:  # each dataset's 16-42 trials stand for every seed folder asked for
        dataset, seed = where(t)
        if seed != "16-42" or dataset not in datasets or not set(trial_rows(t)) & set(rows):
            continue
        for want in seeds or (["16-13", "16-42", "16-100"] if dataset == "sst-2" else ["16-42"]):
            v = replace(t, task=t.task.replace("/16-42", f"/{want}"), model=model)
            chosen.append(v if v.searcher == "baseline" else replace(v, budget=tuple(sorted(budget.items()))))
    return list(dict.fromkeys(chosen))


def results_of(store, trial, run_id: str, wall: float) -> dict[str, dict]:
    """A finished trial's rows in the results file's shape (keys row|dataset|seed|model)."""
    from promptsearch.sweep.spec import resolve_task

    doc = json.loads(store.get_run(run_id).result)
    task = resolve_task(trial.task)
    dataset, seed = where(trial)
    best = doc.get("search_best", doc["best"])
    devs = {b["name"]: b["dev"]["mean"] for b in doc["baselines"]} | {best["name"]: best["dev"]["mean"]}
    tests = store.run_tests(run_id)
    cost = doc["cost"]
    out = {}
    for row, cand in trial_rows(trial).items():
        name = cand or best["name"]
        mine = {t.example_id: t for t in tests if t.candidate == name}
        if len(mine) < len(task.test):
            continue  # this run did not score that candidate on test (a baseline that was left out)
        scores = [mine[e.id].score for e in task.test]
        r = {
            "dev": round(devs[name], 4),
            "test": round(statistics.mean(scores), 4),
            "test_n": len(scores),
            "scores": packed(scores),
            "predicted": dict(Counter(mine[e.id].prediction for e in task.test)),
            "harness": doc["harness"],
            "run_id": run_id,
        }
        if cand:  # a baseline: no search of its own
            r.update(
                calls=cost["search"]["calls"] + cost["test"]["calls"], wall_seconds=round(wall, 1), budget="no search"
            )
            del r["run_id"]
        else:
            r.update(
                run_picked=doc["best"].get("picked", "search"),
                prompt=best["prompt"][:120],
                calls=cost["search"]["calls"],
                cache_hits=cost["search"]["cache_hits"],
                test_calls=cost["test"]["calls"],
                test_cache_hits=cost["test"]["cache_hits"],
                search_seconds=cost["search"]["seconds"],
                wall_seconds=round(wall, 1),
                stopped_by=doc["stopped_by"],
            )
        out[f"{row}|{dataset}|{seed}|{trial.model}"] = r
    return out


def with_cache_hits(results: dict) -> dict:
    """Searches stored before their cache hits (search and test phase) were kept get them from
    their run in the table's database, where that database is here: requests = model calls +
    cache hits is the same whether or not an earlier, interrupted run left answers in the cache.
    A run not in this database keeps only its model calls (`requests` then gives a lower bound)."""
    missing = [r for r in results.values() if "run_id" in r and "test_cache_hits" not in r]
    if not missing or not DB.exists():
        return results
    from promptsearch.store.db import Store

    store = Store(DB)
    for r in missing:
        try:
            cost = json.loads(store.get_run(r["run_id"]).result)["cost"]
        except Exception:  # noqa: BLE001 - a run not in this database: requests stay unknown
            continue
        r["cache_hits"] = cost["search"]["cache_hits"]
        r["test_calls"], r["test_cache_hits"] = cost["test"]["calls"], cost["test"]["cache_hits"]
    return results


def requests(r: dict) -> tuple[int, bool]:
    """A search's model requests (calls + cache hits) and whether that is exact: a search stored
    without its cache hits, whose run database is gone, counts its model calls only."""
    return r["calls"] + r.get("cache_hits", 0), "cache_hits" in r


def replayed(r: dict) -> bool:
    """A search answered mostly from the cache (an interrupted run had done it), or, stored
    without its cache hits, one that made no model call: its wall time is not a search's."""
    return r.get("cache_hits", 0) > r["calls"] or ("cache_hits" not in r and r["calls"] == 0)


def cold(r: dict) -> bool:
    """A run whose test phase found nothing in the cache, so it also scored the run's baselines
    on test itself (later runs take them from the cache): its wall time is not comparable."""
    return r.get("test_cache_hits") == 0 and r.get("test_calls", 0) > 0


def table(results: dict, budget_note: str) -> str:
    datasets = [d for d in DATASETS if any(k.split("|")[1] == d for k in results)]
    head = "| method | " + " | ".join(datasets) + " | mean | requests per search | wall per search |"
    rows = [head, "|" + "---|" * (len(datasets) + 4)]
    seeds = {d: {k.split("|")[2] for k in results if k.split("|")[1] == d} for d in datasets}  # seeds run so far
    for row in ROWS:
        cells, means, reqs, walls = [], [], [], []
        for d in datasets:
            vals = [r for k, r in results.items() if k.startswith(f"{row}|{d}|") and "test" in r]
            if not vals:
                cells.append("–")
                continue
            tests = [v["test"] for v in vals]
            means.append(statistics.mean(tests))
            # a search stored without its cache hits that made no model call: unknown, not 0
            reqs += [requests(v) for v in vals if "run_id" in v and ("cache_hits" in v or v["calls"])]
            walls += [v["wall_seconds"] for v in vals if "run_id" in v and not replayed(v) and not cold(v)]
            cells.append(
                f"{statistics.mean(tests):.3f}"
                + (f" ± {statistics.stdev(tests):.3f}" if len(tests) > 1 else "")
                + (f" ({len(tests)} of {len(seeds[d])} seeds)" if len(tests) < len(seeds[d]) else "")
            )
        if not means:
            continue
        mean = f"{statistics.mean(means):.3f}" if len(means) == len(datasets) else "–"  # only over every dataset
        exact = all(e for _, e in reqs)  # else a lower bound: some searches' cache hits are not known
        cost = (
            (("≥ " if not exact else "") + f"{statistics.mean(n for n, _ in reqs):,.0f}" if reqs else "–")
            + " | "
            + (f"{statistics.mean(walls):.0f} s" if walls else "–")
        )
        rows.append(
            f"| {row} | " + " | ".join(cells) + f" | {mean} | " + (cost if ROWS[row] else "no search | –") + " |"
        )
    out = f"Budget per search: {budget_note}.\n\n" + "\n".join(rows)
    searches = {k.rsplit("|", 1)[0]: v for k, v in results.items() if "run_id" in v}
    for why, test in (
        ("answered mostly from the cache an interrupted run had filled", replayed),
        ("a fresh cache: its test phase also scored the run's baselines", cold),
    ):
        left_out = sorted(k for k, v in searches.items() if test(v))
        if left_out:
            out += f"\n\nLeft out of the wall-time means ({why}): " + ", ".join(left_out) + "."
    unknown = sum(1 for v in searches.values() if not requests(v)[1])
    if unknown:
        out += (
            f"\n\n≥: {unknown} searches were stored without their cache hits and their run database is "
            "not here, so they count their model calls only (a lower bound)."
        )
    return out


def best_manual(results: dict, dataset: str, seed: str, model: str) -> dict | None:
    """The better manual prompt on dev (natural first on a tie): the bar a search must clear."""
    found = [results.get(f"{m}|{dataset}|{seed}|{model}") for m in ("manual (natural)", "manual (RLPrompt)")]
    found = [r for r in found if r and "scores" in r]
    return max(found, key=lambda r: r["dev"]) if found else None


def versus_manual(results: dict) -> str:
    """Test accuracy minus the best manual prompt's (chosen on dev; per seed), paired bootstrap 95%
    CI on the test examples. A dataset's seeds share its test set, so each test example's scores are
    averaged over the seeds before resampling: the example is the unit, not example x seed."""
    from promptsearch.evaluation.stats import paired_bootstrap

    datasets = [d for d in DATASETS if any(k.split("|")[1] == d for k in results)]
    rows = ["| method | " + " | ".join(datasets) + " |", "|" + "---|" * (len(datasets) + 1)]
    for row in ROWS:
        if row in ("manual (natural)", "manual (RLPrompt)"):
            continue
        cells, any_cell = [], False
        for d in datasets:
            a, b = [], []  # one score list per seed
            for k, r in results.items():
                name, dd, seed, model = k.split("|")
                bar = best_manual(results, d, seed, model)
                if name == row and dd == d and "scores" in r and bar:
                    a.append(unpacked(r["scores"]))
                    b.append(unpacked(bar["scores"]))
            if not a:
                cells.append("–")
                continue
            any_cell = True
            if len({len(x) for x in a}) == 1:  # the same test set under every seed
                a, b = [[statistics.mean(col) for col in zip(*x)] for x in (a, b)]
            else:
                a, b = [v for x in a for v in x], [v for x in b for v in x]
            diff = paired_bootstrap(a, b)
            mark = "**" if diff.ci_low > 0 else ""
            cells.append(f"{mark}{diff.diff:+.3f} [{diff.ci_low:+.3f}, {diff.ci_high:+.3f}]{mark}")
        if any_cell:
            rows.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def one_label_share(results: dict) -> str:
    """Per row and dataset, the largest share of the test set given one label (mean over
    seeds): a row near 1.0 answers one label for (almost) everything."""
    datasets = [d for d in DATASETS if any(k.split("|")[1] == d for k in results)]
    rows = ["| method | " + " | ".join(datasets) + " |", "|" + "---|" * (len(datasets) + 1)]
    for row in ROWS:
        cells = []
        for d in datasets:
            shares = [
                max(r["predicted"].values()) / sum(r["predicted"].values())
                for k, r in results.items()
                if k.startswith(f"{row}|{d}|") and r.get("predicted")
            ]
            cells.append(f"{statistics.mean(shares):.2f}" if shares else "–")
        if any(c != "–" for c in cells):
            rows.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(results: dict, path: Path) -> None:
    """Accuracy per dataset, one marker per method (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in DATASETS if any(k.split("|")[1] == d for k in results)]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    markers = "os^vD<>pP*Xhd8"
    for i, row in enumerate(ROWS):
        xs, ys = [], []
        for j, d in enumerate(datasets):
            vals = [r["test"] for k, r in results.items() if k.startswith(f"{row}|{d}|")]
            if vals:
                xs.append(j + (i - len(ROWS) / 2) * 0.03)
                ys.append(statistics.mean(vals))
        if xs:
            ax.scatter(xs, ys, marker=markers[i % len(markers)], label=row, s=40)
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # outside: 15 rows
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    global DB, RESULTS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--plot", type=Path, default=None, help="with --table: also write the table as a PNG plot")
    ap.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=DATASETS)
    ap.add_argument(
        "--seeds", nargs="*", default=None, help="default: SST-2 on 16-13 16-42 16-100, the others on 16-42"
    )
    ap.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--device", default=None, help="cuda, cpu (default: the machine's)")
    ap.add_argument("--budget-seconds", type=float, default=600.0)
    ap.add_argument("--budget-calls", type=int, default=None)
    ap.add_argument("--agnews-full", action="store_true")
    ap.add_argument("--db", type=Path, default=None, help="the table's SQLite cache and runs")
    ap.add_argument("--results", type=Path, default=None, help="where results are kept (JSON)")
    ap.add_argument(
        "--redo",
        action="store_true",
        help="run rows again even if stored (the cache answers "
        "what it holds; adds what older results lack, such as predicted-label counts)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads per trial (default: torch's)")
    ap.add_argument("--workers", type=int, default=1, help="trials at once (local processes, or Ray CPUs)")
    ap.add_argument("--ray", action="store_true", help="run the trials as Ray tasks (pip install 'promptsearch[ray]')")
    ap.add_argument("--ray-address", default=None, help="with --ray: an existing cluster")
    args = ap.parse_args()
    suffix = (
        f"_{args.device.split(':')[0]}" if args.device and args.device != "cpu" else ""
    )  # a GPU table is a second table
    DB = args.db or DB.with_name(f"fewshot_table{suffix}.db")
    RESULTS = args.results or RESULTS.with_name(f"fewshot_table{suffix}.json")
    note = f"{args.budget_calls:,} model calls" if args.budget_calls else f"{args.budget_seconds:.0f} s of search"
    results = with_cache_hits(json.loads(RESULTS.read_text()) if RESULTS.exists() else {})
    if args.table:
        results = {k: r for k, r in results.items() if k.split("|")[1] in args.datasets}  # --datasets: a subset
        if not results:
            raise SystemExit(
                f"no results for {', '.join(args.datasets)} in {RESULTS}: run the table first (without --table)"
            )
        notes = sorted({r["budget"] for r in results.values() if r.get("budget", "no search") != "no search"}) or [note]
        print(table(results, "; ".join(notes)))
        print(
            "\nDifference from the best manual prompt (chosen on dev), 95% paired bootstrap CI on the test examples"
            " (each example's scores averaged over the seeds); bold where the whole CI is above zero:\n"
        )
        print(versus_manual(results))
        print("\nLargest share of one predicted label on test (rows whose predictions are stored):\n")
        print(one_label_share(results))
        if args.plot:
            plot(results, args.plot)
        return
    if args.device:
        os.environ["PROMPTSEARCH_DEVICE"] = args.device  # the trials' worker processes inherit it
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.chdir(ROOT)  # the spec's task paths are relative to the checkout
    from promptsearch.store.db import Store
    from promptsearch.sweep.executors import LocalExecutor, RayExecutor
    from promptsearch.sweep.run import run_sweep
    from promptsearch.sweep.spec import load_spec

    spec = load_spec(SPEC)
    budget_doc = (
        {"max_calls": float(args.budget_calls)} if args.budget_calls else {"max_seconds": float(args.budget_seconds)}
    )
    trials = sweep_trials(spec, args.rows, args.datasets, args.seeds, args.model, budget_doc)
    if args.agnews_full:  # all 7,600 AG News test articles
        trials = [
            replace(
                t, task=json.dumps({k: v for k, v in json.loads(t.task).items() if k != "test_sample"}, sort_keys=True)
            )
            if "test_sample" in t.task
            else t
            for t in trials
        ]
    todo = [
        t
        for t in trials
        if args.redo
        or not all(f"{row}|{'|'.join(where(t))}|{t.model}" in results for row in set(trial_rows(t)) & set(args.rows))
    ]
    print(
        f"{len(todo)} of {len(trials)} trials to run ({len(trials) - len(todo)} already in {RESULTS.name})", flush=True
    )
    if not todo:
        return
    DB.parent.mkdir(parents=True, exist_ok=True)
    store = Store(str(DB))
    started: dict[str, float] = {}

    def on_change(progress, trial, kind, info) -> None:
        if kind == "start":
            started[trial.key()] = time.time()
            print(f"== {trial.label()}", flush=True)
        elif kind == "failed":
            print(f"   failed: {info}", flush=True)
        elif kind == "done":
            rows = results_of(store, trial, info["run_id"], time.time() - started.get(trial.key(), time.time()))
            for key, r in rows.items():
                if key.split("|")[0] in args.rows:
                    results[key] = r
                    print(f"   {key}: test {r['test']:.4f}", flush=True)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1))

    executor = RayExecutor(address=args.ray_address, num_cpus=args.workers) if args.ray else LocalExecutor(args.workers)
    run_sweep(replace(spec, trials=todo), store, executor, str(DB), on_change)


if __name__ == "__main__":
    main()
