"""Model backends. `resolve_backend("embedded" | "hf:<id or path>" | "<kind>:<spec>")`."""

from __future__ import annotations

from promptsearch.backends.base import (
    Backend,
    Capabilities,
    GenRequest,
    GenResult,
    LoglikRequest,
    LoglikResult,
    SoftPrompt,
    TokenIds,
)


def resolve_backend(spec: str, settings=None):
    from promptsearch import registry
    from promptsearch.settings import get_settings

    settings = settings or get_settings()
    kind, _, rest = spec.partition(":")
    return registry.backends.get(kind)(rest, settings)


__all__ = [
    "Backend",
    "Capabilities",
    "GenRequest",
    "GenResult",
    "LoglikRequest",
    "LoglikResult",
    "SoftPrompt",
    "TokenIds",
    "resolve_backend",
]
