"""docs/architecture.md's plug-in searcher runs as written, through the public API only;
backends and searchers that do not keep their contract are one line before anything runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import promptsearch as ps
from fakes import FakeBackend

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def plugin_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_the_documented_plugin_searcher_runs_through_the_public_api(tmp_path, monkeypatch):
    from promptsearch import registry

    monkeypatch.setattr(registry.searchers, "_entries", dict(registry.searchers._entries))  # undone after the test
    code = plugin_block()
    assert len(code.strip().splitlines()) < 40
    assert "promptsearch." not in code.replace("import promptsearch as ps", "")  # public names only
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    doc = ps.search("sentiment", model=FakeBackend(), searcher="first-words", max_words=5, db=str(tmp_path / "p.db"))
    # the fake is right whenever the instruction says "opinion": the manual one does, its first five words do not,
    # so the search proposes a cut and the runner returns the manual baseline that beats it on dev
    assert doc["search_best"]["name"].startswith("first-") and doc["best"]["name"] == "manual-1"
    assert (
        doc["best"]["picked"] == "baseline"
        and doc["searcher"]["name"] == "first-words"
        and doc["record"]["searcher_notes"]["longest"] >= 1
    )
    assert len({c["name"] for c in doc["candidates"]}) == 5 and doc["best"]["test"]["n"] == 116
    with pytest.raises(ps.PromptSearchError, match="must be >= 1"):
        ps.search("sentiment", model=FakeBackend(), searcher="first-words", max_words=0, db=str(tmp_path / "p.db"))


def test_a_model_or_searcher_outside_the_contracts_is_one_line(tmp_path):
    class NotABackend:
        def loglikelihood(self, requests):
            return []

    with pytest.raises(ps.PromptSearchError, match="subclass promptsearch.backends.Backend"):
        ps.search("sentiment", model=NotABackend(), db=str(tmp_path / "c.db"))
    from promptsearch.runner import run_search

    with pytest.raises(ps.PromptSearchError, match="not a promptsearch searcher"):
        run_search("sentiment", model=FakeBackend(), searcher=object(), db=str(tmp_path / "c.db"))
    with pytest.raises(ps.PromptSearchError, match="AutoPrompt|autoprompt searcher needs"):
        ps.search("sentiment", model=FakeBackend(), searcher="autoprompt", db=str(tmp_path / "c.db"))
    assert not (tmp_path / "c.db").exists()  # refused before anything was written


def test_capabilities_replace_probes_and_the_local_model_is_declared(tiny_model):
    from promptsearch.backends.hf import HFBackend
    from promptsearch.backends.local import LocalModel

    hf = HFBackend(str(tiny_model))
    assert hf.capabilities.local_model and hf.capabilities.soft_prompts and hf.capabilities.streaming
    assert isinstance(hf.local_model(), LocalModel)
    fake = FakeBackend()
    assert not fake.capabilities.local_model and not fake.capabilities.embed
    with pytest.raises(ps.PromptSearchError, match="not a local transformers model"):
        fake.local_model()
