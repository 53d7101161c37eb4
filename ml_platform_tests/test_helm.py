"""The Kubernetes files in deploy/helm/ are valid objects and say what the platform relies on.

Every manifest is validated against the vendored Kubernetes v1.30 JSON schemas (strict: an
unknown or misspelt field fails). The Dagster chart's values are validated against the chart's
own vendored values.schema.json (its Kubernetes references served by the same v1.30
definitions), and what the platform needs from them is asserted. No cluster, no Helm:
deploy/helm/README.md says what that leaves unproven.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from functools import cache
from pathlib import Path

import jsonschema  # noqa: E402 - with the test dependencies
import pytest
import yaml
from referencing import Registry, Resource  # noqa: E402  (installed with jsonschema)
from referencing.jsonschema import DRAFT202012

REPO = Path(__file__).resolve().parents[1]
HELM = REPO / "deploy" / "helm"
SCHEMAS = HELM / "schemas" / "kubernetes-v1.30.0"
DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"  # the $id the kind schemas refer to
# The official chart's schema (deploy/helm/schemas/README.md: source commit, draft, updating).
CHART_SCHEMA = HELM / "schemas" / "dagster-chart" / "values.schema.json"
CHART_SCHEMA_SHA256 = "cccbf9a9956cf32b240ef7fc2f4735e03c02db369f15ff444b06492544f8503a"
# Where that schema's Kubernetes $refs point (1.18 definitions); served here by the vendored 1.30 ones.
CHART_KUBERNETES_URI = "https://kubernetesjsonschema.dev/v1.18.0/_definitions.json"

SCHEMA_OF = {  # (apiVersion, kind) -> vendored schema
    ("apps/v1", "Deployment"): "deployment-apps-v1.json",
    ("v1", "Service"): "service-v1.json",
    ("v1", "ConfigMap"): "configmap-v1.json",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscaler-autoscaling-v2.json",
}
# Variables whose value is a credential: they may only come from a Secret.
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|_KEY$|DATABASE_URL|STORE_URI|ACCESS_KEY")
# A path to a file mounted from a Secret is not the secret itself.
MOUNTED_FILE_VARIABLES = {"ML_PLATFORM_ATTESTATION_PUBLIC_KEY"}


@cache
def registry() -> Registry:
    """Every schema the tests refer to, from files: a reference to anything else fails, none is fetched."""
    definitions = json.loads((SCHEMAS / "_definitions.json").read_text())
    # The chart's schema points into the 1.18 file's `definitions`; the same definitions are
    # reachable there, and under `$defs` for their own references to each other.
    substitute = {"definitions": definitions["$defs"], "$defs": definitions["$defs"]}
    return Registry().with_resources(
        [
            (DEFINITIONS_URI, Resource.from_contents(definitions)),
            (CHART_KUBERNETES_URI, Resource(substitute, specification=DRAFT202012)),
        ]
    )


def validator(schema: dict):
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=registry())


def schema_errors(document: dict) -> list[str]:
    """Where a Kubernetes object breaks its kind's schema (empty: valid)."""
    name = SCHEMA_OF.get((document.get("apiVersion"), document.get("kind")))
    if name is None:
        return [f"no vendored schema for {document.get('apiVersion')} {document.get('kind')}"]
    schema = json.loads((SCHEMAS / name).read_text())
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator(schema).iter_errors(document)]


@cache
def chart_schema() -> dict:
    return json.loads(CHART_SCHEMA.read_text())


@cache
def chart_validator() -> jsonschema.Draft7Validator:
    # No $schema in the file; its keywords (definitions, const, if/then) are draft 7's.
    return jsonschema.Draft7Validator(chart_schema(), registry=registry())


def left_to_chart_defaults(error: jsonschema.ValidationError) -> bool:
    """Whether the chart's values.yaml makes up for this error once Helm merges our values over it.

    Helm merges maps key by key, so a required key missing from a map of ours comes from the
    chart's defaults. It replaces a list whole, so an item of a list of ours (a path with an
    index) gets nothing from them: there `required` holds.
    """
    if error.validator == "required":
        return not any(isinstance(step, int) for step in error.absolute_path)
    if error.validator == "anyOf":
        return any(all(left_to_chart_defaults(e) for e in branch) for branch in _branches(error))
    return False


def _branches(error: jsonschema.ValidationError) -> list[list[jsonschema.ValidationError]]:
    grouped: dict[int, list] = {}
    for e in error.context:
        grouped.setdefault(e.relative_schema_path[0], []).append(e)
    return list(grouped.values())


