import json
import random
from collections import Counter

import pytest
from clitools import invoke, one_line_error

from fakes import FakeBackend
from promptsearch import Example, Task, split_examples
from promptsearch.errors import PromptSearchError
from promptsearch.tasks import load_task


def test_builtin_sentiment_is_balanced_with_hard_cases():
    t = load_task("sentiment")
    everything = t.train + t.dev + t.test
    assert len(everything) >= 200
    assert len({e.input for e in everything}) == len(everything)
    for split in (t.train, t.dev, t.test):
        counts = Counter(e.label for e in split)
        assert counts["positive"] == counts["negative"]
    kinds = Counter(e.meta["phenomenon"] for e in everything)
    assert {"negation", "sarcasm", "mixed", "neutral", "plain"} <= set(kinds)
    assert t.instructions and t.labels == {"negative": "negative", "positive": "positive"}
    # fixed splits: the same ids every time
    assert [e.id for e in load_task("sentiment").test] == [e.id for e in t.test]


def test_jsonl_with_spec_and_fraction_splits(tmp_path):
    rows = [{"text": f"item {i}", "label": "yes" if i % 2 else "no"} for i in range(40)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "t.yaml").write_text(
        "name: yesno\ntemplate: 'Q: {input}\\nA:'\nlabels: {yes: Yes, no: No}\n"
        "splits: {train: 0.25, dev: 0.25, test: 0.5}\ninstructions: Answer yes or no.\n"
    )
    t = load_task(str(tmp_path / "t.jsonl"))
    assert t.name == "yesno" and t.labels == {"yes": "Yes", "no": "No"}
    assert (len(t.train), len(t.dev), len(t.test)) == (10, 10, 20)
    assert t.instructions == ["Answer yes or no."]
    assert t.hash() == load_task(str(tmp_path / "t.jsonl")).hash()


def test_csv_with_split_column_and_open_answers(tmp_path):
    p = tmp_path / "qa.csv"
    p.write_text("question,answer,split\nwhat is 1+1,2,train\nwhat is 2+2,4,dev\nwhat is 3+3,6,test\n")
    t = load_task(str(p))
    assert not t.is_classification and t.metric == "exact_match"
    assert t.test[0].answers == ("6",) and t.template == "Input: {input}\nOutput:"


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"text": "a", "label": "x", "split": "dev"}\n{"text": "b" "label": "y"}\n', "t.jsonl:2: invalid JSON"),
        ('{"text": "a", "label": "x"}\n{"label": "y"}\n', "t.jsonl:2: field 'text' is missing"),
        ('{"text": "a", "label": "x", "split": "holdout"}\n', "t.jsonl:1: split 'holdout'"),
        (
            '{"text": "a", "label": "x", "split": "train"}\n{"text": "b", "label": "y", "split": "test"}\n',
            "dev split is empty",
        ),
        ('{"body": "a", "label": "x"}\n', "no input field found"),
    ],
)
def test_malformed_files_name_line_and_field(tmp_path, content, message):
    (tmp_path / "t.jsonl").write_text(content)
    with pytest.raises(PromptSearchError, match=message):
        load_task(str(tmp_path / "t.jsonl"))


def test_label_outside_label_set_names_the_line(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"text": "a", "label": "pos"}\n{"text": "b", "label": "meh"}\n')
    (tmp_path / "t.yaml").write_text("labels: [pos, neg]\n")
    with pytest.raises(PromptSearchError, match=r"t.jsonl:2: label 'meh'.*not in the label set"):
        load_task(str(tmp_path / "t.jsonl"))


def test_unknown_spec_key_and_missing_file(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"text": "a", "label": "x"}\n')
    (tmp_path / "t.yaml").write_text("templte: oops\n")
    with pytest.raises(PromptSearchError, match="unknown spec key"):
        load_task(str(tmp_path / "t.jsonl"))
    with pytest.raises(PromptSearchError, match="does not exist"):
        load_task(str(tmp_path / "missing.jsonl"))


