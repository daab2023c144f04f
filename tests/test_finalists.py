"""The finalists of a run (promptsearch/finalists.py): the search's best against the
baselines on dev, the pick returned and said so, candidates ranked by how many dev examples
their score is on."""

from typer.testing import CliRunner

from fakes import WHOLE_DEV, FakeBackend
from promptsearch import search
from promptsearch.candidates import Candidate
from promptsearch.cli import app
from promptsearch.document import CandidateEntry, ranked
from promptsearch.searchers.base import Outcome, Searcher
from promptsearch.store import Store
from promptsearch.tasks.loaders import load_task

runner = CliRunner()


class Scripted(Searcher):
    """Scores the candidates it is given, each on the first n dev examples, and returns the
    first as its best (a searcher that got it wrong, or a race that stopped early)."""

    name = "scripted"

    def __init__(self, plan: list[tuple[Candidate, int | None]]):
        super().__init__()
        self.plan = plan

    def search(self, task, evaluator, context):
        first = None
        for cand, n in self.plan:
            r = evaluator.score(cand, task.dev[:n])
            first = first or r
        return Outcome(first.candidate, first.mean)


def test_a_search_worse_than_a_baseline_on_dev_returns_the_baseline_and_says_so(tmp_path):
    db = str(tmp_path / "w.db")
    worse = Candidate(instruction="Say a word.", name="worse-1")  # the fake says "negative": half right
    doc = search("sentiment", model=FakeBackend(), searcher=Scripted([(worse, None)]), db=db, **WHOLE_DEV)
    dev_n = len(load_task("sentiment").dev)
    assert doc["best"]["picked"] == "baseline" and doc["best"]["name"] == "manual-1"
    assert doc["best"]["dev"] == {"mean": 1.0, "stderr": 0.0, "n": dev_n}
    sb = doc["search_best"]
    assert sb["name"] == "worse-1" and sb["dev"]["mean"] < 1.0 and sb["test"]["mean"] < doc["best"]["test"]["mean"]
    assert sb["picked_minus_it"]["diff"] > 0
    # every baseline has its dev score, on the whole dev split
    assert all(b["dev"]["n"] == dev_n for b in doc["baselines"])
    assert Store(db).get_run(doc["run_id"]).best_name == "manual-1"
    shown = " ".join(runner.invoke(app, ["show", doc["run_id"], "--db", db]).output.split())
    assert "The search did not beat the baseline on dev" in shown and "returns the baseline" in shown
    assert f"1.000 ({dev_n})" in shown and "search's best: worse-1" in shown
    assert "Search's own best (worse-1): Say a word." in shown  # its prompt, as export --search-best gives it
    html = tmp_path / "w.html"
    assert runner.invoke(app, ["report", doc["run_id"], "--db", db, "--output", str(html)]).exit_code == 0
    assert "id='picked-baseline'" in html.read_text()


def test_a_search_that_beats_the_baselines_keeps_its_best(tmp_path):
    good = Candidate(instruction="Give the writer's opinion of it.", name="good-1")
    db = str(tmp_path / "g.db")
    doc = search("sentiment", model=FakeBackend(), searcher=Scripted([(good, None)]), db=db, **WHOLE_DEV)
    # picking on the whole dev split, a tie with manual-1 (both always right) keeps the search's own best
    assert doc["best"]["picked"] == "search" and doc["best"]["name"] == "good-1"


def test_candidates_rank_by_dev_examples_scored_then_score_and_carry_n(tmp_path):
    lucky = Candidate(instruction="Short lucky guess.", name="lucky")  # scored on 2 dev examples only
    full = Candidate(instruction="Give the writer's opinion.", name="full")
    task = load_task("sentiment")
    doc = search(
        "sentiment",
        model=FakeBackend(),
        searcher=Scripted([(lucky, 2), (full, None)]),
        db=str(tmp_path / "r.db"),
        **WHOLE_DEV,
    )
    names = [c["name"] for c in doc["candidates"]]
    assert names == ["full", "lucky"]  # the whole dev split outranks 2 examples, whatever their mean
    assert [c["dev_n"] for c in doc["candidates"]] == [len(task.dev), 2]
    entries = [CandidateEntry(1, "a", "", {}, 1.0, 8), CandidateEntry(2, "b", "", {}, 0.88, 66)]
    assert ranked(entries)[0].dev_n == 66
    out = " ".join(runner.invoke(app, ["show", doc["run_id"], "--db", str(tmp_path / "r.db")]).output.split())
    assert "ranked by dev examples scored" in out


def test_api_test_baselines_follow_the_searchers_shots(fake_backend_registered):
    import promptsearch as ps

    doc = ps.search("sentiment", model="fake:x", searcher="baseline", shots=8)
    assert "8-shot" in [b["name"] for b in doc["baselines"]] and doc["record"]["baseline_shots"] == 8
