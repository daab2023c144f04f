"""AutoPrompt mechanics on a tiny random-weight model (no download)."""

import pytest

from fakes import FakeBackend
from promptsearch import Budget
from promptsearch.backends.base import LoglikRequest
from promptsearch.backends.hf import HFBackend
from promptsearch.candidates import Candidate
from promptsearch.errors import PromptSearchError
from promptsearch.evaluation.evaluator import Evaluator
from promptsearch.searchers.autoprompt import AutoPromptSearcher, _allowed_tokens, _stable, _trigger_grad
from promptsearch.searchers.base import SearchContext
from promptsearch.tasks.base import Example, Task
from promptsearch.tasks.builtin import sentiment


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return HFBackend(str(tiny_model))


def run(tiny, seed=0, budget=None, **cfg):
    task = sentiment()
    ev = Evaluator(task, tiny, budget=budget or Budget())
    cfg = {"iterations": 3, "batch_size": 4, "search_width": 6, "eval_every": 3, **cfg}
    return AutoPromptSearcher(AutoPromptSearcher.Config(**cfg)).search(task, ev, SearchContext(seed=seed)), ev


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
    cand = Candidate(trigger=(262, 262, 262), template="Review: {input}{trigger}\nSentiment:")
    g = _trigger_grad(tiny, task, cand, task.train[:3])
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
    with pytest.raises(PromptSearchError, match="needs gradients .* baseline, demos, ape"):
        AutoPromptSearcher().search(task, ev, SearchContext(seed=0))


def test_the_gradient_matches_a_finite_difference_along_the_embedding(tiny):
    """d loss/d one-hot, contracted with (E[t'] - E[t]) at a position, is the directional
    derivative of the loss along the line from token t's embedding to t''s: check it
    against a central difference of the same loss computed with a perturbed embedding row."""

    task = sentiment()
    batch = task.train[:2]
    trig = (262, 1000, 2000)
    cand = Candidate(trigger=trig, template="Review: {input}{trigger}\nSentiment:")
    g = _trigger_grad(tiny, task, cand, batch)  # [3, V]
    E = tiny.model.get_input_embeddings().weight
    pos, other = 1, 3000
    # the one-hot gradient is grad_e · E[v]; along E[other]-E[t] that is g[pos, other] - g[pos, t]
    analytic = float(g[pos, other] - g[pos, trig[pos]])
    saved = E.data[trig[pos]].clone()
    direction = E.data[other] - saved
    losses = []
    for h in (1e-2, -1e-2):
        E.data[trig[pos]] = saved + h * direction
        try:
            losses.append(_grad_free_loss(tiny, task, cand, batch))
        finally:
            E.data[trig[pos]] = saved
    numeric = (losses[0] - losses[1]) / 2e-2
    assert abs(analytic) > 1e-4  # a real signal, not two zeros agreeing
    assert abs(numeric - analytic) <= 0.02 * abs(analytic)  # fp32 loss differences: a few digits


def _grad_free_loss(tiny, task, cand, batch):
    """The same label cross-entropy from the backend's plain scoring path."""
    import math

    from promptsearch.evaluation.render import continuation, render, task_for

    t = task_for(task, cand)
    total = 0.0
    for ex in batch:
        p = render(t, cand, ex, [])
        lps = {
            lab: tiny.loglikelihood([LoglikRequest(p, continuation(p, w))])[0].logprob for lab, w in t.labels.items()
        }
        m = max(lps.values())
        total -= lps[ex.label] - (m + math.log(sum(math.exp(v - m) for v in lps.values())))
    return total / len(batch)  # the minibatch mean, as the searcher's loss


def test_next_token_logprobs_agree_with_loglikelihood(tiny):
    task = sentiment()
    prompts = [f"Review: {ex.input}\nSentiment:" for ex in task.train[:5]]
    lp = tiny.next_token_logprobs(prompts, batch_size=2)
    tok = tiny.tokenizer
    for i, p in enumerate(prompts):
        for word in (" good", " bad", " the"):
            (t,) = tok(word, add_special_tokens=False).input_ids
            ref = tiny.loglikelihood([LoglikRequest(p, word)])[0].logprob
            assert abs(float(lp[i, t]) - ref) < 1e-4


