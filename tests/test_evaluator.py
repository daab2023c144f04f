import pytest

from fakes import FakeBackend, flat
from promptsearch import Budget, Candidate, Example, SoftPrompt, Task
from promptsearch.backends.base import TokenIds
from promptsearch.errors import BudgetExhausted, PromptSearchError
from promptsearch.evaluation import Evaluator
from promptsearch.evaluation.render import render
from promptsearch.searchers.baseline import pick_demos
from promptsearch.tasks import load_task

MANUAL = Candidate(instruction="Judge the writer's overall opinion.", name="manual")


def test_classification_by_label_loglikelihood():
    task, fake = load_task("sentiment"), FakeBackend()
    ev = Evaluator(task, fake)
    good = ev.score(MANUAL, task.dev)
    empty = ev.score(Candidate(name="empty"), task.dev)
    assert good.mean == 1.0
    assert empty.mean == pytest.approx(0.5)  # always "negative" on a balanced split
    assert set(empty.predictions) == {"negative"}
    assert empty.label_logprobs[0].keys() == {"negative", "positive"}
    # one request per (example, label), sent as batches, never one call per example
    assert len(fake.requests) == 2 * 2 * len(task.dev) and fake.batches == 4
    assert [r.step for r in ev.history] == [0, 1] and ev.dev_evals == 2 * len(task.dev)


def test_rendering_instruction_demos_and_trigger():
    task = load_task("sentiment")
    demos = pick_demos(task, 4, seed=0)
    assert len(set(demos)) == 4 and all(d in {e.id for e in task.train} for d in demos)
    by_id = {e.id: e for e in task.train}
    ctx = render(task, Candidate(instruction="Do it.", demos=demos), task.dev[0], [by_id[i] for i in demos])
    assert ctx.startswith("Do it.\n\nReview: ") and ctx.endswith(f"Review: {task.dev[0].input}\nSentiment:")
    assert ctx.count("Sentiment: ") == 4
    t2 = Task("t", task.train, task.dev, task.test, template="{input} {trigger} It was", labels=task.labels)
    ctx2 = render(t2, Candidate(trigger=(11, 12)), task.dev[0], [])
    assert ctx2 == (task.dev[0].input + " ", TokenIds((11, 12)), " It was")
    ctx3 = render(task, Candidate(trigger=(5,)), task.dev[0], [])  # no slot: the trigger leads
    assert ctx3[0] == TokenIds((5,))


def test_soft_prompt_and_trigger_reach_the_backend():
    task, fake = load_task("sentiment"), FakeBackend()
    sp = SoftPrompt([[0.0, 1.0]], name="sp")
    Evaluator(task, fake).score(Candidate(soft_prompt=sp, name="soft"), task.dev[:3])
    assert fake.soft_prompts[-1] is sp
    Evaluator(task, fake).score(Candidate(trigger=(7, 8), name="trig"), task.dev[:3])
    assert "<ids:7,8>" in flat(fake.requests[-1].context)


def test_generation_tasks_use_the_metric_and_custom_scorers():
    exs = [Example(str(i), f"{i} {i}", (str(2 * i),)) for i in range(6)]
    task = Task("double", exs[:2], exs[2:4], exs[4:], template="Input: {input}\nOutput:", metric="exact_match")
    fake = FakeBackend(gen_rule=lambda p: str(2 * int(p.rsplit("Input: ", 1)[1].split()[0])) + ".")
    assert Evaluator(task, fake).score(Candidate(), task.dev).mean == 1.0
    calls = []

    def strict(pred, example):
        calls.append(pred)
        return float(pred == example.answers[0])  # "4." != "4"

    assert Evaluator(task, fake, scorer=strict).score(Candidate(), task.dev).mean == 0.0
    assert calls == ["4.", "6."]
    with pytest.raises(PromptSearchError, match="Scorer 'boom' failed on example 2: ZeroDivisionError"):

        def boom(p, e):
            return 1 / 0

        Evaluator(task, fake, scorer=boom).score(Candidate(), task.dev)


def test_budget_is_never_exceeded():
    task = load_task("sentiment")
    ev = Evaluator(task, FakeBackend(), budget=Budget(max_evals=len(task.dev) + 10))
    ev.score(Candidate(), task.dev)
    with pytest.raises(BudgetExhausted):
        ev.score(MANUAL, task.dev)
    assert ev.dev_evals <= len(task.dev) + 10
    # test-split scoring (the final report) is outside the search budget
    assert ev.score(MANUAL, task.test, split="test").n == len(task.test)


def test_unknown_demo_id_is_a_clear_error():
    task = load_task("sentiment")
    with pytest.raises(PromptSearchError, match="demo id 'nope'"):
        Evaluator(task, FakeBackend()).score(Candidate(demos=("nope",), name="x"), task.dev)
