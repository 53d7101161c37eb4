"""Serving throughput: ``ml-platform serve`` against ``mlflow models serve`` on the same registry version.

    .venv/bin/python benchmarks/serving_throughput.py [--seconds 15] [--workers 1] [--concurrency 1,16,64]

One run does everything:

* **Model**: a temporary platform home; version 1 of ``readmission_risk`` is trained and
  registered the way the serving tests do it (``register_versions``, seed 11, 3,000 rows)
  and gets the ``champion`` alias. Not timed.
* **Servers**, one at a time, each a subprocess on loopback with the same ``--workers``:
  ``mlflow models serve -m models:/readmission_risk/1 --env-manager local`` (MLflow's
  scoring server, uvicorn, tracking URI ``sqlite:///<home>/mlflow.db``), then
  ``ml-platform serve`` on the same home (uvicorn, no API token, so loopback only). Each
  is started, waited for (``/ping``, ``/readyz``), checked, loaded, then stopped (SIGTERM).
  ``OMP_NUM_THREADS`` is removed from both environments, so each runs with its own default
  (ml-platform serve sets one OpenMP thread per prediction; MLflow keeps OpenMP's default,
  one thread per core).
* **Requests**: single-record predictions from a pool of ``--pool`` generated encounters
  (``patient(i)``, no missing values). ml-platform gets the raw record (19 fields, ids
  included) and validates it against the data contract, derives the features, scores, and
  writes the prediction to its log (SQLite, group commit) before it answers. MLflow gets
  ``{"dataframe_records": [row]}`` where ``row`` is the model's 17 input columns, derived
  here beforehand from the same record (MLflow does not know the contract or the
  features), integers as JSON integers where the inferred signature says ``long``. So
  MLflow is spared validation, feature derivation and logging: the comparison is what
  a client gets from each server, not the same work. Before the load each server gets one
  record, the same record with a null lab value (MLflow's schema enforcement accepts it
  for a double column; the status is printed), and 100 records in one request whose
  labels must agree (MLflow's ``predict`` against ml-platform's probability >= 0.5).
* **Load**: a separate process (``--load``) with one keep-alive HTTP/1.1 connection per
  concurrent client over ``asyncio.open_connection`` (uvloop when installed): requests are
  pre-encoded, the response is read by status line and Content-Length, nothing is
  decoded but a check that the body holds ``"predictions"``. Closed loop: each client
  sends its next request when the answer arrives. Per concurrency level: ``--warmup``
  seconds not counted, then ``--seconds`` measured; a request counts in the window it
  completes in. Non-2xx answers, bodies without predictions, timeouts and dropped
  connections are errors.
* **CPU**: during each measured window the load process reads the CPU time of the server's
  process tree, its own, and the machine's (``/proc``): server CPU per request says where
  a server is bound, and "other" is the CPU of processes that are neither (on a 2-core
  box a busy neighbour shows up there, and in the figures). Before each level the load
  process waits (up to ``--quiet-wait`` s) until other processes use less than
  ``--max-other-load`` cores.
* **Durability**: after ml-platform is stopped (it drains on SIGTERM), the rows of its
  prediction log are counted and compared with the predictions it answered with 200.
  They must be equal: an answered prediction id is always in the log.

Target: at concurrency 16 and 64, ml-platform serves at least 5x MLflow's requests per
second, with a p99 latency no worse than MLflow's, with validation and the durable
prediction log on (they are always on). Concurrency 1 is reported, not part of the target.

A script, not a test: nothing asserts absolute figures. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform as host
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cpu_load import machine_busy_seconds

MODEL = "readmission_risk"
VERSION = "1"
TARGET_RATIO = 5.0  # ml-platform / MLflow requests per second, at the target concurrencies
TARGET_CONCURRENCY = (16, 64)
REPO = Path(__file__).resolve().parent.parent
PLATFORM_ENV = ("MLFLOW_TRACKING_URI", "ML_PLATFORM_DATABASE_URL", "ML_PLATFORM_ARTIFACT_ROOT", "ML_PLATFORM_SPECS",
                "ML_PLATFORM_API_TOKENS", "ML_PLATFORM_API_TOKEN_FILE", "DAGSTER_HOME")
SERVERS = ("mlflow", "ml-platform")
PACKAGES = ("mlflow", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "scikit-learn", "sqlalchemy", "pandas")


# --------------------------------------------------------------------------- #
# Load generator (runs in its own process: --load)
# --------------------------------------------------------------------------- #
def proc_tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes (themselves, not their reaped children)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


class Window:
    """The measured part of one concurrency level: what completed in it, and the CPU used meanwhile."""

    def __init__(self):
        self.start = self.end = math.inf
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.answered = 0  # 2xx with predictions, warm-up included (what the server logged)
        self.sent = 0

    def counts(self, done: float) -> bool:
        return self.start <= done < self.end


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the server closes the connection; Content-Length or chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        length = int(lower[at + 17 : lower.index(b"\r\n", at + 2)])
        body = await reader.readexactly(length)
    elif b"\r\ntransfer-encoding: chunked" in lower:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if not size:
                break
            parts.append(chunk[:-2])
        body = b"".join(parts)
    else:
        body = b""
    return status, body, b"\r\nconnection: close" in lower


async def client(port: int, requests: list[bytes], offset: int, window: Window, stop_at: float, timeout: float):
    clock = time.perf_counter  # uvloop's loop.time() has millisecond resolution
    reader = writer = None
    i = offset
    while clock() < stop_at:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sent = clock()
            writer.write(requests[i % len(requests)])
            i += 1
            window.sent += 1
            status, body, close = await asyncio.wait_for(read_response(reader), timeout)
            done = clock()
            ok = 200 <= status < 300 and b'"predictions"' in body
            if ok:
                window.answered += 1
            if window.counts(done):
                if ok:
                    window.latencies.append(done - sent)
                else:
                    key = str(status) if not 200 <= status < 300 else "2xx without predictions"
                    window.errors[key] = window.errors.get(key, 0) + 1
            if close:
                writer.close()
                writer = None
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            if window.counts(clock()):
                key = "timeout" if isinstance(exc, TimeoutError) else f"connection: {type(exc).__name__}"
                window.errors[key] = window.errors.get(key, 0) + 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.05)
    if writer is not None:
        writer.close()


async def wait_for_quiet(args) -> tuple[float, float]:
    """Wait (up to ``--quiet-wait`` s) until other processes use less than ``--max-other-load`` cores.

    Returns (seconds waited, the other load of the last sample).
    """
    started = time.perf_counter()
    while True:
        pids = proc_tree(args.server_pid)
        before = (cpu_seconds(pids), sum(os.times()[:2]), machine_busy_seconds(), time.perf_counter())
        await asyncio.sleep(1.0)
        after = (cpu_seconds(pids), sum(os.times()[:2]), machine_busy_seconds(), time.perf_counter())
        server, own, machine = (after[k] - before[k] for k in range(3))
        other = max(0.0, machine - server - own) / (after[3] - before[3])
        waited = time.perf_counter() - started
        if other <= args.max_other_load or waited >= args.quiet_wait:
            return waited, other


async def run_level(args, requests: list[bytes], concurrency: int) -> dict:
    waited, other_before = await wait_for_quiet(args)
    clock = time.perf_counter
    window = Window()
    start = clock()
    window.start = start + args.warmup
    window.end = window.start + args.seconds
    clients = [
        asyncio.create_task(client(args.port, requests, k * len(requests) // concurrency, window, window.end,
                                   args.timeout))
        for k in range(concurrency)
    ]
    await asyncio.sleep(max(0.0, window.start - clock()))
    pids = proc_tree(args.server_pid)
    before = (cpu_seconds(pids), sum(os.times()[:2]), machine_busy_seconds(), clock())
    await asyncio.sleep(max(0.0, window.end - clock()))
    after = (cpu_seconds(pids), sum(os.times()[:2]), machine_busy_seconds(), clock())
    await asyncio.gather(*clients)  # the requests in flight at the end complete (and are logged) before the next level
    wall = after[3] - before[3]
    server, own, machine = (after[k] - before[k] for k in range(3))
    latencies = sorted(window.latencies)
    return {
        "concurrency": concurrency,
        "seconds": wall,
        "ok": len(latencies),
        "rps": len(latencies) / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": (sum(latencies) / len(latencies) * 1000) if latencies else math.nan,
        "errors": sum(window.errors.values()),
        "error_kinds": window.errors,
        "server_cores": server / wall,
        "client_cores": own / wall,
        "other_cores": max(0.0, machine - server - own) / wall,
        "server_cpu_ms_per_request": server / len(latencies) * 1000 if latencies else math.nan,
        "answered": window.answered,
        "sent": window.sent,
        "waited_for_quiet_s": waited,
        "other_cores_before": other_before,
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return math.nan
    return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]


async def load_main(args) -> list[dict]:
    lines = Path(args.bodies).read_bytes().splitlines()
    head = (f"POST {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\nContent-Type: application/json\r\n"
            "Content-Length: {}\r\n\r\n")
    requests = [head.format(len(body)).encode() + body for body in lines if body]
    levels = []
    for concurrency in parse_levels(args.concurrency):
        levels.append(await run_level(args, requests, concurrency))
        await asyncio.sleep(0.5)
    return levels


def run_load(args) -> None:
    try:
        import uvloop

        results = uvloop.run(load_main(args))
    except ImportError:
        results = asyncio.run(load_main(args))
    Path(args.result).write_text(json.dumps(results))


# --------------------------------------------------------------------------- #
# Platform home, request pools, servers
# --------------------------------------------------------------------------- #
def prepare(home: Path, pool: int, folder: Path) -> dict:
    """Register version 1 as champion; write both servers' request bodies (one per line)."""
    os.environ["ML_PLATFORM_HOME"] = str(home)
    for var in PLATFORM_ENV:
        os.environ.pop(var, None)
    sys.path.insert(0, str(REPO))
    import warnings

    warnings.filterwarnings("ignore")
    from ml_platform_tests.serving.conftest import patient, register_versions, set_alias

    start = time.perf_counter()
    versions = register_versions(home, seeds=[11])
    assert versions == [VERSION], versions
    set_alias(home, "champion", VERSION)
    trained = time.perf_counter() - start

    records = [patient(i) for i in range(pool)]
    rows = mlflow_rows(home, records)
    platform_file, mlflow_file = folder / "ml-platform.jsonl", folder / "mlflow.jsonl"
    platform_file.write_text("\n".join(json.dumps(r, separators=(",", ":")) for r in records) + "\n")
    mlflow_file.write_text("\n".join(json.dumps({"dataframe_records": [r]}, separators=(",", ":")) for r in rows) + "\n")
    nulls = sum(any(v is None for v in r.values()) for r in records)
    return {"records": records, "rows": rows, "bodies": {"ml-platform": platform_file, "mlflow": mlflow_file},
            "train_seconds": trained, "records_with_nulls": nulls}


