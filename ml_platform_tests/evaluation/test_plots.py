"""Plots are real PNGs drawn from the very numbers the gates judged."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from sklearn.metrics import roc_curve

from ml_platform import metrics as catalogue
from ml_platform.evaluation import model_card, plots
from ml_platform.evaluation.calibration import calibration_summary
from ml_platform.evaluation.fairness import fairness_report


@pytest.fixture(scope="module")
def scored():
    """2,000 patients with risks that are informative but miscalibrated, and two sensitive attributes."""
    rng = np.random.default_rng(3)
    n = 2_000
    risk = rng.beta(2, 6, n)
    y = (rng.random(n) < np.clip(risk * 1.3, 0, 1)).astype(int)
    groups = pd.DataFrame(
        {
            "sex": rng.choice(["F", "M"], n),
            "race_ethnicity": rng.choice(
                ["White", "Black", "Hispanic", "Asian", "Other"], n, p=[0.6, 0.2, 0.12, 0.06, 0.02]
            ),
        }
    )
    return y, risk, groups


def is_png(data: bytes) -> bool:
    return data.startswith(plots.PNG_SIGNATURE) and len(data) > 1_000


def test_the_calibration_plot_draws_the_summary_bins_and_the_ideal_line(readmission, scored):
    y, risk, _ = scored
    summary = calibration_summary(y, risk, bins=10)
    figure = plots.calibration_figure(summary)
    ideal, model = figure.axes[0].lines[:2]
    assert list(ideal.get_xdata()) == [0, 1] and list(ideal.get_ydata()) == [0, 1]
    assert list(model.get_xdata()) == [b["mean_predicted"] for b in summary["bins"]]
    assert list(model.get_ydata()) == [b["observed_rate"] for b in summary["bins"]]
    assert f"ECE {summary['ece']:.3f}" in figure.axes[0].get_title()
    assert is_png(plots.to_png(figure))


def test_the_roc_curve_is_scikit_learns_with_the_gated_auc(readmission, scored):
    y, risk, _ = scored
    auc = catalogue.compute_metrics(readmission, y, risk)["roc_auc"]
    figure = plots.roc_figure(y, risk, auc)
    fpr, tpr, _ = roc_curve(y, risk)
    curve = figure.axes[0].lines[0]
    np.testing.assert_array_equal(curve.get_xdata(), fpr)
    np.testing.assert_array_equal(curve.get_ydata(), tpr)
    assert f"AUC {auc:.3f}" in curve.get_label()


def test_group_bars_show_each_groups_metric_and_bootstrap_interval(readmission, scored):
    y, risk, groups = scored
    report = fairness_report(readmission, groups, y, risk)
    entry = report["race_ethnicity"]
    figure = plots.fairness_figure("race_ethnicity", entry, ["sensitivity", "roc_auc"])
    axes = figure.axes[0]
    heights = [bar.get_height() for bar in axes.patches]
    assert heights == pytest.approx([g["metrics"]["sensitivity"] for g in entry["groups"]])
    # The error bar of each group spans its bootstrap interval.
    segments = axes.collections[0].get_segments()
    for segment, g in zip(segments, entry["groups"], strict=True):
        assert sorted(segment[:, 1]) == pytest.approx(sorted(g["ci"]["sensitivity"]))
    small = [g for g in entry["groups"] if g["small"]]
    assert small, "the data has a small group (Other, about 40 rows under a minimum of 150)"
    hatched = [bar.get_hatch() for bar in axes.patches]
    assert hatched.count("//") == len(small)
    assert is_png(plots.to_png(figure))


def test_drift_bars_are_the_scores_with_drifted_inputs_in_red():
    report = {
        "columns": [
            {"column": "age", "method": "wasserstein", "score": 0.31, "threshold": 0.1, "drifted": True},
            {"column": "sex", "method": "jensenshannon", "score": 0.02, "threshold": 0.1, "drifted": False},
        ],
        "share_drifted": 0.5,
        "share_threshold": 0.3,
    }
    figure = plots.drift_figure(report)
    bars = figure.axes[0].patches
    assert [bar.get_width() for bar in bars] == [0.31, 0.02]
    assert [to_hex(bar.get_facecolor()) for bar in bars] == [plots.FAIL_COLOUR, plots.PASS_COLOUR]
    thresholds = figure.axes[0].collections[0].get_offsets()
    assert list(thresholds[:, 0]) == [0.1, 0.1]
    assert is_png(plots.drift_plot(report))
    assert plots.drift_plot({"rows": 0}) is None


def test_an_evaluation_gets_every_plot_and_the_card_shows_them(readmission, scored, tmp_path):
    y, risk, groups = scored
    metrics = catalogue.compute_metrics(readmission, y, risk)
    calibration = calibration_summary(y, risk)
    fairness = fairness_report(readmission, groups, y, risk)
    pngs = plots.evaluation_plots(readmission, y, risk, metrics, calibration, fairness)
    assert list(pngs) == ["roc", "precision_recall", "calibration", "fairness_sex", "fairness_race_ethnicity"]
    assert all(is_png(png) for png in pngs.values())
    paths = plots.write_plots(pngs, tmp_path, prefix="evaluation_v1_")
    assert paths["roc"].read_bytes() == pngs["roc"]

    content = [model_card.Heading("Plots"), *[model_card.Image(plots.title(n), str(p)) for n, p in paths.items()]]
    markdown = model_card.to_markdown(content)
    assert "![Calibration (reliability) curve](evaluation_v1_calibration.png)" in markdown
    linked = model_card.to_markdown(content, lambda name: f"http://mlflow/get-artifact?path=model_card/{name}")
    assert "(http://mlflow/get-artifact?path=model_card/evaluation_v1_roc.png)" in linked
    html = model_card.to_html(content)
    embedded = html.split("src='data:image/png;base64,")[1].split("'")[0]
    assert base64.b64decode(embedded) == pngs["roc"]


def test_data_uris_decode_to_the_png(scored):
    y, risk, _ = scored
    png = plots.to_png(plots.precision_recall_figure(y, risk))
    uri = plots.data_uri(png)
    assert base64.b64decode(uri.removeprefix("data:image/png;base64,")) == png
    # And it is an image a reader can open, not just bytes with the right header.
    from matplotlib.image import imread

    assert imread(io.BytesIO(png), format="png").shape[2] in (3, 4)
