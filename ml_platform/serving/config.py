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

TOKENS_ENV = variable_name("api_tokens")  # comma-separated bearer tokens: `token`, `name:token` or `name:scopes:token`
TOKEN_FILE_ENV = variable_name("api_token_file")  # one token per line; '#' starts a comment
HOST_ENV = variable_name("serve_host")  # the address `ml-platform serve` binds, for the app built in each worker

# What a token may do: score records, post outcomes (they flow into the next training set),
# read the metrics and the API docs. A token without scopes may only predict: the least a
# client needs, so an old configuration never grants more than it did to a scoring client.
PREDICT, OUTCOMES, ADMIN = "predict", "outcomes", "admin"
SCOPES = (PREDICT, OUTCOMES, ADMIN)
DEFAULT_SCOPES = frozenset({PREDICT})

# A serving setting that cannot work, named with the variable or option to fix.
ConfigError = SettingsError


class ApiToken(NamedTuple):
    """A bearer token, the client it names in logs (the configured name, else a short hash) and its scopes."""

    name: str
    secret: str
    scopes: frozenset[str] = DEFAULT_SCOPES

    @classmethod
    def parse(cls, entry: str) -> ApiToken:
        """``token``, ``name:token`` or ``name:scope+scope:token`` (the name may be empty).

        A nameless token is named by a hash, so logs never hold the token. Without scopes a
        token may only predict. An unknown scope is a configuration error rather than a token
        containing a colon: a misspelt scope must not silently become part of the secret.
        """
        parts = entry.split(":", 2)
        name, scopes, secret = ("", "", entry) if len(parts) == 1 else (parts[0], "", parts[1])
        if len(parts) == 3:
            name, scopes, secret = parts
        name, secret = name.strip(), secret.strip()
        label = name or token_fingerprint(secret)
        return cls(label, secret, parse_scopes(scopes, label) if scopes.strip() else DEFAULT_SCOPES)

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def parse_scopes(text: str, client: str) -> frozenset[str]:
    """The scopes of ``predict+outcomes``; an unknown one names the client (never the token) and the known ones."""
    scopes = frozenset(s.strip() for s in text.split("+") if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown:
        raise ConfigError(
            f"token '{client}' ({TOKENS_ENV} or the token file) names unknown scope(s) {', '.join(unknown)}; "
            f"write name:scope+scope:token with scopes from {', '.join(SCOPES)}"
        )
    return scopes


def token_fingerprint(secret: str) -> str:
    """A stable short name for a token (8 hex of its SHA-256): tells clients apart, cannot be used as the token."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class ServingConfig:
    home: Path
    tokens: tuple[ApiToken, ...] = ()
    # The address the server binds; None (unknown, e.g. uvicorn started by hand) counts as exposed.
    host: str | None = None
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
            host=settings.serve_host,
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
    parsed = (ApiToken.parse(t) for t in tokens if t)
    return tuple(token for token in parsed if token.secret)


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str | None, tokens: tuple[ApiToken, ...]) -> str:
    """Refuse to expose an unauthenticated endpoint; return the start-up notice about authentication.

    Called by the CLI before it starts and again by every app as it is built, so an app
    started some other way (uvicorn by hand, a test) cannot skip it.
    """
    if tokens:
        return f"bearer token authentication on: {len(tokens)} token(s) configured"
    if not is_loopback(host):
        where = host or f"an address nobody declared ({HOST_ENV} is not set)"
        raise ConfigError(
            f"refusing to serve on {where} without authentication: anyone who can reach it could query "
            f"patient risk. Configure bearer tokens ({TOKENS_ENV}=... or --token-file FILE), or bind to 127.0.0.1"
        )
    return (
        f"no API token configured: serving on loopback ({host}) only; set {TOKENS_ENV} or --token-file to serve others"
    )
