"""What a searcher proposes: instruction text, demos, a token-id trigger, or a soft prompt."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from promptsearch.backends.base import SoftPrompt


@dataclass(frozen=True)
class Candidate:
    instruction: str = ""
    demos: tuple[str, ...] = ()  # ids of train examples shown before the query, in order
    trigger: tuple[int, ...] | None = None  # token ids placed at the template's {trigger} slot
    soft_prompt: SoftPrompt | None = None  # vectors prepended to the input embeddings
    # label -> word(s) this candidate has the model say instead of the task's verbalizer
    labels: tuple[tuple[str, tuple[str, ...]], ...] | None = None
    template: str | None = None  # the task's template with a {trigger} slot where this candidate puts it
    knn: int = 0  # > 0: per input, the k train examples nearest to it (target-model embeddings) as demos
    trigger_text: str = ""  # the trigger decoded, for display (not part of the content key)
    name: str = ""  # display name, e.g. "manual-1", "4-shot", "ape-r2-07"
    origin: str = ""  # the searcher and step that made it

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "instruction": self.instruction,
            "demos": list(self.demos),
            "trigger": list(self.trigger) if self.trigger is not None else None,
            "soft_prompt": self.soft_prompt.fingerprint() if self.soft_prompt is not None else None,
            "name": self.name,
            "origin": self.origin,
        }
        # only when set, so candidates without them keep the keys they always had
        if self.labels is not None:
            d["labels"] = {lab: list(ws) for lab, ws in self.labels}
        if self.template is not None:
            d["template"] = self.template
        if self.trigger_text:
            d["trigger_text"] = self.trigger_text
        if self.knn:
            d["knn"] = self.knn
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Candidate":
        """The candidate `to_dict` wrote, without its soft prompt (the record keeps only its
        fingerprint)."""
        return cls(
            instruction=d.get("instruction", ""),
            demos=tuple(d.get("demos", ())),
            trigger=tuple(d["trigger"]) if d.get("trigger") is not None else None,
            labels=tuple((lab, tuple(ws)) for lab, ws in d["labels"].items()) if d.get("labels") else None,
            template=d.get("template"),
            trigger_text=d.get("trigger_text", ""),
            knn=d.get("knn", 0),
            name=d.get("name", ""),
            origin=d.get("origin", ""),
        )

    def key(self) -> str:
        """Content identity (name and origin excluded): equal keys score equally."""
        d = self.to_dict()
        d.pop("name"), d.pop("origin"), d.pop("trigger_text", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> str:
        parts = []
        if self.instruction:
            parts.append(self.instruction)
        if self.demos:
            parts.append(f"[{len(self.demos)} demos]")
        if self.knn:
            parts.append(f"[{self.knn} nearest train demos per input]")
        if self.trigger is not None:
            ids = " ".join(map(str, self.trigger))
            parts.append(
                f"[trigger {self.trigger_text!r} = ids {ids}]"
                if self.trigger_text
                else f"[trigger {len(self.trigger)} tokens: ids {ids}]"
            )
        if self.soft_prompt is not None:
            parts.append(f"[soft prompt {self.soft_prompt.name}]")
        if self.labels is not None:
            parts.append("[labels " + ", ".join(f"{lab}={'/'.join(ws)}" for lab, ws in self.labels) + "]")
        return " ".join(parts) or "(empty prompt)"
