"""A scripted fake backend for logic tests: its answers depend on the prompt in ways the
tests choose, and it records every request it was asked."""

from __future__ import annotations

import inspect

from promptsearch.backends.base import Backend, Capabilities, GenResult, LoglikResult, TokenIds, prompt_segments
from promptsearch.tasks.builtin import sentiment

WHOLE_DEV = dict(select_by="accuracy", gate=None, race_level=None)  # Selection.whole_dev(): the pick before the gate
GOLD = {ex.input: ex.label for split in ("train", "dev", "test") for ex in sentiment().split(split)}


def query_of(text: str) -> str:
    return text.rsplit("Review: ", 1)[-1].rsplit("\nSentiment:", 1)[0]


def flat(prompt) -> str:
    return "".join(s if isinstance(s, str) else f"<ids:{','.join(map(str, s.ids))}>" for s in prompt_segments(prompt))


class FakeBackend(Backend):
    """Sentiment rule: prompts whose instruction mentions "opinion" are always right; the
    empty prompt always says "negative"; demos make it say the last demo's label.
    Generation: answers with `gen_rule(prompt)` (default: echo the last input line)."""

    kind = "fake"
    model_id = "fake:scripted"

    def __init__(
        self,
        gen_rule=None,
        fail_after: int | None = None,
        exc: BaseException | None = None,
        can_loglikelihood: bool = True,
    ):
        self.capabilities = Capabilities(loglikelihood=can_loglikelihood, generate=True)
        self.requests: list = []
        self.batches = 0
        self.gen_rule = gen_rule
        self.fail_after = fail_after  # raise `exc` once this many requests have been answered
        self.exc = exc or KeyboardInterrupt()
        self.soft_prompts: list = []

    def identity(self):
        return {"kind": self.kind, "model": self.model_id, "revision": "1"}

    def _tick(self, n: int) -> None:
        if self.fail_after is not None and len(self.requests) + n > self.fail_after:
            raise self.exc
        self.batches += 1

    def loglikelihood(self, requests, soft_prompt=None):
        self._tick(len(requests))
        self.requests += list(requests)
        self.soft_prompts.append(soft_prompt)
        out = []
        for r in requests:
            text = flat(r.context)
            query = text.rsplit("Review: ", 1)[-1].rsplit("\nSentiment:", 1)[0]
            word = r.continuation.strip()
            if "opinion" in text:
                say = GOLD.get(query, "negative")
            elif "Sentiment: " in text:  # demos: copy the last demo's label
                say = text.rsplit("Sentiment: ", 1)[1].split("\n")[0]
            else:
                say = "negative"
            lp = -0.1 if word == say else -2.5
            out.append(LoglikResult(lp, word == say, len(text.split()) + 1))
        return out

    def generate(self, requests, soft_prompt=None, on_result=None):
        self._tick(len(requests))
        self.requests += list(requests)
        out = []
        for r in requests:
            text = flat(r.prompt)
            if self.gen_rule is None:
                ans = text.rsplit("Input: ", 1)[-1].split("\n")[0]
            elif len(inspect.signature(self.gen_rule).parameters) == 2:
                ans = self.gen_rule(text, r)  # sees the request: sample index, temperature
            else:
                ans = self.gen_rule(text)
            out.append(GenResult(ans, len(text.split()) + 2))
        return out


__all__ = ["FakeBackend", "TokenIds", "flat", "GOLD"]
