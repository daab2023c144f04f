"""Fixtures: every test gets its own user dir and DB under tmp_path; the embedded model is
prepared once per session into a session temp dir (no hub, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import FakeBackend

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def user_dir(tmp_path, monkeypatch, model_dir) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("PROMPTSEARCH_HOME", str(home))
    monkeypatch.setenv("PROMPTSEARCH_MODEL_DIR", str(model_dir))
    for var in ("PROMPTSEARCH_DB", "PROMPTSEARCH_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    return home


@pytest.fixture(scope="session")
def embedded_folder(model_dir) -> Path:
    from promptsearch.backends.embedded import prepare

    return prepare(model_dir, quiet=True)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, embedded_folder) -> Path:
    """A random-weight Llama built from a config, with the embedded model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(embedded_folder)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny")
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """One real PostgreSQL server for the session (tests/servers.py); each test that wants
    one makes its own database on it."""
    from servers import PostgresServer

    if PostgresServer.binaries() is None:
        pytest.skip("no PostgreSQL server binaries here (Debian: apt-get install postgresql)")
    import tempfile

    server = PostgresServer(Path(tempfile.mkdtemp(prefix="promptsearch-pg-")))  # not under pytest's 0700 tmp
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path) -> str:
    """A database spec for the store and cache tests, on both engines: an SQLite file, or a
    fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "c.db")
    return request.getfixturevalue("postgres").fresh_database()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED


@pytest.fixture
def fake_backend_registered(monkeypatch):
    """Registers `--model fake:...` so CLI tests run without a real model."""
    from promptsearch import registry

    made: list[FakeBackend] = []

    def factory(spec, settings):
        b = FakeBackend()
        made.append(b)
        return b

    monkeypatch.setitem(registry.backends._entries, "fake", factory)
    return made


@pytest.fixture
def proposer_fake(monkeypatch):
    """A fake whose generations are distinct instructions, so APE has a pool to race."""
    from promptsearch import registry

    made = []

    def factory(spec, settings):
        b = FakeBackend(gen_rule=lambda text, r: f"Judge the tone of review number {r.sample_index} {len(text) % 97}.")
        made.append(b)
        return b

    monkeypatch.setitem(registry.backends._entries, "fake", factory)
    return made
