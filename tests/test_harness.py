import pytest

from fakes import GOLD, FakeBackend
from promptsearch import Candidate, Example, Task
from promptsearch.errors import PromptSearchError
from promptsearch.evaluation import Evaluator
from promptsearch.evaluation.harness import TRIGGERS, extract, parse_harness, vote
from promptsearch.store import CachedBackend, Store
from promptsearch.tasks import load_task


def query(text: str) -> str:
    return text.rsplit("Review: ", 1)[-1].split("\nSentiment:", 1)[0]


def test_parse_composes_and_rejects_clearly():
    h = parse_harness("fewshot:k=3,balanced=false+cot:trigger=ape,answer_call=true+sc:n=7,temperature=0.5")
    assert (h.fewshot_k, h.balanced, h.cot, h.answer_call, h.sc_n, h.temperature) == (3, False, True, True, 7, 0.5)
    assert h.trigger == TRIGGERS["ape"] and h.spec.startswith("fewshot:k=3")
    assert parse_harness("fewshot").fewshot_k == 4 and parse_harness("sc").sc_n == 5
    assert parse_harness(None) == parse_harness("zero-shot")
    with pytest.raises(PromptSearchError, match="Unknown harness 'cto'.*Did you mean: cot"):
        parse_harness("fewshot+cto")
    with pytest.raises(PromptSearchError, match="names 'calibrate' twice"):  # each part at most once
        parse_harness("calibrate+calibrate:mode=domain")
    with pytest.raises(PromptSearchError, match="zero-shot stands alone"):
        parse_harness("zero-shot+calibrate")
    with pytest.raises(PromptSearchError, match="'m=3' of 'sc' is not one of: n=..."):
        parse_harness("sc:m=3")
    with pytest.raises(PromptSearchError, match="must be int"):
        parse_harness("fewshot:k=four")
    with pytest.raises(PromptSearchError, match="temperature > 0"):
        parse_harness("sc:n=3,temperature=0")


def test_extraction_edge_cases():
    senti = load_task("sentiment")
    nums = Task("sum", [Example(str(i), f"{i} 1", (str(i + 1),)) for i in range(5)], [], [], metric="exact_match")
    words = Task("w", [Example("1", "x", ("cat",))], [], [])
    assert extract("It mocks the food. The answer is negative.", senti, True) == ("negative", "strict")
    assert extract("Answer: Positive", senti, True) == ("positive", "strict")
    # the strict phrase names no label: fall back to the last label mentioned
    assert extract("The answer is unclear, but positive then negative", senti, True) == ("negative", "flexible")
    assert extract("I cannot tell.", senti, True) == (None, "unparsed")
    assert extract("3 plus 4 is 7, so 1,204 in total", nums, True) == ("1204", "flexible")
    assert extract("The answer is 12.", nums, True) == ("12", "strict")
    assert extract("no digits here", nums, True) == (None, "unparsed")
    assert extract("step one\nstep two\nfeline: cat", words, True) == ("feline: cat", "flexible")
    assert extract("  cat \nmore", words, False) == ("cat", "flexible")
    assert extract("", words, False) == (None, "unparsed")


def test_vote_ties_go_to_the_first_answer():
    assert vote(["b", "a", "a", "b"]) == "b"
    assert vote([None, "a", "B.", "b"]) == "B."
    assert vote([None, None]) is None
    assert vote(["7", None, "7", "8"]) == "7"


def test_fewshot_demos_seeded_balanced_never_the_scored_example():
    task = load_task("sentiment")
    h = parse_harness("fewshot:k=4")
    fixed = h.demos(task, task.dev[0])
    assert fixed == h.demos(task, task.dev[1])  # one fixed set shares the KV prefix
    assert sorted(d.label for d in fixed) == ["negative", "negative", "positive", "positive"]
    assert [d.id for d in parse_harness("fewshot:k=4,seed=1").demos(task, task.dev[0])] != [d.id for d in fixed]
    scored = fixed[0]  # scoring a train example that is in the set swaps it for one of its label
    swapped = h.demos(task, scored)
    assert scored not in swapped and len(swapped) == 4
    assert sorted(d.label for d in swapped) == sorted(d.label for d in fixed)
    per = parse_harness("fewshot:k=4,per_example=true")
    for ex in task.train[:20]:
        assert ex not in per.demos(task, ex)
    assert per.demos(task, task.dev[0]) == per.demos(task, task.dev[0])


def test_fewshot_demos_reach_the_prompt():
    task, fake = load_task("sentiment"), FakeBackend()
    Evaluator(task, fake, harness="fewshot:k=2").score(Candidate(), task.dev[:3])
    ctx = fake.requests[0].context
    assert ctx.count("Sentiment: ") == 2 and ctx.endswith(f"Review: {task.dev[0].input}\nSentiment:")


