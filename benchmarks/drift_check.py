"""Drift check: the platform's ``detect_drift`` against Evidently's ``DataDriftPreset`` on large windows.

    .venv/bin/python benchmarks/drift_check.py [--rows 1000000] [--repeat 1] [--sweep 10000,30000,100000,300000]

Data (generated once per run, not timed): a reference window and, per scenario, a current window of
``--rows`` rows each, 30 columns (19 numeric, 11 categorical):

* 17 columns of ``generate_readmission`` (11 numeric, the 5 categoricals and ``readmitted_30d`` as a
  categorical), with ``missingness`` on the labs so that missing values are dropped on both sides;
* ``prediction``: the true readmission risk, ``sigmoid(readmission_logit(frame))``, standing in for the
  champion's score column;
* 12 extra columns drawn here, each from its own seeded stream: numeric ``bmi``, ``hemoglobin``,
  ``sodium``, ``n_procedures`` (counts 0-10), ``days_since_last_discharge`` (missing without a prior
  admission), ``icu_stay`` (0/1) and ``oxygen_support`` (0-3), the last two numeric with <= 5 values so
  tested as categorical; categorical ``ward`` (12 values), ``diagnosis_group`` (40, Zipf-like),
  ``discharge_weekday``, ``language`` (rare values) and ``smoking_status`` (15% missing).

The reference is seed ``--seed`` with no shift; each scenario's current window is seed ``--seed`` + 1 with
``covariate_shift`` at the scenario's level (none 0, small ``--small-shift``, large ``--large-shift``). The same
level moves ``bmi``, ``hemoglobin``, ``n_procedures``, ``icu_stay``, ``oxygen_support``, ``ward`` and
``diagnosis_group``; ``sodium``, the weekday, ``language`` and ``smoking_status`` never move, and
``days_since_last_discharge`` only changes how often it is missing.

Timed, per scenario and repeat, alternating which side runs first, median reported:

* **platform**: ``detect_drift(reference, current, numeric, categorical)`` with its defaults
  (``DEFAULT_SAMPLE_ROWS``, seed 0);
* **platform, all rows**: the same with ``sample_rows=None`` (no sampling);
* **Evidently**: ``evidently_drift``: ``Dataset.from_pandas`` for both frames with a ``DataDefinition``
  naming the same numeric and categorical columns, ``Report([DataDriftPreset()]).run(...)`` with defaults,
  and reading the per-column results from the snapshot.

Agreement is the share of columns whose verdict (drifted or not) is the same as Evidently's. Imports and a
2,000-row warm-up of both sides are not timed. The CPU used by other processes is measured during every timed
call; a call that overlapped more than ``--max-other-load`` cores is run again (``--retries``).

``--sweep`` measures the choice of ``DEFAULT_SAMPLE_ROWS`` on the numeric columns, the only ones the sample
size affects: per sample size, over ``--sweep-seeds`` sampling seeds, the median seconds (against all rows),
the lowest agreement with the all-rows verdicts (whose scores are Evidently's), how many columns were
recomputed on all rows for being near the threshold, the lowest agreement without that recomputation, and
the sampling noise of the normed Wasserstein distance, ``|sampled - all rows| / sqrt(1/k_reference +
1/k_current)`` (99th percentile and maximum over columns and seeds), which ``REFINE_MARGIN`` must exceed.

A script, not a test: nothing asserts times. See docs/benchmarks.md.
"""

import argparse
import functools
import gc
import json
import math
import os
import platform as host
import re
import resource
import statistics
import sys
import time
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from cpu_load import OtherLoad

from ml_platform.data.synthetic import generate_readmission, readmission_logit
from ml_platform.monitoring import drift
from ml_platform.monitoring.drift import DEFAULT_SAMPLE_ROWS, DriftResult, detect_drift, evidently_drift

TARGET_SPEEDUP = 10.0
TARGET_AGREEMENT = 0.95
GENERATED_NUMERIC = [
    "age", "length_of_stay", "prior_admissions_12m", "charlson_index", "n_chronic_conditions", "hba1c",
    "creatinine", "glucose", "systolic_bp", "heart_rate", "medication_count",
]  # fmt: skip
GENERATED_CATEGORICAL = ["sex", "race_ethnicity", "payer", "admission_type", "discharge_disposition", "readmitted_30d"]
EXTRA_NUMERIC = [
    "bmi", "hemoglobin", "sodium", "n_procedures", "days_since_last_discharge", "icu_stay", "oxygen_support",
]  # fmt: skip
EXTRA_CATEGORICAL = ["ward", "diagnosis_group", "discharge_weekday", "language", "smoking_status"]
NUMERIC = [*GENERATED_NUMERIC, "prediction", *EXTRA_NUMERIC]
CATEGORICAL = [*GENERATED_CATEGORICAL, *EXTRA_CATEGORICAL]

