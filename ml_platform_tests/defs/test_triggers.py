"""Retrain triggers on a real instance: each reads the verdicts the monitoring assets recorded."""

from __future__ import annotations

from dagster import AssetKey, AssetMaterialization, SkipReason, build_sensor_context

from ml_platform.defs.resources import platform_resources
from ml_platform.defs.sensors import TRIGGER_TAG
from ml_platform.defs.triggers import REASON_TAG
from ml_platform.governance.audit import AuditTrail
from ml_platform.store import predictions as prediction_log

MODEL = "readmission_risk"
WINDOWS = ["2026-11-20-08:00", "2026-11-20-09:00", "2026-11-20-10:00", "2026-11-20-11:00"]


def report(platform, asset: str, partition: str, **metadata) -> None:
    """A monitoring materialisation as the asset records it (only the verdict fields sensors read)."""
    platform.instance.report_runless_asset_event(
        AssetMaterialization(AssetKey([MODEL, asset]), partition=partition, metadata=metadata)
    )


def drift(platform, partition: str, drifted: bool) -> None:
    report(
        platform, "drift_report", partition, drifted=drifted, reason=f"{'6' if drifted else '0'} of 17 inputs drifted"
    )


def tick(platform, name: str, cursor: str | None = None):
    sensor = platform.defs.get_sensor_def(f"{MODEL}_{name}")
    return sensor(build_sensor_context(instance=platform.instance, cursor=cursor))


def requests(result) -> list:
    return [] if isinstance(result, SkipReason) or result is None else list(result.run_requests or [])


def audit_events(platform) -> list:
    audit = AuditTrail(platform_resources(platform.home)["database"].engine())
    return [r for r in audit.timeline(MODEL) if r.event == "retrain_requested"]


def test_no_drift_no_run(platform):
    for window in WINDOWS:
        drift(platform, window, False)
    result = tick(platform, "drift")
    assert requests(result) == [] and "did not drift" in result.skip_message


def test_a_single_noisy_window_does_not_retrain(platform):
    drift(platform, WINDOWS[0], False)
    drift(platform, WINDOWS[1], True)
    result = tick(platform, "drift")
    assert requests(result) == [] and "did not drift" in result.skip_message
    drift(platform, WINDOWS[2], False)  # the drift did not last
    assert requests(tick(platform, "drift")) == []


def test_sustained_drift_fires_once_with_its_reason_tagged_and_audited(platform):
    drift(platform, WINDOWS[0], True)
    drift(platform, WINDOWS[1], True)
    result = tick(platform, "drift")
    [request] = requests(result)
    assert request.tags[TRIGGER_TAG] == "drift"
    assert "2 consecutive windows (2026-11-20-08:00 .. 2026-11-20-09:00)" in request.tags[REASON_TAG]
    assert platform.defs.get_sensor_def(f"{MODEL}_drift").job_name == f"{MODEL}_retrain"  # training set + candidate
    [record] = audit_events(platform)
    assert record.details["trigger"] == "drift" and record.details["reason"] == request.tags[REASON_TAG]
    again = tick(platform, "drift", cursor=result.cursor)
    assert requests(again) == [] and "already requested" in again.skip_message
    assert len(audit_events(platform)) == 1


def test_windows_must_be_consecutive(platform):
    drift(platform, WINDOWS[0], True)
    drift(platform, WINDOWS[2], True)  # 09:00 never reported (no monitoring run)
    result = tick(platform, "drift")
    assert requests(result) == [] and "not consecutive" in result.skip_message


def test_cooldown_holds_after_a_retrain(platform):
    platform.instance.report_runless_asset_event(AssetMaterialization(AssetKey([MODEL, "candidate_model"])))
    drift(platform, WINDOWS[0], True)
    drift(platform, WINDOWS[1], True)
    result = tick(platform, "drift")
    assert requests(result) == [] and "cooldown" in result.skip_message and "360 min" in result.skip_message
    assert audit_events(platform) == []


def test_degradation_fires_on_the_latest_window_verdict(platform):
    report(platform, "live_performance", WINDOWS[0], degraded=False, reason="estimated roc_auc 0.770 within bounds")
    assert requests(tick(platform, "degradation")) == []
    why = "measured roc_auc 0.610 dropped more than 0.05 below its evaluation value 0.770"
    report(platform, "live_performance", WINDOWS[1], degraded=True, reason=why)
    [request] = requests(tick(platform, "degradation"))
    assert request.tags[TRIGGER_TAG] == "degradation" and why in request.tags[REASON_TAG]


def test_new_outcomes_retrain_once_enough_arrived(platform, readmission):
    engine = platform_resources(platform.home)["database"].engine()
    rows = [
        {"model": MODEL, "prediction_id": None, "record_hash": f"h{i}", "outcome": 0.0, "observed_at": None,
         "received_at": prediction_log.now(), "source": "api"}
        for i in range(999)
    ]  # fmt: skip
    prediction_log.write_outcomes(engine, rows)
    result = tick(platform, "new_outcomes")
    assert requests(result) == [] and "999 new outcome(s)" in result.skip_message
    prediction_log.write_outcomes(engine, rows[:1])
    [request] = requests(tick(platform, "new_outcomes"))
    assert request.tags[TRIGGER_TAG] == "new_outcomes" and "1000 new outcome(s)" in request.tags[REASON_TAG]
