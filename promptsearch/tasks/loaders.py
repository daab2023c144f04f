"""Turn a `--task` value into a Task: a registered name, a file, a folder, or `hf:NAME`.

Formats:
- JSONL / CSV: one example per row; optional `split` column; spec beside the file
  (`NAME.yaml`, `NAME.yml` or `NAME.task.json`) sets template, labels, metric, fields, splits.
- Instruction Induction JSON (`.../induce/TASK.json` or `.../execute/TASK.json`).
- RLPrompt 16-shot TSV (`.../rlprompt/DATASET/16-SEED/` or a file in it).
- Hugging Face datasets by name: `hf:NAME` or `hf:NAME:CONFIG` (needs the network).
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

from promptsearch.errors import PromptSearchError
from promptsearch.tasks.base import SPLITS, Example, Task
from promptsearch.tasks.splitting import DEFAULT_FRACTIONS, split_by_fraction, valid_fractions

INPUT_FIELDS = ("input", "text", "sentence", "question", "prompt")
TARGET_FIELDS = ("label", "output", "answer", "answers", "target")
SPEC_KEYS = {
    "name",
    "template",
    "labels",
    "metric",
    "input",
    "target",
    "id",
    "split_field",
    "splits",
    "seed",
    "instructions",
    "description",
}


def load_task(spec: str) -> Task:
    from promptsearch import registry

    if spec.startswith("hf:"):
        return load_hf_task(spec[3:])
    path = Path(spec).expanduser()
    if path.exists():
        try:
            return load_path(path)
        except PromptSearchError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
            # a shape no specific check foresaw: still one line that names the file
            detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise PromptSearchError(
                f"{path}: not a task this loader can read ({type(e).__name__}"
                f"{': ' + detail if detail else ''}); see `promptsearch tasks` for the formats."
            ) from None
    if spec in registry.tasks or not any(c in spec for c in "/\\."):
        task = registry.tasks.get(spec)()
        return task.validate()
    raise PromptSearchError(
        f"Task file '{spec}' does not exist. Give a path to a .jsonl/.csv/.json/.tsv file or folder, "
        f"or a task name ({', '.join(registry.tasks.names())})."
    )


def load_path(path: Path) -> Task:
    if path.is_dir():
        if (path / "train.tsv").exists() or any(path.glob("16-*/train.tsv")):
            return load_rlprompt(path)
        raise PromptSearchError(f"Folder '{path}' is not a task: expected RLPrompt train.tsv/dev.tsv files in it.")
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return load_rlprompt(path.parent)
    if suffix == ".jsonl":
        return load_table(path, _read_jsonl(path))
    if suffix == ".csv":
        return load_table(path, _read_csv(path))
    if suffix == ".json":
        data = _read_json(path)
        if isinstance(data, dict) and "examples" in data and "metadata" in data:
            return load_instruction_induction(path)
        if isinstance(data, list):
            return load_table(path, [(i + 1, row) for i, row in enumerate(data)])
        raise PromptSearchError(
            f"{path}: JSON task files must be a list of objects or Instruction Induction format "
            "({'metadata': ..., 'examples': ...})."
        )
    raise PromptSearchError(f"{path}: unsupported task file type '{suffix}'; use .jsonl, .csv, .json or .tsv.")


# --- files ---------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PromptSearchError(f"{path}:{e.lineno}: invalid JSON ({e.msg}).") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PromptSearchError(f"{path}: cannot read the file ({e}).") from None


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PromptSearchError(f"{path}: cannot read the file ({e}).") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise PromptSearchError(f"{path}:{n}: invalid JSON ({e.msg}); each line must be one JSON object.") from None
        if not isinstance(row, dict):
            raise PromptSearchError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}.")
        rows.append((n, row))
    return rows


def _read_csv(path: Path) -> list[tuple[int, dict]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = []
            for row in reader:
                if None in row:  # DictReader puts fields past the header under None
                    raise PromptSearchError(
                        f"{path}:{reader.line_num}: {len(reader.fieldnames or []) + len(row[None])} "
                        f"fields, but the header has {len(reader.fieldnames or [])}; quote fields "
                        "that contain commas."
                    )
                rows.append((reader.line_num, row))
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PromptSearchError(f"{path}: cannot read the CSV file ({e}).") from None


def read_spec(data_path: Path) -> dict[str, Any]:
    for cand in (data_path.with_suffix(".yaml"), data_path.with_suffix(".yml"), data_path.with_suffix(".task.json")):
        if cand.exists():
            if cand.suffix == ".json":
                spec = _read_json(cand)
            else:
                import yaml

                try:
                    spec = yaml.load(cand.read_text(encoding="utf-8"), Loader=_spec_loader()) or {}
                except yaml.YAMLError as e:
                    mark = getattr(e, "problem_mark", None)
                    line = f":{mark.line + 1}" if mark else ""
                    raise PromptSearchError(f"{cand}{line}: invalid YAML ({getattr(e, 'problem', e)}).") from None
            if not isinstance(spec, dict):
                raise PromptSearchError(f"{cand}: the task spec must be a mapping of settings.")
            unknown = set(map(str, spec)) - SPEC_KEYS
            if unknown:
                raise PromptSearchError(
                    f"{cand}: unknown spec key(s) {', '.join(sorted(unknown))}; "
                    f"allowed: {', '.join(sorted(SPEC_KEYS))}."
                )
            return _check_spec(spec, cand)
    return {}


def _check_spec(spec: dict, where: Path) -> dict:
    """Each spec value has the type its key needs; one line names the first that does not."""
    for key in ("name", "template", "metric", "input", "target", "id", "split_field", "description"):
        if key in spec and not isinstance(spec[key], str):
            raise PromptSearchError(f"{where}: '{key}' must be text, got {spec[key]!r}.")
    if "seed" in spec and (isinstance(spec["seed"], bool) or not isinstance(spec["seed"], int)):
        raise PromptSearchError(f"{where}: 'seed' must be a whole number, got {spec['seed']!r}.")
    if "splits" in spec:
        fr = spec["splits"]
        if not valid_fractions(fr):
            raise PromptSearchError(
                f"{where}: 'splits' must map train/dev/test to fractions of at least 0, "
                f"e.g. {{train: 0.2, dev: 0.3, test: 0.5}}; got {fr!r}."
            )
    if "instructions" in spec:
        ins = spec["instructions"]
        if not (isinstance(ins, str) or (isinstance(ins, list) and all(isinstance(i, str) for i in ins))):
            raise PromptSearchError(f"{where}: 'instructions' must be a text or a list of texts.")
    if "template" in spec and "{input}" not in spec["template"]:
        raise PromptSearchError(f"{where}: the template {spec['template']!r} has no {{input}} slot; add one.")
    return spec


def _spec_loader():
    """YAML 1.1 reads yes/no/on/off as booleans, which breaks labels like `yes`; only
    true/false are booleans in a task spec."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return Loader


