import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest
from clitools import invoke, one_line_error

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

    code = (
        "import sys, promptsearch.cli, promptsearch.registry as r; r.searchers.names(); "
        "print(','.join(m for m in ('torch','transformers','trl','peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    "opts, message",
    [
        (["race_start=0", "eta=1"], "'race_start' of searcher 'ape' must be >= 1"),
        (["eta=0"], "'eta' of searcher 'ape' must be >= 2"),
        (["rounds=-1"], "'rounds' of searcher 'ape' must be >= 0"),
        (["temperature=-1"], "'temperature' of searcher 'ape' must be >= 0"),
        (["chat=maybe"], "'chat' of searcher 'ape' must be one of auto, on, off"),
        (["subsamples=0"], "'subsamples' of searcher 'ape' must be >= 1"),
        (["temperature=nan"], "must be float"),
    ],
)
def test_searcher_options_are_range_checked(fake_backend_registered, opts, message):
    args = ["run", "--searcher", "ape", "--model", "fake:x"]
    for o in opts:
        args += ["-o", o]
    assert message in one_line_error(invoke(*args))
    assert not fake_backend_registered or not fake_backend_registered[0].requests


def test_option_ranges_show_in_help_and_guard_the_api():
    from promptsearch.errors import PromptSearchError
    from promptsearch.searchers.ape import APESearcher

    assert ">= 2" in invoke("searchers").output
    with pytest.raises(PromptSearchError, match="'eta'"):
        APESearcher(APESearcher.Config(eta=1))
