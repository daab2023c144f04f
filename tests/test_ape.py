"""APE logic on a scripted fake backend: the proposer's instructions and the target's
accuracy under each instruction are chosen by the test."""

from fakes import FakeBackend, flat
from promptsearch import Budget, search
from promptsearch.evaluation import Evaluator
from promptsearch.searchers.ape import APESearcher, clean_instruction
from promptsearch.searchers.base import SearchContext, build_config
from promptsearch.tasks import load_task

# Instructions the proposer writes, in order; each one's quality is set by `QUALITY`.
PROPOSALS = [
    "judge the sentiment.",
    "guess randomly.",
    "say negative always.",
    "read carefully.",
    "classify the review by its overall opinion.",
    "count the words.",
    "Input: The soup was cold",
    "",
    "judge the sentiment.",
    "x" * 400,
]
QUALITY = {"opinion": 1.0, "overall": 1.0, "sentiment": 0.75, "carefully": 0.6}


class Scripted(FakeBackend):
    """Target: an instruction with a quality q answers the first q-share of reviews right.
    Proposer: induction prompts get PROPOSALS in turn; resample prompts get a rewording
    that keeps the parent's keyword (so the parent's quality carries over)."""

    def __init__(self):
        super().__init__(gen_rule=self.propose)
        self.n_induced = 0
        self.resampled_from = []

    def propose(self, text, req):
        if "reworded" in text or "Reword" in text:
            parent = text.split("Instruction: ")[-1].split("\n")[0]
            self.resampled_from.append(parent)
            return f" {parent.rstrip('.')} (variant {req.sample_index})."
        out = PROPOSALS[self.n_induced % len(PROPOSALS)]
        self.n_induced += 1
        return " " + out

    def loglikelihood(self, requests, soft_prompt=None):
        out = super().loglikelihood(requests, soft_prompt)
        for r, o in zip(requests, out):
            text = flat(r.context)
            instr = text.split("\n\n")[0] if "\n\n" in text else ""
            q = max([v for k, v in QUALITY.items() if k in instr.lower()], default=0.0)
            review = text.rsplit("Review: ", 1)[-1]
            right = (hash(review) % 100) / 100 < q
            from fakes import GOLD, query_of

            gold = GOLD.get(query_of(text), "negative")
            say = gold if right else ("positive" if gold == "negative" else "negative")
            o.logprob = -0.1 if r.continuation.strip() == say else -2.5
        return out


def run_ape(seed=0, max_evals=None, **opts):
    task = load_task("sentiment")
    backend = Scripted()
    cfg = build_config(
        APESearcher,
        {
            "subsamples": "2",
            "samples_per_subsample": "5",
            "chat": "off",
            "race_start": "8",
            **{k: str(v) for k, v in opts.items()},
        },
    )
    ev = Evaluator(task, backend, budget=Budget(max_evals=max_evals))
    result = APESearcher(cfg).search(task, ev, SearchContext(seed=seed))
    return task, backend, ev, result


def test_cleaning_drops_bad_candidates_and_duplicates():
    task, backend, ev, result = run_ape(rounds=0)
    names = {r.candidate.instruction for r in ev.history}
    assert "Judge the sentiment." in names and "Classify the review by its overall opinion." in names
    assert not any("Input:" in n or len(n) > 300 or n == "." for n in names)  # copies, overlong, empty dropped
    assert result.notes["rounds"][0]["proposed"] == 6  # 10 proposals - empty - copy - overlong - duplicate
    assert (
        clean_instruction(' to "sort the words alphabetically". Then more', induced=True)
        == "Sort the words alphabetically."
    )
    assert clean_instruction("Instruction: add the numbers") == "Add the numbers."


def test_racing_drops_losers_early_and_finds_the_best():
    task, backend, ev, result = run_ape(rounds=0)
    seen = {}
    for r in ev.history:
        seen[r.candidate.instruction] = seen.get(r.candidate.instruction, 0) + r.n
    assert result.best.instruction == "Classify the review by its overall opinion."
    assert seen[result.best.instruction] == len(task.dev)  # the winner saw the whole dev split
    assert seen["Count the words."] == 8  # a loser stopped after the first rung
    assert sum(seen.values()) < len(seen) * len(task.dev) / 2  # racing saved most of the work
    # no candidate was ever scored twice on the same example
    pairs = [(r.candidate.key(), i) for r in ev.history for i in r.example_ids]
    assert len(pairs) == len(set(pairs))


def test_resampling_starts_from_the_current_best():
    task, backend, ev, result = run_ape(rounds=2, top_fraction=0.2, variations=2)
    # the top 20% of 6 candidates: the best two, best first, each reworded twice
    first_round = backend.resampled_from[:4]
    assert first_round[:2] == ["Classify the review by its overall opinion."] * 2
    assert first_round[2:] == ["Judge the sentiment."] * 2
    assert [r["round"] for r in result.notes["rounds"]] == [0, 1, 2]
    assert any(r.candidate.origin.startswith("ape:resample") for r in ev.history)
    assert {t["name"] for t in result.notes["templates"]} == {"ape.induce", "ape.resample"}


def test_budget_is_never_exceeded_and_best_so_far_is_kept():
    for cap in (30, 70, 150):
        task, backend, ev, result = run_ape(rounds=2, max_evals=cap)
        assert ev.dev_evals <= cap
        assert result.best.instruction and "budget" in result.stopped_by


def test_same_seed_same_run_and_cli_options(tmp_path):
    _, _, ev_a, a = run_ape(seed=3, rounds=1)
    _, _, ev_b, b = run_ape(seed=3, rounds=1)
    assert a.best == b.best and [r.candidate for r in ev_a.history] == [r.candidate for r in ev_b.history]
    doc = search("sentiment", model=Scripted(), searcher="ape", db=str(tmp_path / "a.db"), chat="off", rounds=1)
    assert doc["searcher"]["name"] == "ape" and doc["search_best"]["candidate"]["origin"].startswith("ape:")
    assert doc["record"]["searcher_notes"]["templates"][0]["hash"]


def test_word_tasks_keep_instructions_that_name_common_words_and_an_empty_pool_is_one_line():
    """Single-word inputs are not "copied" by an instruction that uses the same word; a
    multi-word demo sentence the proposer saw is. A proposer that writes nothing usable
    gets a clear error, not a budget message."""
    import dataclasses

    import pytest

    from promptsearch.errors import PromptSearchError
    from promptsearch.tasks.base import Example

    words = ["word", "give", "opposite", "each", "the", "write"]
    base = load_task("sentiment")
    task = dataclasses.replace(
        base, train=[Example(f"w{i}", w, "positive") for i, w in enumerate(words)] + base.train[:4]
    )
    backend = Scripted()
    cfg = build_config(
        APESearcher, {"subsamples": "2", "samples_per_subsample": "5", "demos": "10", "chat": "off", "rounds": "0"}
    )  # every train example is shown
    ev = Evaluator(task, backend)
    ape = APESearcher(cfg)
    ape.search(task, ev, SearchContext(seed=0))
    kept = ape._clean(["Give the opposite of each word.", f"{base.train[0].input}", "Write the word."], task, "t")
    assert [c.instruction for c in kept] == ["Give the opposite of each word.", "Write the word."]

    class Mute(Scripted):
        def propose(self, text, req):
            return " ok"  # one word: never an instruction

    ev = Evaluator(task, Mute())
    with pytest.raises(PromptSearchError, match=r"none of the 10 instructions .* usable \(10 empty\)"):
        APESearcher(cfg).search(task, ev, SearchContext(seed=0))