def mlflow_rows(home: Path, records: list[dict]) -> list[dict]:
    """The model's input columns of each record, as the endpoint derives them, typed as the signature says."""
    import mlflow
    from mlflow.types import DataType

    from ml_platform.serving.models import records_frame
    from ml_platform.serving.validation import RecordValidator
    from ml_platform.spec import get_spec

    spec = get_spec(MODEL)
    typed, errors = RecordValidator(spec).validate(records)
    assert not errors, errors[:3]
    frame = records_frame(spec, typed)
    mlflow.set_tracking_uri(f"sqlite:///{home}/mlflow.db")
    signature = mlflow.models.get_model_info(f"models:/{MODEL}/{VERSION}").signature
    kinds = {col.name: col.type for col in signature.inputs.inputs}
    assert list(kinds) == list(frame.columns), (list(kinds), list(frame.columns))

    def value(name, v):
        if isinstance(v, float) and math.isnan(v):
            return None
        if kinds[name] in (DataType.long, DataType.integer):
            return int(v)
        if kinds[name] in (DataType.double, DataType.float):
            return float(v)
        return v

    return [{name: value(name, v) for name, v in row.items()} for row in frame.to_dict("records")]


class Server:
    """One server as a subprocess in its own process group, output to a file."""

    def __init__(self, name: str, home: Path, workers: int, folder: Path):
        from ml_platform.demo import free_port

        self.name, self.home, self.port = name, home, free_port()
        bin_dir = Path(sys.executable).parent
        env = {k: v for k, v in os.environ.items() if k not in (*PLATFORM_ENV, "OMP_NUM_THREADS")}
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"  # mlflow runs `uvicorn` from PATH
        if name == "mlflow":
            env["MLFLOW_TRACKING_URI"] = f"sqlite:///{home}/mlflow.db"
            self.command = [str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}/{VERSION}",
                            "--env-manager", "local", "--host", "127.0.0.1", "-p", str(self.port),
                            "--workers", str(workers)]
            self.ready_path, self.predict_path = "/ping", "/invocations"
        else:
            env["ML_PLATFORM_HOME"] = str(home)
            self.command = [str(bin_dir / "ml-platform"), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                            "--workers", str(workers)]
            self.ready_path, self.predict_path = "/readyz", f"/v1/models/{MODEL}/predict"
        self.env = env
        self.output = folder / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self, within: float = 180) -> float:
        import httpx

        started = time.perf_counter()
        with self.output.open("w") as out:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=5).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} not ready within {within} s:\n{self.tail()}")

    def post(self, body: object):
        import httpx

        return httpx.post(f"http://127.0.0.1:{self.port}{self.predict_path}", json=body, timeout=60)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # the group: uvicorn and its workers
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])