def _labels_from_spec(value: Any, where: str) -> dict[str, str | list[str]] | None:
    """`[a, b]` (each label is its own word), or `{label: word}`, or `{label: [word, ...]}`
    (the label scores the probability of saying any of its words; demos show the first)."""
    if value is None:
        return None
    bad = PromptSearchError(
        f"{where}: 'labels' must be a list of labels, or a mapping label -> word or "
        "label -> [words], e.g. {{positive: [positive, good], negative: [negative, bad]}}."
    )
    scalar = (str, int, float)
    if isinstance(value, list):
        if not value or not all(isinstance(v, scalar) and str(v).strip() for v in value):
            raise bad
        return {str(v): str(v) for v in value}
    if isinstance(value, dict) and value:
        out: dict[str, str | list[str]] = {}
        for k, v in value.items():
            if isinstance(v, list) and v and all(isinstance(w, scalar) and str(w).strip() for w in v):
                out[str(k)] = [str(w) for w in v]
            elif isinstance(v, scalar) and not isinstance(v, bool) and str(v).strip():
                out[str(k)] = str(v)
            else:
                raise bad
        return out
    raise bad


def load_table(path: Path, rows: list[tuple[int, dict]], spec: dict | None = None) -> Task:
    """Rows of dicts (JSONL, CSV, JSON list) plus the spec beside the file."""
    spec = read_spec(path) if spec is None else spec
    if not rows:
        raise PromptSearchError(f"{path}: the file has no examples.")
    keys = set().union(*(r.keys() for _, r in rows))
    in_field = spec.get("input") or next((k for k in INPUT_FIELDS if k in keys), None)
    tgt_field = spec.get("target") or next((k for k in TARGET_FIELDS if k in keys), None)
    if not in_field or not tgt_field:
        missing = "input" if not in_field else "target"
        raise PromptSearchError(
            f"{path}: no {missing} field found (columns: {', '.join(sorted(keys))}); "
            f"name it with '{missing}:' in {path.with_suffix('.yaml').name}."
        )
    split_field = spec.get("split_field", "split")
    labels = _labels_from_spec(spec.get("labels"), str(path))
    examples: dict[str, list[Example]] = {s: [] for s in SPLITS}
    unsplit: list[Example] = []
    for line, row in rows:
        where = f"{path.name}:{line}"
        if in_field not in row or row[in_field] in (None, ""):
            raise PromptSearchError(f"{path}:{line}: field '{in_field}' is missing or empty.")
        if tgt_field not in row or row[tgt_field] in (None, ""):
            raise PromptSearchError(f"{path}:{line}: field '{tgt_field}' is missing or empty.")
        target = row[tgt_field]
        if isinstance(target, list):
            if not target or not all(isinstance(t, (str, int, float)) for t in target):
                raise PromptSearchError(
                    f"{path}:{line}: field '{tgt_field}' must be a text or a non-empty list of texts, got {target!r}."
                )
            target = tuple(str(t) for t in target)
        elif isinstance(target, (dict, bool)):
            raise PromptSearchError(
                f"{path}:{line}: field '{tgt_field}' must be a text or a list of texts, got {target!r}."
            )
        else:
            target = str(target)
        if isinstance(row[in_field], (dict, list)):
            raise PromptSearchError(
                f"{path}:{line}: field '{in_field}' must be text, got {type(row[in_field]).__name__}."
            )
        ex_id = str(row.get(spec.get("id", "id")) or f"L{line}")
        if labels and isinstance(target, str) and target not in labels:
            raise PromptSearchError(
                f"{path}:{line}: label {target!r} in field '{tgt_field}' is not in the label set "
                f"{sorted(labels)}; fix the row or add the label to the spec."
            )
        ex = Example(ex_id, str(row[in_field]), target, {"where": where})
        split = row.get(split_field)
        if split in (None, ""):
            unsplit.append(ex)
        elif split in SPLITS or split in ("validation", "val"):
            examples["dev" if split in ("validation", "val") else split].append(ex)
        else:
            raise PromptSearchError(f"{path}:{line}: split {split!r} is not one of train, dev, test.")
    if unsplit:
        fractions = spec.get("splits") or DEFAULT_FRACTIONS
        for name, part in split_by_fraction(unsplit, fractions, int(spec.get("seed", 0)), str(path)).items():
            examples[name].extend(part)
    is_cls = labels is not None or tgt_field == "label"
    if is_cls and labels is None:
        labels = {v: v for v in sorted({e.label for s in examples.values() for e in s})}
    instructions = spec.get("instructions") or []
    if isinstance(instructions, str):
        instructions = [instructions]
    return Task(
        name=spec.get("name") or path.stem,
        **examples,
        template=spec.get("template") or ("Text: {input}\nLabel:" if is_cls else "Input: {input}\nOutput:"),
        labels=labels,
        metric=spec.get("metric") or ("accuracy" if is_cls else "exact_match"),
        instructions=list(instructions),
        description=spec.get("description", ""),
        source=str(path),
    ).validate()


