"""The few-shot table's bookkeeping (benchmarks/fewshot_table.py) on synthetic stored results:
what its table and bootstrap columns report, and which searches its wall means leave out."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fewshot_table.py"


@pytest.fixture(scope="module")
def ft():
    spec = importlib.util.spec_from_file_location("fewshot_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def search(test, calls, wall, scores="1100", **more):
    return {
        "dev": 0.5,
        "test": test,
        "test_n": 4,
        "scores": scores,
        "run_id": f"r{wall}",
        "calls": calls,
        "wall_seconds": wall,
        "search_seconds": 10.0,
        "stopped_by": "",
        "budget": "120 s of search",
        **more,
    }


def base(test, scores="1000", dev=0.5):
    return {
        "dev": dev,
        "test": test,
        "test_n": 4,
        "scores": scores,
        "calls": 8,
        "wall_seconds": 1.0,
        "budget": "no search",
    }


def row_of(table: str, name: str) -> list[str]:
    (line,) = [ln for ln in table.splitlines() if ln.startswith(f"| {name} |")]
    return [c.strip() for c in line.strip("|").split("|")]


def test_table_means_requests_and_walls(ft):
    results = {
        "empty|sst-2|16-13|m": base(0.25),
        "empty|sst-2|16-42|m": base(0.25),
        "empty|trec|16-42|m": base(0.5),
        # exact requests (cache hits kept): 100 + 20 and 200 + 0; the 16-42 run found a cold cache
        "ape|sst-2|16-13|m": search(0.5, 100, 50.0, cache_hits=20, test_calls=8, test_cache_hits=16),
        "ape|sst-2|16-42|m": search(0.75, 200, 900.0, cache_hits=0, test_calls=24, test_cache_hits=0),
        "ape|trec|16-42|m": search(1.0, 300, 70.0, cache_hits=0, test_calls=8, test_cache_hits=16),
    }
    t = ft.table(results, "120 s of search")
    ape = row_of(t, "ape")
    assert ape[1] == "0.625 ± 0.177" and ape[2] == "1.000"
    assert ape[3] == f"{(0.625 + 1.0) / 2:.3f}"  # the mean over datasets, each dataset's mean over seeds
    assert ape[4] == f"{(120 + 200 + 300) / 3:,.0f}"  # exact: no lower-bound mark
    assert ape[5] == "60 s"  # the cold-cache run (900 s) is left out, and named
    assert "ape|sst-2|16-42" in t.split("fresh cache")[1] and "≥" not in t
    assert row_of(t, "empty")[4:] == ["no search", "–"]

    # a search stored without its cache hits counts model calls only: the mean is a lower bound;
    # one that made no model call at all was replayed from the cache and is left out of both means
    results["ape|trec|16-42|m"] = search(1.0, 300, 70.0)
    results["ape|mr|16-42|m"] = search(1.0, 0, 5.0)
    t = ft.table(results, "120 s of search")
    ape = row_of(t, "ape")
    assert ape[5] == f"≥ {(120 + 200 + 300) / 3:,.0f}" and ape[6] == "60 s"  # columns: sst-2, mr, trec
    assert "ape|mr|16-42" in t.split("interrupted run")[1] and "2 searches were stored without" in t
    assert ape[4] == f"{(0.625 + 1.0 + 1.0) / 3:.3f}"
    assert row_of(t, "empty")[2] == "–" and row_of(t, "empty")[4] == "–"  # no mr result: no mean over datasets


def test_versus_manual_uses_the_dev_chosen_manual_prompt_and_averages_seeds(ft):
    ones, zeros = "1" * 40, "0" * 40
    results = {
        # RLPrompt's prompt is better on dev, so it is the bar, though the natural one is better on test
        "manual (natural)|subj|16-42|m": base(1.0, ones, dev=0.4),
        "manual (RLPrompt)|subj|16-42|m": base(0.0, zeros, dev=0.9),
        "ape|subj|16-42|m": search(0.5, 10, 5.0, scores="10" * 20),
    }
    cell = row_of(ft.versus_manual(results), "ape")[1]
    assert cell.startswith("**+0.500 [") and cell.endswith("]**")  # above the bar: bold

    # two seeds sharing one test set: each example's scores are averaged over the seeds first, so a
    # search right on one seed and wrong on the other is exactly a bar of 0.5 (pooled pairs would not be)
    results = {f"manual (natural)|sst-2|{s}|m": base(0.5, [0.5] * 40) for s in ("16-13", "16-42")}
    results["ape|sst-2|16-13|m"] = search(1.0, 10, 5.0, scores=ones)
    results["ape|sst-2|16-42|m"] = search(0.0, 10, 5.0, scores=zeros)
    assert row_of(ft.versus_manual(results), "ape")[1] == "+0.000 [+0.000, +0.000]"


def test_scores_pack_and_unpack(ft):
    assert ft.packed([1.0, 0.0, 1.0]) == "101" and ft.unpacked("101") == [1.0, 0.0, 1.0]
    assert ft.unpacked(ft.packed([0.25, 1.0])) == [0.25, 1.0]


def test_the_table_is_a_sweep_spec_and_every_row_has_its_trials(ft):
    """benchmarks/fewshot_table.yaml names every row of the table: the script's chosen rows,
    datasets and seed folders pick its trials, and each trial says which rows its run fills."""
    import os

    from promptsearch.sweep.spec import load_spec

    spec = load_spec(ft.SPEC)
    here = os.getcwd()
    try:
        os.chdir(ft.ROOT)
        trials = ft.sweep_trials(spec, list(ft.ROWS), list(ft.DATASETS), None, "embedded", {"max_calls": 50.0})
    finally:
        os.chdir(here)
    filled = {row for t in trials for row in ft.trial_rows(t)}
    assert filled == set(ft.ROWS)  # no row without a trial
    assert {ft.where(t) for t in trials} == {
        ("sst-2", "16-13"),
        ("sst-2", "16-42"),
        ("sst-2", "16-100"),
        ("mr", "16-42"),
        ("subj", "16-42"),
        ("agnews", "16-42"),
        ("trec", "16-42"),
    }
    # searches take the budget given here, baselines keep theirs; the model is the one asked for
    assert all(dict(t.budget) == {"max_calls": 50.0} for t in trials if t.searcher != "baseline")
    picked = ft.sweep_trials(
        spec,
        ["4-shot · batch", "ape · calibrated", "manual (RLPrompt)"],
        ["trec"],
        ["16-87"],
        "hf:other",
        {"max_seconds": 60.0},
    )
    rows = sorted(r for t in picked for r in ft.trial_rows(t))
    # the calibrated baseline run also scores the empty prompt, which is no row of the table
    assert rows == ["4-shot · batch", "ape · calibrated", "manual (RLPrompt)", "manual (natural) · batch"]
    assert {ft.where(t) for t in picked} == {("trec", "16-87")} and {t.model for t in picked} == {"hf:other"}
    calibrated = next(t for t in picked if t.searcher == "ape")
    assert calibrated.harness == "calibrate" and dict(calibrated.config())["baseline_shots"] == 0
