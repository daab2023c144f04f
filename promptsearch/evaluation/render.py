"""Candidate + example -> model input. The one place prompt text is assembled."""

from __future__ import annotations

from dataclasses import replace

from promptsearch.backends.base import Prompt, Segment, TokenIds
from promptsearch.candidates import Candidate
from promptsearch.tasks.base import Example, Task, label_words


def answer_text(task: Task, ex: Example) -> str:
    return label_words(task.labels[ex.label])[0] if task.labels else ex.answers[0]


def task_for(task: Task, cand: Candidate) -> Task:
    """The task as this candidate runs it: with the candidate's own template and label words, if any."""
    if cand.template is not None:
        task = replace(task, template=cand.template)
    if cand.labels is None or not task.labels:
        return task
    return replace(task, labels={**task.labels, **{lab: list(ws) for lab, ws in cand.labels}})


def fill(template: str, ex: Example, trigger: tuple[int, ...] | None = None) -> list[Segment]:
    """Fill `{input}` (and `{trigger}`) by plain replacement: user text may contain braces."""
    head, _, tail = template.partition("{trigger}") if "{trigger}" in template else (template, "", "")
    out: list[Segment] = [head.replace("{input}", ex.input)]
    if "{trigger}" in template:
        if trigger:
            out.append(TokenIds(tuple(trigger)))
        out.append(tail.replace("{input}", ex.input))
    return out


def options_line(task: Task) -> str:
    """The labels a generated answer must name, as a chat user would list them."""
    return "Answer with one of: " + ", ".join(label_words(w)[0] for w in task.labels.values()) + "."


def render(task: Task, cand: Candidate, ex: Example, demos: list[Example], options: bool = False) -> Prompt:
    segs: list[Segment] = []
    if cand.instruction:
        segs.append(cand.instruction.strip() + ("\n" if options else "\n\n"))
    if options:
        segs.append(options_line(task) + "\n\n")
    if cand.trigger and "{trigger}" not in task.template:
        segs.append(TokenIds(tuple(cand.trigger)))  # no slot: the trigger leads the prompt
    for d in demos:
        segs.extend(fill(task.template, d, cand.trigger))
        segs.append(_sep(task.template) + answer_text(task, d) + "\n\n")
    segs.extend(fill(task.template, ex, cand.trigger))
    return _merge(segs)


def continuation(context: Prompt, word: str) -> str:
    last = context if isinstance(context, str) else next((s for s in reversed(context) if isinstance(s, str) and s), "")
    return word if last[-1:].isspace() else " " + word


def _sep(template: str) -> str:
    return "" if template[-1:].isspace() else " "


def _merge(segs: list[Segment]) -> Prompt:
    """Join adjacent strings; a prompt with no token ids is a plain string."""
    out: list[Segment] = []
    for s in segs:
        if isinstance(s, str) and out and isinstance(out[-1], str):
            out[-1] += s
        elif s != "":
            out.append(s)
    if all(isinstance(s, str) for s in out):
        return "".join(out)  # type: ignore[arg-type]
    return tuple(out)
