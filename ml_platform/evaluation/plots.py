"""Plots people read faster than tables: ROC and precision-recall curves, the calibration curve,
per-group metric bars with their intervals, and per-input drift scores against their thresholds.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot): no global backend or figure
registry, so a Dagster step, a server worker and a test can draw at the same time. Every figure
is built from the numbers the gates judged (the calibration summary, the fairness report, the
drift report), never recomputed differently, so a picture can not disagree with a verdict.
The PNG bytes are what every consumer gets: files beside the model card, MLflow artifacts,
base64 data URIs in Dagster's Markdown metadata and the HTML card, links in the CI report.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from ml_platform.spec import ModelSpec, Task

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 80  # small files: they travel base64-encoded inside Dagster metadata and model cards
SIZE = (5.0, 4.0)
PASS_COLOUR, FAIL_COLOUR, NEUTRAL_COLOUR = "#2c7fb8", "#d7301f", "#636363"
TITLES = {
    "roc": "ROC curve",
    "precision_recall": "Precision-recall curve",
    "calibration": "Calibration (reliability) curve",
    "drift": "Drift score per input",
}


# Margins around the axes, in inches, for the evaluation figures. Their texts are known in
# advance (axis labels, titles of at most two lines, ticks of values in [0, 1], two-line group
# labels), so fixed margins fit them; matplotlib's constrained layout measures every text an
# extra time per figure, which was about 40% of drawing them. The drift figure, whose labels
# are input names of any length, keeps constrained layout.
MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_RIGHT = 0.65, 0.5, 0.15
TITLE_LINE = 0.2  # height of one line of a title above the axes


def _figure(size: tuple[float, float] = SIZE, layout: str | None = None) -> Figure:
    figure = Figure(figsize=size, dpi=DPI, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def _margins(figure: Figure, title_lines: int, panels: int = 1) -> None:
    """Place the figure's axes (``panels`` side by side) inside fixed margins, with room above
    for ``title_lines`` lines and, between panels, for the next panel's ticks and axis label."""
    width, height = figure.get_size_inches()
    gap = MARGIN_LEFT + MARGIN_RIGHT
    panel_width = (width - MARGIN_LEFT - MARGIN_RIGHT - gap * (panels - 1)) / panels
    figure.subplots_adjust(
        left=MARGIN_LEFT / width,
        right=1 - MARGIN_RIGHT / width,
        bottom=MARGIN_BOTTOM / height,
        top=1 - (0.12 + TITLE_LINE * title_lines) / height,
        wspace=gap / max(panel_width, 0.1),  # in panel widths
    )


def to_png(figure: Figure) -> bytes:
    """The figure as PNG bytes, rendered by the Agg canvas."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """A base64 data URI: an image that needs no file server (Dagster UI, a shared HTML card)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def title(name: str) -> str:
    """A plot's human title from its name (``fairness_sex`` -> ``Performance by sex``)."""
    if name.startswith("fairness_"):
        return f"Performance by {name.removeprefix('fairness_')}"
    return TITLES.get(name, name.replace("_", " "))


# --------------------------------------------------------------------------- #
# Figures
# --------------------------------------------------------------------------- #
def roc_figure(y_true, scores, auc: float | None = None) -> Figure:
    """The ROC curve with the chance diagonal; the legend carries the AUC the gates used."""
    fpr, tpr, _ = roc_curve(np.asarray(y_true), np.asarray(scores, dtype=float))
    figure = _figure()
    axes = figure.add_subplot()
    label = "model" if auc is None or math.isnan(auc) else f"model (AUC {auc:.3f})"
    axes.plot(fpr, tpr, color=PASS_COLOUR, label=label)
    axes.plot([0, 1], [0, 1], color=NEUTRAL_COLOUR, linestyle="--", label="chance")
    _square(axes, "false positive rate (1 - specificity)", "true positive rate (sensitivity)")
    axes.set_title(TITLES["roc"])
    axes.legend(loc="lower right")
    _margins(figure, title_lines=1)
    return figure


