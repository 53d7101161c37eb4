"""Every MLflow registry alias and tag name the platform reads or writes, in one place.

Aliases say what serves patients; version tags carry each version's lineage and the
governance decisions about it. The governance service writes them; the endpoint, the
CLI and the checks read them.
"""

CHAMPION, CHALLENGER = "champion", "challenger"
ALIASES = (CHAMPION, CHALLENGER)

# Lineage, set when a candidate is registered.
MODEL = "ml_platform.model"
DATA_VERSION = "ml_platform.data_version"
SPEC_HASH = "ml_platform.spec_hash"
CODE_VERSION = "ml_platform.code_version"
DATASET_DIGEST = "ml_platform.dataset_digest"
DAGSTER_RUN_ID = "dagster.run_id"

# Governance decisions.
GATES = "ml_platform.gates"  # "passed" or "failed", set by the evaluation
GATE_FAILURES = "ml_platform.gate_failures"  # the failed gates, comma-separated
APPROVAL = "ml_platform.approval"  # "pending", "approved" or "rejected"
DEPLOYED_AS = "ml_platform.deployed_as"  # the alias a promotion moved to the version
ATTESTATION = "ml_platform.attestation"  # the governance service's signed statement that the version may serve