WARDS = ("Medicine A", "Medicine B", "Cardiology", "Surgery", "Orthopaedics", "Neurology", "Oncology",
         "Renal", "Respiratory", "Gastro", "Geriatrics", "Short stay")  # fmt: skip
WARD_SHARES = np.array([16, 14, 10, 12, 8, 7, 6, 5, 7, 6, 5, 4], dtype=float)
DIAGNOSIS_GROUPS = tuple(f"CCS-{k:02d}" for k in range(1, 41))
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WEEKDAY_SHARES = np.array([17, 16, 16, 16, 19, 9, 7], dtype=float)
LANGUAGES = ("English", "Spanish", "Chinese", "Vietnamese", "Arabic", "Other")
LANGUAGE_SHARES = np.array([86, 9, 2, 1, 1, 1], dtype=float)
SMOKING = ("Never", "Former", "Current", None)
SMOKING_SHARES = np.array([42, 28, 15, 15], dtype=float)
OXYGEN_SHARES = np.array([70, 20, 7, 3], dtype=float)
EXTRA_STREAMS = ("bmi", "hemoglobin", "sodium", "procedures", "days", "icu", "oxygen", "ward", "diagnosis",
                 "weekday", "language", "smoking")  # fmt: skip


# --------------------------------------------------------------------------- #
# Data
# --------------------------------------------------------------------------- #
def draw(rng: np.random.Generator, labels, shares: np.ndarray, n: int) -> np.ndarray:
    """``n`` labels with the given shares (normalised), as an object array like a CSV extract gives."""
    index = rng.choice(len(shares), size=n, p=shares / shares.sum())
    return np.asarray(labels, dtype=object)[index]


def toward(shares: np.ndarray, target: np.ndarray, weight: float) -> np.ndarray:
    """Move a share ``weight`` (capped at 1) of the probability mass from ``shares`` to ``target``."""
    weight = min(1.0, weight)
    return (1 - weight) * shares / shares.sum() + weight * target / target.sum()


def extra_columns(frame: pd.DataFrame, seed: int, shift: float) -> dict[str, np.ndarray]:
    """The 12 extra columns (module docstring); ``shift`` is the readmission generator's covariate shift."""
    n = len(frame)
    rng = dict(zip(EXTRA_STREAMS, np.random.default_rng([seed, 12]).spawn(len(EXTRA_STREAMS)), strict=True))
    age = frame["age"].to_numpy(dtype=float)
    prior = frame["prior_admissions_12m"].to_numpy(dtype=float)
    zipf = 1.0 / np.arange(1, 41) ** 1.1
    return {
        "bmi": np.clip(np.round(rng["bmi"].normal(29.0 + 1.0 * shift, 6.0, n), 1), 14.0, 70.0),
        "hemoglobin": np.clip(
            np.round(rng["hemoglobin"].normal(12.8 - 0.3 * shift - 0.01 * (age - 62), 1.7), 1), 5, 20
        ),
        "sodium": np.clip(np.rint(rng["sodium"].normal(139.0, 3.5, n)), 115, 160),
        "n_procedures": np.minimum(rng["procedures"].poisson(1.2 * np.exp(0.2 * shift), n), 10),
        "days_since_last_discharge": np.where(prior > 0, np.ceil(rng["days"].exponential(90.0, n)), np.nan),
        "icu_stay": (rng["icu"].random(n) < 0.10 + 0.04 * shift).astype(np.int64),
        "oxygen_support": rng["oxygen"].choice(
            4, size=n, p=toward(OXYGEN_SHARES, np.array([1, 2, 2, 1.0]), 0.1 * shift)
        ),
        "ward": draw(rng["ward"], WARDS, toward(WARD_SHARES, np.eye(12)[2], 0.08 * shift), n),
        "diagnosis_group": draw(rng["diagnosis"], DIAGNOSIS_GROUPS, toward(zipf, zipf[::-1], 0.1 * shift), n),
        "discharge_weekday": draw(rng["weekday"], WEEKDAYS, WEEKDAY_SHARES, n),
        "language": draw(rng["language"], LANGUAGES, LANGUAGE_SHARES, n),
        "smoking_status": draw(rng["smoking"], SMOKING, SMOKING_SHARES, n),
    }


