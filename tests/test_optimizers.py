"""The black-box optimizers (opro, grips, mipro, gepa) on a scripted fake: the target's
accuracy under an instruction is set by keywords in it, and the proposer's answers are
scripted, so each test knows what a correct search must do."""

from __future__ import annotations

import re
import sys

import pytest

from fakes import GOLD, FakeBackend, flat, query_of
from promptsearch import Budget, search
from promptsearch.errors import BudgetExhausted, PromptSearchError
from promptsearch.evaluation import Evaluator
from promptsearch.searchers.base import SearchContext, build_config
from promptsearch.searchers.gepa import Adapter, GEPASearcher
from promptsearch.searchers.grips import GrIPSSearcher, add, delete, join, paper_objective, phrases, swap
from promptsearch.searchers.mipro import MIPROSearcher
from promptsearch.searchers.opro import OPROSearcher, extract, trajectory
from promptsearch.store.cache import CachedBackend
from promptsearch.store.db import Store
from promptsearch.tasks import load_task

QUALITY = {"opinion": 1.0, "overall": 0.9, "sentiment": 0.75, "carefully": 0.6, "review": 0.5}


class Scripted(FakeBackend):
    """Target: an instruction of quality q answers the first q-share of reviews right (by a
    stable hash), the rest wrong. Proposer: `writes` in turn, recording each prompt."""

    def __init__(self, writes=("judge the sentiment.",), fail_after=None):
        super().__init__(gen_rule=self.propose, fail_after=fail_after)
        self.writes, self.prompts = list(writes), []

    def propose(self, text, req):
        self.prompts.append(text)
        return " " + self.writes[(len(self.prompts) - 1) % len(self.writes)]

    def loglikelihood(self, requests, soft_prompt=None):
        out = super().loglikelihood(requests, soft_prompt)
        for r, o in zip(requests, out):
            text = flat(r.context)
            instr = text.split("\n\n")[0].lower() if "\n\n" in text else ""
            q = max([v for k, v in QUALITY.items() if k in instr], default=0.0)
            gold = GOLD.get(query_of(text), "negative")
            right = (sum(map(ord, query_of(text))) % 100) / 100 < q
            say = gold if right else ("positive" if gold == "negative" else "negative")
            o.logprob = -0.1 if r.continuation.strip() == say else -2.5
        return out


def evaluator(backend, tmp_path=None, instruction=None, **budget):
    task = load_task("sentiment")
    if instruction is not None:
        import dataclasses

        task = dataclasses.replace(task, instructions=[instruction])
    if tmp_path is not None:  # the cache counts calls, tokens and hits: needed for a call budget
        backend = CachedBackend(backend, Store(tmp_path / "c.db"))
    return task, Evaluator(task, backend, budget=Budget(**budget))


# --- OPRO -------------------------------------------------------------------------------
def test_opro_meta_prompt_shows_the_trajectory_ascending_and_cut_at_keep():
    backend = Scripted(
        writes=[
            "<INS>count the words.</INS>",
            "read carefully.",
            "judge the sentiment.",
            "classify each review by its overall tone.",
            "say what the review means.",
            "state the opinion.",
            "look at the review.",
            "answer at random.",
        ]
    )
    task, ev = evaluator(backend)
    cfg = build_config(OPROSearcher, {"steps": "4", "per_step": "2", "keep": "3", "chat": "off", "exemplars": "2"})
    result = OPROSearcher(cfg).search(task, ev, SearchContext(seed=0))
    metas = [p for p in backend.prompts if "<INS>" in p]
    assert len(metas) == 4 * 2  # per_step samples of one meta-prompt per step
    for meta in metas:
        scores = [int(s) for s in re.findall(r"score:\n(\d+)", meta)]
        assert 1 <= len(scores) <= 3 and scores == sorted(scores)  # cut at keep, best last
        assert meta.count("Input: ") == 2  # the exemplars
    last = [int(s) for s in re.findall(r"score:\n(\d+)", metas[-1])]
    assert len(last) == 3 and last[-1] == 100  # the full trajectory by then, the perfect one last
    assert result.best_score == 1.0 and "opinion" in result.best.instruction  # "opinion" is always right
    assert result.notes["templates"][0]["name"] == "opro.meta"
    assert extract("<INS> sort them </INS> more") == "Sort them." and extract(" give the answer.") == "Give the answer."
    from promptsearch.candidates import Candidate

    pairs = [(Candidate(instruction=str(i)), s) for i, s in enumerate([0.5, 0.9, 0.1, 0.7])]
    assert [s for _, s in trajectory(pairs, 2)] == [0.7, 0.9]


