"""Settings from the environment and an optional `.env` file in the working directory.

Every setting is documented in `.env.example`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


@dataclass(frozen=True)
class Settings:
    home: Path
    db_path: Path
    model_dir: Path
    default_model: str
    device: str
    batch_tokens: int | None  # None: the backend picks by device


def _int(env: dict[str, str], name: str) -> int | None:
    raw = env.get(name)
    if not raw:
        return None
    if not raw.strip().isdigit() or int(raw) <= 0:
        from promptsearch.errors import PromptSearchError

        raise PromptSearchError(f"{name}={raw!r} must be a positive whole number (environment or .env).")
    return int(raw)


def get_settings() -> Settings:
    """Environment variables win over `.env`; `.env` wins over defaults."""
    env = {**_read_dotenv(Path.cwd() / ".env"), **os.environ}
    home = Path(env.get("PROMPTSEARCH_HOME") or Path.home() / ".promptsearch").expanduser()
    return Settings(
        home=home,
        db_path=Path(env.get("PROMPTSEARCH_DB") or home / "promptsearch.db").expanduser(),
        model_dir=Path(env.get("PROMPTSEARCH_MODEL_DIR") or home / "models").expanduser(),
        default_model=env.get("PROMPTSEARCH_MODEL") or "embedded",
        device=env.get("PROMPTSEARCH_DEVICE") or "auto",
        batch_tokens=_int(env, "PROMPTSEARCH_BATCH_TOKENS"),
    )
