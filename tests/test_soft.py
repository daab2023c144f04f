"""Soft prompts with PEFT on a tiny random-weight model (no download)."""

import json
import random
import warnings

import pytest
from typer.testing import CliRunner

from fakes import FakeBackend
from promptsearch.backends.base import LoglikRequest
from promptsearch.backends.hf import HFBackend
from promptsearch.candidates import Candidate
from promptsearch.cli import app
from promptsearch.errors import PromptSearchError
from promptsearch.evaluation.evaluator import Evaluator
from promptsearch.evaluation.render import continuation, render
from promptsearch.searchers.base import SearchContext
from promptsearch.searchers.soft import SoftPromptSearcher, _batch_loss, _learned, _peft_model, _unwrap
from promptsearch.tasks.builtin import sentiment
from promptsearch.tasks.loaders import load_task

# These tests load the exported adapter with PEFT itself, as a user would, outside promptsearch's
# own filter (backends.hf.quiet_library_deprecations): PEFT reads transformers' deprecated
# `is_gradient_checkpointing`, and its prefix-tuning forward passes `past_key_values`.
PEFT_CHECKPOINTING = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
PEFT_PREFIX_CACHE = pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated:FutureWarning")

METHODS = ["prompt", "ptuning", "prefix"]


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return HFBackend(str(tiny_model))


def search(tiny, **cfg):
    task = sentiment()
    ev = Evaluator(task, tiny)
    cfg = {"steps": 4, "batch_size": 4, "eval_every": 2, "lr": 0.05, **cfg}
    return SoftPromptSearcher(SoftPromptSearcher.Config(**cfg)).search(task, ev, SearchContext(seed=0)), ev


@pytest.mark.parametrize("method", METHODS)
def test_the_loss_goes_down_on_a_fixed_batch(tiny, method):
    import torch

    task = sentiment()
    batch = task.train[:4]
    cfg = SoftPromptSearcher.Config(method=method, init="random", lr=0.05)
    torch.manual_seed(0)
    pm = _peft_model(tiny.model, tiny, cfg, None)
    try:
        opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=0.05)
        losses = []
        for _ in range(8):
            loss = _batch_loss(pm, tiny, task, batch, method)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        _unwrap(pm)
    assert losses[-1] < losses[0] - 1e-3
    assert not any(p.requires_grad for p in tiny.model.parameters())  # the target is left frozen


@pytest.mark.parametrize("method", METHODS)
def test_training_loss_is_what_the_backend_scores(tiny, method):
    """The loss the optimizer sees equals the cross-entropy from the backend's scoring of the
    learned prompt: the same positions, offsets and tokens."""
    import math

    import torch

    task = sentiment()
    batch = task.train[:3]
    torch.manual_seed(1)
    pm = _peft_model(tiny.model, tiny, SoftPromptSearcher.Config(method=method, init="random"), None)
    try:
        with torch.no_grad():
            train_loss = float(_batch_loss(pm, tiny, task, batch, method))
        sp = _learned(pm, method, "t")
    finally:
        _unwrap(pm)
    total = 0.0
    for ex in batch:
        p = render(task, Candidate(), ex, [])
        lps = {
            lab: tiny.loglikelihood([LoglikRequest(p, continuation(p, w))], soft_prompt=sp)[0].logprob
            for lab, w in task.labels.items()
        }
        m = max(lps.values())
        total -= lps[ex.label] - (m + math.log(sum(math.exp(v - m) for v in lps.values())))
    assert abs(total / len(batch) - train_loss) < 1e-4


def test_answers_share_rows_and_the_loss_stays_what_the_backend_scores(tiny):
    """One-token labels are read from one row per example, a label's row that is a prefix of
    another label's is read from the longer one; the loss is unchanged by the sharing."""
    import math
    from dataclasses import replace

    import torch

    from promptsearch.searchers import objective

    task = sentiment()
    labels = {"negative": ("not", "not good at all"), "positive": (" good", "fine")}
    task = replace(task, labels=labels)
    batch = task.train[:3]
    rows, reads = objective.answer_rows(tiny, task, Candidate(), batch)
    assert len(reads) == 4 * len(batch) and len(rows) < len(reads)
    torch.manual_seed(2)
    pm = _peft_model(tiny.model, tiny, SoftPromptSearcher.Config(method="prompt", init="random"), None)
    try:
        with torch.no_grad():
            train_loss = float(_batch_loss(pm, tiny, task, batch, "prompt"))
        sp = _learned(pm, "prompt", "t")
    finally:
        _unwrap(pm)
    total = 0.0
    for ex in batch:
        p = render(task, Candidate(), ex, [])
        lps = {}
        for lab, words in labels.items():
            got = tiny.loglikelihood([LoglikRequest(p, continuation(p, w)) for w in words], soft_prompt=sp)
            lps[lab] = math.log(sum(math.exp(g.logprob) for g in got))
        m = max(lps.values())
        total -= lps[ex.label] - (m + math.log(sum(math.exp(v - m) for v in lps.values())))
    assert abs(total / len(batch) - train_loss) < 1e-4


