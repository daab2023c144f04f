import json

import pytest

from fakes import FakeBackend
from promptsearch import Budget, Example, Task, evaluate, search, split_examples
from promptsearch.errors import PromptSearchError
from promptsearch.evaluation.stats import paired_bootstrap
from promptsearch.store import Store


def test_run_document_and_store(tmp_path):
    db = tmp_path / "r.db"
    fake = FakeBackend()
    doc = search("sentiment", model=fake, db=str(db))
    assert doc["schema"] == "promptsearch.run/1"
    assert doc["best"]["name"] == "manual-1" and doc["best"]["test"]["mean"] == 1.0
    names = [b["name"] for b in doc["baselines"]]
    assert names == ["empty", "manual-1", "4-shot"]
    empty = doc["baselines"][0]
    assert empty["test"]["mean"] == pytest.approx(0.5)
    d = empty["best_minus_baseline"]
    assert d["diff"] == pytest.approx(0.5) and 0.3 < d["ci_low"] <= d["ci_high"] < 0.7
    assert doc["cost"]["total"]["calls"] > 0 and not doc["from_cache"]
    assert doc["record"]["versions"]["python"] and doc["task"]["hash"]
    store = Store(db)
    run = store.get_run(doc["run_id"][:12])
    assert json.loads(run.result)["run_id"] == doc["run_id"]
    assert len(store.run_candidates(run.id)) == 3
    tests = store.run_tests(run.id)
    assert len(tests) == 3 * doc["task"]["sizes"]["test"]  # best == manual-1, so 3 distinct finalists

    again = search("sentiment", model=FakeBackend(), db=str(db))
    assert again["from_cache"] and again["cost"]["total"]["calls"] == 0
    assert again["best"] == doc["best"]


def test_budget_stops_search_cleanly(tmp_path):
    doc = search("sentiment", model=FakeBackend(), db=str(tmp_path / "r.db"), budget=Budget(max_evals=70))
    assert len(doc["candidates"]) == 1 and "budget" in doc["stopped_by"]
    with pytest.raises(PromptSearchError, match="budget was spent"):
        search("sentiment", model=FakeBackend(), db=str(tmp_path / "r.db"), budget=Budget(max_evals=5))


def test_same_seed_same_run(tmp_path):
    a = search("sentiment", model=FakeBackend(), db=str(tmp_path / "a.db"), seed=3)
    b = search("sentiment", model=FakeBackend(), db=str(tmp_path / "b.db"), seed=3)
    strip = lambda d: (d["best"], d["baselines"], d["candidates"])  # noqa: E731
    assert strip(a) == strip(b)


def test_python_api_with_own_examples_and_scorer(tmp_path):
    words = ["great", "awful", "lovely", "bad", "superb", "poor"] * 5
    exs = [
        Example(f"e{i}", f"Review: {w}", "positive" if w in ("great", "lovely", "superb") else "negative")
        for i, w in enumerate(words)
    ]
    task = Task(
        "mine",
        **split_examples(exs, seed=0),
        template="{input}\nSentiment:",
        labels={"positive": "positive", "negative": "negative"},
        metric="accuracy",
        instructions=["Give the writer's opinion."],
    )
    seen = []

    def my_scorer(pred, example):
        seen.append(pred)
        return 1.0 if pred == example.label else 0.0

    res = evaluate(task, "Say the opinion.", model=FakeBackend(), scorer=my_scorer, db=str(tmp_path / "x.db"))
    assert res.n == len(task.test) and len(seen) == res.n
    doc = search(task, model=FakeBackend(), scorer=my_scorer, db=str(tmp_path / "x.db"), shots=2)
    assert doc["searcher"]["config"]["shots"] == 2 and doc["task"]["metric"] == "my_scorer"


def test_paired_bootstrap():
    a, b = [1.0] * 50 + [0.0] * 50, [1.0] * 50 + [0.0] * 50
    d = paired_bootstrap(a, b)
    assert d.diff == 0 and d.ci_low == 0 == d.ci_high and d.p_value == 1.0
    d = paired_bootstrap([1.0] * 80 + [0.0] * 20, [0.0] * 80 + [1.0] * 20, seed=1)
    assert d.diff == pytest.approx(0.6) and d.ci_low > 0.4 and d.p_value < 0.01
