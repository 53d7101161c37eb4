"""Token scopes and the loopback rule, as the endpoint reads its configuration."""

from __future__ import annotations

import pytest

from ml_platform.serving.app import create_app
from ml_platform.serving.config import ApiToken, ConfigError, ServingConfig, read_tokens, token_fingerprint


def test_token_forms_and_the_predict_only_default(monkeypatch):
    monkeypatch.setenv("ML_PLATFORM_API_TOKENS", "bare-1, ward-7:s3cret, ops:admin+predict:t:with:colons, :outcomes:x")
    bare, named, scoped, nameless = read_tokens()
    assert bare == ApiToken(token_fingerprint("bare-1"), "bare-1", frozenset({"predict"}))
    assert named == ApiToken("ward-7", "s3cret", frozenset({"predict"}))
    assert scoped == ApiToken("ops", "t:with:colons", frozenset({"admin", "predict"}))
    assert nameless.name == token_fingerprint("x") and nameless.scopes == {"outcomes"}


def test_an_unknown_scope_is_a_configuration_error_naming_the_client_never_the_token(monkeypatch):
    monkeypatch.setenv("ML_PLATFORM_API_TOKENS", "lab:predict+outcome:very-secret-value")
    with pytest.raises(ConfigError, match="token 'lab' .* unknown scope\\(s\\) outcome") as raised:
        read_tokens()
    assert "very-secret-value" not in str(raised.value)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", None])
def test_an_app_without_tokens_is_not_built_unless_bound_to_loopback(tmp_path, host):
    with pytest.raises(ConfigError, match="refusing to serve on .* without authentication"):
        create_app(ServingConfig(home=tmp_path, tokens=(), host=host))