@pytest.mark.parametrize("method", METHODS)
@PEFT_CHECKPOINTING
@PEFT_PREFIX_CACHE
def test_search_saves_a_peft_adapter_that_loads_and_scores_the_same(tiny, method):
    import torch
    from peft import PeftModel

    result, ev = search(tiny, method=method)
    sp = result.best.soft_prompt
    assert sp is not None and result.notes["method"] == method
    folder = result.notes["saved"]
    task = sentiment()
    ex = task.dev[0]
    p = render(task, Candidate(), ex, [])
    ours = [
        tiny.loglikelihood([LoglikRequest(p, continuation(p, w))], soft_prompt=sp)[0].logprob
        for w in task.labels.values()
    ]
    loaded = PeftModel.from_pretrained(tiny.model, folder)
    try:
        theirs = []
        ctx = tiny.encode_prompt(p)
        for w in task.labels.values():
            (t,) = tiny.tokenizer(" " + w, add_special_tokens=False).input_ids
            with torch.no_grad():
                logits = loaded(
                    input_ids=torch.tensor([ctx]), attention_mask=torch.ones(1, len(ctx), dtype=torch.long)
                ).logits
            theirs.append(float(torch.log_softmax(logits[0, -1].float(), -1)[t]))
    finally:
        _unwrap(loaded)
    assert max(abs(a - b) for a, b in zip(ours, theirs)) < 1e-4


def test_readout_is_real_token_ids_and_is_scored(tiny):
    result, _ = search(tiny, method="prompt")
    r = result.notes["readout"]
    assert len(r["ids"]) == 8 and all(0 <= i < len(tiny.tokenizer) for i in r["ids"]) and "dev" in r
    assert r["text"] == tiny.tokenizer.decode(r["ids"])


def test_a_seed_reproduces_and_library_deprecations_stay_quiet(tiny):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        a, _ = search(tiny, method="ptuning")
    assert not [w for w in seen if "is_gradient_checkpointing" in str(w.message)]
    b, _ = search(tiny, method="ptuning")
    assert a.notes["steps"] == b.notes["steps"] and a.best.soft_prompt.fingerprint() == b.best.soft_prompt.fingerprint()


def test_bad_input_is_one_line(tiny):
    task = sentiment()
    ev = Evaluator(task, FakeBackend())
    with pytest.raises(PromptSearchError, match="need gradients"):
        SoftPromptSearcher().search(task, ev, SearchContext(seed=0))
    with pytest.raises(PromptSearchError, match="num_virtual_tokens"):
        SoftPromptSearcher(SoftPromptSearcher.Config(num_virtual_tokens=0))
    ev = Evaluator(task, tiny)
    cfg = SoftPromptSearcher.Config(
        init_text=" ".join(random.Random(0).choice(["good", "film"]) for _ in range(20)), truncate=False
    )
    with pytest.raises(PromptSearchError, match="more than num_virtual_tokens"):
        SoftPromptSearcher(cfg).search(task, ev, SearchContext(seed=0))
    with pytest.raises(PromptSearchError, match="init=best: no discrete prompt"):
        SoftPromptSearcher(SoftPromptSearcher.Config(init="best")).search(task, ev, SearchContext(seed=0))


def _prefix_tokens(tiny):
    return tiny.tokenizer(" Answer briefly:", add_special_tokens=False).input_ids


def test_generation_with_soft_vectors_equals_the_same_tokens_as_text(tiny):
    """Vectors that are token embeddings must generate what those tokens generate."""
    import torch

    from promptsearch.backends.base import GenRequest, SoftPrompt

    ids = _prefix_tokens(tiny)
    sp = SoftPrompt(vectors=tiny.model.get_input_embeddings().weight[torch.tensor(ids)].detach().clone())
    from promptsearch.backends.base import TokenIds

    prompts = ["Review: fine film\nSentiment:", "Review: a dull, long mess\nSentiment:", "x"]
    soft = tiny.generate([GenRequest(p, 6) for p in prompts], soft_prompt=sp)
    plain = tiny.generate([GenRequest((TokenIds(tuple(ids)), p), 6) for p in prompts])
    assert [r.text for r in soft] == [r.text for r in plain] and any(r.text for r in plain)


