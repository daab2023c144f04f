"""APE on the 24 Instruction Induction tasks and on SST-2, with the embedded model as both
proposer and target.

Per Instruction Induction task: demos and dev from the induce split, test = the execute
split. APE's best instruction is scored on test and compared with the mean test score of
the human-written instructions (the task's annotations). SST-2 (RLPrompt 16-shot split
16-42, full 1,821-sentence test): APE's best vs the best of three manual prompts.

    python benchmarks/ape_instruction_induction.py [--tasks sum,antonyms] [--skip-sst2]

Resumable: model answers are cached in benchmarks/out/ape.db (not committed), and results
are written after every task to benchmarks/results/ape_instruction_induction.json (committed,
so a later run skips the tasks already there). `--table` prints that file as Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "out"
RESULTS = ROOT / "benchmarks" / "results"
SST2_MANUAL = [
    "",
    "Classify the movie review as positive or negative.",
    "Is the following movie review positive or negative?",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", help="comma-separated Instruction Induction tasks (default: all 24)")
    ap.add_argument("--skip-sst2", action="store_true")
    ap.add_argument("--skip-ii", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--db", default=str(OUT / "ape.db"))
    ap.add_argument("--out", default=str(RESULTS / "ape_instruction_induction.json"))
    ap.add_argument("--table", action="store_true", help="print the results file as a Markdown table and exit")
    args = ap.parse_args()
    if args.table:
        print(markdown(json.loads(Path(args.out).read_text())))
        return

    from promptsearch.backends import resolve_backend
    from promptsearch.candidates import Candidate
    from promptsearch.errors import PromptSearchError
    from promptsearch.evaluation import Evaluator
    from promptsearch.searchers.ape import APESearcher
    from promptsearch.searchers.base import SearchContext
    from promptsearch.store import CachedBackend, Store
    from promptsearch.tasks import load_task

    OUT.mkdir(parents=True, exist_ok=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    backend = CachedBackend(resolve_backend("embedded"), Store(args.db))
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}

    def save():
        out_path.write_text(json.dumps(results, indent=2))

    def run_ape(task):
        ev = Evaluator(task, backend, phase=lambda m: print("   ", m, file=sys.stderr, flush=True))
        t0 = time.perf_counter()
        res = APESearcher().search(task, ev, SearchContext(seed=args.seed))
        return res, ev, time.perf_counter() - t0

    names = (
        args.tasks.split(",")
        if args.tasks
        else sorted(p.stem for p in (DATA / "instruction_induction" / "induce").glob("*.json"))
    )
    for name in [] if args.skip_ii else names:
        if name in results:
            continue
        task = load_task(str(DATA / "instruction_induction" / "induce" / f"{name}.json"))
        print(f"{name}: {task.summary()}", file=sys.stderr, flush=True)
        test_ev = Evaluator(task, backend)
        human = [
            test_ev.score(Candidate(instruction=h, name=f"human-{i}"), task.test, split="test").mean
            for i, h in enumerate(task.instructions, 1)
        ]
        human_mean = sum(human) / len(human)
        try:
            res, ev, secs = run_ape(task)
        except PromptSearchError as e:  # the proposer wrote nothing usable: APE has no answer, a loss
            results[name] = {
                "metric": task.metric,
                "n_test": len(task.test),
                "ape_instruction": "(none usable)",
                "ape_dev": None,
                "ape_test": 0.0,
                "human_mean": round(human_mean, 4),
                "human_best": round(max(human), 4),
                "n_human": len(human),
                "ape_beats_human_mean": False,
                "search_seconds": 0.0,
                "search_calls": 0,
                "search_cache_hits": 0,
                "error": str(e),
            }
            save()
            print(f"  APE: {e}", file=sys.stderr, flush=True)
            continue
        ape_test = test_ev.score(res.best, task.test, split="test")
        results[name] = {
            "metric": task.metric,
            "n_test": len(task.test),
            "ape_instruction": res.best.instruction,
            "ape_dev": round(res.best_score, 4),
            "ape_test": round(ape_test.mean, 4),
            "human_mean": round(human_mean, 4),
            "human_best": round(max(human), 4),
            "n_human": len(human),
            "ape_beats_human_mean": ape_test.mean > human_mean,
            "search_seconds": round(secs, 1),
            "search_calls": ev.cost.calls,
            "search_cache_hits": ev.cost.cache_hits,
            "search_tokens": ev.cost.tokens,
            "candidates_scored": len({r.candidate.key() for r in ev.history}),
            "dropped_at_induction": res.notes["rounds"][0].get("dropped", {}),
        }
        save()
        print(
            f"  APE {ape_test.mean:.3f} vs human mean {human_mean:.3f} (best {max(human):.3f}) "
            f"'{res.best.instruction}' [{secs:.0f}s]",
            file=sys.stderr,
            flush=True,
        )

    if not args.skip_sst2 and "sst-2" not in results:
        task = load_task(str(DATA / "rlprompt" / "sst-2" / "16-42"))
        print(f"sst-2: {task.summary()}", file=sys.stderr, flush=True)
        res, ev, secs = run_ape(task)
        test_ev = Evaluator(task, backend)
        ape_test = test_ev.score(res.best, task.test, split="test")
        manual = {
            m or "(empty)": test_ev.score(Candidate(instruction=m, name="manual"), task.test, split="test").mean
            for m in SST2_MANUAL
        }
        best_manual = max(manual, key=manual.get)
        results["sst-2"] = {
            "n_test": len(task.test),
            "ape_instruction": res.best.instruction,
            "ape_dev": round(res.best_score, 4),
            "ape_test": round(ape_test.mean, 4),
            "manual": {k: round(v, 4) for k, v in manual.items()},
            "best_manual": best_manual,
            "best_manual_test": round(manual[best_manual], 4),
            "ape_beats_best_manual": ape_test.mean > manual[best_manual],
            "search_seconds": round(secs, 1),
            "search_calls": ev.cost.calls,
            "search_cache_hits": ev.cost.cache_hits,
            "candidates_scored": len({r.candidate.key() for r in ev.history}),
        }
        save()
        print(f"  APE {ape_test.mean:.4f} vs best manual {manual[best_manual]:.4f} ({best_manual})", file=sys.stderr)
    ii = {k: v for k, v in results.items() if k != "sst-2"}
    wins = sum(v["ape_beats_human_mean"] for v in ii.values())
    print(json.dumps({"tasks_done": len(ii), "ape_beats_human_mean": wins}, indent=2))


def markdown(results: dict) -> str:
    ii = {k: v for k, v in results.items() if k != "sst-2"}
    lines = [
        "| task | metric | APE test | human mean (best) | APE wins | APE's instruction | candidates "
        "| calls (+cached) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in sorted(ii.items()):
        instr = v["ape_instruction"].replace("|", "\\|")
        lines.append(
            f"| {name} | {v['metric']} | {v['ape_test']:.3f} | {v['human_mean']:.3f} ({v['human_best']:.3f}) | "
            f"{'yes' if v['ape_beats_human_mean'] else 'no'} | {instr} | {v.get('candidates_scored', 0)} | "
            f"{v['search_calls']} (+{v.get('search_cache_hits', 0)}) |"
        )
    wins = sum(v["ape_beats_human_mean"] for v in ii.values())
    lines.append(f"\nAPE beats the mean of the human instructions on {wins} of {len(ii)} tasks run.")
    if "sst-2" in results:
        v = results["sst-2"]
        lines.append(
            f"\nSST-2 (test n={v['n_test']}): APE {v['ape_test']:.4f} ('{v['ape_instruction']}') vs best manual "
            f"{v['best_manual_test']:.4f} ({v['best_manual']}); manual prompts: {v['manual']}."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
