"""Issue 10: each defect found by trying the product as a new user, as a test."""

import json
import random
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fakes import FakeBackend
from promptsearch import registry
from promptsearch.cli import app

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, list(args), env=env)


def one_line_error(r, code=2):
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr


def strict_json(text):
    def no_constants(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=no_constants)


@pytest.fixture
def proposer_fake(monkeypatch):
    """A fake whose generations are distinct instructions, so APE has a pool to race."""
    made = []

    def factory(spec, settings):
        b = FakeBackend(gen_rule=lambda text, r: f"Judge the tone of review number {r.sample_index} {len(text) % 97}.")
        made.append(b)
        return b

    monkeypatch.setitem(registry.backends._entries, "fake", factory)
    return made


# 1 ---------------------------------------------------------------------------------------
def test_budget_spent_before_any_scoring_stores_nothing_and_calls_no_test(proposer_fake, tmp_path):
    db = tmp_path / "p.db"
    r = invoke("run", "--searcher", "ape", "--model", "fake:x", "--max-calls", "5", "--db", str(db), "--json")
    assert "scored no candidate" in one_line_error(r) or "before any candidate was scored" in r.stderr
    fake = proposer_fake[0]
    assert len(fake.requests) <= 5  # the proposer's calls were budgeted too
    assert not any(hasattr(q, "continuation") for q in fake.requests)  # no scoring, no test calls
    assert "No runs" in invoke("runs", "--db", str(db)).output


def test_run_json_is_always_strict_json(proposer_fake):
    r = invoke("run", "--searcher", "ape", "--model", "fake:x", "--max-evals", "40", "--json")
    assert r.exit_code == 0, r.output
    doc = strict_json(r.stdout)
    assert doc["best"]["dev"]["mean"] is not None and doc["stopped_by"]


