"""Bad input, tried as a new user and an operator would: each case is one `promptsearch`
command line (with the files it names made first) that must end with one `Error:` line,
exit code 2, no traceback, within the time limit, and leave no database file behind.

    python benchmarks/bad_inputs.py [--out benchmarks/results/bad_inputs.json] [--timeout 60]

Every case runs in a fresh folder with its own PROMPTSEARCH_HOME and database, so nothing a
case does leaks into the next. Counts are printed and written as each case finishes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
SPEC = "tasks: [sentiment]\nmodels: [hf:/nonexistent/model]\nsearchers: [baseline]\n"

# (name, argv after `promptsearch`, {file name: contents}); {d} is the case's folder
CASES: list[tuple[str, list[str], dict[str, str | bytes]]] = [
    # run: names and options
    ("unknown task", ["run", "--task", "sentimnt"], {}),
    ("unknown searcher", ["run", "--searcher", "apee"], {}),
    ("unknown option", ["run", "--searcher", "demos", "-o", "shot=4"], {}),
    ("option not key=value", ["run", "--searcher", "demos", "-o", "shots"], {}),
    ("option out of range", ["run", "--searcher", "demos", "-o", "shots=0"], {}),
    ("option of the wrong type", ["run", "--searcher", "ape", "-o", "rounds=two"], {}),
    ("option NaN", ["run", "--searcher", "ape", "-o", "top_fraction=nan"], {}),
    ("unknown scorer", ["run", "--scorer", "acuracy"], {}),
    ("unknown harness", ["run", "--harness", "fewshot+cto"], {}),
    ("harness part twice", ["run", "--harness", "calibrate+calibrate"], {}),
    ("zero-shot plus a part", ["run", "--harness", "zero-shot+calibrate"], {}),
    ("harness option typo", ["run", "--harness", "fewshot:kk=2"], {}),
    ("harness option type", ["run", "--harness", "fewshot:k=two"], {}),
    ("harness calibrate+cot", ["run", "--harness", "calibrate+cot"], {}),
    ("sc without temperature", ["run", "--harness", "sc:temperature=0"], {}),
    ("fewshot larger than train", ["run", "--harness", "fewshot:k=5000"], {}),
    ("negative budget", ["run", "--max-calls", "-1"], {}),
    ("budget not a number", ["run", "--max-seconds", "soon"], {}),
    ("negative shots", ["run", "--shots", "-2"], {}),
    ("zero concurrency", ["run", "--concurrency", "0"], {}),
    ("unknown model kind", ["run", "--model", "gpt:4"], {}),
    ("model folder missing", ["run", "--model", "hf:{d}/nothing"], {}),
    ("model folder not a model", ["run", "--model", "hf:{d}"], {"x.txt": "hello"}),
    ("openai model without a server", ["run", "--model", "openai:gpt-x", "--base-url", "http://127.0.0.1:9/v1"], {}),
    ("base url not a URL", ["run", "--model", "openai:gpt-x", "--base-url", "not a url"], {}),
    ("resume unknown run", ["run", "--resume", "nosuchrun"], {}),
    ("proposer unknown kind", ["run", "--searcher", "ape", "--proposer", "nosuch:x"], {}),
    ("gepa proposer unknown", ["run", "--searcher", "gepa", "-o", "proposer=nosuch:x"], {}),
    (
        "dollar budget with an unpriced model",
        ["run", "--max-dollars", "1", "--model", "openai:no-price-x", "--base-url", "http://127.0.0.1:9/v1"],
        {},
    ),
    # task files
    ("task file missing", ["run", "--task", "{d}/nothing.jsonl"], {}),
    ("task file empty", ["run", "--task", "{d}/t.jsonl"], {"t.jsonl": ""}),
    ("task file not JSON", ["run", "--task", "{d}/t.jsonl"], {"t.jsonl": "{not json\n"}),
    ("task file binary", ["run", "--task", "{d}/t.jsonl"], {"t.jsonl": PNG}),
    (
        "task file latin-1",
        ["run", "--task", "{d}/t.jsonl"],
        {"t.jsonl": '{"input": "caf\xe9", "label": "a"}\n'.encode("latin-1")},
    ),
    ("task rows without input", ["run", "--task", "{d}/t.jsonl"], {"t.jsonl": '{"label": "a"}\n' * 30}),
    ("task csv without label column", ["run", "--task", "{d}/t.csv"], {"t.csv": "text,y\nhello,a\n" * 30}),
    ("task folder empty", ["run", "--task", "{d}/empty"], {"empty/.keep": ""}),
    (
        "task one label only",
        ["run", "--task", "{d}/t.jsonl"],
        {"t.jsonl": "".join(json.dumps({"input": f"x{i}", "label": "a"}) + "\n" for i in range(40))},
    ),
    ("hf task offline", ["run", "--task", "hf:nosuch/dataset-xyz"], {}),
    # eval
    ("eval prompt file missing", ["eval", "--prompt-file", "{d}/p.txt"], {}),
    ("eval prompt file binary", ["eval", "--prompt-file", "{d}/p.txt"], {"p.txt": PNG}),
    ("eval bad split", ["eval", "--prompt", "x", "--split", "valid"], {}),
    ("eval zero limit", ["eval", "--prompt", "x", "--limit", "0"], {}),
    ("eval prompt and file", ["eval", "--prompt", "x", "--prompt-file", "{d}/p.txt"], {"p.txt": "y"}),
    # databases
    ("db is a folder", ["runs", "--db", "{d}"], {}),
    ("db not a database", ["runs", "--db", "{d}/x.db"], {"x.db": "this is not sqlite " * 100}),
    ("db in an unwritable place", ["run", "--db", "/proc/promptsearch.db"], {}),
    ("db url one slash", ["runs", "--db", "postgresql+psycopg:/broken"], {}),
    ("db url unknown driver", ["runs", "--db", "postgresql+nosuchdrv://u:pw@127.0.0.1/x"], {}),
    ("db url bad port", ["runs", "--db", "postgresql+psycopg://u@127.0.0.1:notaport/x"], {}),
    ("db url nothing listening", ["runs", "--db", "postgresql+psycopg://u:pw@127.0.0.1:9/x"], {}),
    ("db url mysql", ["runs", "--db", "mysql://u@127.0.0.1/x"], {}),
    ("db url sqlite form", ["runs", "--db", "sqlite:///x.db"], {}),
    # stored runs
    ("show unknown run", ["show", "nosuch"], {}),
    ("report unknown run", ["report", "nosuch"], {}),
    ("export unknown run", ["export", "nosuch", "--output", "{d}/out"], {}),
    ("runs unknown task", ["runs", "--task", "sentimnt", "--db", "{d}/r.db"], {}),  # with runs of another task
    ("leaderboard unknown format", ["leaderboard", "--format", "xml"], {}),
    ("leaderboard output in a missing folder", ["leaderboard", "--output", "{d}/no/such/dir/x.md"], {}),
    ("cache clear unknown model", ["cache", "clear", "--model", "nosuch"], {}),
    # sweep specs
    ("spec missing", ["sweep", "{d}/nothing.yaml"], {}),
    ("spec binary", ["sweep", "{d}/s.yaml"], {"s.yaml": PNG}),
    ("spec latin-1", ["sweep", "{d}/s.yaml"], {"s.yaml": "tasks: [caf\xe9]\n".encode("latin-1")}),
    ("spec not YAML", ["sweep", "{d}/s.yaml"], {"s.yaml": "tasks: [a\n  b: c"}),
    ("spec a list", ["sweep", "{d}/s.yaml"], {"s.yaml": "- a\n- b\n"}),
    ("spec unknown top key", ["sweep", "{d}/s.yaml"], {"s.yaml": SPEC + "budgets: {max_calls: 5}\n"}),
    (
        "spec searcher entry unknown key",
        ["sweep", "{d}/s.yaml"],
        {"s.yaml": SPEC.replace("[baseline]", "[{name: demos, option: {shots: 8}}]")},
    ),
    (
        "spec searcher unknown option",
        ["sweep", "{d}/s.yaml"],
        {"s.yaml": SPEC.replace("[baseline]", "[{name: demos, options: {shot: 8}}]")},
    ),
    ("spec searcher not a name", ["sweep", "{d}/s.yaml"], {"s.yaml": SPEC.replace("[baseline]", "[42]")}),
    (
        "spec task entry unknown key",
        ["sweep", "{d}/s.yaml"],
        {"s.yaml": SPEC.replace("[sentiment]", "[{task: sentiment, instruction: x}]")},
    ),
    ("spec budget unknown key", ["sweep", "{d}/s.yaml"], {"s.yaml": SPEC + "budget: {max_call: 5}\n"}),
    ("spec budget negative", ["sweep", "{d}/s.yaml"], {"s.yaml": SPEC + "budget: {max_calls: -5}\n"}),
    ("spec resources unknown key", ["sweep", "{d}/s.yaml"], {"s.yaml": SPEC + "resources: {num_cpu: 2}\n"}),
    ("spec resources not a mapping", ["sweep", "{d}/s.yaml"], {"s.yaml": SPEC + "resources: 2\n"}),
    ("spec harness twice", ["sweep", "{d}/s.yaml"], {"s.yaml": SPEC + "harnesses: [calibrate+calibrate]\n"}),
    ("spec seeds not numbers", ["sweep", "{d}/s.yaml"], {"s.yaml": SPEC + "seeds: [a]\n"}),
    ("spec empty grid", ["sweep", "{d}/s.yaml"], {"s.yaml": SPEC + "seeds: []\n"}),
    ("spec grid unknown key", ["sweep", "{d}/s.yaml"], {"s.yaml": SPEC + "grids: [{resources: {num_cpus: 2}}]\n"}),
    ("spec retries negative", ["sweep", "{d}/s.yaml"], {"s.yaml": SPEC + "retries: -1\n"}),
    ("sweep zero workers", ["sweep", "{d}/s.yaml", "--workers", "0"], {"s.yaml": SPEC}),
    (
        "sweep ray client address, nothing there",
        ["sweep", "{d}/s.yaml", "--ray-address", "ray://127.0.0.1:9"],
        {"s.yaml": SPEC},
    ),
    ("sweep ray address, nothing there", ["sweep", "{d}/s.yaml", "--ray-address", "127.0.0.1:9"], {"s.yaml": SPEC}),
    ("sweep ray address bad port", ["sweep", "{d}/s.yaml", "--ray-address", "127.0.0.1:port"], {"s.yaml": SPEC}),
    # commands and flags
    ("unknown command", ["serch"], {}),
    ("unknown flag", ["run", "--searchr", "ape"], {}),
]


def run_case(name: str, argv: list[str], files: dict, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="bad-input-") as d:
        if "runs unknown task" == name:  # a database that has runs, none of this task
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys; sys.path.insert(0, 'tests'); "
                    "from fakes import FakeBackend; from promptsearch.runner import run_search; "
                    f"run_search('sentiment', model=FakeBackend(), searcher='baseline', db='{d}/r.db')",
                ],
                check=True,
                capture_output=True,
                cwd=Path(__file__).resolve().parents[1],
            )
        for rel, content in files.items():
            p = Path(d) / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content if isinstance(content, bytes) else content.encode())
        env = {
            **os.environ,
            "PROMPTSEARCH_HOME": f"{d}/home",
            "PROMPTSEARCH_DB": f"{d}/home/ps.db",
            "HF_HUB_OFFLINE": "1",
            "COLUMNS": "200",
        }
        args = [a.replace("{d}", d) for a in argv]
        t0 = time.time()
        try:
            p = subprocess.run(
                [sys.executable, "-m", "promptsearch.cli", *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=d,
                stdin=subprocess.DEVNULL,
            )
            code, out, err, hung = p.returncode, p.stdout, p.stderr, False
        except subprocess.TimeoutExpired as e:
            code, out, err, hung = None, str(e.stdout or ""), str(e.stderr or ""), True
        errors = [line for line in err.splitlines() if line.startswith("Error")]
        return {
            "case": name,
            "argv": argv,
            "exit": code,
            "seconds": round(time.time() - t0, 1),
            "hung": hung,
            "traceback": "Traceback" in out + err,
            "error_lines": len(errors),
            "message": errors[0] if errors else (err.strip().splitlines() or [""])[-1],
            "db_left": (Path(d) / "home" / "ps.db").exists(),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/bad_inputs.json")
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    results = []
    for name, argv, files in CASES:
        r = run_case(name, argv, files, args.timeout)
        results.append(r)
        ok = r["exit"] == 2 and r["error_lines"] == 1 and not r["traceback"] and not r["db_left"]
        print(f"{'ok ' if ok else 'BAD'} {r['seconds']:5.1f}s exit={r['exit']} {name}: {r['message']}", flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    summary = {
        "cases": len(results),
        "one_line_exit_2": sum(r["exit"] == 2 and r["error_lines"] == 1 for r in results),
        "tracebacks": sum(r["traceback"] for r in results),
        "hangs": sum(r["hung"] for r in results),
        "other_exit": sum(r["exit"] not in (2, None) for r in results),
        "db_left": sum(r["db_left"] for r in results),
    }
    print(json.dumps(summary))
    Path(args.out).write_text(json.dumps({"summary": summary, "cases": results}, indent=1))


if __name__ == "__main__":
    main()
