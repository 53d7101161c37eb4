"""Model cards: what a reviewer needs to judge one evaluated model version.

One card per evaluated version, in Markdown (the MLflow model version's description,
the Dagster materialisation) and HTML (a file to share). Both are rendered from the
same blocks, so they can never disagree.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ml_platform.evaluation.plots import data_uri, title
from ml_platform.spec import ModelSpec


@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    """A plot: linked by file name in Markdown (the PNG sits beside the card, locally and in MLflow),
    embedded as a data URI in HTML (so the one file can be mailed or attached and still show it)."""

    title: str
    path: str


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _interval(ci) -> str:
    return f"{_number(ci[0])} to {_number(ci[1])}" if ci else "n/a"


def blocks(spec: ModelSpec, report: dict) -> list:
    """The card's content, from the spec and the evaluation report."""
    lineage, data = report["lineage"], report["training_data"]
    gates = report["gates"]
    verdict = "passed every gate" if all(g["passed"] for g in gates) else "FAILED at least one gate"
    out = [
        Heading(f"Model card: {spec.name} version {report['model_version']}"),
        Paragraph(f"{spec.description.strip()} This version {verdict}."),
        Heading("Model details"),
        Table(
            ["field", "value"],
            [
                ["task", spec.task.value],
                ["estimator", spec.estimator.class_path],
                ["decision threshold", _number(spec.threshold, 2)],
                ["owner", spec.owner],
                ["evaluated at", report["evaluated_at"]],
                ["deployment policy", spec.deployment.policy],
                ["human approval", spec.deployment.approval],
            ],
        ),
        Heading("Intended use"),
        Paragraph(spec.intended_use.strip() or "Not stated in the spec."),
        Heading("Out-of-scope use"),
        Paragraph(spec.out_of_scope_use.strip() or "Not stated in the spec."),
        Heading("Training data"),
        Table(
            ["field", "value"],
            [
                ["batches", ", ".join(data["batches"])],
                [
                    "rows (train / validation / test)",
                    f"{data['rows']['train']} / {data['rows']['validation']} / {data['rows']['test']}",
                ],
                ["event time range", data.get("event_time_range") or "n/a"],
                ["outcome rate", _number(data.get("outcome_rate"))],
            ],
        ),
        Heading("Metrics on the held-out test set"),
        Table(
            ["metric", "value", f"{int(report.get('confidence', 0.95) * 100)}% interval", "champion"],
            [
                [
                    m,
                    _number(v),
                    _interval(report["metric_ci"].get(m)),
                    _number((report["champion_metrics"] or {}).get(m)),
                ]
                for m, v in report["metrics"].items()
            ],
        ),
    ]
    if report.get("calibration"):
        c = report["calibration"]
        out += [
            Heading("Calibration"),
            Paragraph(
                f"Expected calibration error {_number(c['ece'])}; calibration slope {_number(c['slope'])} and "
                f"intercept {_number(c['intercept'])} (a perfectly calibrated model has slope 1 and intercept 0)."
            ),
        ]
    out += _fairness_blocks(report.get("fairness") or {})
    if report.get("plots"):
        out += [Heading("Plots"), *[Image(title(name), path) for name, path in report["plots"].items()]]
    out += [
        Heading("Gates"),
        Table(
            ["gate", "verdict", "value", "threshold", "champion", "reason"],
            [
                [
                    g["gate"],
                    "pass" if g["passed"] else "FAIL",
                    _number(g.get("value")),
                    _number(g.get("threshold")),
                    _number(g.get("champion")),
                    g["reason"],
                ]
                for g in gates
            ],
        ),
        Heading("Caveats"),
        *[Paragraph(f"- {c}") for c in _caveats(spec, report)],
        Heading("Lineage"),
        Table(["field", "value"], [[k.replace("_", " "), str(v)] for k, v in lineage.items()]),
    ]
    return out


def _fairness_blocks(fairness: dict) -> list:
    out = []
    for attribute, result in fairness.items():
        metrics = sorted({m for g in result["groups"] for m in g["metrics"]})
        shown = [m for m in ("roc_auc", "sensitivity", "specificity", "ppv", "positive_rate", "mae") if m in metrics]
        out += [
            Heading(f"Performance by {attribute}"),
            Table(
                ["group", "n", *shown],
                [
                    [
                        str(g["group"]) + (" (small)" if g.get("small") else ""),
                        str(g["n"]),
                        *[_number(g["metrics"].get(m)) for m in shown],
                    ]
                    for g in result["groups"]
                ],
            ),
        ]
        differences = ", ".join(f"{m} {_number(v)}" for m, v in result.get("difference", {}).items() if m in shown)
        out.append(Paragraph(f"Largest between-group differences: {differences or 'n/a'}."))
    return out


def _caveats(spec: ModelSpec, report: dict) -> list[str]:
    caveats = list(spec.caveats)
    for attribute, result in (report.get("fairness") or {}).items():
        small = [f"{g['group']} (n={g['n']})" for g in result["groups"] if g.get("small")]
        if small:
            caveats.append(f"Groups of {attribute} too small for reliable estimates: {', '.join(small)}.")
    if report["test_rows"] < 500:
        caveats.append(f"The test set has only {report['test_rows']} rows; intervals are wide.")
    return caveats or ["None recorded."]


def to_markdown(content: list, image_url: Callable[[str], str] | None = None) -> str:
    """The card as Markdown; ``image_url(file_name)`` says where an image is served (default: the
    file name, for the Markdown file that sits beside its PNGs)."""
    lines = []
    for block in content:
        if isinstance(block, Heading):
            level = "#" if not lines else "##"
            lines += [f"{level} {block.text}", ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Image):
            name = Path(block.path).name
            lines += [f"![{block.title}]({image_url(name) if image_url else name})", ""]
        else:
            cells = [block.header, ["---"] * len(block.header), *block.rows]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells] + [""]
    return "\n".join(lines)


def to_html(content: list) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Model card</title><style>"
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}</style></head><body>"
    ]
    first = True
    for block in content:
        if isinstance(block, Heading):
            tag = "h1" if first else "h2"
            parts.append(f"<{tag}>{html.escape(block.text)}</{tag}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Image):
            source = data_uri(Path(block.path).read_bytes())
            parts.append(f"<figure><img src='{source}' alt='{html.escape(block.title)}'></figure>")
        else:
            head = "".join(f"<th>{html.escape(c)}</th>" for c in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            parts.append(f"<table><tr>{head}</tr>{rows}</table>")
        first = False
    return "".join(parts) + "</body></html>"
