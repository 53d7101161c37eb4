"""What the endpoint serves: each model's champion (and challenger), swapped in without a pause.

A watcher thread reads the registry aliases every few seconds. When an alias moved, it
loads the new version in the background while requests keep going to the loaded ones,
then replaces the model's ``Release`` in one assignment. A request takes the release once
and uses it to the end, so it never sees half a swap and never waits for a load.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from ml_platform.governance.attestation import AttestationError, verify
from ml_platform.serving.batching import Batcher
from ml_platform.serving.periodic import Periodic
from ml_platform.serving.validation import RecordValidator, example_record
from ml_platform.spec import ColumnType, ModelSpec, Task
from ml_platform.store.artifacts import UnsafeArtifactError, artifact_digest, load_skops
from ml_platform.store.registry import MLflowTracking, current_aliases
from ml_platform.store.tags import ATTESTATION, CHALLENGER, CHAMPION
from ml_platform.training.pipeline import score, trusted_types

log = logging.getLogger("ml_platform.serving")

# Rows per scoring call: beyond a few hundred rows a scikit-learn pipeline's cost grows with
# the rows, so larger batches only add latency for the first callers in them.
MAX_BATCH_ROWS = 256


def canary_bucket(model: str, key: object) -> float:
    """A stable number in [0, 1) for a patient: the same key always falls in the same bucket."""
    digest = hashlib.sha256(f"{model}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def records_frame(spec: ModelSpec, records: list[dict]) -> pd.DataFrame:
    """Validated records as the contract columns the model pipeline reads (it derives its own features)."""
    columns = {}
    for name in spec.pipeline_inputs:
        col = spec.contract.columns[name]
        values = [record.get(name) for record in records]
        numeric = col.type.is_numeric or col.type == ColumnType.boolean
        # float arrays turn None into NaN, as the training data's missing values are
        columns[name] = np.array(values, dtype=float) if numeric else values
    return pd.DataFrame(columns)


def outputs(spec: ModelSpec, scores: np.ndarray) -> list[dict]:
    """The answer per record: probability and label at the spec's threshold, or the predicted value."""
    if spec.task == Task.binary_classification:
        return [{"probability": float(p), "label": int(p >= spec.threshold)} for p in scores]
    return [{"value": float(v)} for v in scores]


@dataclass(frozen=True)
class LoadedVersion:
    """One registry version in memory, with its own scoring queue."""

    version: str
    loaded_at: datetime
    batcher: Batcher = field(repr=False)

    @classmethod
    def load(cls, spec: ModelSpec, mlflow: MLflowTracking, version: str, public_key, attested: str | None):
        """Load a version only if its attestation verifies over the files downloaded; ``AttestationError`` if not.

        The digest is computed from the very folder the model is then loaded from, so what
        was checked is what serves; the model loads only from skops with the spec's types.
        """
        with mlflow.download(spec.name, version) as folder:
            try:
                verify(public_key, attested, spec.name, version, artifact_digest(folder))
                model = load_skops(folder, trusted_types(spec))
            except UnsafeArtifactError as exc:
                raise AttestationError("unsafe_artifact", f"{spec.name} version {version}: {exc}") from None

        def predict(records: list[dict]) -> list[dict]:
            return outputs(spec, score(model, records_frame(spec, records)))

        # Score one record before serving, so a broken model fails here and not on a patient's request.
        predict([example_record(spec)])
        return cls(version=version, loaded_at=datetime.now(UTC), batcher=Batcher(predict, MAX_BATCH_ROWS))

    def describe(self) -> dict:
        return {"version": self.version, "loaded_at": self.loaded_at.isoformat()}


@dataclass(frozen=True)
class Refusal:
    """A version the endpoint refused, and the attestation tag it was refused with."""

    attested: str | None
    error: AttestationError


@dataclass(frozen=True)
class Release:
    """What answers a model's requests at one moment: the champion, and a challenger for canary or shadow."""

    champion: LoadedVersion | None = None
    challenger: LoadedVersion | None = None

    def versions(self) -> tuple[str | None, str | None]:
        return (
            self.champion.version if self.champion else None,
            self.challenger.version if self.challenger else None,
        )


