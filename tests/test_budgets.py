"""Budgets hold inside batched scorings: a call budget is never passed, by any searcher.

Each searcher runs through the runner with a small `--max-calls` on a target that charges
for every request (the cache in front of it counts calls), and the run's search cost stays
within the budget. A scoring of many candidates at once is checked slice by slice."""

from __future__ import annotations

import pytest
from clitools import invoke, one_line_error, strict_json

from fakes import FakeBackend
from promptsearch import Budget, registry
from promptsearch.candidates import Candidate
from promptsearch.errors import BudgetExhausted
from promptsearch.evaluation import Evaluator
from promptsearch.runner import run_search
from promptsearch.searchers.baseline import baseline_candidates
from promptsearch.store.cache import CachedBackend
from promptsearch.store.db import Store
from promptsearch.tasks import load_task


def writer(text, req):
    """Distinct instructions, so every proposing searcher has a pool to score."""
    return f"Judge the opinion of review {req.sample_index} ({len(text) % 97} {req.temperature})."


# (searcher, options) small enough to run in seconds on the fake, each proposing more than the budget pays for
FAKE_SEARCHERS = [
    ("baseline", {}),
    ("ape", {"rounds": "2"}),
    ("demos", {}),
    ("opro", {"steps": "3", "per_step": "4"}),
    ("grips", {}),
    ("mipro", {"trials": "12"}),
    ("gepa", {}),
]


@pytest.mark.parametrize("name,options", FAKE_SEARCHERS, ids=[s for s, _ in FAKE_SEARCHERS])
@pytest.mark.parametrize("max_calls", [150, 400])
def test_no_searcher_passes_a_call_budget(name, options, max_calls, tmp_path):
    fake = FakeBackend(gen_rule=writer)
    doc = run_search(
        "sentiment",
        model=fake,
        searcher=name,
        options=options,
        budget=Budget(max_calls=max_calls),
        db=str(tmp_path / "b.db"),
    )
    spent = doc["cost"]["search"]["calls"]
    assert 0 < spent <= max_calls, (name, spent)
    # every request the model answered is counted once, in exactly one of search, selection and test
    cost = doc["cost"]
    assert cost["search"]["calls"] + cost["selection"]["calls"] + cost["test"]["calls"] == len(fake.requests)
    assert cost["total"]["calls"] == len(fake.requests)


@pytest.mark.parametrize(
    "name,options,max_calls",
    [
        ("autoprompt", {"iterations": "6", "batch_size": "4", "search_width": "8", "eval_every": "2"}, 300),
        ("soft", {"steps": "6", "batch_size": "4", "eval_every": "2"}, 300),
        # rl's training rewards take ~400 calls before its first dev race
        (
            "rl",
            {"steps": "3", "num_generations": "2", "batch_size": "2", "style": "tokens", "trigger_length": "2"},
            800,
        ),
    ],
    ids=["autoprompt", "soft", "rl"],
)
def test_local_model_searchers_keep_to_a_call_budget(name, options, max_calls, tiny_model, tmp_path):
    doc = run_search(
        "sentiment",
        model=f"hf:{tiny_model}",
        searcher=name,
        options=options,
        budget=Budget(max_calls=max_calls),
        db=str(tmp_path / "b.db"),
    )
    assert 0 < doc["cost"]["search"]["calls"] <= max_calls


def test_a_batched_scoring_stops_at_the_slice_that_would_pass_the_budget(tmp_path):
    """Ten candidates on all of dev in one batch: 1,320 requests. With 200 calls left the
    scoring stops before the slice that would pass them; the slices before it are cached."""
    task = load_task("sentiment")
    fake = FakeBackend()
    ev = Evaluator(task, CachedBackend(fake, Store(tmp_path / "c.db")), budget=Budget(max_calls=200))
    cands = [Candidate(instruction=f"Say what the review thinks, take {i}.") for i in range(10)]
    with pytest.raises(BudgetExhausted, match="call budget of 200"):
        ev.score_many(cands, task.dev)
    assert 0 < ev.cost.calls <= 200
    assert len(fake.requests) == ev.cost.calls


def test_cached_answers_stay_free_at_a_call_budget_of_zero(tmp_path):
    task = load_task("sentiment")
    store = Store(tmp_path / "c.db")
    cand = baseline_candidates(task, shots=0, seed=0)[0]
    Evaluator(task, CachedBackend(FakeBackend(), store)).score(cand, task.dev)
    fake = FakeBackend()
    ev = Evaluator(task, CachedBackend(fake, store), budget=Budget(max_calls=0))
    assert ev.score(cand, task.dev).n == len(task.dev) and fake.requests == []


def test_a_rerun_of_a_call_budgeted_search_says_it_went_further(tmp_path, monkeypatch):
    """Cache hits are free, so the rerun replays the first run and spends its budget again;
    the output says so (README: "What a rerun replays")."""
    from typer.testing import CliRunner

    from promptsearch import registry
    from promptsearch.cli import app

    monkeypatch.setitem(registry.backends._entries, "fake", lambda spec, settings: FakeBackend(gen_rule=writer))
    args = ["run", "--model", "fake:x", "--searcher", "ape", "--max-calls", "300", "--db", str(tmp_path / "r.db")]
    first, again = CliRunner().invoke(app, args), CliRunner().invoke(app, args)
    assert first.exit_code == again.exit_code == 0, again.output
    assert "came from the cache" not in first.output
    assert "came from the cache, which budgets count as free" in " ".join(again.output.split())


def test_budget_spent_before_any_scoring_stores_nothing_and_calls_no_test(proposer_fake, tmp_path):
    db = tmp_path / "p.db"
    r = invoke("run", "--searcher", "ape", "--model", "fake:x", "--max-calls", "5", "--db", str(db), "--json")
    assert "scored no candidate" in one_line_error(r) or "before any candidate was scored" in r.stderr
    fake = proposer_fake[0]
    assert len(fake.requests) <= 5  # the proposer's calls were budgeted too
    assert not any(hasattr(q, "continuation") for q in fake.requests)  # no scoring, no test calls
    assert "No runs" in invoke("runs", "--db", str(db)).output


def test_dollar_budget_with_an_unpriced_model_refuses_before_any_call(monkeypatch):
    made = []

    def factory(spec, settings):
        b = FakeBackend()
        b.price = None  # a model with no known price
        made.append(b)
        return b

    monkeypatch.setitem(registry.backends._entries, "fake", factory)
    assert "needs every model's price" in one_line_error(invoke("run", "--model", "fake:x", "--max-dollars", "1"))
    assert made[0].requests == []


def test_zero_call_budget_runs_when_everything_is_cached(fake_backend_registered):
    first = strict_json(invoke("run", "--model", "fake:x", "--json").stdout)
    r = invoke("run", "--model", "fake:x", "--max-calls", "0", "--json")
    assert r.exit_code == 0, r.output
    again = strict_json(r.stdout)
    assert again["from_cache"] and again["best"]["candidate"] == first["best"]["candidate"] and not again["stopped_by"]


def test_negative_budget_refused_in_the_api():
    from promptsearch import Budget
    from promptsearch.errors import PromptSearchError

    with pytest.raises(PromptSearchError, match="max_calls"):
        Budget(max_calls=-1)
