"""The ``ml-platform`` command.

Every user-facing error (a bad spec, an unknown model, a bad argument) is printed as
one clear message with exit status 2, not a traceback. A command's answer goes to stdout;
its log lines (text, or ECS JSON with ``ML_PLATFORM_LOG_FORMAT=json``) go to stderr, ending
with one line per command saying how it ended and how long it took.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ml_platform.data.simulators import BATCH_ROWS, seed_batch_count, seed_batches, simulate
from ml_platform.evaluation.ci import CHAMPION_SOURCES, SAMPLE_ROWS, STEPS, CiOptions, run_ci, write_baselines
from ml_platform.evaluation.ci_report import render, summary_line
from ml_platform.governance.reconcile import disagreements, models_with_alias_moves, reconcile
from ml_platform.governance.retention import files_before, parse_cutoff, retention_cutoff
from ml_platform.governance.service import Governance
from ml_platform.logs import configure_logging, is_json
from ml_platform.serving.config import HOST_ENV, TOKEN_FILE_ENV, check_binding, read_tokens
from ml_platform.serving.outcomes import set_aside_folders
from ml_platform.settings import dagster_home, get_settings, mlflow_tracking_uri, platform_home
from ml_platform.spec import SpecError, get_spec, load_specs
from ml_platform.store.private import restrict_new_files
from ml_platform.store.tags import CHAMPION

logger = logging.getLogger("ml_platform.cli")

KNOBS = ("covariate_shift", "concept_drift", "label_shift", "bias", "missingness", "corrupt_share")


def _progress() -> Progress:
    """A progress bar on stderr, so stdout keeps only the lines a script may read."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


def _seed(args) -> None:
    """Land each model's initial batches, showing progress while the files are written.

    Ends with one summary line: what was landed, how many rows, how long it took.
    """
    home = platform_home()
    specs = [get_spec(args.model)] if args.model else [s for s in load_specs() if s.source.simulator]
    started = time.monotonic()
    landed: dict[str, tuple[int, int]] = {}
    with _progress() as progress:
        task = progress.add_task("seeding", total=sum(seed_batch_count(s) for s in specs))
        for spec in specs:
            progress.update(task, description=f"seeding {spec.name}")
            landed[spec.name] = _seed_model(spec, home, progress, task)
        progress.update(task, description="seeded")
    print(_seed_summary(landed, time.monotonic() - started), flush=True)


def _seed_model(spec, home: Path, progress: Progress, task) -> tuple[int, int]:
    """Write one model's seed batches, advancing the bar per file; returns (batches, rows)."""
    batches = rows = 0
    for _, n in seed_batches(spec, home):
        batches, rows = batches + 1, rows + n
        progress.advance(task)
    if batches:
        print(f"{spec.name}: landed {batches} batch(es), {rows:,} rows in {spec.landing_dir(home)}")
    else:
        progress.advance(task, seed_batch_count(spec))
        print(f"{spec.name}: landing folder already holds data; left as is ({spec.landing_dir(home)})")
    return batches, rows


def _seed_summary(landed: dict[str, tuple[int, int]], seconds: float) -> str:
    """One line for the end of `seed`: totals, and which models were left alone."""
    seeded = [name for name, (batches, _) in landed.items() if batches]
    kept = [name for name in landed if name not in seeded]
    batches = sum(b for b, _ in landed.values())
    rows = sum(r for _, r in landed.values())
    line = f"seeded {len(seeded)} model(s): {batches} batch(es), {rows:,} rows in {seconds:.1f} s"
    if kept:
        line += f"; already seeded, left as is: {', '.join(kept)}"
    return line


