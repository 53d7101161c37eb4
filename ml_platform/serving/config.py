"""The endpoint's configuration, from the environment, so every server worker reads the same.

``ml-platform serve`` turns its options into these variables before it starts uvicorn,
which builds one app per worker process from them.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from ml_platform.settings import platform_home

TOKENS_ENV = "ML_PLATFORM_API_TOKENS"  # comma-separated bearer tokens
TOKEN_FILE_ENV = "ML_PLATFORM_API_TOKEN_FILE"  # one token per line; '#' starts a comment
POLL_ENV = "ML_PLATFORM_SERVE_POLL_SECONDS"
MAX_BODY_ENV = "ML_PLATFORM_SERVE_MAX_BODY_BYTES"
MAX_RECORDS_ENV = "ML_PLATFORM_SERVE_MAX_RECORDS"


class ConfigError(ValueError):
    """A serving setting that cannot work, with the variable or option to fix."""


@dataclass(frozen=True)
class ServingConfig:
    home: Path
    tokens: tuple[str, ...] = ()
    # How often the registry is read: an alias move is served within this many seconds (plus the load).
    poll_seconds: float = 2.0
    # 1 MiB holds about 1,500 readmission records; bigger bodies are refused before they are read.
    max_body_bytes: int = 1_048_576
    max_records: int = 1_000

    @classmethod
    def from_env(cls) -> ServingConfig:
        return cls(
            home=platform_home(),
            tokens=read_tokens(),
            poll_seconds=_number(POLL_ENV, 2.0, float),
            max_body_bytes=_number(MAX_BODY_ENV, 1_048_576, int),
            max_records=_number(MAX_RECORDS_ENV, 1_000, int),
        )


def _number(name: str, default, kind):
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a {kind.__name__}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw}")
    return value


def read_tokens() -> tuple[str, ...]:
    tokens = [t.strip() for t in os.environ.get(TOKENS_ENV, "").split(",")]
    file = os.environ.get(TOKEN_FILE_ENV)
    if file:
        try:
            lines = Path(file).read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"token file {file} ({TOKEN_FILE_ENV}) cannot be read: {exc.strerror}") from None
        tokens += [line.split("#", 1)[0].strip() for line in lines]
    return tuple(t for t in tokens if t)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, tokens: tuple[str, ...]) -> str:
    """Refuse to expose an unauthenticated endpoint; return the start-up notice about authentication."""
    if tokens:
        return f"bearer token authentication on: {len(tokens)} token(s) configured"
    if not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} without authentication: anyone who can reach it could query "
            f"patient risk. Configure bearer tokens ({TOKENS_ENV}=... or --token-file FILE), or bind to 127.0.0.1"
        )
    return (
        f"no API token configured: serving on loopback ({host}) only; set {TOKENS_ENV} or --token-file to serve others"
    )
