from importlib.metadata import EntryPoint

import pytest

from promptsearch import registry
from promptsearch.errors import PromptSearchError


def test_did_you_mean_and_available():
    with pytest.raises(PromptSearchError) as e:
        registry.searchers.get("baselin")
    assert "Unknown searcher 'baselin'. Did you mean: baseline? Available:" in str(e.value)


def test_entry_point_plugins_are_loaded_lazily(monkeypatch):
    r = registry.Registry("scorer")
    ep = EntryPoint(name="always_one", value="math:isfinite", group="promptsearch.scorers")
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == "promptsearch.scorers" else [])
    assert "always_one" in r.names()
    import math

    assert r.get("always_one") is math.isfinite


def test_builtins_resolve_without_importing_torch():
    import subprocess
    import sys

    code = (
        "import sys, promptsearch.cli, promptsearch.registry as r; r.searchers.names(); "
        "print(','.join(m for m in ('torch','transformers','trl','peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