def _simulate(args) -> None:
    spec = get_spec(args.model)
    knobs = {k: getattr(args, k) for k in KNOBS if getattr(args, k) is not None}
    if args.bias_group:
        knobs["bias_group"] = args.bias_group
    started = time.monotonic()
    # One call generates and writes the batch: the bar shows that it runs and for how long
    # (a million rows take tens of seconds), not a share done.
    with _progress() as progress:
        progress.add_task(f"simulating {args.rows:,} {spec.name} rows", total=None)
        path = simulate(spec, platform_home(), rows=args.rows, seed=args.seed, fmt=args.format, **knobs)
    print(
        f"landed {path} ({args.rows:,} rows, {path.stat().st_size / 2**20:,.1f} MiB) in "
        f"{time.monotonic() - started:.1f} s; the {spec.name}_new_data sensor registers it within a minute",
        flush=True,
    )


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


def _governance() -> Governance:
    """The governance service of the platform home, as the deployment asset uses it."""
    return Governance.for_home(platform_home())


def _decide(args) -> None:
    spec = get_spec(args.model)
    approve = args.command == "approve"
    decision = _governance().decide(spec, args.version, approve=approve, by=args.by, reason=args.reason)
    follow = "the approvals sensor deploys it within a minute" if approve else "it will not be deployed"
    print(f"{spec.name} version {args.version} {decision.status} by {args.by}; {follow}")


def _pending(args) -> None:
    waiting = _governance().pending(args.model)
    if not waiting:
        print("nothing waits for approval")
    for a in waiting:
        print(
            f"{a.model} version {a.version}: pending since {a.requested_at:%Y-%m-%d %H:%M} UTC; "
            f"ml-platform approve {a.model} {a.version} --by NAME --reason TEXT"
        )


def _rollback(args) -> None:
    spec = get_spec(args.model)
    details = _governance().roll_back(spec, args.to, by=args.by, reason=args.reason)
    _show_in_dagster(spec.name, {**details, "alias": CHAMPION, "by": args.by})
    print(f"{spec.name}: champion rolled back from version {details['from']} to {details['to']} by {args.by}")


def _release(args) -> None:
    spec = get_spec(args.model)
    change = _governance().release(spec, by=args.by, reason=args.reason)
    _show_in_dagster(spec.name, {**change, "by": args.by})
    print(
        f"{spec.name}: challenger version {change['version']} is now champion (was {change['previous']}), by {args.by}"
    )


def _show_in_dagster(model: str, metadata: dict) -> None:
    """Record a champion change made outside a run on the deployment asset, so the UI shows it."""
    folder = dagster_home()
    if not folder.is_dir():
        print(f"note: no Dagster instance at {folder} (DAGSTER_HOME); the change is in the registry and audit trail")
        return
    # Imported here: the other commands (and `serve`) run without loading the orchestrator.
    from dagster import AssetKey, AssetMaterialization, DagsterInstance

    with DagsterInstance.from_config(str(folder)) as instance:
        instance.report_runless_asset_event(
            AssetMaterialization(asset_key=AssetKey([model, "deployment"]), metadata=metadata)
        )


def _audit(args) -> None:
    if args.target == "verify":
        _verify()
        return
    if args.target == "seal":
        _seal(args)
        return
    get_spec(args.target)  # an unknown model is an error, not an empty timeline
    print(_governance().audit.format_timeline(args.target))


def _verify() -> None:
    """Settle interrupted promotions, then check the trail, its checkpoint and its agreement with the registry."""
    governance = _governance()
    audit = governance.audit
    settled = reconcile(governance.client, governance.engine, audit)
    for report in settled.reports:
        print(f"reconciled: {report}")
    verification = audit.check()
    models = sorted({spec.name for spec in load_specs()} | set(models_with_alias_moves(governance.engine)))
    problems = [*verification.problems, *settled.in_progress, *disagreements(governance.client, audit, models)]
    for note in verification.notes:
        print(f"note: {note}")
    for problem in problems:
        print(problem)
    if problems:
        raise ValueError(f"the audit trail has {len(problems)} problem(s); see above")
    print(
        f"audit trail intact: {verification.record_count} records, MAC chain and latest checkpoint verified; "
        "registry aliases agree with the trail"
    )


