"""MLflow tracking and model registry access, for every stage and the endpoint.

Why not dagster-mlflow's ``mlflow_tracking`` resource: it opens one MLflow run when the
resource is initialised and shares it across the whole Dagster run, its companion hook
``end_mlflow_on_run_finished`` can end that run before the job ends (dagster issue
21872), and it is a legacy function-style resource with untyped config. Each candidate
here is its own MLflow run, opened and closed explicitly around the fit, so a failure
marks exactly that run FAILED and nothing is left dangling.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from ml_platform.settings import mlflow_artifact_root, mlflow_tracking_uri, mlflow_ui_url
from ml_platform.store import artifacts

MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


class MLflowTracking(BaseModel):
    """Where MLflow keeps runs, models and artifacts."""

    model_config = ConfigDict(frozen=True)

    tracking_uri: str
    artifact_root: str

    @classmethod
    def for_home(cls, home: Path) -> MLflowTracking:
        """The tracking store and artifact root the settings name for a platform home."""
        return cls(tracking_uri=mlflow_tracking_uri(home), artifact_root=mlflow_artifact_root(home))

    def _activate(self):
        # Imported here, not at module level: mlflow takes about a second to import and the
        # code location should load fast for the UI and sensors.
        import mlflow

        configured = {name: os.environ.get(name) for name in MLFLOW_URI_VARIABLES}
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        # MLflow also writes these URIs into the environment. Put back what the user set, so
        # the platform's settings read the configuration and not the last resource activated
        # (one process may use several platform homes: tests, the demo).
        for name, value in configured.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        return mlflow

    def client(self):
        mlflow = self._activate()
        return mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def experiment_id(self, model: str) -> str:
        """The model's experiment, created on first use with its artifacts under the artifact root."""
        client = self.client()
        experiment = client.get_experiment_by_name(model)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(model, artifact_location=f"{self.artifact_root.rstrip('/')}/{model}")

    @contextmanager
    def run(self, model: str, run_name: str, tags: dict[str, str]) -> Iterator:
        """An MLflow run that is ended when the block ends: FINISHED, or FAILED on an exception."""
        mlflow = self._activate()
        with mlflow.start_run(experiment_id=self.experiment_id(model), run_name=run_name, tags=tags) as run:
            yield run

    def alias_version(self, model: str, alias: str) -> str | None:
        """The version an alias points to, or None when the alias is not set."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client().get_model_version_by_alias(model, alias).version)
        except MlflowException:
            return None

    @contextmanager
    def download(self, model: str, version: str) -> Iterator[Path]:
        """The version's model artifact in a temporary folder, for the digest and the safe load."""
        self._activate()
        with artifacts.downloaded(self.tracking_uri, model, version) as folder:
            yield folder

    def load_model(self, model: str, version: str, trusted_types: list[str]):
        """The version's model, loaded only from skops with ``trusted_types``; pickle is refused, never read.

        Not ``mlflow.sklearn.load_model``: that lets the artifact's own MLmodel file choose the
        format (pickle runs code when loaded) and the skops types it trusts.
        """
        with self.download(model, version) as folder:
            return artifacts.load_skops(folder, trusted_types)


def run_url(experiment_id: str, run_id: str, artifact: str | None = None) -> str:
    """The MLflow UI page of a run (or of one of its artifacts), for links a person clicks."""
    url = f"{mlflow_ui_url()}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{url}/artifacts/{artifact}" if artifact else url


def artifact_url(run_id: str, path: str) -> str:
    """The MLflow server's download URL of one run artifact (what its UI shows images with)."""
    return f"{mlflow_ui_url()}/get-artifact?path={quote(path)}&run_uuid={run_id}"


def model_version_url(model: str, version: str) -> str:
    """The MLflow UI page of a registered model version (its description is the model card)."""
    return f"{mlflow_ui_url()}/#/models/{model}/versions/{version}"


def current_aliases(client, model: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return {alias: str(v) for alias, v in client.get_registered_model(model).aliases.items()}
    except MlflowException:
        return {}