# --- Instruction Induction (Honovich et al. 2022) ------------------------------------

II_METRICS = {
    "common_concept": "f1",
    "informal_to_formal": "f1",
    "orthography_starts_with": "exact_set",
    "taxonomy_animal": "exact_set",
    "synonyms": "contains",
}


def _ii_examples(task: str, raw: dict, prefix: str) -> list[Example]:
    out = []
    for key, ex in raw.items():
        if task == "cause_and_effect":
            # Both orders, as the authors' execution script scores them.
            pairs = [(ex["cause"], ex["effect"]), (ex["effect"], ex["cause"])]
            for j, (a, b) in enumerate(pairs):
                out.append(Example(f"{prefix}{key}{'ab'[j]}", f"Sentence 1: {a} Sentence 2: {b}", (ex["cause"],)))
            continue
        if task == "common_concept":
            inp, gold = ", ".join(ex["items"]), ex["all_common_concepts"]
        elif task == "rhymes":
            inp, gold = ex["input"], ex["other_rhymes"]
        elif task.startswith("translation"):
            inp, gold = ex["input"], ex["possible_translations"]
        elif task == "word_in_context":
            inp, gold = ex["input"], ex["possible_outputs"]
        else:
            inp, gold = ex["input"], [ex["output"]]
        out.append(Example(f"{prefix}{key}", str(inp), tuple(str(g) for g in gold)))
    return out


