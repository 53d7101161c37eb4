"""The model spec as typed objects: one YAML file per clinical model, parsed into a ``ModelSpec``.

A spec says everything the platform needs to build a model's asset graph: where its
data lands, the data contract, the target and task, the features, the sensitive
attributes, the estimator, the split and the quality gates. Adding a model means
adding a YAML file; no Python.

Errors name the file, the key and what is expected, because the person reading them
is editing YAML, not Python.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ml_platform import metrics
from ml_platform.spec import validation
from ml_platform.spec.estimators import build_estimator
from ml_platform.spec.expressions import referenced_names
from ml_platform.spec.vocabulary import ColumnType, Task

_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class _Strict(BaseModel):
    # A misspelt key is the most common spec mistake; rejecting unknown keys turns it
    # into an error that names the key instead of a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    """One column of the data contract."""

    type: ColumnType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: list[Any] | None = None
    unique: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _bounds_fit_type(self) -> Column:
        if (self.min is not None or self.max is not None) and not self.type.is_numeric:
            raise ValueError(f"min/max only apply to integer or float columns, not {self.type.value}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Contract(_Strict):
    """The data contract every landed row must meet before it is used."""

    id_column: str
    event_time_column: str | None = None
    unknown_columns: Literal["reject", "ignore"] = "reject"
    columns: dict[str, Column] = Field(min_length=1)


class Source(_Strict):
    """Where batches land. Relative paths are under the platform home."""

    landing: str | None = None
    # The built-in data simulator that ``ml-platform seed`` and ``simulate`` use for this
    # model; models fed only by real exports leave it out.
    simulator: Literal["readmission", "breast_cancer"] | None = None


class Features(_Strict):
    """Model inputs: contract columns by kind, plus derived columns.

    Derived columns are expressions of the platform's expression language over contract
    columns (e.g. ``log1p(length_of_stay)``), computed identically for training and serving.
    """

    numeric: list[str] = []
    categorical: list[str] = []
    derived: dict[str, str] = {}

    @property
    def model_inputs(self) -> list[str]:
        return [*self.numeric, *self.categorical, *self.derived]


class Estimator(_Strict):
    """A scikit-learn estimator by class path, with its parameters (plain data); the class must
    come from an allowed module (``spec.estimators``)."""

    class_path: str = Field(alias="class")
    params: dict[str, Any] = {}
    # Types skops may load besides its defaults. Listed explicitly, per model, after
    # review, so that logging never falls back to pickle silently.
    skops_trusted_types: list[str] = []

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def build(self, task: Task | None = None):
        """A fresh, unfitted estimator, from an allowed module and checked before it is instantiated."""
        return build_estimator(self.class_path, self.params, task)


class Split(_Strict):
    """How the training set is split.

    ``hash`` assigns each row by a hash of its id, so a row keeps its split as data
    grows and the test set never leaks into training. ``time`` holds out the latest
    rows by event time.
    """

    method: Literal["hash", "time"] = "hash"
    validation: float = Field(0.15, ge=0.0, lt=1.0)
    test: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = 0
    window: int | None = Field(None, ge=1, description="use only the latest N batches")

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> Split:
        if self.validation + self.test >= 1.0:
            raise ValueError(f"validation ({self.validation}) + test ({self.test}) must be below 1")
        return self


class ChampionMargin(_Strict):
    """How much worse than the champion a candidate may be on one metric (same test rows).

    The semantics of TFX's Evaluator change thresholds and MLflow's
    ``validate_evaluation_results``: a candidate worse by more than either margin fails.
    """

    absolute: float | None = Field(None, ge=0)
    relative: float | None = Field(None, ge=0, description="share of the champion's value")

    @model_validator(mode="after")
    def _has_a_margin(self) -> ChampionMargin:
        if self.absolute is None and self.relative is None:
            raise ValueError("give an absolute and/or a relative margin")
        return self


class Calibration(_Strict):
    """Bounds on calibration: expected calibration error and the calibration slope."""

    max_ece: float | None = Field(None, gt=0, le=1)
    slope: tuple[float, float] | None = None
    bins: int = Field(10, ge=2, le=100)

    @model_validator(mode="after")
    def _slope_is_a_range(self) -> Calibration:
        if self.slope is not None and not 0 < self.slope[0] <= self.slope[1]:
            raise ValueError(f"slope must be [low, high] with 0 < low <= high, got {list(self.slope)}")
        return self


class Fairness(_Strict):
    """The largest allowed difference of a metric between groups of each sensitive attribute."""

    max_difference: dict[str, float] = Field(min_length=1)
    min_group_size: int = Field(30, ge=1)
    # Groups smaller than min_group_size are always reported; "exclude" leaves them out of
    # the difference (and says so), "fail" fails the gate, "include" counts them anyway.
    small_groups: Literal["exclude", "fail", "include"] = "exclude"
    bootstrap: int = Field(200, ge=0, le=10_000, description="resamples for confidence intervals (0 = none)")
    confidence: float = Field(0.95, gt=0.5, lt=1)


class Gates(_Strict):
    """What a candidate must pass on the test set before it may reach patients."""

    min: dict[str, float] = {}
    max: dict[str, float] = {}
    champion: dict[str, ChampionMargin] = {}
    calibration: Calibration | None = None
    fairness: Fairness | None = None


class Deployment(_Strict):
    """How a candidate that passed its gates is released."""

    policy: Literal["direct", "canary", "shadow"] = "direct"
    canary_share: float = Field(0.1, gt=0, lt=1, description="share of patients routed to the challenger")
    approval: Literal["none", "required"] = "none"
    # The column that says who a record is about. Canary routing hashes it, so one patient
    # always sees one version; the prediction log keeps only its keyed hash. Defaults to
    # contract.id_column.
    route_by: str | None = None


class DriftPolicy(_Strict):
    """When input drift is serious enough to retrain on."""

    # A window drifts when at least this share of the model's inputs drifted (Evidently's
    # per-column tests); a retrain needs `consecutive` drifted windows in a row, so one noisy
    # window never retrains a clinical model.
    share: float = Field(0.3, gt=0, le=1)
    consecutive: int = Field(2, ge=1, le=50)
    sample_rows: int = Field(50_000, ge=1_000, description="rows per side the drift tests use at most")


class PerformancePolicy(_Strict):
    """When live performance (measured from outcomes, else estimated) is poor enough to retrain."""

    metric: str | None = None  # default: roc_auc for classification, r2 for regression
    floor: float | None = None  # retrain when the live value is below this
    tolerance: float | None = Field(0.05, ge=0)  # or when it dropped more than this below the evaluation value
    min_outcomes: int = Field(200, ge=1, description="outcomes a window needs before its measured value counts")


class RetrainPolicy(_Strict):
    """Retrains that do not wait for a person: by schedule, on new labelled rows, and the pause between."""

    cron: str | None = None  # a periodic retrain, e.g. "0 3 * * 0" (Sundays 03:00)
    min_new_labelled_rows: int | None = Field(1_000, ge=1)  # production rows with outcomes since the last training
    cooldown_minutes: float = Field(360, ge=0, description="no triggered retrain sooner after the previous one")


class Monitoring(_Strict):
    """The monitoring windows and the policies that turn what they show into retrains."""

    window: str = "0 * * * *"  # cron of the window boundaries (hourly by default)
    start: str = "2026-01-01"  # first window (ISO date or date-time)
    drift: DriftPolicy = DriftPolicy()
    performance: PerformancePolicy = PerformancePolicy()
    retrain: RetrainPolicy = RetrainPolicy()


class ModelSpec(_Strict):
    """A clinical model, as declared in its YAML file."""

    name: str
    description: str
    owner: str = "unassigned"
    intended_use: str = ""
    out_of_scope_use: str = ""
    caveats: list[str] = []
    task: Task
    target: str
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="decision threshold on P(positive)")
    source: Source = Source()
    contract: Contract
    features: Features
    sensitive_attributes: list[str] = []
    estimator: Estimator
    split: Split = Split()
    gates: Gates = Gates()
    deployment: Deployment = Deployment()
    monitoring: Monitoring = Monitoring()

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, name: str) -> str:
        if not _NAME_PATTERN.match(name):
            raise ValueError(
                f"'{name}' is not a valid model name: use lower-case letters, digits and "
                "underscores, starting with a letter (it becomes a Dagster asset prefix)"
            )
        return name

    @model_validator(mode="after")
    def _references_resolve(self) -> ModelSpec:
        validation.check_references(self)
        return self

    @property
    def id_column(self) -> str:
        return self.contract.id_column

    @property
    def performance_metric(self) -> str:
        """The live metric the degradation trigger watches."""
        return self.monitoring.performance.metric or metrics.monitored(self.task)[0]

    @property
    def pipeline_inputs(self) -> list[str]:
        """The contract columns the model pipeline reads: its numeric and categorical inputs, and
        every column a derived expression names. The pipeline derives the rest itself, so a
        registered model scores a raw contract record."""
        named = set(self.features.numeric) | set(self.features.categorical)
        for expression in self.features.derived.values():
            named |= referenced_names(expression)
        return [c for c in self.contract.columns if c in named and c != self.target]

    @property
    def route_column(self) -> str:
        """The column canary routing hashes: deployment.route_by, else the record id."""
        return self.deployment.route_by or self.contract.id_column

    def landing_dir(self, home: Path) -> Path:
        return home / (self.source.landing or f"landing/{self.name}")

    @property
    def spec_hash(self) -> str:
        """A hash of the spec's meaning (not its formatting), recorded with every model."""
        canonical = self.model_dump_json(by_alias=True, exclude={"description"})
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]
