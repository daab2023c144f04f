"""GEPA (Agrawal et al. 2025, "Reflective Prompt Evolution Can Outperform Reinforcement
Learning") on the `gepa` package: its engine, Pareto candidate selection, reflection prompt
and merge; our evaluator, cache, budget and harnesses underneath, through an adapter.

- The adapter's `evaluate` scores a batch of examples through the evaluator (train
  minibatches for reflection, the dev split as gepa's validation set) and, with traces,
  keeps per example the input, what the target answered, the gold answer and the score;
  `make_reflective_dataset` turns those into the feedback the reflection model reads
  ("answered 'negative'; the correct answer is 'positive'").
- The reflection model is the proposer (the target unless `-o proposer=MODEL`); its calls
  go through the evaluator, so they count in the run's cost and budget.
- Our budget (calls, tokens, seconds, dollars, evaluations) stops gepa through its stop
  callbacks; a scoring the budget refuses ends the iteration it was in.
- gepa's state is kept in the run folder, so `--resume` continues the search; the record
  keeps every candidate with its parents and dev score, and the final Pareto front.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promptsearch.candidates import Candidate
from promptsearch.errors import BudgetExhausted, PromptSearchError
from promptsearch.evaluation.evaluator import Evaluator
from promptsearch.evaluation.render import answer_text
from promptsearch.searchers.base import Outcome, SearchContext, Searcher, option
from promptsearch.searchers.proposing import (
    Proposer,
    chat_option,
    max_tokens_option,
    proposer_option,
    temperature_option,
)
from promptsearch.searchers.templates import MetaPrompt
from promptsearch.tasks.base import Example, Task

IDLE_ITERATIONS = 25  # gepa iterations in a row without a reflection before the search ends


def need_gepa():
    try:
        import gepa
    except ImportError:
        raise PromptSearchError(
            "The gepa searcher needs the gepa package, which is not installed: pip install 'promptsearch[gepa]'"
        ) from None
    return gepa


def feedback(answer: str, gold: str, score: float) -> str:
    if score >= 1.0:
        return f"Correct: the answer '{gold}' is right."
    return f"Wrong: the assistant answered '{answer}'; the correct answer is '{gold}'."


class Adapter:
    """gepa's GEPAAdapter over our evaluator. A candidate is {"instruction": text}."""

    def __init__(self, task: Task, evaluator: Evaluator):
        self.task, self.evaluator = task, evaluator
        self.dev_ids = {e.id for e in task.dev}
        self.names: dict[str, str] = {}  # instruction -> candidate name, in order of first scoring
        self.stopped = ""  # why our budget ended the search
        self.error: BaseException | None = None  # a failure that is not the budget's: re-raised after gepa
        self.propose_new_texts = None  # gepa's own reflection proposer writes the new texts

    def candidate(self, text: str) -> Candidate:
        name = self.names.setdefault(text, f"gepa-{len(self.names):02d}")
        return Candidate(instruction=text, name=name, origin="gepa")

    def evaluate(self, batch: list[Example], candidate: dict[str, str], capture_traces: bool = False):
        from gepa.core.adapter import EvaluationBatch

        split = "dev" if all(e.id in self.dev_ids for e in batch) else "train"
        try:
            res = self.evaluator.score(self.candidate(candidate["instruction"]), batch, split)
        except BudgetExhausted as e:
            self.stopped = self.stopped or str(e)
            raise
        except Exception as e:
            self.error = self.error or e
            raise
        traces = None
        if capture_traces:
            traces = [
                {"input": ex.input, "answer": pred, "gold": answer_text(self.task, ex), "score": s}
                for ex, pred, s in zip(batch, res.predictions, res.scores)
            ]
        scores = list(res.selection_scores)  # what gepa's Pareto front and acceptance compare
        return EvaluationBatch(outputs=list(res.predictions), scores=scores, trajectories=traces)

    def make_reflective_dataset(self, candidate: dict[str, str], eval_batch, components_to_update: list[str]):
        records = [
            {
                "Inputs": t["input"],
                "Generated Outputs": t["answer"] or "(no answer)",
                "Feedback": feedback(t["answer"], t["gold"], t["score"]),
            }
            for t in eval_batch.trajectories or []
        ]
        return {c: records for c in components_to_update}


