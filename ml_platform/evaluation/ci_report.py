"""The Markdown report of ``ml-platform ci``: what a reviewer reads in the pull request.

Per model: the verdict, the data contract on the reference sample, metrics with intervals and
their change against the champion, every gate, the per-group tables and the plots. Numbers are
rendered from the CI result (also written as JSON), never recomputed here.
"""

from __future__ import annotations

import math
from pathlib import Path

from ml_platform.evaluation.ci import relative_to
from ml_platform.evaluation.plots import title

MARKER = "<!-- ml-platform-ci -->"  # finds the one pull-request comment to update
GROUP_METRICS = ("roc_auc", "sensitivity", "specificity", "ppv", "brier", "mae")


def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def signed(value) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    cells = [header, ["---"] * len(header), *rows]
    return ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in cells] + [
        ""
    ]


def verdict_word(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def summary_line(result: dict) -> str:
    """One line for the end of a log: how many models passed, which gates failed."""
    trained = [m for m in result["models"] if "skipped" not in m]
    failed = [m for m in result["models"] if not m["passed"]]
    reasons = "; ".join(f"{m['model']}: {', '.join(g['gate'] for g in m['gates'] if not g['passed'])}" for m in failed)
    skipped = len(result["models"]) - len(trained)
    head = f"{verdict_word(result['passed'])}: {len(trained)} model(s) checked, {len(failed)} failed"
    return head + (f", {skipped} unchanged (skipped)" if skipped else "") + (f" ({reasons})" if reasons else "")


def render(result: dict, report_dir: Path, definitions: str | None = None) -> str:
    """The whole report; plot links are relative to ``report_dir``, where the report is written."""
    sample = result["sample"]
    size = (
        "full size"
        if sample["mode"] == "full"
        else f"sampled, {sample['rows']:,} rows a model (--full for the real size)"
    )
    lines = [
        MARKER,
        f"# Model CI: {summary_line(result)}",
        "",
        f"Code `{result['code_version']}`, {result['generated_at']}; reference samples {size}. "
        "Candidates were trained in a throwaway MLflow store: nothing was registered or promoted.",
        "",
    ]
    if definitions:
        lines += [f"Specs and Dagster definitions: {definitions}", ""]
    lines += table(
        ["model", "verdict", "failed gates", "champion"],
        [
            [
                m["model"],
                "skipped" if "skipped" in m else verdict_word(m["passed"]),
                ", ".join(g["gate"] for g in m.get("gates", []) if not g["passed"]) or m.get("skipped", "none"),
                (m.get("champion") or {}).get("source", "n/a"),
            ]
            for m in result["models"]
        ],
    )
    for model in result["models"]:
        lines += model_section(model, report_dir)
    return "\n".join(lines)


def model_section(m: dict, report_dir: Path) -> list[str]:
    if "skipped" in m:
        return [f"## {m['model']}: skipped", "", f"{m['skipped']} (spec hash `{m['spec_hash']}`).", ""]
    lines = [f"## {m['model']}: {verdict_word(m['passed'])}", ""]
    changed = m["baseline_spec_hash"] and m["baseline_spec_hash"] != m["spec_hash"]
    spec_note = f"spec hash `{m['spec_hash']}`" + (
        f" (changed; baseline `{m['baseline_spec_hash']}`)" if changed else ""
    )
    contract = m["contract"]
    lines += [
        f"{spec_note}; reference sample {m['sample']['rows']:,} rows, digest `{m['sample']['digest']}`. "
        f"Data contract: {contract['verdict']['reason']}.",
        "",
    ]
    if "metrics" not in m:
        return lines
    rows = m["rows"]
    champion = m["champion"]
    lines += [
        f"Split {rows['train']} / {rows['validation']} / {rows['test']} (train / validation / test). "
        f"Compared with: **{champion['source']}** ({champion['note']}).",
        "",
        "### Metrics on the test rows",
        "",
    ]
    reference = champion["metrics"] or {}
    lines += table(
        ["metric", "candidate", "95% interval", "champion", "change"],
        [
            [name, fmt(value), fmt(m["metric_ci"].get(name)), fmt(reference.get(name)), signed(m["delta"].get(name))]
            for name, value in m["metrics"].items()
        ],
    )
    lines += ["### Gates", ""]
    lines += table(
        ["gate", "verdict", "value", "threshold", "champion", "reason"],
        [
            [
                g["gate"],
                verdict_word(g["passed"]),
                fmt(g["value"]),
                fmt(g["threshold"]),
                fmt(g["champion"]),
                g["reason"],
            ]
            for g in m["gates"]
        ],
    )
    if m.get("calibration"):
        c = m["calibration"]
        lines += [f"Calibration: ECE {fmt(c['ece'])}, slope {fmt(c['slope'])}, intercept {fmt(c['intercept'])}.", ""]
    for attribute, entry in (m.get("fairness") or {}).items():
        lines += group_table(attribute, entry)
    if m.get("plots"):
        lines += ["### Plots", ""]
        lines += [f"![{title(name)}]({relative_to(path, report_dir)})" for name, path in m["plots"].items()] + [""]
    return lines


def group_table(attribute: str, entry: dict) -> list[str]:
    """Per-group metrics with their bootstrap intervals (when the spec asks for them)."""
    present = {name for g in entry["groups"] for name in g["metrics"]}
    shown = [name for name in GROUP_METRICS if name in present]
    rows = []
    for g in entry["groups"]:
        cells = []
        for name in shown:
            ci = (g.get("ci") or {}).get(name)
            cells.append(fmt(g["metrics"].get(name)) + (f" ({fmt(ci[0])} to {fmt(ci[1])})" if ci else ""))
        rows.append([g["group"] + (" (small)" if g.get("small") else ""), str(g["n"]), *cells])
    differences = ", ".join(f"{name} {fmt(entry['difference'].get(name))}" for name in shown)
    return [
        f"### Performance by {attribute}",
        "",
        *table(["group", "n", *shown], rows),
        f"Largest differences: {differences}.",
        "",
    ]