def _seal(args) -> None:
    if not args.by or not args.reason:
        raise ValueError("`audit seal` needs the name of who decides (--by) and a reason (--reason)")
    record = _governance().audit.seal(by=args.by, reason=args.reason)
    print(
        f"audit trail sealed under the audit key at record {record.id} by {args.by} "
        f"({record.details['checkpoints_set_aside']} earlier checkpoint(s) kept aside as evidence)"
    )


def _purge(args) -> None:
    """Delete prediction-log rows, outcomes and set-aside outcome files older than --before (or the retention)."""
    days = get_settings().retention_days
    if args.before is None and days is None:
        raise ValueError("say how old: --before DATE, or set ML_PLATFORM_RETENTION_DAYS")
    before = parse_cutoff(args.before) if args.before else retention_cutoff(days)
    files = files_before(set_aside_folders(platform_home()), before)
    purged = _governance().purge(before, by=args.by, reason=args.reason, files=files)
    print(purged.summary())


def _serve(args) -> None:
    import uvicorn  # the server itself, only for this command

    if args.token_file:
        os.environ[TOKEN_FILE_ENV] = str(Path(args.token_file).resolve())
    # One OpenMP thread per prediction: the endpoint's parallelism is its concurrent requests
    # (and workers). OpenMP's thread team spins for CPU the request threads need: measured
    # under load, one 16-row prediction took 12 ms on one thread and 100-160 ms on the default team.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    notice = check_binding(args.host, read_tokens())
    load_specs()  # a broken spec fails here, with its message, not in every worker
    os.environ["ML_PLATFORM_HOME"] = str(platform_home())  # the workers build their app from the environment
    os.environ[HOST_ENV] = args.host  # each worker's app checks the binding again (create_app)
    started = f"ml-platform serve: http://{args.host}:{args.port} (OpenAPI docs at /docs); {notice}"
    json_logs = is_json()
    if json_logs:
        logger.warning(started)  # with JSON logs the output stream holds only JSON lines
    else:
        print(started, flush=True)
    uvicorn.run(
        "ml_platform.serving.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
        log_level="warning",
        # JSON: uvicorn's own lines go through the platform's handler (ECS) instead of its text config.
        **({"log_config": None} if json_logs else {}),
    )


def _demo(args) -> None:
    from ml_platform.demo import run_demo  # the demo drives Dagster; other commands run without it

    home = Path(args.home)
    if home.exists() and any(home.iterdir()):
        raise ValueError(f"{home} already holds a demo: delete it (rm -r {home}) or pass another --home")
    started = time.monotonic()
    with _progress() as progress:
        task = progress.add_task("demo: starting", total=None)

        def say(message: str) -> None:
            """Each step above the bar; the bar names the latest step and the time so far."""
            progress.console.print(message)
            first = message.strip().splitlines()[0] if message.strip() else ""
            if first:
                progress.update(task, description=f"demo: {first[:70]}")

        story = run_demo(home, say=say, keep_running=args.keep_running)
    print(
        f"demo done in {time.monotonic() - started:.0f} s: champion v{story.first_version} -> v{story.new_version} "
        f"(gates {story.gates}), the endpoint serves v{story.served_version}, {story.predictions} predictions",
        flush=True,
    )
    if story.served_version != story.new_version:
        raise ValueError(f"the loop did not close: version {story.new_version} gates {story.gates}")


