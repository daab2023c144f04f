"""The RL searcher (TRL GRPO/RLOO) on tiny random-weight models (no download)."""

import warnings

import pytest

from fakes import FakeBackend
from promptsearch.backends.hf import HFBackend
from promptsearch.errors import PromptSearchError
from promptsearch.evaluation.evaluator import Evaluator
from promptsearch.searchers.base import SearchContext
from promptsearch.searchers.rl import RLSearcher, _gap_reward
from promptsearch.tasks.builtin import sentiment


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return HFBackend(str(tiny_model))


def search(tiny, seed=0, **cfg):
    task = sentiment()
    ev = Evaluator(task, tiny)
    cfg = {
        "steps": 2,
        "num_generations": 2,
        "prompt_length": 4,
        "trigger_length": 4,
        "batch_size": 2,
        "eval_every": 1,
        "race": 2,
        **cfg,
    }
    return RLSearcher(RLSearcher.Config(**cfg)).search(task, ev, SearchContext(seed=seed)), ev


@pytest.mark.parametrize("style, trainer", [("instruction", "grpo"), ("tokens", "grpo"), ("tokens", "rloo")])
def test_both_styles_and_trainers_run_and_race_on_dev(tiny, style, trainer):
    result, ev = search(tiny, style=style, trainer=trainer)
    curve = result.notes["curve"]
    assert [c["step"] for c in curve] == [1, 2] and "dev_best" in curve[0]
    assert result.notes["prompts_written"] >= 1 and result.best_score == max(r.mean for r in ev.history)
    if style == "tokens":
        assert len(result.best.trigger) == 4 and "{trigger}" in result.best.template
    else:
        assert result.best.instruction


def test_a_seed_reproduces_and_library_deprecations_stay_quiet(tiny):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        a, _ = search(tiny, seed=3, style="tokens")
    b, _ = search(tiny, seed=3, style="tokens")
    assert a.notes["curve"] == b.notes["curve"] and a.best == b.best
    assert not [w for w in seen if "is_gradient_checkpointing" in str(w.message)]


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # TRL's trainer
def test_one_training_step_changes_the_policys_trainable_weights(tiny, tiny_model):
    import torch

    from promptsearch.searchers import rl

    task = sentiment()
    cfg = RLSearcher.Config(style="tokens", steps=1, num_generations=2, trigger_length=3, batch_size=2, lr=1e-2)
    tok = rl._tokenizer(str(tiny_model))
    calls = []

    def reward(prompts, completions, completion_ids, **kw):
        calls.append((len(prompts), len(completions), [len(c) for c in completion_ids]))
        return [float(i) for i in range(len(completions))]  # a spread, so the advantage is not zero

    import random

    trainer = rl._trainer(cfg, str(tiny_model), tok, reward, rl._dataset(task, cfg, random.Random(0), tok), [], 0)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert calls == [(2, 2, [3, 3])]  # the reward gets every completion and its ids
    assert before and any(not torch.equal(before[n], after[n].detach()) for n in before)
    assert all("lora" in n for n in before)  # LoRA by default: only adapter weights train


def test_gap_reward_is_rlprompts():
    import math

    from promptsearch.evaluation.evaluator import EvalResult
    from promptsearch.tasks.base import Example

    batch = [Example("a", "x", "positive"), Example("b", "y", "negative")]
    lp = [
        {"positive": math.log(0.7), "negative": math.log(0.3)},
        {"positive": math.log(0.6), "negative": math.log(0.4)},
    ]
    res = EvalResult(None, "train", 0.5, 0.0, [1, 0], ["positive", "positive"], ["a", "b"], None, lp)
    # right by 0.4 (x1.8) and wrong by 0.2 (x2.0)
    assert abs(_gap_reward(res, batch) - (0.4 * 1.8 - 0.2 * 2.0) / 2) < 1e-9


def test_bad_input_is_one_line():
    task = sentiment()
    ev = Evaluator(task, FakeBackend())
    with pytest.raises(PromptSearchError, match="-o policy=PATH"):
        RLSearcher().search(task, ev, SearchContext(seed=0))
    with pytest.raises(PromptSearchError, match="num_generations"):
        RLSearcher(RLSearcher.Config(num_generations=1))
    with pytest.raises(PromptSearchError, match="prompt_length"):
        RLSearcher(RLSearcher.Config(prompt_length=0))
    with pytest.raises(PromptSearchError, match="trigger_length"):
        RLSearcher(RLSearcher.Config(trigger_length=0))


