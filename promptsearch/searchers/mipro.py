"""A MIPRO-style joint search (DSPy's MIPROv2, Opsahl-Ong et al. 2024): instruction x demo-set
combinations searched with optuna's TPE sampler.

- Instructions: the task's manual ones, the empty one, the best discrete prompt stored for
  this task and model (when there is one) and, with a proposer, `proposals` APE-style
  induced instructions (the target writes them unless `-o proposer=MODEL`; `proposals=0`
  for none).
- Demo sets: none, the k-shot baseline set and random sets from the `demos` searcher's code.
- Each trial: TPE picks an (instruction, demo set); it is scored on a random dev minibatch
  (scores a combination already earned are kept, never paid twice); the trial's value is the
  minibatch mean. Every `full_every` trials the best combination so far (by its mean over
  what it was scored on) is scored on the whole dev split; the result is the best of those.
- The optuna study is kept in the run folder (SQLite), so `--resume` continues its trials;
  one seed gives one result.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from promptsearch.candidates import Candidate
from promptsearch.errors import BudgetExhausted, PromptSearchError
from promptsearch.evaluation.evaluator import Evaluator
from promptsearch.evaluation.render import answer_text
from promptsearch.searchers.base import Outcome, SearchContext, Searcher, option, until_budget
from promptsearch.searchers.demos import DemoSearcher
from promptsearch.searchers.proposing import (
    Proposer,
    chat_option,
    clean_instruction,
    dedup_key,
    max_tokens_option,
    proposer_option,
    rejection,
    temperature_option,
)
from promptsearch.searchers.racing import Race, mean
from promptsearch.searchers.stored import best_stored_prompt
from promptsearch.searchers.templates import DEMO, INDUCE
from promptsearch.tasks.base import Task


def need_optuna():
    try:
        import optuna
    except ImportError:
        raise PromptSearchError(
            "The mipro searcher needs optuna, which is not installed: pip install 'promptsearch[mipro]'"
        ) from None
    return optuna


class MIPROSearcher(Searcher):
    """TPE over (instruction, demo set) combinations, minibatch trials, full-dev checks."""

    name = "mipro"
    checkpoints = True

    def check(self, backend) -> None:
        need_optuna()

    @dataclass
    class Config:
        proposer: str = proposer_option("model that writes the proposed instructions (default: the target)")
        proposals: int = option(4, "APE-style instructions the proposer induces (0: none)", min=0)
        demo_sets: int = option(6, "random demo sets besides none and the k-shot set", min=0)
        shots: int = option(4, "demos per demo set", min=1)
        trials: int = option(30, "optuna trials", min=1)
        minibatch: int = option(8, "dev examples per trial", min=1)
        full_every: int = option(
            5, "score the best combination so far on the whole dev split every this many trials", min=1
        )
        startup: int = option(8, "random trials before TPE models the results", min=1)
        temperature: float = temperature_option(0.9)
        max_tokens: int = max_tokens_option(40, "longest proposed instruction, in tokens")
        chat: str = chat_option()

    def search(self, task: Task, evaluator: Evaluator, context: SearchContext) -> Outcome:
        seed = context.seed
        optuna = need_optuna()
        cfg = self.config
        notes: dict = {"templates": [], "sources": {}}
        stopped = ""
        race = Race(cfg.minibatch, 2)  # only its score bookkeeping: what each combination has earned
        full: dict[str, float] = {}  # candidate key -> whole-dev mean
        with until_budget() as stop:
            instructions = self._instructions(task, evaluator, context, notes)
            demo_sets = self._demo_sets(task, seed)
            notes.update({"instructions": instructions, "demo_sets": [list(d) for d in demo_sets]})
            study = self._study(optuna, context)
            done = len([t for t in study.trials if t.state.is_finished()])
            evaluator.say(
                f"MIPRO: {len(instructions)} instructions x {len(demo_sets)} demo sets, {cfg.trials} trials"
                + (f" (resuming after trial {done})" if done else "")
            )
            for number in range(done, cfg.trials):
                trial = study.ask()
                i = trial.suggest_categorical("instruction", list(range(len(instructions))))
                d = trial.suggest_categorical("demos", list(range(len(demo_sets))))
                cand = Candidate(
                    instruction=instructions[i], demos=demo_sets[d], name=f"mipro-i{i}-d{d}", origin="mipro"
                )
                batch = random.Random(f"mipro:{seed}:{number}").sample(task.dev, min(cfg.minibatch, len(task.dev)))
                try:
                    race.cands.setdefault(cand.key(), cand)
                    race.score_upto(cand, batch, evaluator)
                except BudgetExhausted:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    raise
                study.tell(trial, mean(race.scores[cand.key()], batch))
                if (number + 1) % cfg.full_every == 0 or number + 1 == cfg.trials:
                    self._check_best(race, full, task, evaluator)
                best = max(full.values(), default=None)
                evaluator.say(
                    f"MIPRO trial {number + 1}/{cfg.trials}: {cand.name} {study.trials[-1].value:.3f} on "
                    f"{len(batch)} dev"
                    + (f", best {best:.3f} on full dev" if best is not None else "")
                    + f" ({evaluator.cost.calls} calls)"
                )
        stopped = stop.reason or stopped
        if not full and race.scores:  # stopped before any full-dev check: the best so far, if the budget allows
            try:
                self._check_best(race, full, task, evaluator)
            except BudgetExhausted:
                pass
        if not race.scores:
            raise BudgetExhausted(stopped or "no combination was scored")
        key = max(full, key=full.__getitem__) if full else max(race.scores, key=lambda k: mean(race.scores[k]))
        best = race.cands[key]
        notes["full_dev"] = {race.cands[k].name: round(v, 4) for k, v in full.items()}
        return Outcome(best, full.get(key, mean(race.scores[key])), stopped, notes)

    def _check_best(self, race: Race, full: dict[str, float], task: Task, evaluator: Evaluator) -> None:
        """The combination with the best mean so far, not yet on full dev, scored there."""
        open_ = [k for k in race.scores if k not in full]
        if not open_:
            return
        key = max(open_, key=lambda k: mean(race.scores[k]))
        race.score_upto(race.cands[key], task.dev, evaluator)
        full[key] = mean(race.scores[key], task.dev)

    def _study(self, optuna, context: SearchContext):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=context.seed, n_startup_trials=self.config.startup)
        storage = None
        if context.workdir is not None:
            context.workdir.mkdir(parents=True, exist_ok=True)
            path = context.workdir / "mipro_study.db"
            if not context.resuming and path.exists():
                path.unlink()
            storage = f"sqlite:///{path}"
        return optuna.create_study(
            study_name="mipro", storage=storage, sampler=sampler, direction="maximize", load_if_exists=True
        )

    def _instructions(self, task: Task, evaluator: Evaluator, context: SearchContext, notes: dict) -> list[str]:
        seed = context.seed
        cfg = self.config
        out = list(dict.fromkeys([*task.instructions, ""]))
        notes["sources"]["manual"] = len(task.instructions)
        try:
            text, source = best_stored_prompt(
                task, context.runs, evaluator.backend.model_id, "mipro", triggers=False, task_hash=context.task_hash
            )
            if text not in out:
                out.append(text)
                notes["sources"]["stored"] = source
        except PromptSearchError:
            pass  # none stored yet
        if cfg.proposals:
            prop = Proposer(cfg.proposer, evaluator, cfg.chat)
            notes["templates"].append(INDUCE.record())
            notes["proposer"] = prop.backend.identity()
            rng = random.Random(f"mipro-induce:{seed}")
            prompts = []
            for _ in range(cfg.proposals):
                demos = rng.sample(task.train, min(5, len(task.train)))
                prompts.append(
                    prop.fill(
                        INDUCE,
                        demos="\n\n".join(DEMO.format(input=d.input, output=answer_text(task, d)) for d in demos),
                    )
                )
            seen = {dedup_key(t) for t in out}
            kept = 0
            for raw in prop.write(prompts, 1, cfg.max_tokens, cfg.temperature, seed):
                text = clean_instruction(raw, induced=prop.chat is None)
                if not rejection(text, seen):
                    seen.add(dedup_key(text))
                    out.append(text)
                    kept += 1
            notes["sources"]["proposed"] = kept
        return out

    def _demo_sets(self, task: Task, seed: int) -> list[tuple[str, ...]]:
        if not task.train:
            return [()]
        demos = DemoSearcher(DemoSearcher.Config(shots=self.config.shots, sets=self.config.demo_sets))
        k = min(self.config.shots, len(task.train))
        return [()] + [c.demos for c in demos.candidates(task, k, seed, "")]
