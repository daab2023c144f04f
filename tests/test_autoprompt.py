"""AutoPrompt mechanics on a tiny random-weight model (no download)."""

import pytest

from fakes import FakeBackend
from promptsearch import Budget
from promptsearch.backends.hf import HFBackend
from promptsearch.errors import PromptSearchError
from promptsearch.evaluation.evaluator import Evaluator
from promptsearch.searchers.autoprompt import AutoPromptSearcher, _allowed_tokens, _stable, _trigger_grad
from promptsearch.tasks.builtin import sentiment


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return HFBackend(str(tiny_model))


def run(tiny, seed=0, budget=None, **cfg):
    task = sentiment()
    ev = Evaluator(task, tiny, budget=budget or Budget())
    cfg = {"iterations": 3, "batch_size": 4, "search_width": 6, "eval_every": 3, **cfg}
    return AutoPromptSearcher(AutoPromptSearcher.Config(**cfg)).search(task, ev, ev.budget, seed), ev


def test_a_gradient_step_swap_lowers_the_minibatch_loss(tiny):
    result, _ = run(tiny, iterations=4, search_width=16)
    losses = [it["loss"] for it in result.notes["iterations"]]
    assert min(losses[1:]) <= losses[0] and len(result.notes["trigger_ids"]) == 5


def test_found_triggers_are_stable_printable_and_avoid_label_tokens(tiny):
    tok, task = tiny.tokenizer, sentiment()
    result, _ = run(tiny)
    ids = result.notes["trigger_ids"]
    allowed = _allowed_tokens(tok, task)
    assert _stable(tok, tuple(ids)) and all(allowed[i] for i in ids if i not in tok(" the").input_ids)
    label_ids = {t for w in task.labels.values() for t in tok(" " + w, add_special_tokens=False).input_ids}
    assert not any(allowed[i] for i in label_ids) and not any(allowed[i] for i in tok.all_special_ids)


def test_gradient_has_one_row_per_trigger_token(tiny):
    task = sentiment()
    g = _trigger_grad(tiny, task, "Review: {input}{trigger}\nSentiment:", (262, 262, 262), task.train[:3])
    assert tuple(g.shape) == (3, len(tiny.tokenizer)) and g.abs().sum() > 0


def test_a_seed_reproduces_the_search(tiny):
    a, _ = run(tiny, seed=5)
    b, _ = run(tiny, seed=5)
    assert a.notes["iterations"] == b.notes["iterations"] and a.best == b.best


def test_the_budget_is_never_exceeded(tiny):
    # 3 iterations x 7 candidates x 4 examples, then 66 dev: 150; the 5th iteration would pass 200
    result, ev = run(tiny, budget=Budget(max_evals=200), iterations=10, patience=10)
    assert 150 <= ev.dev_evals <= 200 and "evaluation budget" in result.stopped_by


def test_a_budget_spent_before_any_dev_scoring_is_an_error(tiny):
    from promptsearch.errors import BudgetExhausted

    with pytest.raises(BudgetExhausted):
        run(tiny, budget=Budget(max_evals=60), iterations=10)


def test_a_target_without_gradients_is_one_clear_line():
    task = sentiment()
    ev = Evaluator(task, FakeBackend())
    with pytest.raises(PromptSearchError, match="needs gradients .* baseline, ape"):
        AutoPromptSearcher().search(task, ev, ev.budget, 0)
