"""What model work cost: calls, cache hits, tokens, seconds."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Usage:
    calls: int = 0  # requests answered by the model
    cache_hits: int = 0  # requests answered from the cache
    tokens: int = 0  # tokens the model processed for those calls
    seconds: float = 0.0  # time spent in the model

    def __sub__(self, other: "Usage") -> "Usage":
        return Usage(self.calls - other.calls, self.cache_hits - other.cache_hits,
                     self.tokens - other.tokens, self.seconds - other.seconds)

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.calls + other.calls, self.cache_hits + other.cache_hits,
                     self.tokens + other.tokens, self.seconds + other.seconds)

    def copy(self) -> "Usage":
        return Usage(**asdict(self))

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 3)}