def load_instruction_induction(path: Path, dev_size: int = 50, seed: int = 0) -> Task:
    task = path.stem
    root = path.parent.parent
    induce_p, execute_p = root / "induce" / path.name, root / "execute" / path.name
    if not induce_p.exists() or not execute_p.exists():
        raise PromptSearchError(
            f"{path}: Instruction Induction tasks need both induce/{path.name} and execute/{path.name}."
        )
    induce = _ii_examples(task, _read_json(induce_p)["examples"], "i")
    test = _ii_examples(task, _read_json(execute_p)["examples"], "e")
    rng = random.Random(seed)
    rng.shuffle(induce)
    n_dev = min(dev_size, len(induce) // 2)
    ann_p = root / "annotations" / path.name
    instructions = _read_json(ann_p).get("annotations", []) if ann_p.exists() else []
    return Task(
        name=task,
        train=induce[n_dev:],
        dev=induce[:n_dev],
        test=test,
        template="Input: {input}\nOutput:",
        metric=II_METRICS.get(task, "exact_match"),
        instructions=instructions,
        description=f"Instruction Induction task '{task}'.",
        source=str(path),
    ).validate()


# --- RLPrompt 16-shot classification (Deng et al. 2022) ------------------------------

_SENTI = (["negative", "positive"], "Review: {input}\nSentiment:")
RLPROMPT = {
    "sst-2": _SENTI,
    "mr": _SENTI,
    "cr": _SENTI,
    "yelp-2": _SENTI,
    "subj": (["subjective", "objective"], "Text: {input}\nThis text is"),
    "sst-5": (["terrible", "bad", "okay", "good", "great"], "Review: {input}\nIt was"),
    "yelp-5": (["terrible", "bad", "okay", "good", "great"], "Review: {input}\nIt was"),
    "agnews": (["World", "Sports", "Business", "Tech"], "Article: {input}\nTopic:"),
    "trec": (["Description", "Entity", "Expression", "Human", "Location", "Number"], "Question: {input}\nAnswer type:"),
    "dbpedia": (
        [
            "Company",
            "Education",
            "Artist",
            "Sports",
            "Office",
            "Transportation",
            "Building",
            "Natural",
            "Village",
            "Animal",
            "Plant",
            "Album",
            "Film",
            "Written",
        ],
        "Text: {input}\nCategory:",
    ),
}


def _read_tsv(path: Path, names: list[str], prefix: str) -> list[Example]:
    out = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t")
            header = next(reader)
            for n, row in enumerate(reader, 2):
                if len(row) != len(header):
                    raise PromptSearchError(f"{path}:{n}: expected {len(header)} tab-separated fields, got {len(row)}.")
                text, label = row[0], row[1]
                if not label.strip().isdigit() or int(label) >= len(names):
                    raise PromptSearchError(f"{path}:{n}: label {label!r} is not a class index 0..{len(names) - 1}.")
                out.append(Example(f"{prefix}{n - 1}", text.replace("\\n", "\n"), names[int(label)]))
    except OSError as e:
        raise PromptSearchError(f"{path}: cannot read ({e}).") from None
    return out


def load_rlprompt(folder: Path, seed_dir: str = "16-100") -> Task:
    """A dataset folder (uses seed 16-100, RLPrompt's dataset_seed 0) or a 16-SEED folder."""
    if not (folder / "train.tsv").exists():
        folder = folder / seed_dir
    dataset = folder.parent.name
    if dataset not in RLPROMPT:
        raise PromptSearchError(f"{folder}: unknown RLPrompt dataset '{dataset}'; known: {', '.join(RLPROMPT)}.")
    names, template = RLPROMPT[dataset]
    test_p = folder / "test.tsv" if (folder / "test.tsv").exists() else folder.parent / "test.tsv"
    if not test_p.exists():
        raise PromptSearchError(f"{folder}: no test.tsv here or in {folder.parent}.")
    return Task(
        name=f"{dataset}",
        train=_read_tsv(folder / "train.tsv", names, "tr"),
        dev=_read_tsv(folder / "dev.tsv", names, "dv"),
        test=_read_tsv(test_p, names, "te"),
        template=template,
        labels={n: n for n in names},
        metric="accuracy",
        description=f"RLPrompt 16-shot split {folder.name} of {dataset}.",
        source=str(folder),
    ).validate()


# --- Hugging Face datasets -----------------------------------------------------------


def load_hf_task(name: str) -> Task:
    try:
        import datasets
    except ImportError:
        raise PromptSearchError("hf: tasks need the 'datasets' package: pip install 'promptsearch[hf]'.") from None
    ds_name, _, config = name.partition(":")
    try:
        dsd = datasets.load_dataset(ds_name, config or None)
    except Exception as e:  # network, unknown name, bad config
        raise PromptSearchError(f"Cannot load Hugging Face dataset '{name}': {str(e).splitlines()[0]}") from None
    return task_from_hf(dsd, name=ds_name.split("/")[-1] + (f"-{config}" if config else ""))


def task_from_hf(dsd: Any, name: str, dev_size: int = 200, seed: int = 0) -> Task:
    """A `datasets.DatasetDict` to a Task: guesses the text and label columns (RAFT's
    "Tweet text"/"Label" too). Rows whose label is hidden (-1, or RAFT's "Unlabeled" class)
    are left out; a dataset left with labelled rows in one split only (RAFT: 50 labelled
    train rows) is split into train/dev/test by the default fractions, with a fixed seed."""
    split_names = list(dsd.keys())
    first = dsd[split_names[0]]
    cols = first.column_names
    lower = {c.lower(): c for c in cols}
    in_col = next((lower[c] for c in INPUT_FIELDS if c in lower), None) or next(
        (c for c in cols if any(f in c.lower() for f in INPUT_FIELDS)), None
    )
    tgt_col = next((lower[c] for c in TARGET_FIELDS if c in lower), None)
    if not in_col or not tgt_col:
        raise PromptSearchError(f"hf:{name}: cannot find text/label columns among {cols}.")
    feature = first.features.get(tgt_col)
    all_names = getattr(feature, "names", None)
    names = [n for n in all_names if n.lower() != "unlabeled"] if all_names is not None else None

    def convert(split: str) -> list[Example]:
        out = []
        for i, row in enumerate(dsd[split]):
            target = row[tgt_col]
            if all_names is not None:
                if target is None or target < 0 or all_names[target] not in names:
                    continue  # hidden test labels
                target = all_names[target]
            out.append(
                Example(
                    f"{split}{i}",
                    str(row[in_col]),
                    tuple(map(str, target)) if isinstance(target, list) else str(target),
                )
            )
        return out

    parts = {s: convert(s) for s in split_names}
    train = parts.get("train", [])
    dev = parts.get("validation") or parts.get("dev") or []
    test = parts.get("test") or []
    if not test and not dev:  # labelled rows in train only
        rows = list(train)
        random.Random(seed).shuffle(rows)
        n_tr = max(1, round(len(rows) * DEFAULT_FRACTIONS["train"]))
        n_dv = max(1, round(len(rows) * DEFAULT_FRACTIONS["dev"]))
        train, dev, test = rows[:n_tr], rows[n_tr : n_tr + n_dv], rows[n_tr + n_dv :]
    if not test:
        test, dev = dev, []
    if not dev:
        rng = random.Random(seed)
        train = list(train)
        rng.shuffle(train)
        dev, train = train[:dev_size], train[dev_size:]
    return Task(
        name=name,
        train=train,
        dev=dev,
        test=test,
        template="Text: {input}\nLabel:" if names else "Input: {input}\nOutput:",
        labels={n: n for n in names} if names else None,
        metric="accuracy" if names else "exact_match",
        source=f"hf:{name}",
    ).validate()
