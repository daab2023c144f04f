"""AutoPrompt on SST-2 (RLPrompt 16-shot splits), embedded model, full 1,821-sentence test.

Settings, each on splits 16-13, 16-42 and 16-100 with the searcher's defaults (seed 0):
- template `task`: the task's own "Review: {input}\\nSentiment:" with negative/positive,
  the trigger after the input;
- template `rlprompt`: RLPrompt's left-to-right template "{input} {prompt}" (here
  "{input}{trigger}": the trigger's tokens bring their own spaces) with terrible/great;
- with and without label-word search (`-o search_labels=true`).
Baselines on the same test, same template and label words: the empty prompt and two manual
instructions (the best manual prompt of the APE benchmark, 0.8265 there, is manual-1).
No k-shot baseline (`baseline_shots=0`): it is seed-specific and costs a full test scoring
per split, and on this model few-shot demos hurt (see the harness benchmark).

    python benchmarks/autoprompt_sst2.py            # resumes: skips settings already in results/
    python benchmarks/autoprompt_sst2.py --table    # the README table from results/
    python benchmarks/autoprompt_sst2.py --ape      # also APE (task template) on the three splits
    python benchmarks/autoprompt_sst2.py --rl       # also RL: instruction style (task template), tokens (RLPrompt's)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "rlprompt" / "sst-2"
RESULTS = ROOT / "benchmarks" / "results" / "autoprompt_sst2.json"
DB = ROOT / "benchmarks" / "out" / "autoprompt_sst2.db"
SPLITS = ("16-13", "16-42", "16-100")
MANUAL = ["Is the following movie review positive or negative?", "Classify the movie review as positive or negative."]
TEMPLATES = {
    "task": ("Review: {input}\nSentiment:", {"negative": "negative", "positive": "positive"}),
    "rlprompt": ("{input}{trigger}", {"negative": "terrible", "positive": "great"}),
}


def settings(with_ape: bool, with_rl: bool = False):
    for template in TEMPLATES:
        for labels in (False, True):
            for split in SPLITS:
                yield {"searcher": "autoprompt", "template": template, "search_labels": labels, "split": split}
    if with_rl:  # RL (issue 13): instruction style on the task template, tokens style on RLPrompt's
        for style, template in (("instruction", "task"), ("tokens", "rlprompt")):
            for split in SPLITS:
                yield {"searcher": "rl", "style": style, "template": template, "search_labels": False, "split": split}
    if with_ape:
        for split in SPLITS:
            yield {"searcher": "ape", "template": "task", "search_labels": False, "split": split}


def key(s: dict) -> str:
    style = f"|{s['style']}" if "style" in s else ""
    return f"{s['searcher']}{style}|{s['template']}|labels={s['search_labels']}|{s['split']}"


def run_one(s: dict) -> dict:
    from promptsearch.runner import run_search
    from promptsearch.selection import Selection
    from promptsearch.tasks.loaders import load_task

    template, labels = TEMPLATES[s["template"]]
    task = replace(load_task(str(DATA / s["split"])), template=template, labels=labels, instructions=MANUAL)
    opts = {"search_labels": "true"} if s["search_labels"] else {}
    if s["searcher"] == "rl":
        opts = {"style": s["style"]}
    t0 = time.time()
    whole_dev = Selection.whole_dev()  # the pick these results were made with (before the gate)
    doc = run_search(
        task,
        model="embedded",
        searcher=s["searcher"],
        options=opts,
        seed=0,
        db=str(DB),
        baseline_shots=0,
        selection=whole_dev,
    )
    best = doc["best"]
    base = {
        b["name"]: {"prompt": b["prompt"], "test": b["test"]["mean"], "diff": b["best_minus_baseline"]}
        for b in doc["baselines"]
    }
    notes = doc["record"]["searcher_notes"]
    return {
        **s,
        "run_id": doc["run_id"],
        "best_prompt": best["prompt"],
        "dev": best["dev"]["mean"],
        "test": best["test"]["mean"],
        "test_n": best["test"]["n"],
        "baselines": base,
        "label_words": notes.get("label_words"),
        "trigger_text": notes.get("trigger_text"),
        "trigger_ids": notes.get("trigger_ids"),
        "search_calls": doc["cost"]["search"]["calls"],
        "search_seconds": doc["cost"]["search"]["seconds"],
        "wall_seconds": round(time.time() - t0, 1),
        "stopped_by": doc["stopped_by"],
        "curve": notes.get("curve"),
        "steps": len(notes["curve"]) if notes.get("curve") else None,
    }


def table(results: dict) -> str:
    rows = [
        "| searcher | template, label words | label search | split | found prompt | dev | test | empty | "
        "manual-1 | best − manual-1 [95% CI] | search calls | wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list] = {}
    for r in results.values():
        name = r["searcher"] + (f" ({r['style']})" if "style" in r else "")
        groups.setdefault((name, r["template"], r["search_labels"]), []).append(r)
    for (searcher, template, ls), rs in groups.items():
        rs.sort(key=lambda r: SPLITS.index(r["split"]))
        t, labels = TEMPLATES[template]
        for r in rs:
            b = r["baselines"]
            d = b["manual-1"]["diff"]
            words = "/".join(w[0] for w in r["label_words"].values()) if r["label_words"] else "/".join(labels.values())
            found = (
                f"`{r['trigger_text']}` (ids {' '.join(map(str, r['trigger_ids']))})"
                if r["trigger_text"] is not None
                else r["best_prompt"][:60].replace("|", "\\|")
            )
            rows.append(
                f"| {searcher} | {template} `{t!r}`, {words} | {'yes' if ls else 'no'} | {r['split']} | "
                f"{found} | {r['dev']:.3f} | **{r['test']:.4f}** | {b['empty']['test']:.4f} | "
                f"{b['manual-1']['test']:.4f} | {d['diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] | "
                f"{r['search_calls']:,} | {r['wall_seconds']:.0f} s |"
            )
        tests = [r["test"] for r in rs]
        if len(tests) > 1:
            rows.append(
                f"| | | | **mean ± sd** | | | **{statistics.mean(tests):.4f} ± {statistics.stdev(tests):.4f}** | "
                f"{statistics.mean(r['baselines']['empty']['test'] for r in rs):.4f} | "
                f"{statistics.mean(r['baselines']['manual-1']['test'] for r in rs):.4f} | | | |"
            )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--ape", action="store_true")
    ap.add_argument("--rl", action="store_true", help="also the RL searcher, both styles")
    ap.add_argument("--only", nargs="*", default=[], help="run only settings whose key contains all of these")
    args = ap.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if args.table:
        print(table(results))
        return
    run_all(settings(args.ape, args.rl), key, run_one, RESULTS, results, args.only)


def run_all(settings, key, run_one, path: Path, results: dict, only: list[str]) -> None:
    """Run each setting not yet in `results` (and matching every `--only` string), saving the
    results file after each one, so an interrupted benchmark resumes where it stopped. A
    setting that fails (a missing task or stored prompt) is reported and skipped."""
    DB.parent.mkdir(parents=True, exist_ok=True)
    for s in settings:
        k = key(s)
        if k in results or not all(o in k for o in only):
            continue
        print(f"== {k}", flush=True)
        try:
            r = results[k] = run_one(s)
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"   skipped: {type(e).__name__}: {e}", flush=True)
            continue
        base = ", ".join(f"{n} {b['test']:.4f}" for n, b in r["baselines"].items())
        print(f"   test {r['test']:.4f} ({base}) {r['wall_seconds']:.0f} s", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