def test_opro_stops_on_the_call_budget_with_its_best_so_far(tmp_path):
    task, ev = evaluator(Scripted(writes=["state the opinion.", "judge it."]), tmp_path, max_calls=300)
    cfg = build_config(OPROSearcher, {"steps": "50", "chat": "off"})
    result = OPROSearcher(cfg).search(task, ev, SearchContext(seed=0))
    assert "call budget" in result.stopped_by and result.best.instruction
    assert ev.cost.calls <= 300 + 2 * len(task.dev)  # one scoring may cross the limit, never more


# --- GrIPS ------------------------------------------------------------------------------
def test_grips_edit_operations_on_a_known_instruction():
    p = phrases("Is the following movie review positive or negative?")
    assert p == ["Is", "the following movie review positive", "or negative?"]
    assert join(p) == "Is the following movie review positive or negative?"
    kept, gone = delete(p, 2)
    assert join(kept) == "Is the following movie review positive" and gone == "or negative?"
    assert join(swap(p, 0, 1)) == "The following movie review positive Is or negative?"
    assert join(add(kept, gone, 0)) == "Is or negative? the following movie review positive"
    assert join(add(p, "in one word,", -1)) == "In one word, Is the following movie review positive or negative?"
    assert phrases("Classify the text, and say which topic it is about.") == [
        "Classify",
        "the text,",
        "and say",
        "which topic it is",
        "about.",
    ]


def test_grips_keeps_only_improvements_and_uses_the_paper_objective():
    task, ev = evaluator(Scripted())
    start = "Carefully consider the movie review, then state the opinion in it."
    cfg = build_config(GrIPSSearcher, {"start": start, "iterations": "6", "patience": "6"})
    result = GrIPSSearcher(cfg).search(task, ev, SearchContext(seed=1))
    assert "opinion" in result.best.instruction  # an edit that lost "opinion" never beat it
    assert result.notes["objective"].startswith("balanced accuracy")
    objective = [paper_objective(r, task) for r in ev.history]
    kept = [it["kept"] for it in result.notes["iterations"]]
    assert objective[0] <= max(objective)  # the start is scored first; nothing worse was kept
    assert all(k is None or k in {r.candidate.instruction for r in ev.history} for k in kept)
    assert "par" not in result.notes["ops"]  # no proposer: no paraphrase edit
    # one label for everything has zero entropy: the paper objective ranks it below a balanced answerer
    import dataclasses
    import math

    r = ev.history[0]
    one = dataclasses.replace(
        r, predictions=["negative"] * r.n, scores=[float(task.dev[i].label == "negative") for i in range(r.n)]
    )
    assert paper_objective(one, task) == pytest.approx(0.5)  # balanced accuracy 0.5, entropy 0
    both = dataclasses.replace(r, predictions=[e.label for e in task.dev], scores=[1.0] * r.n)
    freqs = [sum(e.label == lab for e in task.dev) / r.n for lab in task.labels]
    assert paper_objective(both, task) == pytest.approx(1 - 0.1 * sum(f * math.log(f) for f in freqs))


def test_grips_patience_and_bad_ops_are_clear():
    task, ev = evaluator(Scripted())
    cfg = build_config(
        GrIPSSearcher, {"start": "State the opinion of the review.", "iterations": "10", "patience": "2"}
    )
    result = GrIPSSearcher(cfg).search(task, ev, SearchContext(seed=0))
    assert len(result.notes["iterations"]) == 2 and "no better" in result.notes["stopped_early"]  # 1.0 can't be beaten
    with pytest.raises(PromptSearchError, match="del, swap, add, par"):
        GrIPSSearcher(build_config(GrIPSSearcher, {"ops": "del,shuffle"})).search(task, ev, SearchContext(seed=0))
    with pytest.raises(PromptSearchError, match="fewer than two"):
        GrIPSSearcher(build_config(GrIPSSearcher, {"start": "Classify."})).search(task, ev, SearchContext(seed=0))