def _ci(args) -> int:
    """Validate, check, train and gate every model as a pull request changes them; exit 1 when a gate fails."""
    specs = load_specs(args.specs)  # every spec validated, with its file and key named on error
    definitions = _validate_definitions(args.specs)
    if args.model:
        unknown = sorted(set(args.model) - {s.name for s in specs})
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(s.name for s in specs)}")
        specs = [s for s in specs if s.name in args.model]
    report = Path(args.report).resolve()
    options = CiOptions(
        baseline_dir=Path(args.baseline),
        plots_dir=report.parent / f"{report.stem}-plots",
        rows=None if args.full else args.rows,
        changed_only=args.changed_only,
        champion_from=args.champion_from,
    )
    with _ci_progress(len(specs) * len(STEPS)) as step, _quiet_mlflow():
        result = run_ci(specs, options, step)
    markdown = render(result, report.parent, definitions)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(markdown, encoding="utf-8")
    report.with_suffix(".json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
            summary.write(markdown + "\n")
    if args.write_baseline:
        for path in write_baselines(result, options.baseline_dir):
            print(f"baseline written: {path}")
    print(f"ml-platform ci: {summary_line(result)}; report {report}")
    return 0 if result["passed"] else 1


def _validate_definitions(specs_dir: Path | None) -> str:
    """Build and load the Dagster definitions of the specs, as the code location would; a summary line."""
    # Imported here: only this command (and the orchestrator itself) needs the Dagster wiring.
    from dagster import Definitions

    from ml_platform.defs import build_definitions

    with tempfile.TemporaryDirectory(prefix="ml-platform-ci-defs-") as home:
        definitions = build_definitions(specs_dir, home=home)
        Definitions.validate_loadable(definitions)
        graph = definitions.resolve_asset_graph()
        sensors = list(definitions.sensors or [])
        checks = len(list(graph.asset_check_keys))
        return f"valid ({len(graph.get_all_asset_keys())} assets, {checks} checks, {len(sensors)} sensors)"


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """MLflow's notes on the throwaway store (tables created, versions registered) would bury the progress."""
    logging.disable(logging.INFO)  # MLflow configures its own loggers' levels; this covers them all
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


@contextmanager
def _ci_progress(total: int) -> Iterator:
    """The progress bar while models train; yields the callback the CI core reports steps to."""
    with _progress() as progress:
        task = progress.add_task("ml-platform ci", total=total)
        yield lambda model, step: progress.update(task, advance=1, description=f"{model}: {step}")
        progress.update(task, completed=total, description="ml-platform ci: done")


def _decision(commands, name: str, help: str, run):
    """A command about a model that a named person decides, with a reason, both audited."""
    command = commands.add_parser(name, help=help)
    command.add_argument("model")
    command.add_argument("--by", required=True, help="who decides (recorded in the audit trail)")
    command.add_argument("--reason", required=True)
    command.set_defaults(run=run)
    return command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-platform", description="Continuous training for clinical risk models.")
    commands = parser.add_subparsers(dest="command", required=True)

    seed = commands.add_parser("seed", help="land initial data for every model with a simulator")
    seed.add_argument("--model", help="only this model")
    seed.set_defaults(run=_seed)

    sim = commands.add_parser("simulate", help="land one simulated batch in a model's landing folder")
    sim.add_argument("model")
    sim.add_argument("--rows", type=int, default=BATCH_ROWS)
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

    for verb in ("approve", "reject"):
        decide = _decision(commands, verb, f"{verb} a model version that waits for approval", _decide)
        decide.add_argument("version")

    pending = commands.add_parser("pending", help="list the model versions that wait for approval")
    pending.add_argument("model", nargs="?")
    pending.set_defaults(run=_pending)

    rollback = _decision(commands, "rollback", "move the champion back to an earlier deployable version", _rollback)
    rollback.add_argument("--to", help="the version (default: the champion before the current one)")
    _decision(commands, "release", "end a canary or shadow release: the challenger becomes champion", _release)

    audit = commands.add_parser(
        "audit", help="a model's audit timeline; `audit verify` checks the trail; `audit seal` re-anchors it"
    )
    audit.add_argument("target", help="a model name, 'verify', or 'seal' (with --by and --reason)")
    audit.add_argument("--by", help="seal: who decides (recorded in the audit trail)")
    audit.add_argument("--reason", help="seal: why the trail is re-anchored")
    audit.set_defaults(run=_audit)

    purge = commands.add_parser(
        "purge", help="delete prediction-log rows and outcomes older than a date (or the retention); audited"
    )
    purge.add_argument("--before", help="a date (YYYY-MM-DD, UTC) or date-time (default: now - retention days)")
    purge.add_argument("--by", required=True, help="who purges (recorded in the audit trail)")
    purge.add_argument("--reason", default="retention", help="why (recorded in the audit trail)")
    purge.set_defaults(run=_purge)

    demo = commands.add_parser(
        "demo", help="the closed loop in ~10 min: train, serve, drift, retrain, promote, serve the new version"
    )
    demo.add_argument("--home", default=".ml_platform_demo", help="a new folder for the demo's platform home")
    demo.add_argument("--keep-running", action="store_true", help="leave Dagster and the endpoint up at the end")
    demo.set_defaults(run=_demo)

    ci = commands.add_parser(
        "ci", help="what a change does to each model: contracts, training, gates and plots, as a Markdown report"
    )
    ci.add_argument("--report", default="ci-report.md", help="the Markdown report (JSON and plots beside it)")
    ci.add_argument("--specs", type=Path, help="folder of spec files (default: ML_PLATFORM_SPECS or the shipped specs)")
    ci.add_argument("--baseline", default="ci/baseline", help="folder of committed baseline metrics per model")
    ci.add_argument("--rows", type=int, default=SAMPLE_ROWS, help="rows of each model's reference sample")
    ci.add_argument("--full", action="store_true", help="train on the real size instead of a sample")
    ci.add_argument("--model", action="append", help="only this model (repeatable)")
    ci.add_argument("--changed-only", action="store_true", help="skip models whose spec hash equals the baseline's")
    ci.add_argument(
        "--champion-from",
        choices=CHAMPION_SOURCES,
        default="auto",
        help="compare with the registry's champion (read only), the baseline, or the registry when reachable",
    )
    ci.add_argument("--write-baseline", action="store_true", help="store these metrics as the new baseline")
    ci.set_defaults(run=_ci)

    serve = commands.add_parser("serve", help="serve every model's champion over HTTP (canary, shadow, hot swap)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind; other than loopback needs tokens")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="server processes (each loads every model)")
    serve.add_argument("--token-file", help="bearer tokens, one per line (or ML_PLATFORM_API_TOKENS=a,b)")
    serve.add_argument("--access-log", action="store_true", help="log every request (off: it costs throughput)")
    serve.set_defaults(run=_serve)
    return parser


def _ended(command: str, started: float, error: Exception | None = None) -> None:
    """One line per command: how it ended and how long it took (ECS ``event.*``; the error without a traceback)."""
    fields = {
        "event": {
            "action": f"cli.{command}",
            "outcome": "failure" if error else "success",
            "duration": int((time.perf_counter() - started) * 1e9),
        }
    }
    if error:
        fields["error"] = {"type": type(error).__name__, "message": str(error)}
        logger.error("ml-platform %s failed: %s", command, error, extra=fields)
    else:
        logger.info("ml-platform %s finished", command, extra=fields)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started, json_logs = time.perf_counter(), False
    try:
        configure_logging()
        json_logs = is_json()
        restrict_new_files()  # the home holds patient data; the servers and demo it starts inherit this
        status = args.run(args)  # a command with a verdict (ci) returns its exit status
    except (SpecError, ValueError, FileExistsError) as exc:  # GovernanceError and SettingsError are ValueErrors
        if not json_logs:  # with JSON logs stderr holds only JSON lines: the error is the next line's message
            print(f"ml-platform {args.command}: error: {exc}", file=sys.stderr)
        _ended(args.command, started, exc)
        return 2
    _ended(args.command, started)
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
