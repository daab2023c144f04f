"""Our black-box optimizers against the field's own, on the same target, splits and calls.

One target for everybody: the embedded model behind `transformers serve --continuous-batching`
on 127.0.0.1 (CPU here), reached through a counting proxy so every system's model requests
(and the tokens the server reports) are counted at the same place. Systems, each from the
task's natural manual prompt as its seed instruction:

- ours: `gepa`, `opro`, `grips`, `mipro` through `run_search` on `openai:<model>` (chat:
  answers generated and parsed, as any chat API target), a budget of `--calls` model calls;
- `logprobs:<name>` (with `--llama-python`): ours again, through llama.cpp's server on the
  embedded model's GGUF file with labels scored from first-token log-probabilities
  (`scoring=logprobs`), against the manual prompt scored the same way (`manual-logprobs`);
- `gepa.optimize` with its default adapter (system prompt + user message, litellm to the
  server), stopped by a stop callback at the same `--calls`;
- DSPy 3.x: `dspy.GEPA` (stopped at the same `--calls` through `gepa_kwargs`) and
  `dspy.MIPROv2(auto="light")`, whose budget is its own (its calls are counted, not capped).

Every answer, ours and the peers', is read by the same parser (our harness's label
extraction: an "answer is"/"answer:" phrase, else the last label word) and scored against
the gold label; the peers' metric is built on it, with feedback naming the wrong answer.
Test accuracy on a fixed random subsample of the test split (`--test-n`, seed 0), with a
95% interval (normal approximation) and the paired bootstrap difference to the manual
prompt scored in our harness.

    pip install -e ".[peers]"   # dspy (benchmark only)
    python benchmarks/optimizers_vs_peers.py [--datasets sst-2 trec] [--systems ...] [--calls 150]

Results are written after every system to benchmarks/results/optimizers_vs_peers.json; a
rerun skips what is there (`--fresh` to redo). Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch of litellm's price map
os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="dspy-cache-"))

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the server helpers the tests use
DATA = ROOT.parent / "shared" / "data" / "rlprompt"
RESULTS = ROOT / "benchmarks" / "results" / "optimizers_vs_peers.json"
MANUAL = {
    "sst-2": "Is the following movie review positive or negative?",
    "trec": "What kind of answer does the following question ask for?",
}
OURS = ("gepa", "opro", "grips", "mipro")  # through the server, as the peers
LOCAL = tuple(f"local:{n}" for n in OURS)  # on the embedded model in-process (log-likelihood scoring)
# through llama.cpp's server on the embedded model's GGUF file, labels scored by first-token
# log-probabilities (`scoring=logprobs`): needs --llama-python
LOGPROBS = tuple(f"logprobs:{n}" for n in OURS)
LOGPROBS_CAL = tuple(f"logprobs-cal:{n}" for n in OURS)  # the same, batch-calibrated (harness calibrate)
PEERS = ("gepa.optimize", "dspy.GEPA", "dspy.MIPROv2-light", "dspy.MIPROv2-light-plain")
CONCURRENCY = 16
TASK_TOKENS, WRITER_TOKENS = 64, 256  # peers' max tokens for answers and for written instructions


# --- one place where calls are counted ------------------------------------------------------


class CountingProxy(ThreadingHTTPServer):
    """Forwards every request to the model server and counts the completions requests (and
    the tokens the server's `usage` reports) under the current tag."""

    daemon_threads = True

    def __init__(self, upstream_port: int):
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = upstream_port
        self.lock = threading.Lock()
        self.tag = "warm-up"
        self.counts: dict[str, dict[str, int]] = {}
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def add(self, ok: bool, usage: dict | None) -> None:
        with self.lock:
            c = self.counts.setdefault(self.tag, {"calls": 0, "failed": 0, "prompt_tokens": 0, "completion_tokens": 0})
            c["calls" if ok else "failed"] += 1
            if usage:
                c["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
                c["completion_tokens"] += int(usage.get("completion_tokens") or 0)

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()

    def get(self, tag: str) -> dict[str, int]:
        with self.lock:
            return dict(self.counts.get(tag, {"calls": 0, "failed": 0, "prompt_tokens": 0, "completion_tokens": 0}))


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self._forward("GET")

    def do_POST(self):
        self._forward("POST")

    def _forward(self, method: str) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in ("host", "content-length", "connection", "accept-encoding")
        }
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream, timeout=900)
        try:
            conn.request(method, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if method == "POST" and self.path.rstrip("/").endswith("completions"):
            usage = None
            try:
                usage = json.loads(data).get("usage")
            except ValueError:
                pass
            self.server.add(resp.status == 200, usage)
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "content-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args):
        pass


# --- data and the shared scoring ------------------------------------------------------------


def load(dataset: str, test_n: int):
    from promptsearch.tasks.loaders import load_task

    task = load_task(str(DATA / dataset / "16-42"))
    test = random.Random(0).sample(list(task.test), min(test_n, len(task.test)))
    return replace(task, test=test, instructions=[MANUAL[dataset]])


def label_of(text: str, task) -> str | None:
    """Our harness's reading of a generated answer: the label it names, or None."""
    from promptsearch.evaluation.harness import extract

    label, _how = extract(text or "", task, cot=False)
    return label


def feedback(answer: str | None, gold: str, text: str) -> str:
    if answer == gold:
        return f"Correct: the answer was '{gold}'."
    said = f"'{answer}'" if answer else f"no label (it wrote {text.strip()[:80]!r})"
    return f"Wrong: the assistant answered {said}; the correct answer is '{gold}'."


def interval(scores: list[float]) -> dict:
    from promptsearch.evaluation.stats import mean_se

    m, se = mean_se(scores)
    return {"mean": round(m, 4), "ci95": [round(m - 1.96 * se, 4), round(m + 1.96 * se, 4)], "n": len(scores)}


def label_words(task) -> list[str]:
    return list(task.labels)


# --- ours ---------------------------------------------------------------------------------


def run_ours(
    name: str,
    task,
    model: str,
    proxy: CountingProxy,
    calls: int,
    base_db: Path,
    tmp: Path,
    label: str = "",
    harness: str = "zero-shot",
) -> dict:
    """One of ours through the server: `calls` caps the model requests (proposer included)."""
    from promptsearch.budget import Budget
    from promptsearch.runner import run_search
    from promptsearch.selection import Selection
    from promptsearch.store.db import Store

    db = tmp / f"ours-{label or 'chat'}-{name}-{task.name}.db"
    shutil.copy(base_db, db)  # holds only the baselines' test answers: the search starts cold
    tags = {"Searching": "search", "Checking": "select", "Scoring": "test"}

    def phase(msg: str) -> None:
        for word, tag in tags.items():
            if msg.startswith(word):
                proxy.tag = f"{name}/{tag}"

    t0 = time.perf_counter()
    doc = run_search(
        task,
        model=model,
        searcher=name,
        seed=0,
        db=str(db),
        budget=Budget(max_calls=calls),
        baseline_shots=0,
        phase=phase,
        harness=harness,
        selection=Selection.whole_dev(),  # the pick these results were made with (before the gate)
    )
    wall = time.perf_counter() - t0
    best = doc.get("search_best", doc["best"])
    tests = {t.example_id: t.score for t in Store(str(db)).run_tests(doc["run_id"]) if t.candidate == best["name"]}
    scores = [tests[e.id] for e in task.test]
    search = proxy.get(f"{name}/search")
    return {
        "system": f"ours: {name}" + (f", {label}" if label else ""),
        "test": interval(scores),
        "scores": scores,
        "prompt": best["prompt"],
        "calls": search["calls"],
        "failed_calls": search["failed"],
        "tokens": search["prompt_tokens"] + search["completion_tokens"],
        "search_seconds": round(doc["cost"]["search"]["seconds"], 1),
        "wall_seconds": round(wall, 1),
        "evaluator_calls": doc["cost"]["search"]["calls"],
        "stopped_by": doc["stopped_by"],
        "dev_in_search": best.get("dev_in_search"),
    }


def run_local(name: str, task, calls: int, tmp: Path) -> dict:
    """One of ours on the embedded model in-process, as a user of promptsearch runs it on a
    local model: labels scored by log-likelihood; calls and tokens from the run's own cost.

    The budget is `calls` example scorings (`max_evals`): one scored example is one answer,
    the unit a served call buys. A call cap would not do here: scoring one example costs one
    log-likelihood request per label, so on TREC's six labels one dev pass of the seed
    (96 x 6 = 576 requests) is past a 150-call budget before the search starts."""
    from promptsearch.budget import Budget
    from promptsearch.runner import run_search
    from promptsearch.selection import Selection
    from promptsearch.store.db import Store

    db = tmp / f"local-{name}-{task.name}.db"
    t0 = time.perf_counter()
    doc = run_search(
        task,
        model="embedded",
        searcher=name,
        seed=0,
        db=str(db),
        budget=Budget(max_evals=calls),
        baseline_shots=0,
        selection=Selection.whole_dev(),
    )
    wall = time.perf_counter() - t0
    best = doc.get("search_best", doc["best"])
    tests = {t.example_id: t.score for t in Store(str(db)).run_tests(doc["run_id"]) if t.candidate == best["name"]}
    scores = [tests[e.id] for e in task.test]
    cost = doc["cost"]["search"]
    return {
        "system": f"ours: {name}, local model",
        "test": interval(scores),
        "scores": scores,
        "prompt": best["prompt"],
        "calls": cost["calls"],
        "budget": f"max_evals={calls}",
        "failed_calls": 0,
        "tokens": cost["tokens"],
        "search_seconds": round(cost["seconds"], 1),
        "wall_seconds": round(wall, 1),
        "stopped_by": doc["stopped_by"],
        "dev_in_search": best.get("dev_in_search"),
    }


def local_reference(task) -> dict:
    """The seed instruction on test on the embedded model in-process (log-likelihood scoring)."""
    from promptsearch.candidates import Candidate
    from promptsearch.evaluation.evaluator import Evaluator
    from promptsearch.runner import prepare

    setup = prepare(task, "embedded", db=str(Path(tempfile.mkdtemp(prefix="ps-local-ref-")) / "ref.db"))
    scores = (
        Evaluator(setup.task, setup.backend)
        .score(Candidate(instruction=task.instructions[0], name="manual-1"), task.test, split="test")
        .scores
    )
    return {
        "system": "manual prompt (no search), local model",
        "test": interval(scores),
        "scores": scores,
        "prompt": task.instructions[0],
        "calls": 0,
        "tokens": 0,
        "search_seconds": 0.0,
    }


# --- gepa.optimize with its default adapter --------------------------------------------------


def run_gepa_default(task, folder: str, proxy: CountingProxy, calls: int, tmp: Path) -> dict:
    import gepa
    from gepa.adapters.default_adapter.default_adapter import DefaultAdapter, EvaluationResult

    tag = "gepa.optimize"
    proxy.tag = tag

    def evaluator(data, response):
        answer = label_of(response, task)
        return EvaluationResult(
            score=float(answer == data["answer"]), feedback=feedback(answer, data["answer"], response)
        )

    def inst(e):
        return {"input": e.input, "answer": e.target, "additional_context": {}}

    common = {"api_base": proxy.url, "api_key": "no-key"}
    adapter = DefaultAdapter(
        model=f"openai/{folder}",
        evaluator=evaluator,
        max_litellm_workers=CONCURRENCY,
        litellm_batch_completion_kwargs={**common, "max_tokens": TASK_TOKENS, "temperature": 0.0},
    )
    t0 = time.perf_counter()
    result = gepa.optimize(
        seed_candidate={"system_prompt": task.instructions[0]},
        trainset=[inst(e) for e in task.train],
        valset=[inst(e) for e in task.dev],
        adapter=adapter,
        reflection_lm=f"openai/{folder}",
        reflection_lm_kwargs={**common, "max_tokens": WRITER_TOKENS},
        stop_callbacks=[lambda _state: proxy.get(tag)["calls"] >= calls],
        run_dir=str(tmp / f"gepa-default-{task.name}"),
        seed=0,
        raise_on_exception=False,
    )
    wall = time.perf_counter() - t0
    searched = proxy.get(tag)
    best = result.best_candidate
    proxy.tag = f"{tag}/test"
    out = adapter.evaluate([inst(e) for e in task.test], best)
    return {
        "system": "gepa.optimize (default adapter)",
        "test": interval(list(out.scores)),
        "scores": list(out.scores),
        "prompt": best["system_prompt"],
        "calls": searched["calls"],
        "failed_calls": searched["failed"],
        "tokens": searched["prompt_tokens"] + searched["completion_tokens"],
        "search_seconds": round(wall, 1),
        "candidates": len(result.candidates),
    }


# --- DSPy ---------------------------------------------------------------------------------


def dspy_setup(task, folder: str, proxy: CountingProxy):
    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    common = dict(api_base=proxy.url, api_key="no-key", cache=False, num_retries=3)
    task_lm = dspy.LM(f"openai/{folder}", max_tokens=TASK_TOKENS, temperature=0.0, **common)
    writer = dspy.LM(f"openai/{folder}", max_tokens=WRITER_TOKENS, temperature=1.0, **common)
    dspy.configure(lm=task_lm)
    sig = dspy.Signature(
        {"text": dspy.InputField(), "answer": dspy.OutputField(desc="one of: " + ", ".join(label_words(task)))},
        task.instructions[0],
    )
    program = dspy.Predict(sig)

    def ex(e):
        return dspy.Example(text=e.input, answer=e.target).with_inputs("text")

    def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        text = getattr(pred, "answer", "") or ""
        answer = label_of(text, task)
        score = float(answer == gold.answer)
        if pred_name is None:  # evaluation and bootstrapping read a number; GEPA's reflection asks by predictor
            return score
        return dspy.Prediction(score=score, feedback=feedback(answer, gold.answer, text))

    return (
        dspy,
        program,
        [ex(e) for e in task.train],
        [ex(e) for e in task.dev],
        [ex(e) for e in task.test],
        metric,
        writer,
    )


def dspy_test(dspy, program, test, metric, task) -> list[float]:
    result = dspy.Evaluate(
        devset=test,
        metric=lambda g, p, t=None: metric(g, p),
        num_threads=CONCURRENCY,
        display_progress=False,
        provide_traceback=False,
        max_errors=len(test) + 1,
    )(program)
    return [float(r[2]) for r in result.results]


def run_dspy(kind: str, task, folder: str, proxy: CountingProxy, calls: int, tmp: Path) -> dict:
    dspy, program, train, dev, test, metric, writer = dspy_setup(task, folder, proxy)
    proxy.tag = kind
    t0 = time.perf_counter()
    if kind == "dspy.GEPA":
        opt = dspy.GEPA(
            metric=metric,
            max_metric_calls=100_000,
            reflection_lm=writer,
            num_threads=CONCURRENCY,
            seed=0,
            log_dir=str(tmp / f"dspy-gepa-{task.name}"),
            gepa_kwargs={"stop_callbacks": [lambda _state: proxy.get(kind)["calls"] >= calls]},
        )
        best = opt.compile(program, trainset=train, valset=dev)
    else:  # its proposer writes structured output; with the data/program summaries off it asks less of the writer
        aware = kind == "dspy.MIPROv2-light"
        opt = dspy.MIPROv2(
            metric=metric, prompt_model=writer, auto="light", num_threads=CONCURRENCY, seed=0, verbose=False
        )
        best = opt.compile(program, trainset=train, valset=dev, data_aware_proposer=aware, program_aware_proposer=aware)
    wall = time.perf_counter() - t0
    searched = proxy.get(kind)
    proxy.tag = f"{kind}/test"
    scores = dspy_test(dspy, best, test, metric, task)
    pred = best.predictors()[0]
    names = {
        "dspy.MIPROv2-light": 'dspy.MIPROv2(auto="light")',
        "dspy.MIPROv2-light-plain": 'dspy.MIPROv2(auto="light"), data/program-aware proposer off',
    }
    return {
        "system": names.get(kind, kind),
        "test": interval(scores),
        "scores": scores,
        "prompt": pred.signature.instructions,
        "demos": len(getattr(pred, "demos", []) or []),
        "calls": searched["calls"],
        "failed_calls": searched["failed"],
        "tokens": searched["prompt_tokens"] + searched["completion_tokens"],
        "search_seconds": round(wall, 1),
    }


# --- the run ------------------------------------------------------------------------------


def manual_reference(
    task, model: str, proxy: CountingProxy, db: Path, label: str = "", harness: str = "zero-shot"
) -> dict:
    """The seed instruction on test in our harness (also warms `db` with the baselines' test
    answers, so our runs do not each pay for them)."""
    from promptsearch.candidates import Candidate
    from promptsearch.evaluation.evaluator import Evaluator
    from promptsearch.runner import prepare

    proxy.tag = "manual/test"
    setup = prepare(task, model, db=str(db))
    res = {}
    for cand in (Candidate(instruction=task.instructions[0], name="manual-1"), Candidate(name="empty")):
        ev = Evaluator(setup.task, setup.backend, harness=harness)
        res[cand.name] = ev.score(cand, task.test, split="test").scores
    return {
        "system": "manual prompt (no search)" + (f", {label}" if label else ""),
        "test": interval(res["manual-1"]),
        "scores": res["manual-1"],
        "prompt": task.instructions[0],
        "calls": 0,
        "tokens": 0,
        "search_seconds": 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["sst-2", "trec"], choices=sorted(MANUAL))
    ap.add_argument(
        "--systems",
        nargs="+",
        default=[*LOCAL, "gepa", "gepa.optimize", "dspy.GEPA", "dspy.MIPROv2-light"],
        choices=[*LOCAL, *OURS, *PEERS, *LOGPROBS, *LOGPROBS_CAL],
    )
    ap.add_argument("--llama-python", help="a Python with llama-cpp-python[server]: for the logprobs:* systems")
    ap.add_argument("--calls", type=int, default=150, help="model calls per search (MIPROv2 light keeps its own)")
    ap.add_argument("--test-n", type=int, default=100, help="test examples (a fixed random subsample)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--fresh", action="store_true", help="redo systems already in the results file")
    args = ap.parse_args()

    from promptsearch.backends.embedded import prepare
    from promptsearch.settings import configure, get_settings
    from servers import free_port, start_llama_cpp, start_transformers_serve, stop

    results = {} if args.fresh or not args.results.exists() else json.loads(args.results.read_text())
    folder = str(prepare(get_settings().model_dir))
    tmp = Path(tempfile.mkdtemp(prefix="ps-peers-"))
    port = free_port()
    server = start_transformers_serve(Path(folder), port, tmp / "serve.log", extra_args=["--continuous-batching"])
    proxy = CountingProxy(port)
    configure(concurrency=CONCURRENCY)
    model = f"openai:{folder},base_url={proxy.url}"
    print(f"server on :{port}, proxy {proxy.url}, logs in {tmp}", flush=True)
    llama = lp_proxy = None
    if any(s in LOGPROBS + LOGPROBS_CAL for s in args.systems):
        if not args.llama_python:
            ap.error("the logprobs:* systems need --llama-python (a Python with llama-cpp-python[server])")
        lp_port = free_port()
        llama = start_llama_cpp(args.llama_python, lp_port, tmp / "llama.log")
        lp_proxy = CountingProxy(lp_port)
        lp_model = f"openai:smollm2,base_url={lp_proxy.url},scoring=logprobs"
    try:
        for dataset in args.datasets:
            proxy.reset()  # counts (and the peers' stop callbacks) are per dataset
            task = load(dataset, args.test_n)
            task.instructions[0] = MANUAL[dataset]
            base_db = tmp / f"{dataset}-base.db"
            ref = results.get(f"manual|{dataset}") if not args.fresh else None
            if ref is None or ref["test"]["n"] != len(task.test):
                ref = manual_reference(task, model, proxy, base_db)  # the bar of the served rows; warms base_db
            results[f"manual|{dataset}"] = ref
            for system in args.systems:
                key = f"{system}|{dataset}"
                if system == "dspy.MIPROv2-light-plain" and "error" not in results.get(
                    f"dspy.MIPROv2-light|{dataset}", {"error": 1}
                ):
                    continue  # the plainer proposer only where the default one failed
                if system.startswith("local:") and f"manual-local|{dataset}" not in results:
                    results[f"manual-local|{dataset}"] = local_reference(task)
                if key in results and not args.fresh:
                    print(f"{key}: kept from {args.results.name}", flush=True)
                    continue
                print(f"{key}: running", flush=True)
                t0 = time.perf_counter()
                try:
                    if system in LOGPROBS + LOGPROBS_CAL:
                        kind = system.split(":", 1)[0]  # logprobs, logprobs-cal
                        harness = "calibrate" if kind == "logprobs-cal" else "zero-shot"
                        lp_db = tmp / f"{dataset}-{kind}-base.db"
                        if f"manual-{kind}|{dataset}" not in results or not lp_db.exists():
                            lp_proxy.reset()
                            what = "llama.cpp, first-token logprobs" + (
                                ", calibrated" if harness != "zero-shot" else ""
                            )
                            results[f"manual-{kind}|{dataset}"] = manual_reference(
                                task, lp_model, lp_proxy, lp_db, what, harness
                            )
                        row = run_ours(
                            system.split(":", 1)[1], task, lp_model, lp_proxy, args.calls, lp_db, tmp, kind, harness
                        )
                    elif system in LOCAL:
                        row = run_local(system.split(":", 1)[1], task, args.calls, tmp)
                    elif system in OURS:
                        if not base_db.exists():
                            manual_reference(task, model, proxy, base_db)
                        row = run_ours(system, task, model, proxy, args.calls, base_db, tmp)
                    elif system == "gepa.optimize":
                        row = run_gepa_default(task, folder, proxy, args.calls, tmp)
                    else:
                        row = run_dspy(system, task, folder, proxy, args.calls, tmp)
                except Exception as e:  # noqa: BLE001 - a system that fails is a result, recorded as such
                    row = {"system": system, "error": f"{type(e).__name__}: {str(e)[:300]}"}
                row["wall_seconds"] = round(time.perf_counter() - t0, 1)
                results[key] = row
                rebase(results)
                args.results.write_text(json.dumps(results, indent=1))
                print(
                    f"{key}: "
                    + (
                        f"test {row['test']['mean']:.3f} {row['test']['ci95']}, {row['calls']} calls, "
                        f"{row['search_seconds']} s search"
                        if "test" in row
                        else row["error"]
                    ),
                    flush=True,
                )
    finally:
        stop(server)
        proxy.shutdown()
        if llama is not None:
            stop(llama)
            lp_proxy.shutdown()
        configure()
    results["_meta"] = {
        "calls_per_search": args.calls,
        "test_n": args.test_n,
        "concurrency": CONCURRENCY,
        "target": "embedded model, transformers serve --continuous-batching, CPU",
        "peer_max_tokens": {"answer": TASK_TOKENS, "writer": WRITER_TOKENS},
        "cpus": os.cpu_count(),
    }
    if llama is not None:
        results["_meta"]["logprobs_target"] = "embedded model's GGUF (Q4_1), llama-cpp-python[server], scoring=logprobs"
    args.results.write_text(json.dumps(results, indent=1))
    print(table(results))


def rebase(results: dict) -> None:
    """Each row's paired bootstrap difference to its bar: the manual prompt in the same
    harness (in-process for the local rows, through the server for the others), recomputed
    from the stored per-example scores so rows kept from an earlier run meet today's bar."""
    from promptsearch.evaluation.stats import paired_bootstrap

    for key, row in results.items():
        if key.startswith(("_", "manual")) or "scores" not in row:
            continue
        system, dataset = key.split("|")
        bar_name = "manual-local" if system in LOCAL else "manual"
        if system in LOGPROBS + LOGPROBS_CAL:
            bar_name = "manual-" + system.split(":", 1)[0]
        bar = results.get(f"{bar_name}|{dataset}")
        if bar and len(bar["scores"]) == len(row["scores"]):
            row["minus_manual"] = paired_bootstrap(row["scores"], bar["scores"]).to_dict()


def table(results: dict) -> str:
    rows = [
        "| system | dataset | test acc [95% CI] | minus manual [95% CI] | model calls | tokens | search wall |",
        "|---|---|---|---|---|---|---|",
    ]
    order = ["manual", *OURS, *PEERS, "manual-logprobs", *LOGPROBS, "manual-logprobs-cal", *LOGPROBS_CAL]
    order += ["manual-local", *LOCAL]  # served rows first, then in-process

    def rank(key: str) -> tuple:
        system, dataset = key.split("|")
        return dataset, order.index(system) if system in order else len(order)

    for key in sorted((k for k in results if not k.startswith("_")), key=rank):
        r = results[key]
        system, dataset = key.split("|")
        if "error" in r:
            rows.append(f"| {r['system']} | {dataset} | failed: {r['error'].splitlines()[0][:80]} | | | | |")
            continue
        t, d = r["test"], r.get("minus_manual")
        diff = f"{d['diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]" if d else "–"
        rows.append(
            f"| {r['system']} | {dataset} | {t['mean']:.3f} [{t['ci95'][0]:.3f}, {t['ci95'][1]:.3f}] | {diff} | "
            f"{r['calls']:,} | {r['tokens']:,} | {r['search_seconds']:.0f} s |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--table"]:
        print(table(json.loads(RESULTS.read_text())))
    else:
        main()
