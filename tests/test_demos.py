"""The demos searcher: random demo sets raced on dev, kNN demos per input, and where its
instruction comes from."""

import base64
import math
from dataclasses import replace

import numpy as np
import pytest

from fakes import FakeBackend, flat
from promptsearch import Budget, Candidate, Example, Task
from promptsearch.backends.base import EmbedResult
from promptsearch.errors import PromptSearchError
from promptsearch.evaluation import Evaluator
from promptsearch.runner import run_search
from promptsearch.searchers.base import SearchContext
from promptsearch.searchers.demos import DemoSearcher
from promptsearch.store import CachedBackend, Store
from promptsearch.tasks import load_task


class ToyEmbedder(FakeBackend):
    """Inputs are numbers; a number's embedding is the unit vector at angle number/100, so
    cosine similarity orders neighbours by how close the numbers are."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.capabilities = replace(self.capabilities, embed=True)
        self.embedded: list[str] = []

    def embed(self, texts):
        self.embedded += list(texts)
        out = []
        for t in texts:
            x = float(t) / 100 if t.strip().lstrip("-").isdigit() else 0.0
            vec = np.array([math.cos(x), math.sin(x)], dtype="float16")
            out.append(EmbedResult(base64.b64encode(vec.tobytes()).decode(), 1))
        return out


def numbers_task() -> Task:
    ex = lambda i, n: Example(f"e{i}", str(n), ("positive" if n % 2 else "negative",))  # noqa: E731
    train = [ex(i, n) for i, n in enumerate([0, 10, 20, 30, 40, 50, 60, 70])]
    dev = [ex(100 + i, n) for i, n in enumerate([12, 44, 68, 3])]
    return Task(
        "numbers",
        train,
        dev,
        dev,
        template="Review: {input}\nSentiment:",
        labels={"negative": "negative", "positive": "positive"},
    )


def test_knn_picks_the_nearest_train_inputs_nearest_last():
    task = numbers_task()
    fake = ToyEmbedder()
    ev = Evaluator(task, fake)
    knn = Candidate(knn=3, name="knn")
    ev.score(knn, task.dev)
    by_input = {e.input: e for e in task.dev}
    assert [d.input for d in ev.shown(knn, by_input["44"])] == ["30", "50", "40"]  # 40 is nearest, so last
    assert [d.input for d in ev.shown(knn, by_input["12"])] == ["0", "20", "10"]
    assert [d.input for d in ev.shown(knn, by_input["68"])] == ["50", "60", "70"]
    ctx = flat(next(r.context for r in fake.requests if flat(r.context).endswith("Review: 44\nSentiment:")))
    assert ctx.index("Review: 30") < ctx.index("Review: 50") < ctx.index("Review: 40\n")
    # scoring a train example never shows it to itself
    assert "40" not in [d.input for d in ev.shown(knn, task.train[4])]
    assert len(fake.embedded) == len(set(fake.embedded))  # each text embedded once


def test_knn_embeddings_are_cached(tmp_path):
    task = numbers_task()
    store = Store(tmp_path / "c.db")
    first, second = ToyEmbedder(), ToyEmbedder()
    a = Evaluator(task, CachedBackend(first, store)).score(Candidate(knn=2), task.dev)
    b = Evaluator(task, CachedBackend(second, store)).score(Candidate(knn=2), task.dev)
    assert first.embedded and not second.embedded and a.scores == b.scores


def test_knn_needs_embeddings():
    task = numbers_task()
    with pytest.raises(PromptSearchError, match="kNN demo selection needs a local"):
        Evaluator(task, FakeBackend()).score(Candidate(knn=2), task.dev)


def test_a_seed_reproduces_and_the_budget_is_never_passed():
    task = load_task("sentiment")
    runs = []
    for seed in (3, 3, 4):
        ev = Evaluator(task, FakeBackend())
        res = DemoSearcher(DemoSearcher.Config(sets=6)).search(task, ev, SearchContext(seed=seed))
        runs.append(([r.candidate.demos for r in ev.history], res.best.demos))
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert len(set(runs[0][0])) == 7  # the k-shot set and 6 random sets
    limit = 30
    ev = Evaluator(task, FakeBackend(), budget=Budget(max_evals=limit))
    res = DemoSearcher(DemoSearcher.Config(sets=6)).search(task, ev, SearchContext(seed=0))
    assert ev.dev_evals <= limit and "evaluation budget" in res.stopped_by


def test_random_sets_are_balanced_and_shuffled():
    task = load_task("sentiment")
    cands = DemoSearcher(DemoSearcher.Config(sets=10)).candidates(task, 4, 0, "Say it.")
    by_id = {e.id: e for e in task.train}
    assert len(cands) == 11 and len({c.key() for c in cands}) == 11
    assert all(
        sorted(by_id[i].label for i in c.demos) == ["negative", "negative", "positive", "positive"] for c in cands
    )
    assert all(c.instruction == "Say it." for c in cands)
    knn = DemoSearcher(DemoSearcher.Config(sets=2, select="knn")).candidates(task, 4, 0, "")
    assert knn[0].knn == 4 and len(knn) == 4


def test_instruction_best_names_its_run_and_is_one_line_when_there_is_none(tmp_path):
    db = str(tmp_path / "r.db")
    with pytest.raises(PromptSearchError, match="instruction=best: no discrete prompt is stored"):
        run_search("sentiment", model=FakeBackend(), searcher="demos", options={"instruction": "best"}, db=db)
    first = run_search("sentiment", model=FakeBackend(), searcher="baseline", db=db)
    doc = run_search(
        "sentiment", model=FakeBackend(), searcher="demos", options={"instruction": "best", "sets": "2"}, db=db
    )
    notes = doc["record"]["searcher_notes"]
    assert notes["instruction_from"]["run_id"] == first["run_id"]
    assert doc["best"]["candidate"]["instruction"] == first["best"]["candidate"]["instruction"]


def test_demos_search_on_a_tiny_model_with_knn(tiny_model, tmp_path):
    doc = run_search(
        "sentiment",
        model=f"hf:{tiny_model}",
        searcher="demos",
        db=str(tmp_path / "t.db"),
        options={"select": "knn", "sets": "2", "race_start": "16"},
        seed=1,
    )
    names = [c["name"] for c in doc["candidates"]]
    assert names[0] == "knn-4" and len(names) == 4
    assert doc["candidates"][0]["candidate"]["knn"] == 4 and doc["best"]["test"]["n"] == 116
    assert doc["searcher"]["config"]["select"] == "knn"
