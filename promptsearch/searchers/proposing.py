"""What the searchers that have a model write prompts share (APE, OPRO, GEPA, MIPRO's
proposals, GrIPS's paraphrases): the proposer model, its chat form, its calls through the
evaluator's budget, and the cleaning of what it wrote into one instruction."""

from __future__ import annotations

import re

from promptsearch.backends.base import GenRequest
from promptsearch.errors import PromptSearchError
from promptsearch.evaluation.evaluator import Evaluator
from promptsearch.searchers.base import option
from promptsearch.searchers.templates import MetaPrompt

MAX_CHARS = 300  # the longest written instruction kept, in characters


# --- the options every searcher with a proposer takes (each with its own defaults) ------------
def proposer_option(help: str = "model that writes instructions (default: the target)"):
    return option("", help)


def chat_option():
    return option("auto", "use the proposer's chat template", choices=("auto", "on", "off"))


def temperature_option(default: float, who: str = "proposer"):
    return option(default, f"{who} sampling temperature", min=0, max=5)


def max_tokens_option(default: int, help: str = "longest instruction the proposer may write, in tokens"):
    return option(default, help, min=1)


def max_chars_option():
    return option(MAX_CHARS, "drop instructions longer than this", min=1)


def rejection(text: str, seen: set[str], max_chars: int = MAX_CHARS) -> str:
    """Why a written instruction is dropped, "" if it is kept: `empty` (under two words),
    `too_long`, or `duplicate` (of one in `seen`, by `dedup_key`)."""
    if len(text.split()) < 2:
        return "empty"
    if len(text) > max_chars:
        return "too_long"
    if dedup_key(text) in seen:
        return "duplicate"
    return ""


def resolve_proposer(spec: str, evaluator: Evaluator):
    """The model that writes prompts: `spec` ("" or "target": the target itself). Another model
    is wrapped by the target's cache, and its calls, tokens and dollars count in the run's
    cost and budget."""
    if not spec or spec == "target":
        return evaluator.backend
    from promptsearch.backends import resolve_backend
    from promptsearch.store.cache import CachedBackend

    inner = resolve_backend(spec)
    if inner.identity() == evaluator.backend.identity():
        return evaluator.backend  # the same model: don't load it twice
    target = evaluator.backend
    proposer = target.companion(inner) if isinstance(target, CachedBackend) else inner
    evaluator.attach(proposer)
    evaluator.check_prices()  # a dollar budget with an unpriced proposer stops here, before any call
    return proposer


def chat_formatter(backend, mode: str):
    """A function user-text -> prompt string using the proposer's chat template, or None
    (`mode`: auto, on, off)."""
    if mode == "off":
        return None
    caps = backend.capabilities
    if caps.chat:
        return lambda user: user  # a chat API wraps the text in a user turn itself
    tok = backend.local_model().tokenizer if caps.local_model else None
    template = getattr(tok, "chat_template", None) if tok is not None else None  # a tokenizer's own optional field
    if not template:
        if mode == "on":
            raise PromptSearchError("chat=on, but the proposer model has no chat template; use chat=off.")
        return None

    def fmt(user: str) -> str:
        return tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)

    return fmt


class Proposer:
    """A proposer model bound to an evaluator: `fill` renders a meta-prompt in the model's
    form (chat or plain completion), `write` samples completions through the evaluator
    (budgeted; answers in the cache are free). `cut` says why a list came back short."""

    def __init__(self, spec: str, evaluator: Evaluator, chat: str = "auto"):
        self.evaluator = evaluator
        self.backend = resolve_proposer(spec, evaluator)
        self.chat = chat_formatter(self.backend, chat)
        self.cut = ""

    def fill(self, meta: MetaPrompt, **slots: str) -> str:
        return self.chat(meta.chat.format(**slots)) if self.chat is not None else meta.text.format(**slots)

    def write(
        self,
        prompts: list[str],
        n: int,
        max_tokens: int,
        temperature: float,
        seed: int,
        stop: tuple[str, ...] = ("\n",),
    ) -> list[str]:
        """`n` samples of each prompt, in order. A call budget can return fewer."""
        reqs = [
            GenRequest(p, max_tokens, temperature, 1.0, stop, sample_index=j, seed=seed)
            for p in prompts
            for j in range(n)
        ]
        got = [r.text for r in self.evaluator.ask(self.backend, reqs)]
        if len(got) < len(reqs):
            self.cut = f"call budget of {self.evaluator.budget.max_calls} model calls reached while proposing"
        return got


_PREFIX = re.compile(
    r"^(?:the\s+)?(?:new\s+|reworded\s+|rewritten\s+)?instruction(?:\s+was)?\s*(?:is|was)?\s*[:\-]?\s*", re.IGNORECASE
)


def clean_instruction(text: str, induced: bool = False) -> str:
    """First sentence of a proposal, without quotes or an "Instruction:" prefix; a forward
    completion ("...the instruction was to") becomes an imperative ("Sort the words.")."""
    t = text.strip().split("\n")[0].strip()
    t = _PREFIX.sub("", t).strip().strip("\"'“”`* ").strip()
    m = re.match(r"(.+?[.!?])(\s|$)", t)
    if m:
        t = m.group(1)
    if induced:
        t = re.sub(r"^to\s+", "", t, flags=re.IGNORECASE)
    t = t.strip().strip("\"'“”`* ").strip()
    t = re.sub(r"[\"'“”`]+([.!?])$", r"\1", t)  # a quote before the final stop
    if not t:
        return ""
    t = t[0].upper() + t[1:]
    return t if t[-1] in ".!?" else t + "."


def dedup_key(text: str) -> str:
    """Instructions that differ only in case, punctuation or spacing are one."""
    return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())