def test_generation_with_prefix_kv_equals_the_same_tokens_as_text(tiny):
    import torch

    from promptsearch.backends.base import GenRequest, SoftPrompt, TokenIds

    ids = _prefix_tokens(tiny)
    base = getattr(tiny.model, tiny.model.base_model_prefix)
    with torch.no_grad():
        out = base(input_ids=torch.tensor([ids]), use_cache=True)
    cache = out.cache if tiny._cache_kw == "cache" else out.past_key_values
    sp = SoftPrompt(kv=tuple((layer.keys[0].clone(), layer.values[0].clone()) for layer in cache.layers))
    prompts = ["Review: fine film\nSentiment:", "Review: a dull, long mess\nSentiment:"]
    soft = tiny.generate([GenRequest(p, 6) for p in prompts], soft_prompt=sp)
    plain = tiny.generate([GenRequest((TokenIds(tuple(ids)), p), 6) for p in prompts])
    assert [r.text for r in soft] == [r.text for r in plain]


@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_soft_prompts_on_an_open_answer_task_generate(tiny, method):
    from promptsearch.tasks.base import Example, Task

    exs = [
        Example(f"e{i}", w, w.upper()) for i, w in enumerate(["cat", "dog", "sun", "red", "one", "two", "map", "pen"])
    ]
    task = Task(
        name="upper", train=exs[:4], dev=exs[4:6], test=exs[6:], template="Word: {input}\nUpper:", metric="exact_match"
    ).validate()
    ev = Evaluator(task, tiny)
    cfg = SoftPromptSearcher.Config(method=method, steps=2, batch_size=4, eval_every=2, init="random")
    result = SoftPromptSearcher(cfg).search(task, ev, SearchContext(seed=0))
    dev = ev.history[0]
    assert dev.candidate.soft_prompt is not None and len(dev.predictions) == 2
    assert result.notes["steps"][0]["loss"] > 0


