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
