"""The ``ml-platform`` command.

Every user-facing error (a bad spec, an unknown model, a bad argument) is printed as
one clear message with exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ml_platform.settings import mlflow_tracking_uri, platform_home
from ml_platform.specs import SpecError, get_spec, load_specs

KNOBS = ("covariate_shift", "concept_drift", "label_shift", "bias", "missingness", "corrupt_share")


def _seed(args) -> None:
    from ml_platform.data.simulators import seed_landing

    home = platform_home()
    specs = [get_spec(args.model)] if args.model else [s for s in load_specs() if s.source.simulator]
    for spec in specs:
        written = seed_landing(spec, home)
        state = f"landed {len(written)} batch(es)" if written else "landing folder already holds data; left as is"
        print(f"{spec.name}: {state} in {spec.landing_dir(home)}")


def _simulate(args) -> None:
    from ml_platform.data.simulators import simulate

    spec = get_spec(args.model)
    knobs = {k: getattr(args, k) for k in KNOBS if getattr(args, k) is not None}
    if args.bias_group:
        knobs["bias_group"] = args.bias_group
    path = simulate(spec, platform_home(), rows=args.rows, seed=args.seed, fmt=args.format, **knobs)
    print(f"landed {path} ({args.rows} rows); the {spec.name}_new_data sensor registers it within a minute")


def _specs(args) -> None:
    for spec in load_specs(args.dir):
        print(
            f"{spec.name}: {spec.task.value}, target {spec.target}, {len(spec.features.model_inputs)} features, "
            f"{spec.estimator.class_path} (spec hash {spec.spec_hash})"
        )


def _info(args) -> None:
    home = platform_home()
    print(f"platform home:       {home}")
    print(f"MLflow tracking URI: {mlflow_tracking_uri(home)}")
    print(f"MLflow UI:           mlflow ui --backend-store-uri {mlflow_tracking_uri(home)} --port 5000")
    for spec in load_specs():
        print(f"{spec.name} landing: {spec.landing_dir(home)}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-platform", description="Continuous training for clinical risk models.")
    commands = parser.add_subparsers(dest="command", required=True)

    seed = commands.add_parser("seed", help="land initial data for every model with a simulator")
    seed.add_argument("--model", help="only this model")
    seed.set_defaults(run=_seed)

    sim = commands.add_parser("simulate", help="land one simulated batch in a model's landing folder")
    sim.add_argument("model")
    sim.add_argument("--rows", type=int, default=5000)
    sim.add_argument("--seed", type=int, help="random seed (default: the batch number)")
    sim.add_argument("--format", choices=["csv", "parquet"], default="csv")
    for knob in KNOBS:
        sim.add_argument(f"--{knob.replace('_', '-')}", dest=knob, type=float)
    sim.add_argument("--bias-group", help="subgroup for --bias, as column=value (default race_ethnicity=Black)")
    sim.set_defaults(run=_simulate)

    specs = commands.add_parser("specs", help="validate and list the model specs")
    specs.add_argument(
        "--dir", type=Path, help="folder of spec files (default: ML_PLATFORM_SPECS or the shipped specs)"
    )
    specs.set_defaults(run=_specs)

    info = commands.add_parser("info", help="where the platform keeps its state and how to open MLflow")
    info.set_defaults(run=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (SpecError, ValueError, FileExistsError) as exc:
        print(f"ml-platform {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
