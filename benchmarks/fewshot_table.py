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

One SQLite database (cache and runs) for the whole table, so a rerun or an interrupted run
resumes where it stopped; results in `benchmarks/results/fewshot_table.json`, or
`fewshot_table_cuda.json` (and `out/fewshot_table_cuda.db`) with `--device cuda`, so a GPU
run is kept as a second table (`--table --device cuda` prints it).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
import os
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "rlprompt"
RESULTS = ROOT / "benchmarks" / "results" / "fewshot_table.json"
DB = ROOT / "benchmarks" / "out" / "fewshot_table.db"
DATASETS = ("sst-2", "mr", "subj", "agnews", "trec")
# RLPrompt's left-to-right template "{sentence} {prompt}" and verbalizers (fsc_helpers.py)
RLPROMPT_LABELS = {
    "sst-2": ["terrible", "great"], "mr": ["terrible", "great"], "subj": ["subjective", "objective"],
    "agnews": ["World", "Sports", "Business", "Tech"],
    "trec": ["Description", "Entity", "Expression", "Human", "Location", "Number"],
}
MANUAL = {
    "sst-2": "Is the following movie review positive or negative?", "mr": "Is the following movie review positive or negative?",
    "subj": "Is the following text subjective or objective?", "agnews": "What is the topic of the following news article?",
    "trec": "What kind of answer does the following question ask for?",
}
ROWS = {  # row name -> (searcher, options) ; None: a baseline scored directly
    "empty": None, "manual (natural)": None, "manual (RLPrompt)": None, "4-shot": None, "16-shot": None,
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
for _row, _spec in {"demos": ("demos", {}), "demos (16 shots)": ("demos", {"shots": "16"}), "ape": ROWS["ape"], "rl (instruction)": ROWS["rl (instruction)"],
                    "autoprompt + label search": ROWS["autoprompt + label search"],
                    "prompt tuning": ROWS["prompt tuning"]}.items():
    ROWS[f"{_row} · calibrated"] = _spec
    HARNESS[f"{_row} · calibrated"] = "calibrate"


def load(dataset: str, seed: str, agnews_full: bool):
    from promptsearch.tasks.loaders import load_task

    task = load_task(str(DATA / dataset / seed))
    if dataset == "agnews" and not agnews_full and len(task.test) > 2000:  # fixed stratified 2,000
        by: dict[str, list] = {}
        for e in task.test:
            by.setdefault(e.label, []).append(e)
        rng = random.Random(0)
        test = [e for lab in sorted(by) for e in rng.sample(by[lab], 2000 // len(by))]
        task = replace(task, test=test)
    return replace(task, instructions=[MANUAL[dataset]])


def baseline(row: str, task, dataset: str, model: str, seed: int):
    """A prompt scored on dev and test without search."""
    from promptsearch.candidates import Candidate
    from promptsearch.evaluation.evaluator import Evaluator
    from promptsearch.runner import prepare
    from promptsearch.searchers.baseline import pick_demos

    harness = HARNESS.get(row)
    row = row.split(" · ")[0]
    if row == "manual (RLPrompt)":
        names = list(task.labels)
        task = replace(task, template="{input}", labels=dict(zip(names, RLPROMPT_LABELS[dataset])))
        cand = Candidate(name=row)
    elif row == "manual (natural)":
        cand = Candidate(instruction=MANUAL[dataset], name=row)
    elif row.endswith("-shot"):
        k = int(row.split("-")[0])
        cand = Candidate(demos=tuple(pick_demos(task, min(k, len(task.train)), seed, True)), name=row)
    else:
        cand = Candidate(name=row)
    setup = prepare(task, model, db=str(DB))
    t0 = time.time()
    dev = Evaluator(setup.task, setup.backend, harness=harness).score(cand, task.dev)
    test = Evaluator(setup.task, setup.backend, harness=harness).score(cand, task.test, split="test")
    return {"dev": round(dev.mean, 4), "test": round(test.mean, 4), "test_n": test.n, "scores": packed(test.scores),
            "predicted": dict(Counter(test.predictions)), "harness": harness or "zero-shot",
            "calls": dev.cost.calls + test.cost.calls, "wall_seconds": round(time.time() - t0, 1)}


def packed(scores: list[float]) -> str | list[float]:
    """Per-example test scores, kept for the paired bootstrap: '0110...' for 0/1 scores."""
    return "".join(str(int(s)) for s in scores) if all(s in (0.0, 1.0) for s in scores) else [round(s, 4) for s in scores]


def unpacked(scores: str | list[float]) -> list[float]:
    return [float(c) for c in scores] if isinstance(scores, str) else list(scores)


def search(row: str, task, model: str, seed: int, budget):
    from promptsearch.runner import run_search
    from promptsearch.store.db import Store

    searcher, opts = ROWS[row]
    t0 = time.time()
    doc = run_search(task, model=model, searcher=searcher, options=opts, seed=seed, db=str(DB), budget=budget,
                     baseline_shots=0, harness=HARNESS.get(row))
    # the searcher's own best (a run now returns a baseline that beat it on dev: the row is the search's)
    best = doc.get("search_best", doc["best"])
    tests = [t for t in Store(DB).run_tests(doc["run_id"]) if t.candidate == best["name"]]
    by_id = {t.example_id: t.score for t in tests}
    return {"dev": best["dev"]["mean"], "test": best["test"]["mean"], "test_n": best["test"]["n"],
            "scores": packed([by_id[e.id] for e in task.test]), "predicted": dict(Counter(t.prediction for t in tests)),
            "harness": doc["harness"], "run_picked": doc["best"].get("picked", "search"),
            "prompt": best["prompt"][:120], "run_id": doc["run_id"], "calls": doc["cost"]["search"]["calls"],
            "cache_hits": doc["cost"]["search"]["cache_hits"],
            "test_calls": doc["cost"]["test"]["calls"], "test_cache_hits": doc["cost"]["test"]["cache_hits"],
            "search_seconds": doc["cost"]["search"]["seconds"], "wall_seconds": round(time.time() - t0, 1),
            "stopped_by": doc["stopped_by"]}


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
            cells.append(f"{statistics.mean(tests):.3f}" + (f" ± {statistics.stdev(tests):.3f}" if len(tests) > 1 else "")
                         + (f" ({len(tests)} of {len(seeds[d])} seeds)" if len(tests) < len(seeds[d]) else ""))
        if not means:
            continue
        mean = f"{statistics.mean(means):.3f}" if len(means) == len(datasets) else "–"  # only over every dataset
        exact = all(e for _, e in reqs)  # else a lower bound: some searches' cache hits are not known
        cost = (("≥ " if not exact else "") + f"{statistics.mean(n for n, _ in reqs):,.0f}" if reqs else "–") + " | " + \
            (f"{statistics.mean(walls):.0f} s" if walls else "–")
        rows.append(f"| {row} | " + " | ".join(cells) + f" | {mean} | " + (cost if ROWS[row] else "no search | –") + " |")
    out = f"Budget per search: {budget_note}.\n\n" + "\n".join(rows)
    searches = {k.rsplit("|", 1)[0]: v for k, v in results.items() if "run_id" in v}
    for why, test in (("answered mostly from the cache an interrupted run had filled", replayed),
                      ("a fresh cache: its test phase also scored the run's baselines", cold)):
        left_out = sorted(k for k, v in searches.items() if test(v))
        if left_out:
            out += f"\n\nLeft out of the wall-time means ({why}): " + ", ".join(left_out) + "."
    unknown = sum(1 for v in searches.values() if not requests(v)[1])
    if unknown:
        out += (f"\n\n≥: {unknown} searches were stored without their cache hits and their run database is "
                "not here, so they count their model calls only (a lower bound).")
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
            shares = [max(r["predicted"].values()) / sum(r["predicted"].values())
                      for k, r in results.items() if k.startswith(f"{row}|{d}|") and r.get("predicted")]
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
    ap.add_argument("--seeds", nargs="*", default=None, help="default: SST-2 on 16-13 16-42 16-100, the others on 16-42")
    ap.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--device", default=None, help="cuda, cpu (default: the machine's)")
    ap.add_argument("--budget-seconds", type=float, default=600.0)
    ap.add_argument("--budget-calls", type=int, default=None)
    ap.add_argument("--agnews-full", action="store_true")
    ap.add_argument("--db", type=Path, default=None, help="the table's SQLite cache and runs")
    ap.add_argument("--results", type=Path, default=None, help="where results are kept (JSON)")
    ap.add_argument("--redo", action="store_true", help="score baseline rows again even if stored (the cache "
                    "answers them; adds what older results lack, such as predicted-label counts)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    suffix = f"_{args.device.split(':')[0]}" if args.device and args.device != "cpu" else ""  # a GPU table is a second table
    DB = args.db or DB.with_name(f"fewshot_table{suffix}.db")
    RESULTS = args.results or RESULTS.with_name(f"fewshot_table{suffix}.json")
    from promptsearch.budget import Budget

    budget = Budget(max_calls=args.budget_calls) if args.budget_calls else Budget(max_seconds=args.budget_seconds)
    note = f"{args.budget_calls:,} model calls" if args.budget_calls else f"{args.budget_seconds:.0f} s of search"
    results = with_cache_hits(json.loads(RESULTS.read_text()) if RESULTS.exists() else {})
    if args.table:
        results = {k: r for k, r in results.items() if k.split("|")[1] in args.datasets}  # --datasets: a subset
        if not results:
            raise SystemExit(f"no results for {', '.join(args.datasets)} in {RESULTS}: run the table first (without --table)")
        notes = sorted({r["budget"] for r in results.values() if r.get("budget", "no search") != "no search"}) or [note]
        print(table(results, "; ".join(notes)))
        print("\nDifference from the best manual prompt (chosen on dev), 95% paired bootstrap CI on the test examples"
              " (each example's scores averaged over the seeds); bold where the whole CI is above zero:\n")
        print(versus_manual(results))
        print("\nLargest share of one predicted label on test (rows whose predictions are stored):\n")
        print(one_label_share(results))
        if args.plot:
            plot(results, args.plot)
        return
    if args.device:
        os.environ["PROMPTSEARCH_DEVICE"] = args.device
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    DB.parent.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets:
        seeds = args.seeds or (["16-13", "16-42", "16-100"] if dataset == "sst-2" else ["16-42"])
        for seed_dir in seeds:
            task = load(dataset, seed_dir, args.agnews_full)
            for row in args.rows:
                key = f"{row}|{dataset}|{seed_dir}|{args.model}"
                if key in results and not (args.redo and ROWS[row] is None):
                    continue
                print(f"== {key}", flush=True)
                try:
                    r = baseline(row, task, dataset, args.model, 0) if ROWS[row] is None else search(row, task, args.model, 0, budget)
                except Exception as e:  # noqa: BLE001 - a row that cannot run here (no stored prompt for init=best, say)
                    print(f"   skipped: {type(e).__name__}: {e}", flush=True)
                    continue
                r["budget"] = note if ROWS[row] else "no search"
                results[key] = r
                print(f"   test {r['test']:.4f} ({r['wall_seconds']:.0f} s)", flush=True)
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                RESULTS.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
