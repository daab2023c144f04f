"""Run records: strict JSON, and no secret in a record, an output or a report."""

import sys

from clitools import invoke, strict_json


def test_run_json_is_always_strict_json(proposer_fake):
    r = invoke("run", "--searcher", "ape", "--model", "fake:x", "--max-evals", "40", "--json")
    assert r.exit_code == 0, r.output
    doc = strict_json(r.stdout)
    assert doc["best"]["dev"]["mean"] is not None and doc["stopped_by"]


def test_secrets_never_reach_records_output_or_reports(fake_backend_registered, tmp_path, monkeypatch):
    secret, key = "hunter2pass", "sk-live-0123456789abcdefghij"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    url = f"http://user:{secret}@127.0.0.1:9/v1"
    argv = ["run", "--model", "fake:x", "--base-url", url, "-o", "shots=2", "--json"]
    monkeypatch.setattr(sys, "argv", ["promptsearch", *argv, "--api_key=" + secret])
    r = invoke(*argv)
    assert r.exit_code == 0, r.output
    doc = strict_json(r.stdout)
    assert doc["record"]["argv"] and "127.0.0.1" in " ".join(doc["record"]["argv"])
    shown = invoke("show", doc["run_id"], "--json").stdout
    report = tmp_path / "r.html"
    assert invoke("report", doc["run_id"], "--output", str(report)).exit_code == 0
    db_bytes = (tmp_path / "home" / "promptsearch.db").read_bytes()
    for text in (r.stdout, shown, report.read_text(), db_bytes.decode("utf-8", "replace")):
        assert secret not in text and key not in text


def test_redact_rules():
    from promptsearch.records import redact

    assert redact("http://u:p4ss@host:8000/v1") == "http://***@host:8000/v1"
    assert "abc123" not in redact("openai:m,api_key=abc123,api=chat")
    assert "tok9" not in redact("Authorization: Bearer tok9") and "Bearer ***" in redact("Bearer tok9")
    assert redact("a keyword=value stays") == "a keyword=value stays"
