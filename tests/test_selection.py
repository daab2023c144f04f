"""Selection you can trust (promptsearch/selection.py): the gold-label probability as a finer
selection score, the seeded confirmation fold the search never sees, and the gate that keeps
the best baseline unless the search's best leads it there with an interval above zero."""

import hashlib
import json
import math
from dataclasses import replace

import pytest
from clitools import invoke, one_line_error

from fakes import GOLD, WHOLE_DEV, flat, query_of
from promptsearch import search
from promptsearch.backends.base import Backend, Capabilities, LoglikResult
from promptsearch.candidates import Candidate
from promptsearch.document import RunDocument
from promptsearch.evaluation.evaluator import Evaluator, gold_prob
from promptsearch.searchers.base import Outcome, Searcher
from promptsearch.selection import Selection, folds
from promptsearch.tasks.loaders import load_task

TASK = load_task("sentiment")
SEED = 3


def unit(text: str) -> float:
    """A fixed number in [0, 1) for a text: which examples a prompt gets right."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 2**32


class Rules(Backend):
    """Label log-likelihoods scripted per instruction: `right(instruction, input)` says whether
    the prompt gets an input right; the gold label then has probability `sure`, else 1 - sure."""

    kind = "fake"
    model_id = "fake:rules"

    def __init__(self, rules: dict[str, object], sure: float = 0.8):
        self.capabilities = Capabilities(loglikelihood=True, generate=True)
        self.rules, self.sure = rules, sure
        self.seen: list[str] = []  # inputs scored, in order

    def identity(self):
        return {"kind": self.kind, "model": self.model_id, "revision": "1"}

    def loglikelihood(self, requests, soft_prompt=None):
        out = []
        for r in requests:
            text = flat(r.context)
            query = query_of(text)
            self.seen.append(query)
            rule = next((f for key, f in self.rules.items() if key in text), self.rules["*"])
            gold = GOLD[query]
            said = gold if rule(query) else ("positive" if gold == "negative" else "negative")
            p = self.sure if r.continuation.strip() == said else 1 - self.sure
            out.append(LoglikResult(math.log(p), p > 0.5, 10))
        return out

    def generate(self, requests, soft_prompt=None, on_result=None):
        raise AssertionError("label tasks are scored by log-likelihood here")


class Returns(Searcher):
    """Scores one candidate on the dev split it is given and returns it."""

    name = "returns"

    def __init__(self, cand: Candidate):
        super().__init__()
        self.cand = cand

    def search(self, task, evaluator, context):
        r = evaluator.score(self.cand, task.dev)
        return Outcome(r.candidate, r.mean)


MANUAL = "Read the review"  # the task's manual instruction: right on about 60% of inputs
baseline_right = lambda q: unit("base" + q) < 0.6  # noqa: E731
select_ids = {e.id for e in folds(TASK.dev, SEED, 0.5)[0]}
select_inputs = {e.input for e in TASK.dev if e.id in select_ids}


def lucky(q: str) -> bool:
    """Right wherever the manual prompt is, and on every example of the selection fold: better
    only on the examples a search would have picked it on."""
    return baseline_right(q) or q in select_inputs


def rules(**extra) -> Rules:
    return Rules({MANUAL: baseline_right, **extra, "*": lambda q: unit("weak" + q) < 0.4})


def run(cand: Candidate, backend: Rules, tmp_path, **kw) -> dict:
    """A run picking the old way (accuracy, whole dev) unless `kw` changes a setting."""
    kw = {**WHOLE_DEV, **kw}
    return search("sentiment", model=backend, searcher=Returns(cand), db=str(tmp_path / "s.db"), seed=SEED, **kw)


def test_a_candidate_better_only_by_noise_does_not_pass_the_gate(tmp_path):
    cand = Candidate(instruction="Lucky words.", name="lucky-1")
    plain = run(cand, rules(**{"Lucky words": lucky}), tmp_path)
    assert plain["best"]["name"] == "lucky-1"  # without a gate its dev lead (the selection fold's) wins
    doc = run(cand, rules(**{"Lucky words": lucky}), tmp_path, gate=0.9)
    conf = doc["confirmation"]
    assert doc["best"]["name"] == "manual-1" and doc["best"]["picked"] == "baseline"
    assert conf["passed"] is False and conf["baseline"] == "manual-1" and conf["diff"]["ci_low"] <= 0
    assert conf["diff"]["diff"] == 0.0 and conf["diff"]["n"] == len(conf["confirm_ids"])
    assert doc["search_best"]["name"] == "lucky-1"  # kept, and what export --search-best gives
    shown = " ".join(invoke("show", doc["run_id"], "--db", str(tmp_path / "s.db")).output.split())
    assert "Not confirmed on" in shown and "so the run returns manual-1" in shown


def test_a_truly_better_candidate_passes_the_gate(tmp_path):
    cand = Candidate(instruction="Strong words.", name="strong-1")
    doc = run(cand, rules(**{"Strong words": lambda q: unit("strong" + q) < 0.95}), tmp_path, gate=0.9)
    conf = doc["confirmation"]
    assert conf["passed"] and conf["diff"]["ci_low"] > 0 and doc["best"]["name"] == "strong-1"
    assert doc["best"]["picked"] == "search" and doc["record"]["selection"]["gate"] == 0.9
    shown = " ".join(invoke("show", doc["run_id"], "--db", str(tmp_path / "s.db")).output.split())
    assert "Confirmed on" in shown and "strong-1 beats manual-1" in shown
    entry = doc["candidates"][0]["selection"]  # each candidate: its selection score, n and interval
    assert entry["score"] == "accuracy" and entry["n"] == len(conf["select_ids"])
    assert entry["ci_low"] < entry["mean"] < entry["ci_high"] and "dev [95% CI]" in shown
    page = tmp_path / "r.html"
    assert invoke("report", doc["run_id"], "--db", str(tmp_path / "s.db"), "-o", str(page)).exit_code == 0
    assert "id='confirmation'" in page.read_text() and "selection [95% CI]" in page.read_text()


def test_the_search_never_sees_the_confirmation_fold(tmp_path):
    backend = rules()
    doc = run(Candidate(instruction="Anything.", name="any-1"), backend, tmp_path, gate=0.9)
    conf = doc["confirmation"]
    confirm_inputs = {e.input for e in TASK.dev if e.id in set(conf["confirm_ids"])}
    searched = backend.seen[: len(select_ids) * len(TASK.labels)]  # the search's own scoring came first
    assert not confirm_inputs & set(searched) and set(searched) == select_inputs
    assert all(s["dev_n"] == len(select_ids) for s in doc["dev_scorings"])
    assert sorted(conf["select_ids"] + conf["confirm_ids"]) == sorted(e.id for e in TASK.dev)


def test_folds_are_seeded_stratified_and_recorded():
    a, b = folds(TASK.dev, 1, 0.5), folds(TASK.dev, 1, 0.5)
    assert [e.id for e in a[1]] == [e.id for e in b[1]]
    assert [e.id for e in folds(TASK.dev, 2, 0.5)[1]] != [e.id for e in a[1]]
    for label in TASK.labels:  # each fold keeps the label mix
        share = sum(e.label == label for e in a[1]) / sum(e.label == label for e in TASK.dev)
        assert abs(share - 0.5) < 0.05
    assert not {e.id for e in a[0]} & {e.id for e in a[1]}


def test_gold_prob_is_the_normalised_probability_of_the_gold_label():
    lp = {"negative": math.log(0.2), "positive": math.log(0.6)}  # unnormalised
    assert gold_prob(lp, ("positive",)) == pytest.approx(0.75)
    res = Evaluator(TASK, rules()).score(Candidate(instruction=MANUAL + "."), TASK.dev[:6])
    assert res.gold_probs == [pytest.approx(0.8 if s == 1.0 else 0.2) for s in res.scores]


def test_select_by_gold_prob_picks_the_surer_prompt(tmp_path):
    """Two prompts right on the same examples: accuracy cannot tell them apart (the tie keeps
    the search's best), the gold-label probability can (the manual prompt is surer)."""
    cand = Candidate(instruction="Unsure words.", name="unsure-1")

    class Unsure(Rules):
        def loglikelihood(self, requests, soft_prompt=None):
            out = super().loglikelihood(requests, soft_prompt)
            return [
                LoglikResult(math.log(0.55 if res.logprob > math.log(0.5) else 0.45), res.is_greedy, 10)
                if "Unsure words" in flat(r.context)
                else res
                for r, res in zip(requests, out)
            ]

    unsure = Unsure({MANUAL: baseline_right, "Unsure words": baseline_right, "*": lambda q: unit("weak" + q) < 0.4})
    by_accuracy = run(cand, unsure, tmp_path)
    assert by_accuracy["best"]["name"] == "unsure-1"
    by_prob = run(cand, unsure, tmp_path, select_by="gold_prob")
    assert by_prob["best"]["name"] == "manual-1" and by_prob["record"]["selection"]["select_by"] == "gold_prob"
    assert by_prob["best"]["test"]["mean"] == by_accuracy["best"]["test"]["mean"]  # reports keep accuracy
    sel = by_prob["candidates"][0]["selection"]
    assert sel["score"] == "gold_prob" and sel["mean"] == pytest.approx(0.55 * 0.6 + 0.45 * 0.4, abs=0.06)
    shown = invoke("show", by_prob["run_id"], "--db", str(tmp_path / "s.db")).output
    assert "gold prob [95% CI]" in " ".join(shown.split())


def test_selection_settings_that_cannot_work_are_one_line(fake_backend_registered):
    err = one_line_error(invoke("run", "--model", "fake:x", "--harness", "cot", "--select-by", "gold_prob"))
    assert "--select-by gold_prob needs label scores (log-likelihoods or first-token" in err
    assert "not in [0.5, 1)" in one_line_error(invoke("run", "--model", "fake:x", "--gate", "1.5"))
    assert "Unknown selection score 'f1'" in one_line_error(invoke("run", "--model", "fake:x", "--select-by", "f1"))
    assert not fake_backend_registered or not fake_backend_registered[0].requests


def test_old_documents_parse_without_confirmation(tmp_path):
    doc = run(Candidate(instruction="Anything.", name="any-1"), rules(), tmp_path)
    assert doc["confirmation"] is None
    old = {k: v for k, v in doc.items() if k != "confirmation"}
    assert RunDocument.from_dict(old).confirmation is None
    assert Selection.of(None) == Selection()


def test_the_defaults_the_gated_pick_and_off(tmp_path, fake_backend_registered):
    """By default a run picks on the whole dev split by accuracy (what the measurements kept,
    benchmarks/selection.py); `Selection.gated()` is the measured alternative: gold-label
    probability where labels are scored, a gate at 0.9, racing at 0.8; a harness that generates
    answers makes `auto` accuracy without being asked; off/none turn a level off."""
    assert Selection() == Selection.whole_dev() == Selection(**WHOLE_DEV)
    cand = Candidate(instruction="Lucky words.", name="lucky-1")
    backend = rules(**{"Lucky words": lucky})
    plain = search("sentiment", model=backend, searcher=Returns(cand), db=str(tmp_path / "p.db"), seed=SEED)
    assert plain["confirmation"] is None and plain["best"]["dev"]["n"] == len(TASK.dev)
    gated = {"select_by": "auto", "gate": 0.9, "race_level": 0.8}
    assert Selection(**gated) == Selection.gated()
    doc = search("sentiment", model=backend, searcher=Returns(cand), db=str(tmp_path / "d.db"), seed=SEED, **gated)
    sel, conf = doc["record"]["selection"], doc["confirmation"]
    assert (sel["select_by"], sel["gate"], sel["race_level"]) == ("gold_prob", 0.9, 0.8)
    assert conf["score"] == "gold_prob" and conf["level"] == 0.9
    assert doc["candidates"][0]["dev_n"] == len(conf["select_ids"]) < len(TASK.dev)
    db = str(tmp_path / "c.db")
    off = invoke("run", "--model", "fake:x", "--db", db, "--gate", "off", "--race-level", "none", "--json")
    quiet = json.loads(off.output)
    assert quiet["confirmation"] is None and quiet["record"]["selection"]["gate"] is None
    assert quiet["record"]["selection"]["race_level"] is None and quiet["best"]["dev"]["n"] == len(TASK.dev)
    args = ["--harness", "cot", "--select-by", "auto", "--gate", "0.9", "--json"]
    cot = json.loads(invoke("run", "--model", "fake:x", "--db", db, *args).output)
    assert cot["record"]["selection"]["select_by"] == "accuracy" and cot["confirmation"]["score"] == "accuracy"
    assert "is not a number" in one_line_error(invoke("run", "--model", "fake:x", "--gate", "high"))
    assert Selection(gate="off").gate is None and Selection(gate=False).gate is None  # YAML reads off as false


def test_a_dev_split_too_small_to_halve_runs_without_the_gate():
    from promptsearch.selection import MIN_GATE_DEV, plan

    said = []
    small = replace(TASK, dev=TASK.dev[: MIN_GATE_DEV - 1])
    chosen = plan(small, Selection.gated(), 0, False, said.append)
    assert chosen.split is None and chosen.selection.gate is None and chosen.record()["gate"] is None
    n = MIN_GATE_DEV - 1
    assert said == [f"No gate: dev has {n} examples, fewer than the {MIN_GATE_DEV} it needs to hold half out"]


def test_a_returned_baseline_with_the_searchs_prompt_has_its_test_rows(tmp_path):
    """A search whose best is the manual prompt itself, gated and not passed: the run returns the
    baseline, and its test scores are stored under the name it returns (reports read them so)."""
    from promptsearch.store.db import Store

    manual = Candidate(instruction=TASK.instructions[0], name="own-1")
    doc = run(manual, rules(), tmp_path, gate=0.9)
    assert doc["best"]["name"] == "manual-1" and doc["search_best"]["name"] == "own-1"
    names = {t.candidate for t in Store(str(tmp_path / "s.db")).run_tests(doc["run_id"])}
    assert {"manual-1", "own-1", "empty"} <= names


def nested(rate: float):
    """Right on the inputs whose fixed number is below `rate`: a lower rate is right on a
    subset of a higher one's examples."""
    return lambda q: unit("nested" + q) < rate


def race_of(level):
    from promptsearch.searchers.racing import Race

    rates = {"Lead": 0.9, "Aaa": 0.89, "Bbb": 0.88, "Ccc": 0.87, "Bad": 0.1}
    backend = Rules({**{k: nested(v) for k, v in rates.items()}, "*": nested(0.5)})
    cands = [Candidate(instruction=f"{k} words.", name=k) for k in rates]
    race = Race(8, 2, level)
    race.run(cands, list(TASK.dev), Evaluator(TASK, backend))
    return race, {c.name: len(race.scores[c.key()]) for c in cands}


def test_racing_keeps_a_candidate_within_noise_of_the_leader_and_records_why():
    by_rank, n_rank = race_of(None)
    assert n_rank["Ccc"] == 8 and n_rank["Bad"] == 8  # below the cut of 3 of 5: dropped after 8 examples
    assert {e["name"]: e["why"] for e in by_rank.eliminated if e["n"] == 8} == {"Ccc": "rank", "Bad": "rank"}
    noisy, n_noisy = race_of(0.8)
    assert n_noisy["Ccc"] > 8 and n_noisy["Bad"] == 8  # within noise goes on; clearly behind does not
    bad = next(e for e in noisy.eliminated if e["name"] == "Bad")
    assert bad["why"] == "behind" and bad["ci_high"] < 0 and bad["leader"] == "Lead" and bad["n"] == 8


def test_searchers_rank_by_the_selection_score(tmp_path):
    """The baseline searcher picks among its prompts by gold-label probability when asked:
    the manual prompt and a surer k-shot prompt are right on the same examples."""

    class Surer(Rules):
        def loglikelihood(self, requests, soft_prompt=None):
            out = super().loglikelihood(requests, soft_prompt)
            sure = lambda r: "Sentiment: " in flat(r.context)  # noqa: E731 (demos: the k-shot prompt)
            return [
                LoglikResult(math.log(0.95 if res.logprob > math.log(0.5) else 0.05), res.is_greedy, 10)
                if sure(r)
                else res
                for r, res in zip(requests, out)
            ]

    backend = Surer({"*": baseline_right}, sure=0.6)
    plain = search("sentiment", model=backend, searcher="baseline", db=str(tmp_path / "b.db"), **WHOLE_DEV)
    assert plain["search_best"]["name"] == "empty"  # all three equally accurate: the first wins ties
    surer = search(
        "sentiment", model=backend, searcher="baseline", db=str(tmp_path / "b.db"), select_by="gold_prob", gate=None
    )
    assert surer["search_best"]["name"] == "4-shot" and surer["best"]["name"] == "4-shot"


def test_train_examples_held_out_are_selected_on_and_never_seen(tmp_path, proposer_fake):
    """select_on=train+dev: a share of train leaves the search's train (no demo set, no
    proposer prompt holds it) and joins what candidates are scored on."""
    doc = search("sentiment", model="fake:x", searcher="demos", db=str(tmp_path / "t.db"), select_on="train+dev")
    rec = doc["record"]["selection"]
    held = set(rec["held_train"])
    assert rec["used"] == "train+dev" and 0 < len(held) < len(TASK.train)
    dev_ids = {e.id for e in TASK.dev}
    for c in doc["candidates"]:
        assert not set(c["candidate"].get("demos") or ()) & held  # never shown what it is scored on
        assert set(c["examples"]) <= dev_ids | held
    assert any(set(c["examples"]) & held for c in doc["candidates"])
    ape = search("sentiment", model="fake:x", searcher="ape", db=str(tmp_path / "a.db"), select_on="train+dev")
    held_inputs = {e.input for e in TASK.train if e.id in set(ape["record"]["selection"]["held_train"])}
    written = [flat(q.prompt) for q in proposer_fake[-1].requests if hasattr(q, "prompt")]
    assert written and not any(text in w for w in written for text in held_inputs)  # the proposer never saw them
    assert all(b["dev"]["n"] == len(TASK.dev) for b in ape["baselines"])  # the finalists compare on dev


def test_a_searcher_that_trains_on_train_selects_on_dev():
    from promptsearch.selection import plan

    said = []
    chosen = plan(TASK, Selection(select_on="train+dev"), 0, True, said.append)
    assert chosen.select_on == "dev" and chosen.searched.train == TASK.train and "dev only" in said[0]
    both = plan(TASK, Selection(select_on="train+dev", gate=0.9), 0, False, said.append)
    assert both.select_on == "train+dev" and len(both.searched.dev) == len(both.split[0]) + len(both.held_train)
    assert not {e.id for e in both.split[1]} & {e.id for e in both.searched.dev}  # the confirmation fold stays out
