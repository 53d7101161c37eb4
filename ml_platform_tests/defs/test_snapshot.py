"""A snapshot of each shipped model's definitions, so a change to the graph is a visible diff.

Asset keys, dependencies, groups, kinds, checks (and whether they block), sensors and
schedules are users' contracts. When a change to them is intended, regenerate the
snapshots with ``python -m ml_platform_tests.defs.test_snapshot`` and review the diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ml_platform.defs import build_definitions
from ml_platform.spec import SHIPPED_SPECS_DIR, load_specs

SNAPSHOTS = Path(__file__).parent / "snapshots"


def snapshot(defs, model: str) -> dict:
    """The user-facing shape of one model's definitions, as plain sorted data."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        if key.path[0] != model:
            continue
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitioned": node.partitions_def is not None,
            "automation": node.automation_condition is not None,
        }
    checks = {}
    for assets_def in graph.assets_defs:
        for check in assets_def.check_specs:
            if check.asset_key.path[0] == model:
                checks[f"{check.asset_key.to_user_string()}:{check.name}"] = {"blocking": check.blocking}
    sensors = sorted(s.name for s in defs.sensors or [] if s.name.startswith(f"{model}_"))
    schedules = sorted(s.name for s in defs.schedules or [] if s.name.startswith(f"{model}_"))
    return {"assets": assets, "checks": dict(sorted(checks.items())), "sensors": sensors, "schedules": schedules}


def current(tmp_home: Path) -> dict[str, dict]:
    defs = build_definitions(specs_dir=SHIPPED_SPECS_DIR, home=tmp_home)
    return {spec.name: snapshot(defs, spec.name) for spec in load_specs(SHIPPED_SPECS_DIR)}


@pytest.mark.parametrize("model", [s.name for s in load_specs(SHIPPED_SPECS_DIR)])
def test_definitions_match_their_snapshot(tmp_path, home, model):
    path = SNAPSHOTS / f"{model}.json"
    assert path.exists(), f"no snapshot for {model}: run `python -m ml_platform_tests.defs.test_snapshot`"
    assert current(tmp_path)[model] == json.loads(path.read_text())


def test_the_snapshot_sees_a_changed_graph(tmp_path, home):
    """A graph without the blocking gates would not match: the snapshot can fail."""
    snap = json.loads((SNAPSHOTS / "readmission_risk.json").read_text())
    assert snap["checks"]["readmission_risk/evaluation_report:fairness"] == {"blocking": True}
    assert snap["assets"]["readmission_risk/deployment"]["deps"] == ["readmission_risk/evaluation_report"]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        SNAPSHOTS.mkdir(exist_ok=True)
        for name, snap in current(Path(folder)).items():
            (SNAPSHOTS / f"{name}.json").write_text(json.dumps(snap, indent=2, sort_keys=True) + "\n")
            print(f"wrote {SNAPSHOTS / name}.json", file=sys.stderr)
