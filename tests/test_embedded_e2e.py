"""A few end-to-end runs on the real embedded model (SmolLM2-135M-Instruct)."""

import json

import pytest
from typer.testing import CliRunner

from promptsearch import Candidate, evaluate
from promptsearch.cli import app

pytestmark = pytest.mark.model


def test_default_run_then_fully_cached_rerun(embedded_folder, tmp_path):
    runner = CliRunner()
    first = runner.invoke(app, ["run", "--json"])
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert doc["model"]["model"] == "embedded:SmolLM2-135M-Instruct-Q4_1"
    assert doc["cost"]["total"]["calls"] > 0
    # the plain "Review: ...\nSentiment:" prompt is far above chance on our sentences
    assert doc["best"]["test"]["mean"] > 0.65
    second = runner.invoke(app, ["run"])
    assert second.exit_code == 0 and "0 model calls" in second.output


def test_rlprompt_sst2_and_instruction_induction(embedded_folder, shared_data):
    sst2 = shared_data / "rlprompt" / "sst-2" / "16-42"
    res = evaluate(str(sst2), "", model="embedded", limit=48)
    assert res.n == 48 and res.mean > 0.6
    ii = shared_data / "instruction_induction" / "induce" / "first_word_letter.json"
    res = evaluate(str(ii), "Write the first letter of the word.", model="embedded", limit=8)
    assert res.n == 8 and all(len(p) < 40 for p in res.predictions)
    again = evaluate(str(ii), Candidate(instruction="Write the first letter of the word."), model="embedded", limit=8)
    assert again.cost.calls == 0 and again.predictions == res.predictions


def test_autoprompt_short_run_with_label_search(embedded_folder, tmp_path):
    """A few AutoPrompt iterations on the real model: the trigger comes back as text and ids,
    with the label words it was searched for, scored on test beside the baselines."""
    runner = CliRunner()
    args = [
        "run",
        "--task",
        "sentiment",
        "--searcher",
        "autoprompt",
        "--shots",
        "0",
        "-o",
        "iterations=2",
        "-o",
        "search_width=6",
        "-o",
        "batch_size=6",
        "-o",
        "eval_every=2",
        "-o",
        "search_labels=true",
        "-o",
        "label_candidates=2",
        "--db",
        str(tmp_path / "ap.db"),
    ]
    first = runner.invoke(app, args + ["--json"])
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    notes = doc["record"]["searcher_notes"]
    ids, text = notes["trigger_ids"], notes["trigger_text"]
    assert len(ids) == 5 and text and doc["search_best"]["candidate"]["trigger"] == ids
    assert len(notes["label_search"]) == 5 and set(notes["label_words"]) == {"negative", "positive"}
    assert doc["search_best"]["candidate"]["labels"] == notes["label_words"]
    assert doc["best"]["test"]["n"] == doc["task"]["sizes"]["test"] and {b["name"] for b in doc["baselines"]} >= {
        "empty"
    }
    again = runner.invoke(app, args)  # fully cached, human output
    assert again.exit_code == 0 and "0 model calls" in again.output
    assert "ids " + " ".join(map(str, ids[:2])) in " ".join(again.output.split())


def test_soft_prompt_short_run_on_complaints_then_export(embedded_folder, tmp_path):
    """A few prompt-tuning steps on the real model and the built-in complaints task; the
    learned prompt is scored on test beside the baselines, read out, and exported."""
    runner = CliRunner()
    db = str(tmp_path / "soft.db")
    res = runner.invoke(
        app,
        [
            "run",
            "--task",
            "complaints",
            "--searcher",
            "soft",
            "--shots",
            "0",
            "-o",
            "steps=4",
            "-o",
            "eval_every=2",
            "--db",
            db,
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    notes = doc["record"]["searcher_notes"]
    own = doc["search_best"]  # four steps rarely beat the baselines: the run may return one, and keeps this
    assert own["candidate"]["soft_prompt"] and [s["step"] for s in notes["steps"]] == [1, 2, 3, 4]
    assert len(notes["readout"]["ids"]) == 8 and "dev" in notes["readout"]
    assert own["test"]["n"] == 49 and {b["name"] for b in doc["baselines"]} == {"empty", "manual-1"}
    out = tmp_path / "adapter"
    exported = runner.invoke(app, ["export", doc["run_id"], "--search-best", "--output", str(out), "--db", db])
    assert exported.exit_code == 0, exported.output
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()


def test_rl_short_run_with_the_embedded_policy(embedded_folder, tmp_path):
    """Two GRPO steps with the embedded model as policy and target: prompts are written,
    rewarded on train, raced on dev, and the winner is scored on test."""
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "run",
            "--task",
            "sentiment",
            "--searcher",
            "rl",
            "--shots",
            "0",
            "-o",
            "steps=2",
            "-o",
            "num_generations=2",
            "-o",
            "batch_size=4",
            "-o",
            "prompt_length=8",
            "-o",
            "eval_every=2",
            "-o",
            "race=2",
            "--db",
            str(tmp_path / "rl.db"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    notes = doc["record"]["searcher_notes"]
    assert [c["step"] for c in notes["curve"]] == [1, 2] and notes["prompts_written"] >= 1
    own = doc["search_best"]  # what the policy wrote and the race kept (the run may return a baseline)
    assert own["candidate"]["instruction"] and own["test"]["n"] == doc["task"]["sizes"]["test"]