def window(rows: int, seed: int, shift: float, missingness: float) -> pd.DataFrame:
    """One window of the 30 benchmark columns."""
    frame = generate_readmission(rows, seed=seed, covariate_shift=shift, missingness=missingness)
    frame["prediction"] = 1.0 / (1.0 + np.exp(-readmission_logit(frame)))
    frame = frame.assign(**extra_columns(frame, seed, shift))
    return frame[[*NUMERIC, *CATEGORICAL]]


# --------------------------------------------------------------------------- #
# Measurement
# --------------------------------------------------------------------------- #
def timed(function, *args, **kwargs) -> tuple[float, float, DriftResult]:
    """(seconds, other processes' load in cores, result) of one call."""
    gc.collect()
    with OtherLoad() as load:
        start = time.perf_counter()
        result = function(*args, **kwargs)
        elapsed = time.perf_counter() - start
    return elapsed, load.cores, result


def timed_quietly(label: str, limits: argparse.Namespace, function, *args, **kwargs):
    """``timed``, run again while other processes used more than ``--max-other-load`` cores meanwhile
    (at most ``--retries`` times; then the last figure is kept with its load)."""
    for attempt in range(1 + limits.retries):
        elapsed, load, result = timed(function, *args, **kwargs)
        if load <= limits.max_other_load or attempt == limits.retries:
            return elapsed, load, result
        print(f"  {label}: {elapsed:.2f} s discarded, other processes used {load:.2f} cores", flush=True)
    raise AssertionError("unreachable")


def agreement(ours: DriftResult, theirs: DriftResult) -> float:
    """Share of the columns of ``ours`` whose verdict is the same in ``theirs``."""
    verdicts = {c.column: c.drifted for c in theirs.columns}
    return sum(c.drifted == verdicts[c.column] for c in ours.columns) / len(ours.columns)


def run_scenario(reference: pd.DataFrame, current: pd.DataFrame, args: argparse.Namespace) -> dict:
    """Median seconds of each side over ``--repeat`` alternating repeats, and their results.

    A call that overlapped more than ``--max-other-load`` cores of other processes is run again, up to
    ``--retries`` times (then kept, and its load printed).
    """
    sides = {
        "platform": lambda: detect_drift(reference, current, NUMERIC, CATEGORICAL),
        "platform_all_rows": lambda: detect_drift(reference, current, NUMERIC, CATEGORICAL, sample_rows=None),
    }
    if not args.no_evidently:
        sides["evidently"] = lambda: evidently_drift(reference, current, NUMERIC, CATEGORICAL)
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    loads: dict[str, list[float]] = {side: [] for side in sides}
    results: dict[str, DriftResult] = {}
    for i in range(args.repeat):
        for side in list(sides) if i % 2 == 0 else list(reversed(sides)):
            elapsed, load, results[side] = timed_quietly(side, args, sides[side])
            seconds[side].append(elapsed)
            loads[side].append(load)
            print(f"  repeat {i + 1}/{args.repeat}: {side} {elapsed:.2f} s (other load {load:.2f} cores)", flush=True)
    return {
        "seconds": {side: statistics.median(values) for side, values in seconds.items()},
        "all_seconds": seconds,
        "other_load": loads,
        "results": results,
    }