def sampler(text, req):
    """Sample i of a review says the right label unless i is 1 or 3; CoT text around it."""
    gold = GOLD[query(text.split("\nSentiment:")[0] + "\nSentiment:")]
    wrong = "positive" if gold == "negative" else "negative"
    return f"Thinking... so the answer is {wrong if req.sample_index in (1, 3) else gold}."


def test_self_consistency_votes_reports_first_sample_and_caches_per_sample(tmp_path):
    task = load_task("sentiment")
    examples = task.dev[:10]
    store = Store(tmp_path / "sc.db")
    fake = FakeBackend(gen_rule=sampler)
    res = Evaluator(task, CachedBackend(fake, store), harness="cot+sc:n=5").score(Candidate(), examples)
    assert res.mean == 1.0 and res.extras["maj@n"] == 1.0 and res.extras["first_sample"] == 1.0
    assert len(fake.requests) == 5 * 10 and {r.sample_index for r in fake.requests} == set(range(5))
    assert all(r.temperature == 0.7 and TRIGGERS["kojima"] in r.prompt for r in fake.requests)
    # CoT often opens with a blank line: it stops only where a new example would start
    assert fake.requests[0].stop == ("\nReview:",)
    res = Evaluator(task, CachedBackend(fake, store), harness="cot+sc:n=5").score(Candidate(), examples)
    assert len(fake.requests) == 50 and res.cost.calls == 0  # re-run: zero calls
    res = Evaluator(task, CachedBackend(fake, store), harness="cot+sc:n=8").score(Candidate(), examples)
    assert len(fake.requests) == 50 + 3 * 10  # raising n to 8: only the 3 new samples per example
    assert res.cost.cache_hits == 50 and res.extras["samples"] == 8


def test_generation_only_backend_classifies_by_extraction():
    task = load_task("sentiment")
    fake = FakeBackend(gen_rule=lambda t: " " + GOLD[query(t)].upper() + " review", can_loglikelihood=False)
    res = Evaluator(task, fake).score(Candidate(), task.dev[:12])
    assert res.mean == 1.0 and res.label_logprobs is None and res.extras["flexible"] == 12
    assert all(r.max_new_tokens == 8 for r in fake.requests)


def test_generated_label_answers_list_the_options_where_the_backend_cannot_score_them():
    task = load_task("sentiment")
    cand = Candidate(instruction="Is the review positive or negative?")
    listed = "Is the review positive or negative?\nAnswer with one of: negative, positive.\n\nReview: "

    def prompts(harness, loglik):
        fake = FakeBackend(gen_rule=lambda t: " " + GOLD[query(t)], can_loglikelihood=loglik)
        Evaluator(task, fake, harness=harness).score(cand, task.dev[:3])
        return [r.prompt for r in fake.requests if hasattr(r, "prompt")]

    assert all(p.startswith(listed) for p in prompts("zero-shot", loglik=False))  # a chat API: labels named
    assert not any("Answer with one of" in p for p in prompts("options:show=false", loglik=False))
    assert not any("Answer with one of" in p for p in prompts("cot", loglik=True))  # scored locally: as before
    assert all(p.startswith(listed) for p in prompts("cot+options:show=true", loglik=True))
    relabeled = Candidate(instruction="Rate it.", labels=(("positive", ("great",)), ("negative", ("bad",))))
    fake = FakeBackend(gen_rule=lambda t: " great", can_loglikelihood=False)
    Evaluator(task, fake).score(relabeled, task.dev[:2])
    assert fake.requests[0].prompt.startswith("Rate it.\nAnswer with one of: bad, great.\n\n")  # its own words
    with pytest.raises(PromptSearchError, match="options"):
        parse_harness("options:list=1")


def test_answer_call_when_extraction_fails():
    nums = Task(
        "sum",
        [Example(f"t{i}", f"{i} 1", (str(i + 1),)) for i in range(5)],
        [Example(f"d{i}", f"{i} 2", (str(i + 2),)) for i in range(4)],
        [Example("x", "1 1", ("2",))],
        template="Input: {input}\nOutput:",
        metric="exact_match",
    )

    def rule(text):
        if text.endswith("Therefore, the answer is"):
            a, b = text.rsplit("Input: ", 1)[1].split("\n")[0].split()
            return f" {int(a) + int(b)}"
        return "I add the two numbers together."  # reasoning without any number

    res = Evaluator(nums, FakeBackend(gen_rule=rule), harness="cot:answer_call=true").score(Candidate(), nums.dev)
    assert res.mean == 1.0 and res.extras["answer_call"] == 4
    res = Evaluator(nums, FakeBackend(gen_rule=rule), harness="cot").score(Candidate(), nums.dev)
    assert res.mean == 0.0 and res.extras["unparsed_examples"] == 4  # counted, not crashed
