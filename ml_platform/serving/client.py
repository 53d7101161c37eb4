"""The serving endpoint as the deployment asset sees it: which version does it really serve?

Moving a registry alias is a promise; the endpoint picks it up by hot swap a few seconds
later. The deployment's ``serving_endpoint`` check asks the endpoint, so the UI shows that
the version promoted is the version patients get, or says plainly that nobody checked.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from pydantic import BaseModel, ConfigDict


class ServingEndpoint(BaseModel):
    """Where `ml-platform serve` answers (``ML_PLATFORM_ENDPOINT_URL``), with its bearer token if it needs one."""

    model_config = ConfigDict(frozen=True)

    url: str | None = None
    token: str | None = None
    # An alias move is served within the endpoint's poll interval plus the load of the new
    # version (seconds); a minute covers a slow load without hanging the run on a dead endpoint.
    wait_seconds: float = 60.0

    def served_version(self, model: str, alias: str) -> str | None:
        """The version the endpoint answers with under ``alias``; raises OSError when it cannot be asked."""
        request = urllib.request.Request(f"{self.url.rstrip('/')}/v1/models/{model}")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            described = json.load(response)
        return (described.get(alias) or {}).get("version")

    def verify(self, model: str, alias: str, version: str) -> tuple[bool, str]:
        """Whether the endpoint serves ``version`` as ``alias`` within the wait, and what it said."""
        if not self.url:
            return False, (
                f"no serving endpoint configured (ML_PLATFORM_ENDPOINT_URL), so nobody verified that "
                f"{model} version {version} is what patients get"
            )
        deadline, seen, problem = time.monotonic() + self.wait_seconds, None, None
        while True:
            try:
                seen, problem = self.served_version(model, alias), None
            except (OSError, ValueError) as exc:  # URLError/HTTPError are OSErrors; bad JSON a ValueError
                problem = _reason(exc)
            if seen == version:
                return True, f"{self.url} serves {model} version {version} as {alias}"
            if time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        found = f"could not be asked: {problem}" if problem else f"serves version {seen} as {alias}"
        return False, (
            f"{self.url} {found}, not the promoted version {version}, after {self.wait_seconds:g} s; "
            "check that `ml-platform serve` runs against this platform's registry"
        )


def _reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc)