def precision_recall_figure(y_true, scores, average_precision: float | None = None) -> Figure:
    """Precision against recall, with the prevalence as the no-skill line (what a ranking must beat)."""
    y = np.asarray(y_true)
    precision, recall, _ = precision_recall_curve(y, np.asarray(scores, dtype=float))
    figure = _figure()
    axes = figure.add_subplot()
    label = (
        "model" if average_precision is None or math.isnan(average_precision) else f"model (AP {average_precision:.3f})"
    )
    axes.step(recall, precision, where="post", color=PASS_COLOUR, label=label)
    prevalence = float(np.mean(y)) if len(y) else 0.0
    axes.axhline(prevalence, color=NEUTRAL_COLOUR, linestyle="--", label=f"prevalence {prevalence:.3f}")
    _square(axes, "recall (sensitivity)", "precision (PPV)")
    axes.set_title(TITLES["precision_recall"])
    axes.legend(loc="upper right")
    _margins(figure, title_lines=1)
    return figure


def calibration_figure(summary: dict) -> Figure:
    """Observed rate against mean predicted risk per bin (from ``calibration_summary``), with the
    ideal diagonal; marker area follows the bin's size, so sparse bins do not look decisive."""
    bins = summary.get("bins") or []
    predicted = [b["mean_predicted"] for b in bins]
    observed = [b["observed_rate"] for b in bins]
    sizes = np.asarray([b["n"] for b in bins], dtype=float)
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color=NEUTRAL_COLOUR, linestyle="--", label="perfectly calibrated")
    axes.plot(predicted, observed, color=PASS_COLOUR, marker="o", label="model")
    if len(sizes):
        axes.scatter(predicted, observed, s=20 + 180 * sizes / sizes.max(), color=PASS_COLOUR, alpha=0.3)
    _square(axes, "mean predicted risk", "observed rate")
    ece, slope = summary.get("ece"), summary.get("slope")
    axes.set_title(f"{TITLES['calibration']}\nECE {_fmt(ece)}, slope {_fmt(slope)}")
    axes.legend(loc="upper left")
    _margins(figure, title_lines=2)
    return figure


def fairness_figure(attribute: str, entry: dict, metrics: list[str]) -> Figure:
    """One panel per metric: a bar per group with its bootstrap interval; small groups hatched and
    greyed (reported, not counted in the difference when the spec excludes them)."""
    groups = entry["groups"]
    figure = _figure((max(5.0, 1.0 + 0.7 * len(groups)) * max(1, min(len(metrics), 2)), 4.0))
    panels = figure.subplots(1, len(metrics), squeeze=False)[0]
    confidence = entry.get("confidence", 0.95)
    for axes, metric in zip(panels, metrics, strict=True):
        values = [_nan(g["metrics"].get(metric)) for g in groups]
        low, high = _error_bars(groups, metric, values)
        colours = [PASS_COLOUR if g.get("counted", True) else NEUTRAL_COLOUR for g in groups]
        positions = np.arange(len(groups))
        bars = axes.bar(positions, values, color=colours, yerr=[low, high], capsize=4, ecolor="#252525")
        for bar, g in zip(bars, groups, strict=True):
            if g.get("small"):
                bar.set_hatch("//")
        axes.set_xticks(positions, [f"{g['group']}\nn={g['n']}" for g in groups], fontsize=8)
        axes.set_ylabel(metric)
        difference = (entry.get("difference") or {}).get(metric)
        axes.set_title(f"{metric} by {attribute}\nlargest difference {_fmt(difference)}", fontsize=10)
        if not any(math.isnan(v) for v in values) and all(0 <= v <= 1 for v in values):
            axes.set_ylim(0, 1.05)
    if entry.get("bootstrap"):
        figure.suptitle(f"bars: {confidence * 100:.0f}% bootstrap intervals", fontsize=8)
    _margins(figure, title_lines=3 if entry.get("bootstrap") else 2, panels=len(metrics))
    return figure