def sweep(reference: pd.DataFrame, current: pd.DataFrame, args: argparse.Namespace, exact: DriftResult) -> dict:
    """The numeric columns (the only ones ``sample_rows`` affects) at each ``--sweep`` sample size, over
    ``--sweep-seeds`` seeds: time and agreement with all rows, with and without the all-rows recomputation of
    borderline columns, and the sampling noise of the normed Wasserstein distance as
    ``|sampled - all rows| / sqrt(1/k_reference + 1/k_current)`` (what ``REFINE_MARGIN`` must exceed).
    """
    run = functools.partial(detect_drift, reference, current, NUMERIC, [], sample_rows=None)
    all_rows_seconds = timed_quietly("numeric columns, all rows", args, run)[0]
    scores = {c.column: c.score for c in exact.columns}
    rows = []
    for size in [int(s) for s in args.sweep.split(",") if s.strip()]:
        times, agree, raw_agree, refined, noise = [], [], [], [], []
        for seed in range(args.sweep_seeds):
            run = functools.partial(detect_drift, reference, current, NUMERIC, [], sample_rows=size, seed=seed)
            elapsed, _, result = timed_quietly(f"sample_rows={size}", args, run)
            times.append(elapsed)
            agree.append(agreement(result, exact))
            refined.append(sum(c.method == "wasserstein" and c.reference_rows > size for c in result.columns))
            raw = without_refinement(reference, current, size, seed)
            raw_agree.append(agreement(raw, exact))
            noise += [abs(c.score - scores[c.column]) / math.sqrt(1 / c.reference_rows + 1 / c.current_rows)
                      for c in raw.columns if c.method == "wasserstein"]  # fmt: skip
        rows.append(
            {
                "sample_rows": size,
                "seconds": statistics.median(times),
                "min_agreement": min(agree),
                "refined_columns": statistics.mean(refined),
                "min_agreement_unrefined": min(raw_agree),
                "noise_max": max(noise),
                "noise_p99": float(np.quantile(noise, 0.99)),
            }
        )
    return {"all_rows_seconds": all_rows_seconds, "sizes": rows}


def without_refinement(reference: pd.DataFrame, current: pd.DataFrame, size: int, seed: int) -> DriftResult:
    """The numeric columns with sampled distances kept as they are, even next to the threshold
    (``REFINE_MARGIN`` set to 0 for the call)."""
    saved, drift.REFINE_MARGIN = drift.REFINE_MARGIN, 0.0
    try:
        return detect_drift(reference, current, NUMERIC, [], sample_rows=size, seed=seed)
    finally:
        drift.REFINE_MARGIN = saved


def machine() -> dict:
    cpu = (
        re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        if Path("/proc/cpuinfo").exists()
        else None
    )
    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        memory = round(kib / 2**20, 1)
    except (OSError, AttributeError):
        memory = float("nan")
    packages = {p: version(p) for p in ("evidently", "numpy", "scipy", "pandas")}
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu.group(1).strip() if cpu else host.processor(),
        "memory_gib": memory,
        "python": host.python_version(),
        "packages": packages,
    }


# --------------------------------------------------------------------------- #
# Output
# --------------------------------------------------------------------------- #
def print_summary(rows: int, scenarios: dict) -> None:
    print(f"\n== {rows:,} rows x {len(NUMERIC) + len(CATEGORICAL)} columns, median seconds ==")
    print(
        f"{'scenario':<10}{'shift':>6}{'Evidently':>11}{'platform':>10}{'speed-up':>10}{'agree':>8}"
        f"{'all rows':>10}{'agree':>8}{'drifted (Evidently / platform)':>33}"
    )
    for name, s in scenarios.items():
        seconds, results = s["seconds"], s["results"]
        ours, exact, theirs = results["platform"], results["platform_all_rows"], results.get("evidently")
        evidently_s = f"{seconds['evidently']:.2f}" if theirs else "-"
        ratio = f"{seconds['evidently'] / seconds['platform']:.1f}x" if theirs else "-"
        agree = f"{agreement(ours, theirs):.0%}" if theirs else "-"
        agree_exact = f"{agreement(exact, theirs):.0%}" if theirs else "-"
        drifted = f"{len(theirs.drifted_columns) if theirs else '-'} / {len(ours.drifted_columns)}"
        print(
            f"{name:<10}{s['shift']:>6.2f}{evidently_s:>11}{seconds['platform']:>10.2f}{ratio:>10}"
            f"{agree:>8}{seconds['platform_all_rows']:>10.2f}{agree_exact:>8}{drifted:>33}"
        )
    print(f"target: >= {TARGET_SPEEDUP:.0f}x faster, the same verdict on >= {TARGET_AGREEMENT:.0%} of columns")


