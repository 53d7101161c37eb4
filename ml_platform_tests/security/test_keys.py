"""The attestation keys: created once, owner-only; an endpoint needs only the public key."""

from __future__ import annotations

import stat

import pytest
from cryptography.hazmat.primitives import serialization

from ml_platform.governance import attestation
from ml_platform.governance.attestation import AttestationError


def test_the_default_key_pair_is_created_once_and_owner_only(home):
    first = attestation.default_key_pair(home)
    key = first.private.read_bytes()
    assert attestation.default_key_pair(home) == first and first.private.read_bytes() == key
    for path in (first.private, first.public):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.private.parent.stat().st_mode) == 0o700
    assert [p.name for p in first.private.parent.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_an_endpoint_with_only_the_public_key_verifies_but_cannot_sign(home, tmp_path, monkeypatch):
    signer = attestation.signing_key(home)
    public = tmp_path / "attestation.pub.pem"
    public.write_bytes(
        signer.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    monkeypatch.setenv("ML_PLATFORM_ATTESTATION_PUBLIC_KEY", str(public))
    payload = attestation.statement("m", "1", "digest", "spec", ["quality_gates"], {"status": "not_required"})
    signed = attestation.sign(signer, payload)
    assert attestation.verify(attestation.verification_key(home), signed, "m", "1", "digest")["version"] == "1"
    with pytest.raises(AttestationError, match="no attestation signing key"):
        attestation.signing_key(home)
    with pytest.raises(AttestationError) as refused:
        attestation.verify(attestation.verification_key(home), signed, "m", "1", "other digest")
    assert refused.value.reason == "digest_mismatch"