@PEFT_CHECKPOINTING
def test_cli_soft_run_exports_a_peft_adapter_and_a_discrete_run_exports_json(tiny_model, tmp_path):
    import json

    from peft import PeftModel

    from promptsearch.backends.base import SoftPrompt
    from promptsearch.cli import app

    runner = CliRunner()
    db = str(tmp_path / "s.db")
    res = runner.invoke(
        app,
        [
            "run",
            "--task",
            "sentiment",
            "--model",
            f"hf:{tiny_model}",
            "--searcher",
            "soft",
            "-o",
            "steps=2",
            "-o",
            "eval_every=2",
            "--shots",
            "0",
            "--db",
            db,
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["record"]["searcher_notes"]["readout"]["ids"]
    out = tmp_path / "adapter"  # two steps may not beat the baselines; --search-best is the learned prompt either way
    res = runner.invoke(app, ["export", doc["run_id"], "--search-best", "--output", str(out), "--db", db])
    assert res.exit_code == 0, res.output
    be = HFBackend(str(tiny_model))
    loaded = PeftModel.from_pretrained(be.model, str(out))
    try:
        vec = loaded.get_prompt(batch_size=1)[0].detach().float().cpu()
    finally:
        _unwrap(loaded)
    # the exported vectors are the very prompt the run scored (same fingerprint)
    assert SoftPrompt(vectors=vec).fingerprint() == doc["search_best"]["candidate"]["soft_prompt"]
    again = runner.invoke(app, ["export", doc["run_id"], "--output", str(out), "--db", db])
    assert again.exit_code == 2 and "already exists" in again.output
    # a discrete run (AutoPrompt) exports JSON with its template and trigger; an empty best has nothing
    res = runner.invoke(
        app,
        [
            "run",
            "--task",
            "sentiment",
            "--model",
            f"hf:{tiny_model}",
            "--searcher",
            "autoprompt",
            "-o",
            "iterations=1",
            "-o",
            "eval_every=1",
            "-o",
            "search_width=2",
            "--shots",
            "0",
            "--db",
            db,
            "--json",
        ],
    )
    ap = json.loads(res.stdout)
    # on a random-weight model a baseline may beat the trigger on dev; --search-best exports the trigger
    res = runner.invoke(app, ["export", ap["run_id"], "--search-best", "--output", str(tmp_path / "d"), "--db", db])
    assert res.exit_code == 0, res.output
    exported = json.loads((tmp_path / "d" / "prompt.json").read_text())
    assert exported["trigger_ids"] == ap["search_best"]["candidate"]["trigger"] and "{trigger}" in exported["template"]
    res = runner.invoke(
        app,
        [
            "run",
            "--task",
            "sentiment",
            "--model",
            f"hf:{tiny_model}",
            "--searcher",
            "baseline",
            "-o",
            "max_manual=0",
            "-o",
            "shots=0",
            "--db",
            db,
            "--json",
        ],
    )
    empty = json.loads(res.stdout)
    res = runner.invoke(app, ["export", empty["run_id"], "--output", str(tmp_path / "e"), "--db", db])
    assert res.exit_code == 2 and "nothing to export" in res.output and not (tmp_path / "e").exists()


def test_show_and_report_carry_the_readout_with_its_note(tiny_model, tmp_path):
    import json

    from promptsearch.cli import app

    runner = CliRunner()
    db = str(tmp_path / "r.db")
    res = runner.invoke(
        app,
        [
            "run",
            "--task",
            "sentiment",
            "--model",
            f"hf:{tiny_model}",
            "--searcher",
            "soft",
            "-o",
            "steps=1",
            "-o",
            "eval_every=1",
            "--shots",
            "0",
            "--db",
            db,
            "--json",
        ],
    )
    doc = json.loads(res.stdout)
    ro = doc["record"]["searcher_notes"]["readout"]
    shown = runner.invoke(app, ["show", doc["run_id"], "--db", db])
    assert shown.exit_code == 0 and "vectors are not text" in " ".join(shown.output.split())
    assert " ".join(map(str, ro["ids"][:3])) in " ".join(shown.output.split())
    html = tmp_path / "r.html"
    assert runner.invoke(app, ["report", doc["run_id"], "--db", db, "--output", str(html)]).exit_code == 0
    page = html.read_text()
    assert "id='readout'" in page and "not text" in page and "id='training-plot'" in page


def test_init_best_starts_from_the_stored_discrete_prompt(tiny_model, tmp_path):
    import json

    from promptsearch.cli import app

    runner = CliRunner()
    db = str(tmp_path / "b.db")
    first = json.loads(
        runner.invoke(
            app,
            [
                "run",
                "--task",
                "sentiment",
                "--model",
                f"hf:{tiny_model}",
                "--searcher",
                "autoprompt",
                "-o",
                "iterations=1",
                "-o",
                "eval_every=1",
                "-o",
                "search_width=2",
                "--shots",
                "0",
                "--db",
                db,
                "--json",
            ],
        ).stdout
    )
    res = runner.invoke(
        app,
        [
            "run",
            "--task",
            "sentiment",
            "--model",
            f"hf:{tiny_model}",
            "--searcher",
            "soft",
            "-o",
            "init=best",
            "-o",
            "steps=1",
            "-o",
            "eval_every=1",
            "--shots",
            "0",
            "--db",
            db,
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    notes = json.loads(res.stdout)["record"]["searcher_notes"]
    src = notes["init_from"]
    assert (
        src["run_id"] == first["run_id"]
        and src["same_task_data"]
        and notes["init_text"] == first["search_best"]["candidate"]["trigger_text"]
    )
    assert src["test"] == first["search_best"]["test"]["mean"]  # the search's own trigger, whatever the run picked


_cli = CliRunner()


def test_soft_runs_of_two_methods_are_two_leaderboard_rows_and_runs_name_them(tiny_model, tmp_path):
    db = str(tmp_path / "s.db")
    for method in ("prompt", "prefix"):
        res = _cli.invoke(
            app,
            [
                "run",
                "--task",
                "sentiment",
                "--model",
                f"hf:{tiny_model}",
                "--searcher",
                "soft",
                "-o",
                f"method={method}",
                "-o",
                "steps=1",
                "-o",
                "eval_every=1",
                "--shots",
                "0",
                "--db",
                db,
                "--json",
            ],
        )
        assert res.exit_code == 0, res.output
    board = json.loads(_cli.invoke(app, ["leaderboard", "--format", "json", "--db", db]).stdout)
    rows = sorted(r["searcher"] for r in board["rows"])
    assert rows == ["soft", "soft (method=prefix)"]  # options at their defaults are not spelled out
    listing = _cli.invoke(app, ["runs", "--db", db], env={"COLUMNS": "200"}).output
    assert "soft (method=prefix)" in listing and "soft " in listing


def test_a_budget_stopped_soft_search_still_scores_its_readout_on_dev(tiny_model, tmp_path):
    dev_n = len(load_task("sentiment").dev)
    res = _cli.invoke(
        app,
        [
            "run",
            "--task",
            "sentiment",
            "--model",
            f"hf:{tiny_model}",
            "--searcher",
            "soft",
            "-o",
            "steps=4",
            "-o",
            "eval_every=1",
            "--shots",
            "0",
            "--max-evals",
            str(dev_n),
            "--db",
            str(tmp_path / "b.db"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert "budget" in doc["stopped_by"]
    assert isinstance(doc["record"]["searcher_notes"]["readout"]["dev"], float)