# --- MIPRO ------------------------------------------------------------------------------
def run_mipro(seed, tmp_path=None, **opts):
    backend = Scripted(writes=["state the opinion.", "look at it."])
    task, ev = evaluator(backend)
    cfg = build_config(MIPROSearcher, {"trials": "12", "chat": "off", **opts})
    s = MIPROSearcher(cfg)
    return ev, s.search(task, ev, SearchContext(seed=seed, workdir=tmp_path))


def test_mipro_one_seed_one_result_and_it_finds_the_best_combination():
    ev_a, a = run_mipro(3)
    ev_b, b = run_mipro(3)
    assert a.best == b.best and [r.candidate for r in ev_a.history] == [r.candidate for r in ev_b.history]
    assert "opinion" in a.best.instruction.lower() and a.best_score == 1.0  # the proposed instruction won
    assert a.notes["sources"] == {"manual": 1, "proposed": 2}
    assert a.notes["full_dev"]  # the best so far was checked on the whole dev split


def test_mipro_keeps_its_study_in_the_run_folder_and_resumes_it(tmp_path):
    run_mipro(0, tmp_path, trials="6")
    import optuna

    study = optuna.load_study(study_name="mipro", storage=f"sqlite:///{tmp_path / 'mipro_study.db'}")
    assert len(study.trials) == 6
    s = MIPROSearcher(build_config(MIPROSearcher, {"trials": "9", "chat": "off"}))
    task, ev = evaluator(Scripted(writes=["state the opinion.", "look at it."]))
    s.search(task, ev, SearchContext(seed=0, workdir=tmp_path, resuming=True))
    assert len(optuna.load_study(study_name="mipro", storage=f"sqlite:///{tmp_path / 'mipro_study.db'}").trials) == 9


# --- GEPA -------------------------------------------------------------------------------
def test_gepa_adapter_feedback_names_the_wrong_answers():
    task, ev = evaluator(Scripted())
    adapter = Adapter(task, ev)
    batch = adapter.evaluate(task.train[:6], {"instruction": "Look at the review."}, capture_traces=True)
    assert len(batch.scores) == 6 and ev.history == []  # train minibatches are not dev history
    data = adapter.make_reflective_dataset({"instruction": "x"}, batch, ["instruction"])["instruction"]
    wrong = [d for d, s in zip(data, batch.scores) if s == 0]
    assert wrong and all(
        f"answered '{d['Generated Outputs']}'" in d["Feedback"] and "correct answer is" in d["Feedback"] for d in wrong
    )
    right = [d for d, s in zip(data, batch.scores) if s == 1]
    assert all(d["Feedback"].startswith("Correct") for d in right)
    adapter.evaluate(task.dev, {"instruction": "Look at the review."})
    assert len(ev.history) == 1  # the validation set is dev


IMPERFECT = ["```\nRead the review carefully.\n```", "```\nJudge the sentiment.\n```", "```\nSay a word.\n```"]
GEPA_WRITES = ["```\nRead the review.\n```", "```\nState the opinion of the review.\n```", "```\nSay something.\n```"]


def test_gepa_evolves_towards_the_feedback():
    backend = Scripted(writes=GEPA_WRITES)
    task, ev = evaluator(backend, None, "Look at the review.")
    result = GEPASearcher(build_config(GEPASearcher, {"chat": "off", "max_metric_calls": "600"})).search(
        task, ev, SearchContext(seed=0)
    )
    assert result.best_score == 1.0 and "opinion" in result.best.instruction
    cands = result.notes["candidates"]
    assert cands[0]["parents"] == [None] and all(c["parents"] for c in cands[1:])
    assert result.notes["pareto_front"] and result.notes["best_index"] in result.notes["pareto_front"]
    assert any("Wrong: the assistant answered" in p for p in backend.prompts)  # the reflection read the feedback