def test_label_word_search_picks_one_token_words_the_evaluator_uses(tiny):
    result, ev = run(tiny, search_labels=True, label_candidates=3, iterations=2, eval_every=2)
    words = result.notes["label_words"]
    tok = tiny.tokenizer
    assert set(words) == {"negative", "positive"}
    for (w,) in words.values():
        assert len(tok(" " + w, add_special_tokens=False).input_ids) == 1 and w.isalpha()
    assert len(result.notes["label_search"]) == 10  # the given words, then 3 x 3 found sets, each scored on dev
    assert result.notes["label_search"][0] == {
        **result.notes["label_search"][0],
        "given": True,
        "words": {"negative": "negative", "positive": "positive"},
    }
    # the best candidate carries its label words; its dev score is the evaluator's with them
    best = result.best
    assert dict(best.labels) == {k: tuple(v) for k, v in words.items()}
    again = ev.score(best, sentiment().dev)
    assert again.mean == result.best_score and again.cost.calls == 0  # cached: same keys
    # and the trigger never uses the chosen label words' tokens
    label_ids = {tok(" " + w, add_special_tokens=False).input_ids[0] for (w,) in words.values()}
    assert not label_ids & set(result.notes["trigger_ids"])


def test_trigger_shown_as_text_and_ids(tiny):
    result, _ = run(tiny, iterations=1, eval_every=1)
    text, ids = result.notes["trigger_text"], result.notes["trigger_ids"]
    assert text == tiny.tokenizer.decode(ids)
    assert repr(text) in result.best.describe() and " ".join(map(str, ids)) in result.best.describe()


def test_open_answer_tasks_train_on_the_gold_answer(tiny):
    exs = [
        Example(f"e{i}", f"{w}", w.upper())
        for i, w in enumerate(["cat", "dog", "sun", "red", "one", "two", "map", "pen"])
    ]
    task = Task(
        name="upper", train=exs[:4], dev=exs[4:6], test=exs[6:], template="Word: {input}\nUpper:", metric="exact_match"
    ).validate()
    ev = Evaluator(task, tiny)
    cfg = AutoPromptSearcher.Config(iterations=2, batch_size=4, search_width=4, eval_every=2)  # one minibatch
    result = AutoPromptSearcher(cfg).search(task, ev, SearchContext(seed=0))
    losses = [it["loss"] for it in result.notes["iterations"]]
    assert all(x > 0 for x in losses) and losses[1] <= losses[0]  # negative log-likelihood of the answers
    assert result.best.trigger is not None and result.best.labels is None


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"position": "before_input"}, "places the trigger itself"),
        ({"labels": "negative:unbelievablyterrible"}, "is 3 tokens|is [2-9] tokens"),
        ({"labels": "bad:awful"}, "is not a label of task"),
        ({"labels": "negative"}, "is not LABEL:WORD"),
        ({"labels": "negative:awful", "search_labels": True}, "not both"),
    ],
)
def test_bad_options_are_one_clear_line_before_any_call(tiny, cfg, message):
    from dataclasses import replace

    task = sentiment()
    if "position" in cfg:
        task = replace(task, template="Review: {input}{trigger}\nSentiment:")
    ev = Evaluator(task, tiny)
    with pytest.raises(PromptSearchError, match=message) as e:
        AutoPromptSearcher(AutoPromptSearcher.Config(**cfg)).search(task, ev, SearchContext(seed=0))
    assert "\n" not in str(e.value) and ev.cost.calls == 0


def test_label_words_on_an_open_answer_task_are_refused(tiny):
    exs = [Example(f"e{i}", "x", "y") for i in range(6)]
    task = Task(name="open", train=exs[:2], dev=exs[2:4], test=exs[4:], template="{input}").validate()
    ev = Evaluator(task, tiny)
    with pytest.raises(PromptSearchError, match="has no labels"):
        AutoPromptSearcher(AutoPromptSearcher.Config(search_labels=True)).search(task, ev, SearchContext(seed=0))


def test_length_zero_is_refused():
    with pytest.raises(PromptSearchError, match="'length'.* >= 1"):
        AutoPromptSearcher(AutoPromptSearcher.Config(length=0))
