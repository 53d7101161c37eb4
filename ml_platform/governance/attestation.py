"""Attestations: the governance service's signed statement that a model version may serve patients.

Registry aliases and tags can be written by anyone with registry access, so the endpoint
cannot take "champion" or "gates: passed" on trust. When a version has passed its gates (and
a person's approval, where the spec requires it) the governance service signs a statement of
model, version, artifact digest, spec hash, gate verdicts and approval with an Ed25519 key
that lives outside the registry and the platform database (a mounted secret). Endpoints hold
only the public key: they can check a statement but not make one. The digest ties the
statement to the artifact's bytes, so a valid signature copied to another version, or a
version whose files were replaced, does not verify.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ml_platform.errors import PlatformError
from ml_platform.settings import get_settings, variable_name

STATEMENT_TYPE = "ml_platform.attestation/v1"
PRIVATE_KEY_FILE, PUBLIC_KEY_FILE = "attestation_key.pem", "attestation_key.pub.pem"


class AttestationError(PlatformError):
    """A version the endpoint must not serve; ``reason`` is a short code for metrics and audit."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# ----------------------------------------------------------------------------- the statement


def statement(model: str, version: str, artifact_sha256: str, spec_hash: str, gates: list[str], approval: dict) -> dict:
    """What the governance service vouches for, as plain JSON values."""
    return {
        "type": STATEMENT_TYPE,
        "model": model,
        "version": str(version),
        "artifact_sha256": artifact_sha256,
        "spec_hash": spec_hash,
        "gates_passed": sorted(gates),
        "approval": approval,
        "issued_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def canonical(payload: dict) -> bytes:
    """One byte string per statement (sorted keys, no spaces), so signer and verifier sign the same bytes."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(key: Ed25519PrivateKey, payload: dict) -> str:
    """The tag value: the statement and its base64 signature, as JSON."""
    signature = base64.b64encode(key.sign(canonical(payload))).decode()
    return json.dumps({"payload": payload, "signature": signature}, sort_keys=True)


def verify(key: Ed25519PublicKey, tag_value: str | None, model: str, version: str, artifact_sha256: str) -> dict:
    """The verified statement for exactly this model, version and artifact; ``AttestationError`` otherwise."""
    if not tag_value:
        raise AttestationError("unattested", f"{model} version {version} has no attestation")
    payload, signature = _parse(tag_value, model, version)
    try:
        key.verify(signature, canonical(payload))
    except InvalidSignature:
        raise AttestationError(
            "bad_signature", f"{model} version {version}: the attestation's signature does not verify"
        ) from None
    if (payload.get("model"), payload.get("version")) != (model, str(version)):
        raise AttestationError(
            "wrong_version",
            f"{model} version {version}: the attestation is for {payload.get('model')} version "
            f"{payload.get('version')}",
        )
    if payload.get("artifact_sha256") != artifact_sha256:
        raise AttestationError(
            "digest_mismatch", f"{model} version {version}: the artifact's files differ from the attested ones"
        )
    if payload.get("type") != STATEMENT_TYPE or not payload.get("gates_passed"):
        raise AttestationError("no_gates", f"{model} version {version}: the attestation names no passed gates")
    return payload


def _parse(tag_value: str, model: str, version: str) -> tuple[dict, bytes]:
    try:
        document = json.loads(tag_value)
        payload, signature = document["payload"], base64.b64decode(document["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise AttestationError("malformed", f"{model} version {version}: the attestation is not readable") from None
    if not isinstance(payload, dict):
        raise AttestationError("malformed", f"{model} version {version}: the attestation is not readable")
    return payload, signature


# ----------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class KeyPaths:
    private: Path | None
    public: Path | None


def key_paths(home: Path) -> KeyPaths:
    """The configured key files, else the embedded default pair under the home's secrets/ (created once)."""
    settings = get_settings()
    if settings.attestation_key or settings.attestation_public_key:
        return KeyPaths(settings.attestation_key, settings.attestation_public_key)
    return default_key_pair(home)


def signing_key(home: Path) -> Ed25519PrivateKey:
    path = key_paths(home).private
    if path is None:
        raise AttestationError(
            "no_key", f"no attestation signing key: set {variable_name('attestation_key')} to a PEM private key"
        )
    key = serialization.load_pem_private_key(_read_key(path, "attestation_key"), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise AttestationError("no_key", f"{path} ({variable_name('attestation_key')}) is not an Ed25519 key")
    return key


def verification_key(home: Path) -> Ed25519PublicKey:
    """The public key endpoints check with: configured, else derived from the configured private key."""
    paths = key_paths(home)
    if paths.public is None:
        return signing_key(home).public_key()
    key = serialization.load_pem_public_key(_read_key(paths.public, "attestation_public_key"))
    if not isinstance(key, Ed25519PublicKey):
        raise AttestationError(
            "no_key", f"{paths.public} ({variable_name('attestation_public_key')}) is not an Ed25519 key"
        )
    return key


def _read_key(path: Path, field: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise AttestationError("no_key", f"{path} ({variable_name(field)}) cannot be read: {exc.strerror}") from None


def default_key_pair(home: Path) -> KeyPaths:
    """The embedded default: a key pair under ``<home>/secrets``, created once, owner-only.

    Each file is written to a private temporary file and linked into place, so two processes
    starting together end with one key pair and nobody ever reads a half-written key.
    """
    folder = home / "secrets"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private, public = folder / PRIVATE_KEY_FILE, folder / PUBLIC_KEY_FILE
    if not private.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _create_once(private, pem)
    if not public.exists():
        key = serialization.load_pem_private_key(private.read_bytes(), password=None)
        pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        _create_once(public, pem)
    return KeyPaths(private, public)


def _create_once(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` unless it exists, atomically and with mode 600."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp: mode 600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # fails if another process created it first: theirs wins
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)
