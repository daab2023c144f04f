"""What model work cost: calls, cache hits, tokens, seconds, dollars."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class Usage:
    calls: int = 0  # requests answered by the model
    cache_hits: int = 0  # requests answered from the cache
    tokens: int = 0  # tokens the model processed for those calls
    seconds: float = 0.0  # time spent in the model
    dollars: float = 0.0  # priced calls only (local models cost 0)
    unpriced_calls: int = 0  # calls to a model with no known price (see promptsearch.pricing)

    def __sub__(self, other: "Usage") -> "Usage":
        return Usage(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def copy(self) -> "Usage":
        return Usage(**asdict(self))

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 3), "dollars": round(self.dollars, 6)}