def print_columns(name: str, scenario: dict) -> None:
    results = scenario["results"]
    theirs = results.get("evidently") or results["platform_all_rows"]
    label = "Evidently" if "evidently" in results else "all rows"
    print(f"\n-- {name}: per column (score, drifted) --")
    print(f"{'column':<27}{'method':<15}{label:>18}{'platform':>18}{'rows used (ref/cur)':>24}")
    for a, b in zip(results["platform"].columns, theirs.columns, strict=True):
        mark = "" if a.drifted == b.drifted else "   <- verdicts differ"
        print(
            f"{a.column:<27}{a.method:<15}{b.score:>12.4g} {'D' if b.drifted else '.':>4} "
            f"{a.score:>12.4g} {'D' if a.drifted else '.':>4}{f'{a.reference_rows:,}/{a.current_rows:,}':>24}{mark}"
        )


def print_sweep(name: str, figures: dict) -> None:
    print(
        f"\n-- {name}: the {len(NUMERIC)} numeric columns by sample size; all rows {figures['all_rows_seconds']:.2f} s --"
    )
    print(
        f"{'sample_rows':>12}{'seconds':>9}{'agree':>7}{'refined':>9}{'agree unrefined':>17}{'noise p99':>11}{'max':>7}"
    )
    for r in figures["sizes"]:
        print(f"{r['sample_rows']:>12,}{r['seconds']:>9.2f}{r['min_agreement']:>7.0%}{r['refined_columns']:>9.1f}"
              f"{r['min_agreement_unrefined']:>17.0%}{r['noise_p99']:>11.2f}{r['noise_max']:>7.2f}")  # fmt: skip


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the reference and of each current window")
    parser.add_argument(
        "--repeat", type=int, default=1, help="alternating repeats per scenario; the median is reported"
    )
    parser.add_argument(
        "--seed", type=int, default=2024, help="seed of the reference; the current windows use seed + 1"
    )
    parser.add_argument("--small-shift", type=float, default=0.3, help="covariate_shift of the small-shift scenario")
    parser.add_argument("--large-shift", type=float, default=1.5, help="covariate_shift of the large-shift scenario")
    parser.add_argument("--missingness", type=float, default=0.05, help="share of each lab missing, on both sides")
    parser.add_argument(
        "--sweep",
        default="",
        help="comma-separated sample sizes to compare with all rows (e.g. 10000,30000,100000,300000); empty: no sweep",
    )
    parser.add_argument("--sweep-seeds", type=int, default=5, help="sampling seeds per sample size in the sweep")
    parser.add_argument("--no-evidently", action="store_true", help="skip Evidently (e.g. for a quick sweep)")
    parser.add_argument(
        "--max-other-load",
        type=float,
        default=0.3,
        help="run a call again when other processes used more CPU (cores) than this meanwhile",
    )
    parser.add_argument("--retries", type=int, default=2, help="reruns allowed per call (then the figure is kept)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    report = {
        "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "rows": args.rows,
        "default_sample_rows": DEFAULT_SAMPLE_ROWS,
    }
    print(f"machine: {report['machine']}")
    small = window(2_000, args.seed, 0.0, args.missingness)  # imports and a warm-up of each side, not timed
    detect_drift(small, small, NUMERIC, CATEGORICAL)
    if not args.no_evidently:
        evidently_drift(small, small, NUMERIC, CATEGORICAL)
    start = time.perf_counter()
    reference = window(args.rows, args.seed, 0.0, args.missingness)
    print(f"reference: {args.rows:,} rows generated in {time.perf_counter() - start:.1f} s (not timed)", flush=True)
    levels = {"none": 0.0, "small": args.small_shift, "large": args.large_shift}
    scenarios, sweeps = {}, {}
    for name, shift in levels.items():
        current = window(args.rows, args.seed + 1, shift, args.missingness)
        print(f"scenario {name} (covariate_shift {shift}):", flush=True)
        scenarios[name] = {"shift": shift, **run_scenario(reference, current, args)}
        print_columns(name, scenarios[name])
        if args.sweep:
            sweeps[name] = sweep(reference, current, args, scenarios[name]["results"]["platform_all_rows"])
            print_sweep(name, sweeps[name])
        del current
    print_summary(args.rows, scenarios)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"peak RSS of this process (Evidently's run dominates): {peak:,.0f} MiB")
    if args.json:
        report["scenarios"] = {
            name: {
                "shift": s["shift"],
                "seconds": s["seconds"],
                "all_seconds": s["all_seconds"],
                "other_load": s["other_load"],
                "results": {side: r.to_dict() for side, r in s["results"].items()},
            }
            for name, s in scenarios.items()
        }
        report["sweeps"] = sweeps
        report["peak_rss_mib"] = peak
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