def test_gepa_stops_on_our_call_budget(tmp_path):
    task, ev = evaluator(Scripted(writes=IMPERFECT), tmp_path, "Look at the review.", max_calls=700)
    result = GEPASearcher(build_config(GEPASearcher, {"chat": "off"})).search(task, ev, SearchContext(seed=0))
    assert "call budget" in result.stopped_by
    assert ev.cost.calls <= 700 + 2 * len(task.dev)  # one scoring may cross the limit, never more
    assert result.best.instruction == "Judge the sentiment."  # the best of what it was shown ("sentiment") kept


def test_gepa_resume_continues_instead_of_restarting(tmp_path):
    cfg = build_config(GEPASearcher, {"chat": "off", "max_metric_calls": "400"})
    fresh = Scripted(writes=IMPERFECT)
    task, ev = evaluator(fresh, None, "Look at the review.")
    s = GEPASearcher(cfg)
    full = s.search(task, ev, SearchContext(seed=0, workdir=tmp_path / "fresh"))
    reflections = full.notes["reflections"]
    assert reflections >= 4
    # the same run, interrupted (Ctrl-C) after it has done about half its requests
    cut = Scripted(writes=IMPERFECT, fail_after=len(fresh.requests) // 2)
    task, ev = evaluator(cut, None, "Look at the review.")
    s = GEPASearcher(cfg)
    with pytest.raises(KeyboardInterrupt):
        s.search(task, ev, SearchContext(seed=0, workdir=tmp_path / "run"))
    from gepa.core.state import GEPAState

    saved = GEPAState.load(str(tmp_path / "run" / "gepa"))
    assert saved.i >= 1 and saved.total_num_evals > 0
    again = Scripted(writes=IMPERFECT)
    task, ev = evaluator(again, None, "Look at the review.")
    s = GEPASearcher(cfg)
    resumed = s.search(task, ev, SearchContext(seed=0, workdir=tmp_path / "run", resuming=True))
    # it went on from the saved state: what it had found comes first, and the work it had done is not redone
    assert [c["instruction"] for c in resumed.notes["candidates"][: len(saved.program_candidates)]] == [
        c["instruction"] for c in saved.program_candidates
    ]
    assert len(again.requests) <= len(fresh.requests) - saved.total_num_evals
    assert resumed.notes["metric_calls"] >= 400  # and still reached gepa's cap


def test_missing_gepa_or_optuna_is_one_line(monkeypatch, tmp_path):
    for module, searcher, extra in (("gepa", "gepa", "gepa"), ("optuna", "mipro", "mipro")):
        monkeypatch.setitem(sys.modules, module, None)
        with pytest.raises(PromptSearchError) as e:
            search("sentiment", model=Scripted(), searcher=searcher, db=str(tmp_path / f"{module}.db"))
        assert f"pip install 'promptsearch[{extra}]'" in str(e.value) and "\n" not in str(e.value)


def test_all_four_run_end_to_end_with_records(tmp_path):
    for name, opts in (
        ("opro", {"steps": "2", "chat": "off"}),
        ("grips", {"iterations": "2"}),
        ("mipro", {"trials": "6", "chat": "off"}),
        ("gepa", {"chat": "off", "max_metric_calls": "200"}),
    ):
        doc = search(
            "sentiment",
            model=Scripted(writes=GEPA_WRITES if name == "gepa" else ["state the opinion."]),
            searcher=name,
            db=str(tmp_path / "r.db"),
            **opts,
        )
        assert doc["searcher"]["name"] == name and doc["best"]["test"]["n"] == 116
        assert doc["record"]["searcher_notes"]
    with pytest.raises(BudgetExhausted):
        task, ev = evaluator(Scripted(), max_evals=10)
        OPROSearcher(build_config(OPROSearcher, {"chat": "off"})).search(task, ev, SearchContext(seed=0))


def test_gepa_ends_when_every_minibatch_is_already_perfect(tmp_path):
    """gepa skips a perfect minibatch without a call: with a call budget only, a perfect
    prompt would loop forever; the search ends and says why."""
    task, ev = evaluator(Scripted(writes=GEPA_WRITES), tmp_path, "State the opinion.", max_calls=10_000)
    result = GEPASearcher(build_config(GEPASearcher, {"chat": "off"})).search(task, ev, SearchContext(seed=0))
    assert "answered perfectly" in result.stopped_by and result.best_score == 1.0