class GEPASearcher(Searcher):
    """Reflective evolution of the instruction from the target's own mistakes (gepa package)."""

    name = "gepa"
    needs = "a generating proposer (default: the target model); pip install 'promptsearch[gepa]'"

    def check(self, backend) -> None:
        need_gepa()

    checkpoints = True
    method_options = ("selection", "merge")

    @dataclass
    class Config:
        proposer: str = proposer_option("reflection model (default: the target)")
        selection: str = option(
            "pareto",
            "how gepa picks the parent to mutate",
            choices=("pareto", "current_best", "epsilon_greedy", "top_k_pareto"),
        )
        merge: bool = option(False, "also merge candidates from the Pareto front (gepa's merge proposer)")
        minibatch: int = option(3, "train examples the reflection model sees per step", min=1)
        max_metric_calls: int = option(0, "gepa's own cap on example scorings (0: only our budget)", min=0)
        temperature: float = temperature_option(1.0, "reflection")
        max_tokens: int = max_tokens_option(120, "longest instruction the reflection model may write, in tokens")
        chat: str = chat_option()

    def search(self, task: Task, evaluator: Evaluator, context: SearchContext) -> Outcome:
        seed = context.seed
        gepa = need_gepa()
        from gepa.strategies.instruction_proposal import InstructionProposalSignature

        cfg = self.config
        if not task.train:
            raise PromptSearchError(f"GEPA reflects on train examples, and task '{task.name}' has none.")
        prop = Proposer(cfg.proposer, evaluator, cfg.chat)
        adapter = Adapter(task, evaluator)
        template = MetaPrompt(
            "gepa.reflection",
            1,
            InstructionProposalSignature.default_prompt_template,
            InstructionProposalSignature.default_prompt_template,
        )
        calls = [0]

        def reflect(prompt: Any) -> str:
            text = prompt if isinstance(prompt, str) else "\n\n".join(str(m.get("content", "")) for m in prompt)
            if prop.chat is not None:
                filled, stop = prop.chat(text), ()
            else:  # a completion model continues inside the block the template asks for
                filled, stop = text + "\n\n```\n", ("```",)
            calls[0] += 1
            try:
                got = prop.write([filled], 1, cfg.max_tokens, cfg.temperature, seed * 100_000 + calls[0], stop=stop)
            except BudgetExhausted as e:
                adapter.stopped = adapter.stopped or str(e)
                raise
            if not got:
                adapter.stopped = adapter.stopped or prop.cut
                raise BudgetExhausted(prop.cut)
            return got[0]

        idle = {"work": -1, "for": 0}

        def out_of_budget(_state) -> bool:
            if adapter.stopped or adapter.error is not None:
                return True
            # gepa skips a minibatch its parent already answers perfectly, without a call; when
            # every one is (a perfect prompt on train), it would loop forever on a call budget
            work = calls[0]
            idle["for"] = idle["for"] + 1 if work == idle["work"] else 0
            idle["work"] = work
            if idle["for"] >= IDLE_ITERATIONS:
                adapter.stopped = (
                    f"{IDLE_ITERATIONS} iterations without a proposal: every train minibatch is already "
                    "answered perfectly"
                )
                return True
            try:
                evaluator.check_budget(0)
            except BudgetExhausted as e:
                adapter.stopped = str(e)
                return True
            return False

        run_dir = None
        if context.workdir is not None:
            path = context.workdir / "gepa"
            if not context.resuming and path.exists():
                import shutil

                shutil.rmtree(path)
            path.mkdir(parents=True, exist_ok=True)
            run_dir = str(path)
        seed_text = task.instructions[0] if task.instructions else ""
        evaluator.say(
            f"GEPA: evolving from {seed_text[:50]!r} ({cfg.selection} selection"
            f"{', merge' if cfg.merge else ''}; reflection by {prop.backend.model_id})"
        )
        progress = _Progress(evaluator, adapter)
        try:
            result = gepa.optimize(
                seed_candidate={"instruction": seed_text},
                trainset=list(task.train),
                valset=list(task.dev),
                adapter=adapter,
                reflection_lm=reflect,
                candidate_selection_strategy=cfg.selection,
                reflection_minibatch_size=cfg.minibatch,
                use_merge=cfg.merge,
                max_metric_calls=cfg.max_metric_calls or None,
                stop_callbacks=[out_of_budget],
                logger=_Quiet(),
                run_dir=run_dir,
                callbacks=[progress],
                seed=seed,
                raise_on_exception=False,
                display_progress_bar=False,
            )
        except BudgetExhausted as e:  # the seed's own scoring on dev did not fit
            raise BudgetExhausted(adapter.stopped or str(e)) from None
        if adapter.error is not None:
            raise adapter.error
        best_i = max(range(len(result.candidates)), key=lambda i: result.val_aggregate_scores[i])
        best = adapter.candidate(result.candidates[best_i]["instruction"])
        front = sorted({i for s in result.per_val_instance_best_candidates.values() for i in s})
        notes = {
            "templates": [template.record()],
            "proposer": prop.backend.identity(),
            "candidates": [
                {
                    "index": i,
                    "name": adapter.candidate(c["instruction"]).name,
                    "instruction": c["instruction"],
                    "parents": list(result.parents[i]),
                    "dev": round(result.val_aggregate_scores[i], 4),
                }
                for i, c in enumerate(result.candidates)
            ],
            "pareto_front": front,
            "best_index": best_i,
            "metric_calls": result.total_metric_calls,
            "reflections": calls[0],
        }
        return Outcome(best, result.val_aggregate_scores[best_i], adapter.stopped, notes)


class _Quiet:
    """gepa's log lines stay out of the terminal (our progress line says what matters)."""

    def __init__(self):
        self.lines: list[str] = []

    def log(self, *args, **_kwargs) -> None:
        self.lines.append(" ".join(str(a) for a in args))


class _Progress:
    """A gepa callback: one progress line per iteration (step, best so far, calls used)."""

    def __init__(self, evaluator: Evaluator, adapter: Adapter):
        self.evaluator, self.adapter = evaluator, adapter

    def on_iteration_end(self, event) -> None:
        state = event["state"]
        best = max(state.program_full_scores_val_set, default=0.0)
        self.evaluator.say(
            f"GEPA iteration {event['iteration']}: {len(state.program_candidates)} candidates, best "
            f"{best:.3f} on dev ({self.evaluator.cost.calls} calls)"
        )
