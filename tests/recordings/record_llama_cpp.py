"""Record what llama.cpp's server answers to promptsearch's first-token scoring, for
tests/test_first_token.py to replay (the README's test command does not build llama.cpp).

    pip install "llama-cpp-python[server]==0.3.36"      # in its own venv; see benchmarks/README.md
    python tests/recordings/record_llama_cpp.py --llama-python /path/to/venv/bin/python

It serves the embedded model's GGUF file (SmolLM2-135M-Instruct Q4_1) on 127.0.0.1, puts a
recording proxy in front, and scores through it, as `openai:smollm2,scoring=auto`: SST-2
16-42 dev (the first 24 examples; uncalibrated and with contextual calibration) and TREC
16-42 dev (the first 24; six labels, so some fall outside the top 20). The file keeps every
request with the server's answer, and what the evaluator made of them, which the test must
reproduce from the replay.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))  # tests/servers.py
DATA = ROOT.parent / "shared" / "data" / "rlprompt"
OUT = HERE / "llama_cpp_first_token.json"
CASES = {  # name -> (dataset, instruction, harness)
    "sst-2": ("sst-2/16-42", "Is the following movie review positive or negative?", "zero-shot"),
    "sst-2 calibrated": (
        "sst-2/16-42",
        "Is the following movie review positive or negative?",
        "calibrate:mode=contextual",
    ),
    "trec": ("trec/16-42", "What kind of answer does the following question ask for?", "zero-shot"),
}
N = 24


def case_task(dataset: str, n: int = N):
    from promptsearch.tasks.loaders import load_task

    t = load_task(str(DATA / dataset))
    return dataclasses.replace(t, dev=t.dev[:n])


def score(url: str, db: str, name: str):
    from promptsearch.backends.openai_api import OpenAIBackend
    from promptsearch.candidates import Candidate
    from promptsearch.runner import run_eval

    dataset, instruction, harness = CASES[name]
    b = OpenAIBackend("smollm2", base_url=url, concurrency=1, max_tries=2, timeout=60)
    res, doc = run_eval(
        case_task(dataset),
        Candidate(instruction=instruction, name="manual"),
        model=b,
        split="dev",
        harness=harness,
        db=db,
    )
    return res, doc


def summary(res, doc) -> dict:
    return {
        "scoring": doc["model"]["scoring"],
        "predictions": res.predictions,
        "mean": res.mean,
        "label_logprobs": res.label_logprobs,
        "first_token": res.extras.get("first_token"),
    }


def main() -> None:
    from servers import RecordingProxy, free_port, start_llama_cpp, stop

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-python", required=True, help="a Python with llama-cpp-python[server] installed")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    port = free_port()
    proc = start_llama_cpp(args.llama_python, port, work / "server.log")
    try:
        with RecordingProxy(f"http://127.0.0.1:{port}/v1") as proxy:
            expected = {name: summary(*score(proxy.url, str(work / "r.db"), name)) for name in CASES}
            pairs = dict(proxy.pairs)
    finally:
        stop(proc)
    import subprocess

    version = subprocess.run(
        [args.llama_python, "-c", "import llama_cpp; print(llama_cpp.__version__)"], capture_output=True, text=True
    ).stdout.strip()
    OUT.write_text(
        json.dumps(
            {
                "made": datetime.date.today().isoformat(),
                "command": "python tests/recordings/record_llama_cpp.py --llama-python ...",
                "server": f"llama-cpp-python[server] {version}, SmolLM2-135M-Instruct Q4_1 GGUF, served as smollm2",
                "cases": {
                    name: {"dataset": d, "instruction": i, "harness": h, "n": N} for name, (d, i, h) in CASES.items()
                },
                "expected": expected,
                "pairs": pairs,
            },
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )
    for name, e in expected.items():
        print(f"{name}: scoring {e['scoring']}, accuracy {e['mean']:.3f}, first token {e['first_token']}")
    print(f"{len(pairs)} requests recorded in {OUT}")


if __name__ == "__main__":
    main()
