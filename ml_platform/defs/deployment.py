"""Deployment: carry a gated (and, where required, approved) version to its registry alias.

The asset runs after every evaluation whose blocking gates passed (automation), and
when a person approves a waiting version (the approval sensor passes the version in the
run config). It materialises only when an alias moved, so the UI's history of this asset
is the history of what patients were scored by.
"""

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AutomationCondition,
    Config,
    MaterializeResult,
    ResourceParam,
    asset,
    asset_check,
)

from ml_platform.defs.metadata import run_actor
from ml_platform.governance.service import Governance
from ml_platform.serving.client import ServingEndpoint
from ml_platform.spec import ModelSpec
from ml_platform.store.database import PlatformDatabase
from ml_platform.store.lake import Lake
from ml_platform.store.registry import MLflowTracking

DEPLOYMENT_POOL = "ml_platform_promotion"
ENDPOINT_CHECK = "serving_endpoint"
RECONCILE_CHECK = "registry_matches_audit"

# Deploy after a new evaluation, but never when one of its blocking gate checks failed.
DEPLOY_WHEN_GATES_PASS = (
    AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager, gates passed")


class DeploymentConfig(Config):
    """Which version to deploy; by default the latest evaluated candidate."""

    version: str | None = None


def build(spec: ModelSpec) -> list:
    name = spec.name
    approval = " once a person approves it" if spec.deployment.approval == "required" else ""
    key = AssetKey([name, "deployment"])
    endpoint_check = AssetCheckSpec(
        ENDPOINT_CHECK,
        asset=key,
        description="The running endpoint answers with the version this deployment promoted (after its hot swap).",
    )

    @asset(
        key=key,
        deps=[AssetKey([name, "evaluation_report"])],
        group_name=name,
        kinds={"mlflow"},
        automation_condition=DEPLOY_WHEN_GATES_PASS,
        output_required=False,
        pool=DEPLOYMENT_POOL,
        check_specs=[endpoint_check],
        description=f"The {name} version serving patients: registry aliases moved per the '{spec.deployment.policy}' "
        f"policy{approval}, only for versions whose gates passed.",
    )
    def deployment(
        context: AssetExecutionContext,
        config: DeploymentConfig,
        lake: ResourceParam[Lake],
        mlflow: ResourceParam[MLflowTracking],
        database: ResourceParam[PlatformDatabase],
        endpoint: ResourceParam[ServingEndpoint],
    ):
        version = config.version or lake.read_json(name, "candidate_model", "latest")["model_version"]
        outcome = Governance(mlflow, database).deploy(spec, version, actor=run_actor(context.run_id))
        context.log.info(outcome.message)
        change = outcome.change
        if change:
            yield MaterializeResult(metadata={**change, "reason": outcome.message})
            yield verify_endpoint(endpoint, name, change["alias"], change["version"])

    @asset_check(
        asset=key,
        name=RECONCILE_CHECK,
        blocking=False,
        description="The registry aliases are the ones the audit trail's promotions, releases and rollbacks "
        "leave; fails when an alias was moved outside the platform. The reconciler sensor evaluates it.",
    )
    def registry_matches_audit(mlflow: ResourceParam[MLflowTracking], database: ResourceParam[PlatformDatabase]):
        return reconcile_result(name, Governance(mlflow, database).registry_drift(name))

    return [deployment, registry_matches_audit]


def reconcile_result(model: str, problems: list[str]) -> AssetCheckResult:
    """The reconciler check as run from the UI: failed, naming each alias that moved outside the platform."""
    return AssetCheckResult(check_name=RECONCILE_CHECK, **_reconcile_outcome(problems))


def reconcile_evaluation(model: str, problems: list[str]) -> AssetCheckEvaluation:
    """The same verdict as a sensor reports it, without a run."""
    key = AssetCheckKey(AssetKey([model, "deployment"]), RECONCILE_CHECK)
    return AssetCheckEvaluation(asset_key=key.asset_key, check_name=RECONCILE_CHECK, **_reconcile_outcome(problems))


def _reconcile_outcome(problems: list[str]) -> dict:
    return {
        "passed": not problems,
        "severity": AssetCheckSeverity.ERROR,
        "description": "; ".join(problems) or "the registry aliases match the audit trail",
        "metadata": {"problems": len(problems)},
    }


def verify_endpoint(endpoint: ServingEndpoint, model: str, alias: str, version: str) -> AssetCheckResult:
    """The endpoint check: passes only when the endpoint serves what was promoted; warns when there is none."""
    passed, description = endpoint.verify(model, alias, version)
    return AssetCheckResult(
        check_name=ENDPOINT_CHECK,
        passed=passed,
        severity=AssetCheckSeverity.WARN if endpoint.url is None else AssetCheckSeverity.ERROR,
        description=description,
        metadata={"endpoint": endpoint.url or "not configured", "alias": alias, "promoted_version": version},
    )
