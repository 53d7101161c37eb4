"""Deployment: carry a gated (and, where required, approved) version to its registry alias.

The asset runs after every evaluation whose blocking gates passed (automation), and
when a person approves a waiting version (the approval sensor passes the version in the
run config). It materialises only when an alias moved, so the UI's history of this asset
is the history of what patients were scored by.
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AutomationCondition,
    Config,
    Failure,
    MaterializeResult,
    asset,
)

from ml_platform import governance
from ml_platform.audit import run_actor
from ml_platform.resources import Lake, MLflowTracking, PlatformDatabase, ServingEndpoint
from ml_platform.specs import ModelSpec

DEPLOYMENT_POOL = "ml_platform_promotion"
ENDPOINT_CHECK = "serving_endpoint"

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
        lake: Lake,
        mlflow: MLflowTracking,
        database: PlatformDatabase,
        endpoint: ServingEndpoint,
    ):
        version = config.version or lake.read_json(name, "candidate_model", "latest")["model_version"]
        result = deploy(spec, version, mlflow, database, actor=run_actor(context.run_id))
        context.log.info(result["message"])
        change = result["change"]
        if change:
            yield MaterializeResult(metadata={**change, "reason": result["message"]})
            yield verify_endpoint(endpoint, name, change["alias"], change["version"])

    return [deployment]


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


def deploy(spec: ModelSpec, version: str, mlflow: MLflowTracking, database: PlatformDatabase, actor: str) -> dict:
    """Promote ``version`` if the rules allow, request approval if they require it; audit the outcome."""
    client, engine, audit = mlflow.client(), database.engine(), database.audit()
    problem = governance.gate_problem(spec, client, version)
    if problem:
        raise Failure(f"not deployed: {problem}")
    problem = governance.approval_problem(spec, engine, version)
    if problem:
        if governance.request_approval(engine, spec.name, version):
            client.set_model_version_tag(spec.name, version, governance.APPROVAL_TAG, "pending")
            audit.record(
                "approval_requested",
                spec.name,
                actor=actor,
                version=version,
                details={"policy": spec.deployment.policy},
            )
        return {"change": None, "message": f"{problem}; `ml-platform approve {spec.name} {version}` releases it"}
    change = governance.promote(spec, client, engine, audit, version, holder=actor)
    if spec.deployment.approval == "required":
        governance.mark_promoted(engine, spec.name, version)
    if change is None:
        return {"change": None, "message": f"{spec.name} version {version} is already deployed; nothing moved"}
    client.set_model_version_tag(spec.name, version, "ml_platform.deployed_as", change["alias"])
    moved = f"from version {change['previous']}" if change["previous"] else "(first time)"
    return {"change": change, "message": f"{spec.name} version {version} is now {change['alias']} {moved}"}
