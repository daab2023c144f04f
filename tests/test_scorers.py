import pytest

from promptsearch import Example, register_scorer
from promptsearch.errors import PromptSearchError
from promptsearch.evaluation.scorers import accuracy, contains, exact_match, exact_set, f1, normalize, resolve_scorer


def ex(*answers):
    return Example("1", "x", tuple(answers))


def test_normalize_follows_ape():
    assert normalize("  The Answer-is: YES.\nmore") == "the answer is yes"
    assert normalize("cats and dogs!") == "cats dogs"
    assert normalize("Sentence 1: hi") == "hi"


def test_builtin_scorers():
    assert exact_match("Forty-two.", ex("forty two")) == 1.0
    assert exact_match("forty", ex("forty two")) == 0.0
    assert contains("I think it is happy indeed", ex("sad", "happy")) == 1.0
    assert contains("unhappy", ex("happy")) == 0.0  # whole words only
    assert f1("the red car", ex("a red car", "blue")) == pytest.approx(2 / 3)
    assert exact_set("dog, cat", ex("cat", "dog")) == 1.0
    assert exact_set("dog, cat, cow", ex("cat", "dog")) == 0.0
    assert accuracy("positive", Example("1", "x", "positive")) == 1.0


def test_custom_scorer_registers_like_builtins():
    register_scorer("length_ok", lambda pred, example: float(len(pred) < 5))
    name, fn = resolve_scorer("length_ok")
    assert name == "length_ok" and fn("abc", ex("z")) == 1.0
    name, fn = resolve_scorer(lambda p, e: 0.5)
    assert fn("x", ex("y")) == 0.5
    with pytest.raises(PromptSearchError, match="Did you mean: exact_match"):
        resolve_scorer("exact_mach")
