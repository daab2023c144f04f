"""Settings from the environment and an optional `.env` file in the working directory.

Every setting is documented in `.env.example`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
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
    db_path: Path | str  # an SQLite file, or a PostgreSQL URL
    model_dir: Path
    default_model: str
    device: str
    batch_tokens: int | None  # None: the backend picks by device
    gen_slots: int | None = None  # rows decoded at once; None: the backend picks by device
    # OpenAI-compatible servers. The key is never stored, logged or shown (repr=False).
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    concurrency: int = 8  # requests in flight to a server
    max_tries: int = 6  # tries per request on 429, 5xx, timeouts and dropped connections
    retry_max_wait: float = 30.0  # longest wait between tries, seconds
    request_timeout: float = 120.0  # seconds per request
    prices_path: Path | None = None  # extra prices, JSON: {"model": {"input": $/1M tokens, "output": $/1M}}


def _int(env: dict[str, str], name: str) -> int | None:
    raw = env.get(name)
    if not raw:
        return None
    if not raw.strip().isdigit() or int(raw) <= 0:
        from promptsearch.errors import PromptSearchError

        raise PromptSearchError(f"{name}={raw!r} must be a positive whole number (environment or .env).")
    return int(raw)


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        from promptsearch.errors import PromptSearchError

        raise PromptSearchError(f"{name}={raw!r} must be a positive number (environment or .env).")
    return value


def _device(raw: str) -> str:
    import re

    if not re.fullmatch(r"auto|cpu|mps|(cuda|xpu)(:\d+)?", raw.strip()):
        from promptsearch.errors import PromptSearchError

        raise PromptSearchError(
            f"PROMPTSEARCH_DEVICE={raw!r} is not a device; use auto, cpu, cuda, cuda:N or mps (environment or .env)."
        )
    return raw.strip()


_overrides: dict[str, object] = {}


def configure(**overrides) -> None:
    """Override settings for this process (the CLI's --base-url and --concurrency use this).
    `configure()` with no arguments clears the overrides."""
    unknown = set(overrides) - set(Settings.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
    if not overrides:
        _overrides.clear()
    _overrides.update({k: v for k, v in overrides.items() if v is not None})


def get_settings() -> Settings:
    """Overrides from `configure()` win over environment variables; the environment wins
    over `.env`; `.env` wins over defaults."""
    env = {**_read_dotenv(Path.cwd() / ".env"), **os.environ}
    home = Path(env.get("PROMPTSEARCH_HOME") or Path.home() / ".promptsearch").expanduser()
    prices = env.get("PROMPTSEARCH_PRICES")
    settings = Settings(
        home=home,
        db_path=_db(env.get("PROMPTSEARCH_DB"), home),
        model_dir=Path(env.get("PROMPTSEARCH_MODEL_DIR") or home / "models").expanduser(),
        default_model=env.get("PROMPTSEARCH_MODEL") or "embedded",
        device=_device(env.get("PROMPTSEARCH_DEVICE") or "auto"),
        batch_tokens=_int(env, "PROMPTSEARCH_BATCH_TOKENS"),
        gen_slots=_int(env, "PROMPTSEARCH_GEN_SLOTS"),
        openai_api_key=env.get("OPENAI_API_KEY") or None,
        openai_base_url=env.get("OPENAI_BASE_URL") or None,
        concurrency=_int(env, "PROMPTSEARCH_CONCURRENCY") or 8,
        max_tries=_int(env, "PROMPTSEARCH_MAX_TRIES") or 6,
        retry_max_wait=_float(env, "PROMPTSEARCH_RETRY_MAX_WAIT", 30.0),
        request_timeout=_float(env, "PROMPTSEARCH_TIMEOUT", 120.0),
        prices_path=Path(prices).expanduser() if prices else None,
    )
    if _overrides:
        from dataclasses import replace

        settings = replace(settings, **_overrides)
    return settings


def _db(value: str | None, home: Path) -> Path | str:
    """PROMPTSEARCH_DB: a file path, or a database URL kept as written (a Path would fold its //)."""
    if value and "://" in value:
        return value
    return Path(value or home / "promptsearch.db").expanduser()