def test_instruction_induction_loader(shared_data):
    root = shared_data / "instruction_induction"
    t = load_task(str(root / "induce" / "sum.json"))
    assert (len(t.dev), len(t.test)) == (50, 100) and t.metric == "exact_match"
    assert len(t.instructions) >= 4
    ce = load_task(str(root / "execute" / "cause_and_effect.json"))
    assert len(ce.test) == 50  # both sentence orders, as the authors score it
    cc = load_task(str(root / "induce" / "common_concept.json"))
    assert cc.metric == "f1" and ", " in cc.test[0].input
    assert load_task(str(root / "induce" / "taxonomy_animal.json")).metric == "exact_set"


def test_rlprompt_loader_parses_quoted_tsv(shared_data):
    t = load_task(str(shared_data / "rlprompt" / "sst-2" / "16-42"))
    assert (len(t.train), len(t.dev), len(t.test)) == (32, 32, 1821)
    assert Counter(e.label for e in t.test) == {"negative": 912, "positive": 909}
    ag = load_task(str(shared_data / "rlprompt" / "agnews"))  # dataset folder: seed 16-100
    assert len(ag.test) == 7600 and set(ag.labels) == {"World", "Sports", "Business", "Tech"}
    assert not any(e.input.startswith('"') for e in ag.test[:500])  # quotes were parsed, not kept


def test_python_task_from_examples():
    exs = [Example(str(i), f"x{i}", "a" if i % 2 else "b") for i in range(20)]
    parts = split_examples(exs, seed=1)
    t = Task("mine", **parts, template="{input} ->", labels={"a": "A", "b": "B"}, metric="accuracy").validate()
    assert len(t.train) + len(t.dev) + len(t.test) == 20
    with pytest.raises(PromptSearchError, match="no \\{input\\} slot"):
        Task("bad", **parts, template="no slot").validate()


def test_hf_datasets_columns_and_hidden_test_labels():
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    rows = lambda n, hidden=False: {
        "sentence": [f"s{i}" for i in range(n)],
        "label": [-1 if hidden else i % 2 for i in range(n)],
    }  # noqa: E731
    dsd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(rows(300), features=feats),
            "validation": datasets.Dataset.from_dict(rows(40), features=feats),
            "test": datasets.Dataset.from_dict(rows(30, hidden=True), features=feats),
        }
    )
    from promptsearch.tasks.loaders import task_from_hf

    t = task_from_hf(dsd, name="toy")
    # the test split's labels are hidden (-1), so validation becomes test and dev comes from train
    assert len(t.test) == 40 and len(t.dev) == 200 and len(t.train) == 100
    assert t.labels == {"neg": "neg", "pos": "pos"} and t.test[1].label == "pos"


def test_raft_twitter_complaints_shape_loads(monkeypatch):
    """RAFT's twitter_complaints as the PEFT prompt-tuning tutorial loads it ("Tweet text",
    "Label" with an "Unlabeled" class for the hidden test labels, 50 labelled train rows),
    through the real `hf:` code path with `datasets.load_dataset` answered offline."""
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features(
        {
            "Tweet text": datasets.Value("string"),
            "ID": datasets.Value("int32"),
            "Label": datasets.ClassLabel(names=["Unlabeled", "complaint", "no complaint"]),
        }
    )
    dsd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {
                    "Tweet text": [f"@co tweet {i}" for i in range(50)],
                    "ID": list(range(50)),
                    "Label": [1 + i % 2 for i in range(50)],
                },
                features=feats,
            ),
            "test": datasets.Dataset.from_dict(
                {"Tweet text": [f"u{i}" for i in range(30)], "ID": list(range(30)), "Label": [0] * 30}, features=feats
            ),
        }
    )
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: asked.append((name, config)) or dsd)
    from promptsearch.tasks.loaders import load_task

    t = load_task("hf:ought/raft:twitter_complaints")
    assert asked == [("ought/raft", "twitter_complaints")]
    assert t.labels == {"complaint": "complaint", "no complaint": "no complaint"}
    assert (len(t.train), len(t.dev), len(t.test)) == (10, 15, 25)  # only the 50 labelled rows, split 0.2/0.3/0.5
    assert all(e.input.startswith("@co") for e in t.train + t.dev + t.test)


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