def _explained(error: jsonschema.ValidationError) -> list[str]:
    """The innermost failures; for anyOf/oneOf, those of the branches whose type fits the value."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        fitting = [b for b in _branches(error) if not any(e.validator == "type" and not e.relative_path for e in b)]
        if fitting:
            return [m for b in fitting for e in b if not left_to_chart_defaults(e) for m in _explained(e)]
    where = ".".join(str(step) for step in error.absolute_path) or "(top)"
    return [f"{where}: {error.message}"]


def _nulls(value, path: tuple = ()) -> list[tuple]:
    if value is None:
        return [path]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [found for key, item in items for found in _nulls(item, (*path, key))]


def chart_schema_errors(values: dict) -> list[str]:
    """Where chart values break the chart's values.schema.json as Helm applies it (empty: valid)."""
    # Helm deletes a key set to null from the merged values, the chart's default with it.
    problems = [f"{'.'.join(map(str, p))}: null removes the chart's default" for p in _nulls(values)]
    for error in chart_validator().iter_errors(values):
        if not left_to_chart_defaults(error):
            problems += _explained(error)
    return problems


def manifests() -> list[dict]:
    documents = []
    for path in sorted((HELM / "manifests").glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def one(kind: str, name: str) -> dict:
    [document] = [d for d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    return document


def container(deployment: dict) -> dict:
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    return c


def values() -> dict:
    return yaml.safe_load((HELM / "dagster-values.yaml").read_text())


def user_deployment(values: dict) -> dict:
    [deployment] = values["dagster-user-deployments"]["deployments"]
    return deployment


# --- every manifest against its kind's schema ---------------------------------------------


def test_the_schemas_resolve_offline_and_reject_a_misspelt_field():
    deployment = copy.deepcopy(one("Deployment", "ml-platform-endpoint"))
    assert schema_errors(deployment) == []
    container(deployment)["securityContext"]["readOnlyRootFileSystem"] = True  # capital S
    assert any("readOnlyRootFileSystem" in e for e in schema_errors(deployment))
    deployment["spec"]["replicas"] = "two"
    assert any("'two'" in e for e in schema_errors(deployment))


@pytest.mark.parametrize("document", manifests(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_is_valid_for_kubernetes_1_30(document):
    assert schema_errors(document) == []


# --- the Dagster chart's values ------------------------------------------------------------


def dagster_values_problems(v: dict) -> list[str]:
    """What in the chart's values breaks the deployment the platform needs (empty: none)."""
    problems = []
    code = user_deployment(v)
    if code.get("dagsterApiGrpcArgs") != ["-m", "ml_platform.defs"]:
        problems.append(f"code server args {code.get('dagsterApiGrpcArgs')}: not the module ml_platform.defs")
    if not v["dagster-user-deployments"].get("enabled"):
        problems.append("user deployments disabled")
    if v.get("runLauncher", {}).get("type") != "K8sRunLauncher":
        problems.append(f"run launcher {v.get('runLauncher', {}).get('type')!r}: not K8sRunLauncher")
    if v["postgresql"].get("enabled") is not False or not v["postgresql"].get("postgresqlHost"):
        problems.append("PostgreSQL must be external (enabled: false and a host)")
    if "postgresqlPassword" in v["postgresql"] or v.get("generatePostgresqlPasswordSecret") is not False:
        problems.append("the storage password must come from an existing Secret")
    daemon = v["dagsterDaemon"]
    if not (daemon.get("enabled") and daemon["runCoordinator"].get("enabled")):
        problems.append("the daemon (sensors, schedules, run queue) is off")
    if daemon["runCoordinator"].get("type") != "QueuedRunCoordinator":
        problems.append("runs are not queued")
    return problems


def test_dagster_values_deploy_the_platform():
    assert dagster_values_problems(values()) == []


@pytest.mark.parametrize(
    "change",
    [
        lambda v: v["runLauncher"].update(type="CeleryK8sRunLauncher"),
        lambda v: user_deployment(v).update(dagsterApiGrpcArgs=["-m", "ml_platform.definitions"]),
        # The chart's schema lets this pass: a user deployment may carry any key.
        lambda v: user_deployment(v).update(dagsterApiGrpcArg=user_deployment(v).pop("dagsterApiGrpcArgs")),
        lambda v: v["postgresql"].update(enabled=True),
        lambda v: v["dagsterDaemon"].update(enabled=False),
    ],
    ids=["celery-run-launcher", "old-module", "misspelt-args-key", "bundled-postgres", "no-daemon"],
)
def test_dagster_values_checks_can_fail(change):
    broken = values()
    change(broken)
    assert dagster_values_problems(broken) != []


def test_chart_schema_is_the_vendored_file():
    assert hashlib.sha256(CHART_SCHEMA.read_bytes()).hexdigest() == CHART_SCHEMA_SHA256
    assert "$schema" not in chart_schema()  # so the draft is chosen here: 7, by its keywords
    jsonschema.Draft7Validator.check_schema(chart_schema())


def _refs(node) -> set[str]:
    if isinstance(node, list):
        return {r for item in node for r in _refs(item)}
    if not isinstance(node, dict):
        return set()
    found = {r for item in node.values() for r in _refs(item)}
    return found | {node["$ref"]} if "$ref" in node else found


def test_chart_schema_refs_resolve_offline_to_kubernetes_1_30():
    external = {r for r in _refs(chart_schema()) if not r.startswith("#")}
    assert external and {r.split("#")[0] for r in external} == {CHART_KUBERNETES_URI}
    resolver = registry().resolver()
    for ref in sorted(external):  # each target exists in the 1.30 definitions
        assert isinstance(resolver.lookup(ref).contents, dict), ref


def test_dagster_values_are_valid_for_the_chart_schema():
    assert chart_schema_errors(values()) == []


def test_only_keys_the_chart_defaults_supply_are_not_required():
    errors = list(chart_validator().iter_errors(values()))
    # Our file leaves the web server, storage image, ... to the chart: the schema does see them missing,
    assert any(e.validator == "required" and "'dagsterWebserver'" in e.message for e in errors)
    # and nothing else is wrong.
    assert all(left_to_chart_defaults(e) for e in errors)


@pytest.mark.parametrize(
    ("change", "reported"),
    [
        (
            lambda v: user_deployment(v).update(dagsterApiGrpcArgs="-m ml_platform.defs"),
            "deployments.0.dagsterApiGrpcArgs: '-m ml_platform.defs' is not of type 'array'",
        ),
        (lambda v: v["runLauncher"].update(type="K8SRunLauncher"), "runLauncher.type: 'K8SRunLauncher' is not one of"),
        (  # belongs under config.queuedRunCoordinator
            lambda v: v["dagsterDaemon"]["runCoordinator"].update(maxConcurrentRuns=10),
            "dagsterDaemon.runCoordinator: Additional properties are not allowed ('maxConcurrentRuns'",
        ),
        (
            lambda v: v["runLauncher"]["config"]["k8sRunLauncher"].update(
                resource=v["runLauncher"]["config"]["k8sRunLauncher"].pop("resources")
            ),
            "k8sRunLauncher: Additional properties are not allowed ('resource' was unexpected)",
        ),
        (
            lambda v: user_deployment(v)["env"][0]["valueFrom"]["secretKeyRef"].update(nam="x"),
            "env.0.valueFrom.secretKeyRef: Additional properties are not allowed ('nam' was unexpected)",
        ),
        (
            lambda v: user_deployment(v)["securityContext"].update(readOnlyRootFileSystem=True),
            "('readOnlyRootFileSystem' was unexpected)",
        ),
        (lambda v: user_deployment(v).pop("port"), "deployments.0: 'port' is a required property"),
        (lambda v: v["postgresql"]["service"].update(port="5432"), "postgresql.service.port: '5432' is not of type"),
        (lambda v: v["telemetry"].update(enabled=None), "telemetry.enabled: null removes the chart's default"),
    ],
    ids=[
        "grpc-args-as-string",
        "misspelt-run-launcher",
        "misplaced-key",
        "misspelt-launcher-key",
        "misspelt-kubernetes-field",
        "misspelt-security-field",
        "list-item-without-port",
        "port-as-string",
        "null-deletes-default",
    ],
)
def test_chart_schema_reports_broken_values(change, reported):
    broken = values()
    change(broken)
    problems = chart_schema_errors(broken)
    assert any(reported in p for p in problems), problems


def test_user_code_reads_the_shared_configuration():
    code = user_deployment(values())
    config = one("ConfigMap", "ml-platform-config")
    assert {"name": config["metadata"]["name"]} in code["envConfigMaps"]
    assert code["includeConfigInLaunchedRuns"]["enabled"] is True  # run pods get the same env
    provided = set(config["data"]) | {e["name"] for e in code["env"]}
    wanted = {
        "ML_PLATFORM_DATABASE_URL",
        "MLFLOW_TRACKING_URI",
        "ML_PLATFORM_ARTIFACT_ROOT",
        "ML_PLATFORM_HOME",
        "ML_PLATFORM_ENDPOINT_URL",
        "ML_PLATFORM_ENDPOINT_TOKEN",
        "ML_PLATFORM_ID_HASH_KEY",
    }
    assert wanted <= provided, wanted - provided
    assert config["data"]["ML_PLATFORM_HOME"].startswith("s3://")  # one home every pod shares


# --- the endpoint ----------------------------------------------------------------------------


def test_endpoint_runs_the_serve_command_in_replicas_with_probes():
    from ml_platform.cli import _parser

    deployment = one("Deployment", "ml-platform-endpoint")
    c = container(deployment)
    assert c["command"][0] == "ml-platform"
    args = _parser().parse_args(c["command"][1:])  # the command line the replicas start with is valid
    assert (args.host, args.port, args.workers) == ("0.0.0.0", 8000, 2)
    assert deployment["spec"]["replicas"] >= 2
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert port_names.get(get["port"], get["port"]) == args.port
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(c["resources"]["limits"])


def test_endpoint_runs_as_the_image_user_on_a_read_only_root():
    deployment = one("Deployment", "ml-platform-endpoint")
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    uid = int(re.search(r"useradd .*--uid (\d+)", dockerfile).group(1))
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == uid
    security = container(deployment)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"] for m in container(deployment)["volumeMounts"]}
    assert "/tmp" in mounts  # the one writable place


def test_autoscaler_and_service_point_at_the_endpoint():
    deployment = one("Deployment", "ml-platform-endpoint")
    hpa = one("HorizontalPodAutoscaler", "ml-platform-endpoint")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", "ml-platform-endpoint")
    assert hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert "cpu" in container(deployment)["resources"]["requests"]  # utilisation is relative to it
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert one("Service", "ml-platform-endpoint")["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    config = one("ConfigMap", "ml-platform-config")["data"]
    port = one("Service", "ml-platform-endpoint")["spec"]["ports"][0]["port"]
    assert config["ML_PLATFORM_ENDPOINT_URL"] == f"http://ml-platform-endpoint:{port}"


def test_endpoint_takes_tokens_and_attestation_key_from_secrets():
    deployment = one("Deployment", "ml-platform-endpoint")
    env = {e["name"]: e for e in container(deployment)["env"]}
    assert "secretKeyRef" in env["ML_PLATFORM_API_TOKENS"]["valueFrom"]
    key_path = Path(env["ML_PLATFORM_ATTESTATION_PUBLIC_KEY"]["value"])
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    [mount] = [m for m in container(deployment)["volumeMounts"] if Path(m["mountPath"]) == key_path.parent]
    secret = volumes[mount["name"]]["secret"]
    assert mount["readOnly"] is True
    assert key_path.name in {item["path"] for item in secret["items"]}


# --- MLflow ----------------------------------------------------------------------------------


def test_mlflow_server_on_postgres_and_s3():
    deployment = one("Deployment", "mlflow")
    c = container(deployment)
    command = c["command"]
    assert command[:2] == ["mlflow", "server"]
    option = dict(zip(command[2::2], command[3::2]))
    assert option["--backend-store-uri"] == "$(MLFLOW_BACKEND_STORE_URI)"  # expanded by Kubernetes
    env = {e["name"]: e for e in c["env"]}
    assert "secretKeyRef" in env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]
    assert option["--artifacts-destination"].startswith("s3://")
    assert option["--host"] == "0.0.0.0"
    service = one("Service", "mlflow")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    tracking = one("ConfigMap", "ml-platform-config")["data"]["MLFLOW_TRACKING_URI"]
    host = f"mlflow:{service['spec']['ports'][0]['port']}"
    assert tracking == f"http://{host}" and host in option["--allowed-hosts"].split(",")


# --- secrets and names -----------------------------------------------------------------------


def env_lists() -> list[tuple[str, list[dict]]]:
    found = [
        (d["metadata"]["name"], c.get("env", []))
        for d in manifests()
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    return found + [("dagster user code", user_deployment(values())["env"])]


def test_no_literal_secret_values():
    for where, env in env_lists():
        for variable in env:
            if SECRET_NAME.search(variable["name"]) and variable["name"] not in MOUNTED_FILE_VARIABLES:
                assert "value" not in variable, f"{where}: {variable['name']} is written in the file"
                assert "secretKeyRef" in variable["valueFrom"], f"{where}: {variable['name']} not from a Secret"
    for d in manifests():
        assert d["kind"] != "Secret", "Secrets are created with kubectl, never committed"
        if d["kind"] == "ConfigMap":
            assert not [k for k in d["data"] if SECRET_NAME.search(k)], d["metadata"]["name"]
    postgres = values()["postgresql"]
    assert "postgresqlPassword" not in postgres


def test_every_platform_variable_set_is_one_the_platform_reads():
    from ml_platform.settings import Settings, variable_name

    settings = {variable_name(field) for field in Settings.model_fields}
    names = set(one("ConfigMap", "ml-platform-config")["data"])
    names |= {e["name"] for _, env in env_lists() for e in env}
    for name in sorted(n for n in names if n.startswith(("ML_PLATFORM_", "MLFLOW_TRACKING"))):
        assert name in settings, f"{name} is read nowhere"