class ServedModel:
    """A model of the platform as the endpoint serves it."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.validator = RecordValidator(spec)
        self.release = Release()
        self.wanted: tuple[str | None, str | None] = (None, None)
        self.load_error: str | None = None
        self.refused: dict[str, Refusal] = {}

    @property
    def policy(self) -> str:
        return self.spec.deployment.policy

    def routes_to_challenger(self, key: object) -> bool:
        """Canary routing: a fixed share of patients, chosen by a hash of their id, sees the challenger."""
        return canary_bucket(self.spec.name, key) < self.spec.deployment.canary_share

    @property
    def ready(self) -> bool:
        """Whether what the registry names is what is loaded."""
        return self.release.versions() == self.wanted

    def describe(self) -> dict:
        release = self.release
        deployment = self.spec.deployment
        return {
            "model": self.spec.name,
            "description": self.spec.description,
            "task": self.spec.task.value,
            "policy": deployment.policy,
            "canary_share": deployment.canary_share if deployment.policy == "canary" else None,
            "threshold": self.spec.threshold if self.spec.task == Task.binary_classification else None,
            "champion": release.champion.describe() if release.champion else None,
            "challenger": release.challenger.describe() if release.challenger else None,
            "registry": {CHAMPION: self.wanted[0], CHALLENGER: self.wanted[1]},
            "ready": self.ready,
            "load_error": self.load_error,
            "refused": {version: r.error.reason for version, r in self.refused.items() if version in self.wanted},
        }


class RegistryWatcher(Periodic):
    """Keeps every served model's release equal to the registry aliases, polling every ``poll_seconds``."""

    def __init__(
        self,
        models: dict[str, ServedModel],
        mlflow: MLflowTracking,
        poll_seconds: float,
        public_key,
        on_refused=lambda model, version, error: None,
        also=(),
    ):
        super().__init__("registry-watcher", poll_seconds)
        self.models = models
        self.mlflow = mlflow
        self.public_key = public_key  # verifies attestations; the endpoint never holds the signing key
        self.on_refused = on_refused  # counts and audits each refusal once
        self.polled_once = threading.Event()
        self._also = also  # further periodic work of the server (outcome files)

    def step(self) -> None:
        self.poll()
        for work in self._also:
            try:
                work()
            except Exception:  # noqa: BLE001 - periodic work must never stop the watcher
                log.exception("periodic server work failed; retrying at the next poll")

    def poll(self) -> None:
        """One look at the registry; loads and swaps what moved. Errors keep the current release."""
        try:
            client = self.mlflow.client()
        except Exception:  # noqa: BLE001 - the registry may be briefly unreachable
            log.exception("model registry unreachable; serving the loaded versions")
            return
        for served in self.models.values():
            try:
                self._refresh(served, client, current_aliases(client, served.spec.name))
            except AttestationError as exc:
                served.load_error = f"refused ({exc.reason}): {exc}"
                log.error("refused %s; still serving %s", exc, served.release.versions())
            except Exception as exc:  # noqa: BLE001 - one model's failure must not stop the others
                served.load_error = f"{type(exc).__name__}: {exc}"
                log.exception("could not load %s; still serving %s", served.spec.name, served.release.versions())
        self.polled_once.set()

    def _refresh(self, served: ServedModel, client, aliases: dict[str, str]) -> None:
        champion = aliases.get(CHAMPION)
        challenger = aliases.get(CHALLENGER) if served.policy != "direct" and champion else None
        served.wanted = (champion, challenger)
        if served.release.versions() == served.wanted:
            served.load_error = None
            return
        loaded = {v.version: v for v in (served.release.champion, served.release.challenger) if v}
        for version in {champion, challenger} - set(loaded) - {None}:
            loaded[version] = self._load(served, client, version)
        served.release = Release(champion=loaded.get(champion), challenger=loaded.get(challenger))
        served.load_error = None
        log.warning("%s now serves champion %s, challenger %s", served.spec.name, champion, challenger)

    def _load(self, served: ServedModel, client, version: str) -> LoadedVersion:
        """Load a version, or refuse it; a refusal is reported once per attestation tag value, not every poll."""
        attested = client.get_model_version(served.spec.name, version).tags.get(ATTESTATION)
        refused = served.refused.get(version)
        if refused is not None and refused.attested == attested:
            raise refused.error
        try:
            return LoadedVersion.load(served.spec, self.mlflow, version, self.public_key, attested)
        except AttestationError as exc:
            served.refused[version] = Refusal(attested, exc)
            self.on_refused(served.spec.name, version, exc)
            raise
