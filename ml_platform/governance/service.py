"""The governance service: the one place that moves registry aliases, writes governance tags
and appends audit records.

Every decision about data and models (a batch accepted or rejected, a model trained, a gate
verdict, an approval, a promotion, a rollback, a release, a retrain request) goes through
here, whoever makes it: a Dagster asset, a sensor or a person at the CLI. So each decision
has exactly one implementation of its side effects, and the audit trail and the registry
cannot disagree because two callers did things in a different order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from ml_platform.governance import attestation, promotion, reconcile, retention
from ml_platform.governance.audit import AuditTrail
from ml_platform.governance.promotion import Approval, GovernanceError
from ml_platform.settings import database_url, platform_home
from ml_platform.spec import ModelSpec
from ml_platform.store import artifacts
from ml_platform.store import tags as tag
from ml_platform.store.database import PlatformDatabase
from ml_platform.store.registry import MLflowTracking
from ml_platform.training.registration import Candidate


@dataclass(frozen=True)
class DeployOutcome:
    """What a deployment did: the alias change (None when nothing moved) and a sentence for people."""

    change: dict | None
    message: str


class Governance:
    """Decisions about one platform's models, against its registry and platform database."""

    def __init__(self, registry: MLflowTracking, database: PlatformDatabase, home: Path | None = None):
        self.registry = registry
        self.database = database
        # Where the embedded default signing and audit keys live when none is configured (default: the settings' home).
        self.home = home

    @classmethod
    def for_home(cls, home: Path) -> Governance:
        """The governance of the platform home's registry and database, as the settings name them."""
        return cls(MLflowTracking.for_home(home), PlatformDatabase(url=database_url(home)), home)

    @functools.cached_property
    def engine(self) -> sa.Engine:
        # Connected on first use, not when definitions are built: loading the code location
        # must not open (or create) the database.
        return self.database.engine()

    @functools.cached_property
    def client(self):
        return self.registry.client()

    @functools.cached_property
    def audit(self) -> AuditTrail:
        return AuditTrail(self.engine, home=self.home)

    # ------------------------------------------------------------------ data and training

    def purge(self, before, *, by: str, reason: str, files: list[Path] = ()) -> retention.Purged:
        """Delete prediction-log rows, outcomes and ``files`` older than ``before``; audited (``data_purged``)."""
        return retention.purge(self.engine, self.audit, before, actor=by, reason=reason, files=list(files))

    def batch_validated(self, model: str, passed: bool, details: dict, *, actor: str) -> None:
        self.audit.record("batch_ingested" if passed else "batch_rejected", model, actor=actor, details=details)

    def model_trained(self, spec: ModelSpec, candidate: Candidate, *, batches: list[str], actor: str) -> None:
        """Tag the new version with its lineage and record that it was trained."""
        for key, value in candidate.lineage.items():
            self.client.set_model_version_tag(spec.name, candidate.model_version, key, value)
        self.audit.record(
            "model_trained",
            spec.name,
            actor=actor,
            version=candidate.model_version,
            details={
                "training_set_version": candidate.training_set_version,
                "batches": batches,
                "mlflow_run_id": candidate.run_id,
                "train_rows": candidate.train_rows,
                "code_version": candidate.lineage.get(tag.CODE_VERSION),
                "spec_hash": spec.spec_hash,
            },
        )

    def retrain_requested(self, spec: ModelSpec, trigger: str, reason: str, run_key: str) -> None:
        self.audit.record(
            "retrain_requested",
            spec.name,
            actor=f"{spec.name}_{trigger}",
            details={"trigger": trigger, "reason": reason, "run_key": run_key},
        )

    # ------------------------------------------------------------------ evaluation

    def record_verdicts(self, spec: ModelSpec, version: str, verdicts: list[dict], *, actor: str) -> None:
        """Tag the version with its gate outcome and write each verdict to the audit trail."""
        failed = [v["gate"] for v in verdicts if not v["passed"]]
        self.client.set_model_version_tag(spec.name, version, tag.GATES, "failed" if failed else "passed")
        if failed:
            self.client.set_model_version_tag(spec.name, version, tag.GATE_FAILURES, ", ".join(failed))
        for v in verdicts:
            self.audit.record(
                "gate_passed" if v["passed"] else "gate_failed",
                spec.name,
                actor=actor,
                version=version,
                details={k: v.get(k) for k in ("gate", "value", "threshold", "champion", "reason")},
            )

    # ------------------------------------------------------------------ deployment

    def deploy(self, spec: ModelSpec, version: str, *, actor: str) -> DeployOutcome:
        """Promote ``version`` if the rules allow, request approval if they require it; audit the outcome."""
        problem = promotion.gate_problem(spec, self.client, version)
        if problem:
            raise GovernanceError(f"not deployed: {problem}")
        problem = promotion.approval_problem(spec, self.engine, version)
        if problem:
            if promotion.request_approval(self.engine, spec.name, version):
                self.client.set_model_version_tag(spec.name, version, tag.APPROVAL, "pending")
                self.audit.record(
                    "approval_requested",
                    spec.name,
                    actor=actor,
                    version=version,
                    details={"policy": spec.deployment.policy},
                )
            return DeployOutcome(None, f"{problem}; `ml-platform approve {spec.name} {version}` releases it")
        self.attest(spec, version)
        change = promotion.promote(spec, self.client, self.engine, self.audit, version, holder=actor)
        if spec.deployment.approval == "required":
            promotion.mark_promoted(self.engine, spec.name, version)
        if change is None:
            return DeployOutcome(None, f"{spec.name} version {version} is already deployed; nothing moved")
        self.client.set_model_version_tag(spec.name, version, tag.DEPLOYED_AS, change["alias"])
        moved = f"from version {change['previous']}" if change["previous"] else "(first time)"
        return DeployOutcome(change, f"{spec.name} version {version} is now {change['alias']} {moved}")

    def decide(self, spec: ModelSpec, version: str, *, approve: bool, by: str, reason: str) -> Approval:
        """A person approves or rejects a waiting version; approving one whose gates failed is refused."""
        if spec.deployment.approval != "required":
            raise GovernanceError(
                f"{spec.name} does not require approval (deployment.approval in its spec); "
                "its versions deploy once their gates pass"
            )
        problem = promotion.gate_problem(spec, self.client, version) if approve else None
        if problem:
            raise GovernanceError(f"refused: {problem}")
        decision = promotion.decide(self.engine, spec.name, version, approve, by, reason)
        self.client.set_model_version_tag(spec.name, version, tag.APPROVAL, decision.status)
        self.audit.record(
            "approved" if approve else "rejected", spec.name, actor=by, version=version, details={"reason": reason}
        )
        return decision

    def pending(self, model: str | None = None) -> list[Approval]:
        return promotion.list_approvals(self.engine, status="pending", model=model)

    def approved_awaiting_promotion(self, model: str) -> list[str]:
        return promotion.approved_awaiting_promotion(self.engine, model)

    def roll_back(self, spec: ModelSpec, to: str | None, *, by: str, reason: str) -> dict:
        """Move the champion back to ``to`` (default: the champion before the current one), audited."""
        history = promotion.champion_history(self.audit, spec.name)
        target = promotion.rollback_target(spec, self.client, self.engine, history, to)
        self.attest(spec, target)
        return promotion.roll_back(spec, self.client, self.engine, self.audit, target, by=by, reason=reason)

    def release(self, spec: ModelSpec, *, by: str, reason: str) -> dict:
        """End a canary or shadow release: the challenger becomes champion, audited."""
        challenger = self.registry.alias_version(spec.name, tag.CHALLENGER)
        if challenger and not promotion.eligibility(spec, self.client, self.engine, challenger):
            self.attest(spec, challenger)
        return promotion.complete_release(spec, self.client, self.engine, self.audit, by=by, reason=reason)

    # ------------------------------------------------------------------ attestation

    def attest(self, spec: ModelSpec, version: str) -> dict:
        """Sign that ``version`` passed its gates (and approval) over its artifact's digest; tag the version.

        Called only once the rules allow the version to serve. The endpoint serves nothing
        without this tag's valid signature, so a registry writer who moves an alias cannot
        put an unvetted version in front of patients.
        """
        problem = promotion.eligibility(spec, self.client, self.engine, version)
        if problem:
            raise GovernanceError(f"not attested: {problem}")
        with self.registry.download(spec.name, version) as folder:
            artifacts.skops_model_file(folder)  # never vouch for a pickle
            digest = artifacts.artifact_digest(folder)
        payload = attestation.statement(
            spec.name,
            version,
            digest,
            spec.spec_hash,
            self._passed_gates(spec.name, version),
            self._approval(spec, version),
        )
        signed = attestation.sign(attestation.signing_key(self.home or platform_home()), payload)
        self.client.set_model_version_tag(spec.name, version, tag.ATTESTATION, signed)
        return payload

    def _passed_gates(self, model: str, version: str) -> list[str]:
        """The gates whose latest verdict for ``version`` passed, from the audit trail (not the registry tags)."""
        latest: dict[str, bool] = {}
        for record in self.audit.timeline(model):
            if record.version == str(version) and record.event in ("gate_passed", "gate_failed"):
                latest[str(record.details.get("gate"))] = record.event == "gate_passed"
        failed = sorted(gate for gate, passed in latest.items() if not passed)
        if failed or not latest:
            why = f"failed gates {', '.join(failed)}" if failed else "no gate verdict in the audit trail"
            raise GovernanceError(f"not attested: {model} version {version} has {why}")
        return sorted(latest)

    def _approval(self, spec: ModelSpec, version: str) -> dict:
        if spec.deployment.approval != "required":
            return {"status": "not_required", "by": None}
        approval = promotion.get_approval(self.engine, spec.name, str(version))
        return {"status": approval.status, "by": approval.decided_by}

    def version_refused(self, model: str, version: str, reason: str, message: str, *, actor: str) -> None:
        """The endpoint refused to serve a version the registry names: the refusal is an audit record."""
        self.audit.record(
            "version_refused", model, actor=actor, version=str(version), details={"reason": reason, "message": message}
        )

    def registry_drift(self, model: str) -> list[str]:
        """Aliases the registry holds that the audit trail's decisions do not explain (the reconciler)."""
        return reconcile.alias_drift(self.client, self.audit, model)