def test_interrupted_run_saves_a_checkpoint_and_resume_continues_at_the_right_step(
    tiny_model, tmp_path, user_dir, monkeypatch
):
    import json

    from typer.testing import CliRunner

    from promptsearch.cli import app
    from promptsearch.evaluation import evaluator as ev_mod

    args = [
        "run",
        "--task",
        "sentiment",
        "--model",
        f"hf:{tiny_model}",
        "--searcher",
        "rl",
        "--shots",
        "0",
        "-o",
        "style=tokens",
        "-o",
        "steps=4",
        "-o",
        "num_generations=2",
        "-o",
        "trigger_length=3",
        "-o",
        "batch_size=2",
        "-o",
        "checkpoint_every=2",
        "-o",
        "eval_every=2",
        "-o",
        "race=2",
        "--json",
    ]
    runner = CliRunner()
    # the uninterrupted run, for comparison
    whole = json.loads(runner.invoke(app, args + ["--db", str(tmp_path / "a.db")]).stdout)

    real = ev_mod.Evaluator.score_many
    calls = {"train": 0}

    def flaky(self, cands, examples, split="dev"):
        if split == "train":
            calls["train"] += 1
            if calls["train"] == 4:  # during step 4, after the step-2 checkpoint and step 3
                raise KeyboardInterrupt
        return real(self, cands, examples, split)

    monkeypatch.setattr(ev_mod.Evaluator, "score_many", flaky)
    first = runner.invoke(app, args + ["--db", str(tmp_path / "b.db")])
    assert first.exit_code == 130
    (run_dir,) = list((tmp_path / "b.db.checkpoints").iterdir())  # beside the run's database
    assert not (user_dir / "runs").exists()
    assert (run_dir / "rl_state-3.json").exists()  # Ctrl-C saved the 3 finished steps
    hint = f"promptsearch run --resume {run_dir.name} --db {tmp_path / 'b.db'}"
    assert first.output.count("--resume") == 1 and hint in first.output  # one hint, the one that works
    assert "run the same command again" not in first.output
    listing = runner.invoke(app, ["runs", "--db", str(tmp_path / "b.db")]).output
    assert "1 interrupted run" in listing and hint in " ".join(listing.split())
    monkeypatch.setattr(ev_mod.Evaluator, "score_many", real)
    calls["train"] = 0
    resumed = runner.invoke(app, ["run", "--resume", run_dir.name, "--db", str(tmp_path / "b.db"), "--json"])
    assert resumed.exit_code == 0, resumed.output
    doc = json.loads(resumed.stdout)
    curve = doc["record"]["searcher_notes"]["curve"]
    assert doc["run_id"] == run_dir.name and [c["step"] for c in curve] == [1, 2, 3, 4]
    assert curve[:3] == whole["record"]["searcher_notes"]["curve"][:3]
    assert not run_dir.exists()  # finished: checkpoints removed
    again = runner.invoke(app, ["run", "--resume", run_dir.name, "--db", str(tmp_path / "b.db")])
    assert again.exit_code == 2 and "nothing to resume" in again.output


def test_use_vllm_passes_trls_settings_and_without_vllm_is_one_line(monkeypatch):
    import importlib.util

    import pytest

    from promptsearch.errors import PromptSearchError
    from promptsearch.searchers.base import build_config
    from promptsearch.searchers.rl import RLSearcher, vllm_settings

    assert vllm_settings(build_config(RLSearcher, {}), False) == {}
    cfg = build_config(RLSearcher, {"use_vllm": "true", "vllm_mode": "server", "vllm_server_base_url": "http://h:8000"})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(PromptSearchError, match="pip install vllm") as e:
        vllm_settings(cfg, False)
    assert "\n" not in str(e.value)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))
    assert vllm_settings(cfg, False) == {
        "use_vllm": True,
        "vllm_mode": "server",
        "vllm_server_base_url": "http://h:8000",
    }
    colocate = build_config(RLSearcher, {"use_vllm": "true", "vllm_gpu_memory_utilization": "0.5"})
    assert vllm_settings(colocate, False)["vllm_gpu_memory_utilization"] == 0.5
    with pytest.raises(PromptSearchError, match="style=instruction"):
        vllm_settings(colocate, True)
    # TRL takes exactly these names
    import dataclasses

    from trl import GRPOConfig

    assert {"use_vllm", "vllm_mode", "vllm_server_base_url", "vllm_gpu_memory_utilization"} <= {
        f.name for f in dataclasses.fields(GRPOConfig)
    }