def drift_figure(report: dict) -> Figure:
    """Each input's drift score as a bar beside its threshold (a tick): drifted inputs in red.

    Tests differ per input (distance or p-value), so each threshold is drawn on its own row;
    for p-value tests a *lower* score means drift, which the verdict colour shows either way.
    """
    columns = report.get("columns") or []
    figure = _figure((6.0, max(2.5, 0.35 * len(columns) + 1.2)), layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(columns))
    scores = [float(c["score"]) for c in columns]
    colours = [FAIL_COLOUR if c["drifted"] else PASS_COLOUR for c in columns]
    axes.barh(positions, scores, color=colours)
    axes.scatter(
        [float(c["threshold"]) for c in columns], positions, marker="|", s=300, color="#252525", label="threshold"
    )
    axes.set_yticks(positions, [f"{c['column']} ({c['method']})" for c in columns], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("drift score")
    share, limit = report.get("share_drifted"), report.get("share_threshold")
    axes.set_title(f"{TITLES['drift']}: {_share(share)} drifted (window drifts at {_share(limit)})", fontsize=10)
    if columns:
        axes.legend(loc="lower right", fontsize=8)
    return figure


# --------------------------------------------------------------------------- #
# The plot sets of an evaluation and of a drift window
# --------------------------------------------------------------------------- #
def evaluation_plots(
    spec: ModelSpec, y_true, scores, metrics: dict, calibration: dict | None, fairness: dict
) -> dict[str, bytes]:
    """Every evaluation plot as PNG bytes, by name, in reading order."""
    plots = {}
    y = np.asarray(y_true)
    if spec.task == Task.binary_classification and len(np.unique(y)) == 2:
        plots["roc"] = to_png(roc_figure(y, scores, metrics.get("roc_auc")))
        plots["precision_recall"] = to_png(precision_recall_figure(y, scores, metrics.get("average_precision")))
    if calibration and calibration.get("bins"):
        plots["calibration"] = to_png(calibration_figure(calibration))
    for attribute, entry in fairness.items():
        if entry.get("groups"):
            plots[f"fairness_{attribute}"] = to_png(fairness_figure(attribute, entry, fairness_metrics(spec)))
    return plots


def fairness_metrics(spec: ModelSpec) -> list[str]:
    """The metrics the per-group bars show: those the fairness gate limits, else the headline metric."""
    if spec.gates.fairness and spec.gates.fairness.max_difference:
        return list(spec.gates.fairness.max_difference)
    return ["roc_auc"] if spec.task == Task.binary_classification else ["mae"]


def drift_plot(report: dict) -> bytes | None:
    """The drift window's plot, or None for a window without traffic."""
    return to_png(drift_figure(report)) if report.get("columns") else None


def write_plots(plots: dict[str, bytes], folder: Path, prefix: str = "") -> dict[str, Path]:
    """Write each PNG as ``folder/<prefix><name>.png``; return the paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, png in plots.items():
        paths[name] = folder / f"{prefix}{name}.png"
        paths[name].write_bytes(png)
    return paths


def markdown_images(images: dict[str, str]) -> str:
    """Markdown image links, one per plot: ``images`` maps a plot name to a URL, a relative path or a data URI."""
    return "\n\n".join(f"![{title(name)}]({target})" for name, target in images.items())


def _square(axes, xlabel: str, ylabel: str) -> None:
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)


def _error_bars(groups: list[dict], metric: str, values: list[float]) -> tuple[list[float], list[float]]:
    """Distances from each bar to its interval ends (zero where no interval was computed)."""
    low, high = [], []
    for g, value in zip(groups, values, strict=True):
        ci = (g.get("ci") or {}).get(metric)
        if not ci or ci[0] is None or ci[1] is None or math.isnan(value):
            low.append(0.0)
            high.append(0.0)
            continue
        low.append(max(0.0, value - float(ci[0])))
        high.append(max(0.0, float(ci[1]) - value))
    return low, high


def _nan(value) -> float:
    return math.nan if value is None else float(value)


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _share(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"