def check_answers(server: Server, data: dict) -> dict:
    """One record, one record with a missing lab value, and a list (agreement) to each server, before the load."""
    record, row = data["records"][0], data["rows"][0]
    sample = 100
    if server.name == "mlflow":
        one = server.post({"dataframe_records": [row]})
        missing = server.post({"dataframe_records": [{**row, "hba1c": None}]})
        many = server.post({"dataframe_records": data["rows"][:sample]})
        labels = many.json()["predictions"] if many.status_code == 200 else None
        answered = 0
    else:
        one = server.post(record)
        missing = server.post({**record, "hba1c": None})
        many = server.post(data["records"][:sample])
        labels = [int(p["probability"] >= 0.5) for p in many.json()["predictions"]] if many.status_code == 200 else None
        answered = sum(len(r.json()["predictions"]) for r in (one, missing, many) if r.status_code == 200)
    if one.status_code != 200:
        raise RuntimeError(f"{server.name} refused a valid record ({one.status_code}): {one.text[:500]}")
    return {"one": one.text[:200], "missing_lab_status": missing.status_code, "missing_lab": missing.text[:200],
            "labels": labels, "answered": answered}


def logged_predictions(home: Path) -> int:
    with sqlite3.connect(home / "platform.db") as db:
        return db.execute("SELECT count(*) FROM predictions WHERE model = ?", (MODEL,)).fetchone()[0]


