"""The endpoint's configuration, from the environment, so every server worker reads the same.

``ml-platform serve`` turns its options into these variables before it starts uvicorn,
which builds one app per worker process from them.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ml_platform.settings import Settings, SettingsError, get_settings, variable_name

TOKENS_ENV = variable_name("api_tokens")  # comma-separated bearer tokens, each `token` or `name:token`
TOKEN_FILE_ENV = variable_name("api_token_file")  # one token per line; '#' starts a comment

# A serving setting that cannot work, named with the variable or option to fix.
ConfigError = SettingsError


class ApiToken(NamedTuple):
    """A bearer token and the client it names in logs: the configured name, else a short hash of the token."""

    name: str
    secret: str

    @classmethod
    def parse(cls, entry: str) -> ApiToken:
        """``name:token`` or just ``token``; a nameless token is named by a hash, so logs never hold the token."""
        name, colon, secret = entry.partition(":")
        if not colon:
            name, secret = "", entry
        name, secret = name.strip(), secret.strip()
        return cls(name or token_fingerprint(secret), secret)


def token_fingerprint(secret: str) -> str:
    """A stable short name for a token (8 hex of its SHA-256): tells clients apart, cannot be used as the token."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class ServingConfig:
    home: Path
    tokens: tuple[ApiToken, ...] = ()
    # How often the registry is read: an alias move is served within this many seconds (plus the load).
    poll_seconds: float = 2.0
    # 1 MiB holds about 1,500 readmission records; bigger bodies are refused before they are read.
    max_body_bytes: int = 1_048_576
    max_records: int = 1_000

    @classmethod
    def from_env(cls) -> ServingConfig:
        settings = get_settings()
        return cls(
            home=settings.resolved_home,
            tokens=read_tokens(settings),
            poll_seconds=settings.serve_poll_seconds,
            max_body_bytes=settings.serve_max_body_bytes,
            max_records=settings.serve_max_records,
        )


def read_tokens(settings: Settings | None = None) -> tuple[ApiToken, ...]:
    """The bearer tokens of the setting and of the token file, each with the client name it logs as."""
    settings = settings or get_settings()
    tokens = [t.strip() for t in settings.api_tokens.get_secret_value().split(",")]
    file = settings.api_token_file
    if file:
        try:
            lines = Path(file).read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"token file {file} ({TOKEN_FILE_ENV}) cannot be read: {exc.strerror}") from None
        tokens += [line.split("#", 1)[0].strip() for line in lines]
    return tuple(ApiToken.parse(t) for t in tokens if t and ApiToken.parse(t).secret)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, tokens: tuple[ApiToken, ...]) -> str:
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