# 2 ---------------------------------------------------------------------------------------
def test_four_processes_start_on_a_fresh_database_at_once(tmp_path):
    db = tmp_path / "fresh.db"
    code = (
        "import sys; from promptsearch.store.db import Store; s = Store(sys.argv[1]); "
        "s.cache_put([dict(key=sys.argv[2], backend='b', kind='gen', request='{}', response='{}', n_tokens=1)]); "
        "print(len(s.cache_get([sys.argv[2]])))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(db), f"k{i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e for _, e in outs]
    assert [o.strip() for o, _ in outs] == ["1"] * 4


# 3 ---------------------------------------------------------------------------------------
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


# 4 ---------------------------------------------------------------------------------------
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


# 5 ---------------------------------------------------------------------------------------
BAD_FILES = {
    "extra.csv": ("text,label\na,x\nb,y,z\n", None, "fields, but the header has 2"),
    "cols.csv": ("foo,bar\na,b\nc,d,e\n", None, "fields, but the header has 2"),
    "empty_label.jsonl": ('{"input": "x", "label": []}\n{"input": "y", "label": "b"}\n', None, "non-empty list"),
    "seed.jsonl": ('{"input": "x", "label": "a"}\n', "seed: abc\n", "'seed' must be a whole number"),
    "splits.jsonl": ('{"input": "x", "label": "a"}\n', "splits: {train: abc}\n", "'splits' must map"),
    "labels.jsonl": ('{"input": "x", "label": "a"}\n', "labels: {a: {b: c}}\n", "'labels' must be"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_task_files_are_one_line(fake_backend_registered, tmp_path, name):
    rows, spec, message = BAD_FILES[name]
    (tmp_path / name).write_text(rows)
    if spec:
        (tmp_path / name).with_suffix(".yaml").write_text(spec)
    db = tmp_path / "x.db"
    assert message in one_line_error(
        invoke("eval", "--task", str(tmp_path / name), "--model", "fake:x", "--db", str(db))
    )
    assert not db.exists()


def test_bad_device_and_bad_model_folder_are_one_line(tmp_path):
    assert "PROMPTSEARCH_DEVICE='gpu' is not a device" in one_line_error(
        invoke("eval", "--prompt", "x", "--limit", "1", env={"PROMPTSEARCH_DEVICE": "gpu"})
    )
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    err = one_line_error(invoke("eval", "--model", f"hf:{folder}", "--limit", "1"))
    assert "Cannot load model" in err and not err.rstrip().endswith(":")


def test_unreachable_hub_is_one_quiet_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = one_line_error(invoke("eval", "--model", "hf:SomeOrg/not-cached-model", "--limit", "1"))
    assert "not in the local Hugging Face cache" in err


def test_loader_fuzz_never_tracebacks(fake_backend_registered, tmp_path):
    """Random malformed JSONL / CSV / YAML: exit 2, one line, no traceback, no database file."""
    rng = random.Random(7)
    values = ['"x"', "[]", "{}", "null", "1", '["a", 2]', '{"k": 1}', "true", '""', "-3.5"]
    keys = ["input", "text", "label", "output", "split", "id", "answers", "zzz"]
    db = tmp_path / "fuzz.db"
    seen_errors = 0
    for i in range(40):
        kind = rng.choice(["jsonl", "csv"])
        path = tmp_path / f"f{i}.{kind}"
        if kind == "jsonl":
            lines = []
            for _ in range(rng.randint(0, 4)):
                fields = rng.sample(keys, rng.randint(0, 4))
                body = ", ".join(f'"{k}": {rng.choice(values)}' for k in fields)
                lines.append(rng.choice(["{" + body + "}", "[" + body + "]", body, "{" + body]))
            path.write_text("\n".join(lines))
        else:
            header = ",".join(rng.sample(keys, rng.randint(1, 3)))
            rows = [",".join(rng.choice(["a", "", '"q,"', "b,c"]) for _ in range(rng.randint(1, 4))) for _ in range(3)]
            path.write_text("\n".join([header, *rows]))
        if rng.random() < 0.5:
            spec_vals = ["abc", "[1, 2]", "{train: x}", "{}", "7", "'{input}'", "[a, b]", "{a: [x, y]}"]
            spec_keys = ["seed", "splits", "labels", "template", "metric", "instructions", "name", "bogus"]
            path.with_suffix(".yaml").write_text(
                "\n".join(f"{k}: {rng.choice(spec_vals)}" for k in rng.sample(spec_keys, 2))
            )
        r = invoke("eval", "--task", str(path), "--model", "fake:x", "--db", str(db), "--limit", "1")
        assert "Traceback" not in r.output + r.stderr
        if r.exit_code != 0:
            one_line_error(r)
            seen_errors += 1
        elif db.exists():
            db.unlink()  # a file that happened to be a valid task: start clean again
            for extra in ("-wal", "-shm"):
                (tmp_path / f"fuzz.db{extra}").unlink(missing_ok=True)
    assert seen_errors >= 30


# 6 ---------------------------------------------------------------------------------------
def test_spec_labels_given_as_lists_score_every_word(tmp_path):
    from promptsearch.evaluation.evaluator import Evaluator
    from promptsearch.evaluation.render import answer_text
    from promptsearch.tasks.loaders import load_task

    rows = [{"text": f"review {i}", "label": "positive" if i % 2 else "negative"} for i in range(20)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "t.yaml").write_text("labels: {positive: [positive, good], negative: [negative, bad]}\n")
    task = load_task(str(tmp_path / "t.jsonl"))
    assert task.labels == {"positive": ["positive", "good"], "negative": ["negative", "bad"]}
    assert answer_text(task, task.train[0]) in ("positive", "negative")  # demos show the first word
    fake = FakeBackend()
    res = Evaluator(task, fake).score(__import__("promptsearch").Candidate(), task.dev[:2])
    assert sorted({q.continuation for q in fake.requests}) == [" bad", " good", " negative", " positive"]
    assert all("[" not in q.continuation for q in fake.requests)
    # fake says "negative" at -0.1 and every other word at -2.5: negative wins with logsumexp(-0.1, -2.5)
    import math

    assert res.label_logprobs[0]["negative"] == pytest.approx(math.log(math.exp(-0.1) + math.exp(-2.5)))


# 7 ---------------------------------------------------------------------------------------
def test_dollar_budget_with_an_unpriced_model_refuses_before_any_call(monkeypatch):
    made = []

    def factory(spec, settings):
        b = FakeBackend()
        b.price = None  # a model with no known price
        made.append(b)
        return b

    monkeypatch.setitem(registry.backends._entries, "fake", factory)
    assert "needs every model's price" in one_line_error(invoke("run", "--model", "fake:x", "--max-dollars", "1"))
    assert made[0].requests == []


# 8 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--harness", "fewshot:k=1000"], "asks for 1000 demos, but task 'sentiment' has 46"),
        (["eval", "--limit", "-1"], "Invalid value for '--limit'"),
        (["eval", "--limit", "0"], "Invalid value for '--limit'"),
        (["run", "--shots", "-3"], "Invalid value for '--shots'"),
        (["run", "--max-calls", "-1"], "Invalid value for '--max-calls'"),
        (["run", "--max-seconds", "-5"], "Invalid value for '--max-seconds'"),
    ],
)
def test_out_of_range_values_are_refused(fake_backend_registered, args, message):
    assert message in one_line_error(invoke(*args, "--model", "fake:x"))


def test_negative_budget_refused_in_the_api():
    from promptsearch import Budget
    from promptsearch.errors import PromptSearchError

    with pytest.raises(PromptSearchError, match="max_calls"):
        Budget(max_calls=-1)


# 9 ---------------------------------------------------------------------------------------
def test_zero_call_budget_runs_when_everything_is_cached(fake_backend_registered):
    first = strict_json(invoke("run", "--model", "fake:x", "--json").stdout)
    r = invoke("run", "--model", "fake:x", "--max-calls", "0", "--json")
    assert r.exit_code == 0, r.output
    again = strict_json(r.stdout)
    assert again["from_cache"] and again["best"]["candidate"] == first["best"]["candidate"] and not again["stopped_by"]


# 10 --------------------------------------------------------------------------------------
def test_failing_commands_dry_runs_and_reads_leave_no_database(fake_backend_registered, tmp_path):
    db = tmp_path / "none.db"
    invoke("run", "--task", "nope", "--model", "fake:x", "--db", str(db))
    invoke("run", "--model", "fake:x", "--dry-run", "--db", str(db))
    for args in (["runs"], ["cache", "stats"], ["leaderboard"], ["show", "abc"]):
        invoke(*args, "--db", str(db))
    assert not db.exists() and not list(tmp_path.glob("none.db*"))


# should-fix ------------------------------------------------------------------------------
def test_runs_listing_fits_80_columns(fake_backend_registered):
    run = strict_json(invoke("run", "--model", "fake:x", "--json").stdout)
    out = invoke("runs", env={"COLUMNS": "80"}).output
    assert all(len(line) <= 80 for line in out.splitlines()), out
    header = next(line for line in out.splitlines() if "searcher" in line)
    assert "searcher" in header.split() and "test" in header.split()
    short = run["run_id"][-4:]
    assert short in out and invoke("show", short).exit_code == 0


def test_api_test_baselines_follow_the_searchers_shots(fake_backend_registered):
    import promptsearch as ps

    doc = ps.search("sentiment", model="fake:x", searcher="baseline", shots=8)
    assert "8-shot" in [b["name"] for b in doc["baselines"]] and doc["record"]["baseline_shots"] == 8


def test_scoring_and_generation_print_no_deprecation_warnings(tiny_model, capfd):
    import warnings

    from promptsearch.backends import GenRequest, LoglikRequest
    from promptsearch.backends.hf import HFBackend

    b = HFBackend(str(tiny_model))
    head = "A long shared instruction that every row of this batch starts with, word for word.\n\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        b.loglikelihood([LoglikRequest(head + f"Review: {x}\nSentiment:", " good") for x in ("a", "b c", "d e f")])
        b.generate([GenRequest("Hi", 3, stop=()), GenRequest("Hi", 3, temperature=0.7, stop=())])
    assert "deprecated" not in capfd.readouterr().err


def test_a_sample_depends_only_on_its_own_request(tiny_model):
    from promptsearch.backends import GenRequest
    from promptsearch.backends.hf import HFBackend

    b = HFBackend(str(tiny_model))
    mine = [GenRequest("Tell me a story", 8, temperature=1.0, stop=(), sample_index=i, seed=3) for i in range(3)]
    others = [GenRequest("A much longer and different prompt to share the batch", 8, temperature=1.0, stop=())]
    alone = [r.text for r in b.generate(mine)]
    mixed = [r.text for r in b.generate(others + mine[::-1])][1:][::-1]
    single = b.generate(mine[1:2])[0].text
    assert alone == mixed and single == alone[1]
    assert len(set(alone)) > 1  # different sample indices do sample differently