def measure(server: Server, args, folder: Path) -> list[dict]:
    """The load process against a running server; its figures per concurrency level."""
    result = folder / f"{server.name}.result.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--load", "--port", str(server.port),
               "--path", server.predict_path, "--bodies", str(args.bodies[server.name]),
               "--concurrency", args.concurrency, "--seconds", str(args.seconds), "--warmup", str(args.warmup),
               "--timeout", str(args.timeout), "--max-other-load", str(args.max_other_load),
               "--quiet-wait", str(args.quiet_wait), "--server-pid", str(server.process.pid), "--result", str(result)]
    subprocess.run(command, check=True)
    return json.loads(result.read_text())


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #
def parse_levels(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def machine() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    return {"cpus": os.cpu_count(), "cpu": cpu.group(1).strip() if cpu else host.processor(),
            "python": host.python_version(), "os": f"{host.system()} {host.release()}", "packages": packages}


def verdicts(results: dict) -> dict[int, dict]:
    out = {}
    levels = {r["concurrency"]: r for r in results["mlflow"]}
    for mine in results["ml-platform"]:
        theirs = levels.get(mine["concurrency"])
        if theirs is None:
            continue
        ratio = mine["rps"] / theirs["rps"] if theirs["rps"] else math.inf
        p99 = mine["p99_ms"] / theirs["p99_ms"] if theirs["p99_ms"] else math.inf
        target = mine["concurrency"] in TARGET_CONCURRENCY
        met = ratio >= TARGET_RATIO and p99 <= 1.0 and mine["errors"] == 0
        out[mine["concurrency"]] = {"throughput_ratio": ratio, "p99_ratio": p99, "in_target": target,
                                    "met": met if target else None}
    return out


def print_report(results: dict, checks: dict, durability: dict) -> bool:
    print("\n=== per concurrency (single-record requests, closed loop, keep-alive) ===")
    print(f"{'conc':>5} {'server':<12}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'server CPU/req':>16}{'server cores':>14}{'client cores':>14}{'other cores':>13}")
    by_level = {}
    for name in SERVERS:
        for r in results[name]:
            by_level.setdefault(r["concurrency"], {})[name] = r
    for level in sorted(by_level):
        for name in SERVERS:
            r = by_level[level].get(name)
            if r is None:
                continue
            print(f"{level:>5} {name:<12}{r['rps']:>9.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['errors']:>8}"
                  f"{r['server_cpu_ms_per_request']:>13.2f} ms{r['server_cores']:>14.2f}{r['client_cores']:>14.2f}"
                  f"{r['other_cores']:>13.2f}")
            if r["error_kinds"]:
                print(f"{'':>18}errors: {r['error_kinds']}")
    print("\n=== ml-platform / mlflow ===")
    print(f"{'conc':>5}{'throughput':>12}{'p99':>8}   target (>= {TARGET_RATIO:g}x req/s, p99 ratio <= 1, no errors)")
    ok, measured = True, False
    for level, v in sorted(verdicts(results).items()):
        if v["in_target"]:
            ok, measured = ok and v["met"], True
            verdict = "met" if v["met"] else "NOT met"
        else:
            verdict = "(not in the target)"
        print(f"{level:>5}{v['throughput_ratio']:>11.2f}x{v['p99_ratio']:>8.2f}   {verdict}")
    ok = ok and measured
    outcome = ("met" if ok else "NOT met") if measured else "not measured (--concurrency has none of them)"
    print(f"\ntarget at concurrency {', '.join(map(str, TARGET_CONCURRENCY))}: {outcome}")
    mlf, mlp = checks["mlflow"], checks["ml-platform"]
    agree = sum(a == b for a, b in zip(mlf["labels"] or [], mlp["labels"] or []))
    print(f"\nsame model: labels of {len(mlf['labels'] or [])} records agree on {agree} (MLflow's predict vs "
          "ml-platform's probability >= 0.5)")
    print(f"a missing lab value (hba1c null): MLflow {mlf['missing_lab_status']} {mlf['missing_lab'][:120]!r}; "
          f"ml-platform {mlp['missing_lab_status']}")
    print(f"\ndurability: the ml-platform prediction log holds {durability['logged']} predictions; "
          f"{durability['answered']} were answered with 200 ({durability['load']} single-record load requests, "
          f"{durability['checks']} in the checks before the load): "
          f"{'equal' if durability['logged'] == durability['answered'] else 'NOT EQUAL'}")
    return ok


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per concurrency level")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before each measured window")
    parser.add_argument("--workers", type=int, default=1, help="server processes, the same for both servers")
    parser.add_argument("--concurrency", default="1,16,64", help="concurrent clients (connections), comma-separated")
    parser.add_argument("--pool", type=int, default=1_000, help="distinct records the clients cycle through")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a request counts as an error")
    parser.add_argument("--max-other-load", type=float, default=0.25,
                        help="before each level, wait until other processes use less CPU than this (cores)")
    parser.add_argument("--quiet-wait", type=float, default=180.0,
                        help="longest wait for that, in seconds (then the level runs anyway; its other load is shown)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary platform home and server logs")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--bodies", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.load:
        run_load(args)
        return 0
    root = Path(tempfile.mkdtemp(prefix="ml_platform_serving_bench_"))
    home = root / "home"
    home.mkdir()
    results: dict = {"machine": machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
                     "date": time.strftime("%Y-%m-%d %H:%M %Z"), "workers": args.workers, "seconds": args.seconds,
                     "warmup": args.warmup, "concurrency": parse_levels(args.concurrency)}
    print(f"machine: {results['machine']}")
    ok = False
    try:
        import ml_platform
        from ml_platform.settings import code_version

        results["code_version"] = f"{code_version()} ({Path(ml_platform.__file__).parent})"
        print(f"ml_platform code: {results['code_version']}")
        data = prepare(home, args.pool, root)
        args.bodies = data["bodies"]
        print(f"registered {MODEL} version {VERSION} as champion in {data['train_seconds']:.1f} s (not timed); "
              f"{args.pool} request records, {data['records_with_nulls']} with a missing value")
        checks, figures = {}, {}
        for name in SERVERS:
            server = Server(name, home, args.workers, root)
            try:
                ready = server.start()
                checks[name] = check_answers(server, data)
                print(f"\n{name}: ready in {ready:.1f} s ({' '.join(server.command[1:3])} ..., port {server.port}); "
                      f"answer to one record: {checks[name]['one']}", flush=True)
                figures[name] = measure(server, args, root)
                for r in figures[name]:
                    print(f"  concurrency {r['concurrency']:>3}: {r['rps']:8.0f} req/s  p50 {r['p50_ms']:7.1f} ms  "
                          f"p99 {r['p99_ms']:7.1f} ms  errors {r['errors']}  (other load {r['other_cores']:.2f} "
                          f"cores; waited {r['waited_for_quiet_s']:.0f} s for a quiet machine)", flush=True)
            finally:
                server.stop()
        load = sum(r["answered"] for r in figures["ml-platform"])
        durability = {"logged": logged_predictions(home), "load": load, "checks": checks["ml-platform"]["answered"],
                      "answered": load + checks["ml-platform"]["answered"]}
        results.update(figures=figures, checks={k: {x: y for x, y in v.items() if x != "labels"}
                                                for k, v in checks.items()},
                       durability=durability, verdicts=verdicts(figures))
        ok = print_report(figures, checks, durability)
        results["target_met"] = ok
    finally:
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
        if args.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
