"""The HTTP endpoint: every model with a champion, behind one FastAPI app.

A predict request is validated against the model's data contract, routed by the release
policy (champion, canary share, shadow), scored in a micro-batch with concurrent requests,
written to the prediction log in a group commit, and only then answered: a prediction id
the client holds is always in the log. A shadow challenger scores the same records after
the response is sent; its outputs are logged, never returned.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple

import fastapi_offline
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from ml_platform.governance import attestation
from ml_platform.governance.service import Governance
from ml_platform.logs import configure_logging
from ml_platform.serving import events
from ml_platform.serving.batching import Batcher
from ml_platform.serving.config import ADMIN, OUTCOMES, PREDICT, ServingConfig, check_binding, is_loopback
from ml_platform.serving.metrics import Metrics
from ml_platform.serving.models import LoadedVersion, RegistryWatcher, Release, ServedModel
from ml_platform.serving.openapi import Readiness, documented, outcomes_openapi, predict_openapi
from ml_platform.serving.outcomes import OutcomeReader, load_outcome_files, outcomes_dir
from ml_platform.serving.requests import ApiError, as_records, read_json
from ml_platform.serving.validation import example_record
from ml_platform.settings import database_url
from ml_platform.spec import load_specs
from ml_platform.store import predictions as prediction_log
from ml_platform.store.database import engine_for
from ml_platform.store.objects import storage_root
from ml_platform.store.registry import MLflowTracking

logger = logging.getLogger("ml_platform.serving")

CHAMPION_ROUTE, CANARY_ROUTE, SHADOW_ROUTE = "champion", "canary", "shadow"
LOG_BATCH_ROWS = 1_000
# Swagger UI's scripts and styles, from the fastapi-offline package (no CDN).
DOCS_ASSETS = "/docs-assets"


class Answer(NamedTuple):
    """One scored record: its position in the request, its values, and who answered what."""

    index: int
    record: dict
    version: LoadedVersion
    route: str
    output: dict


class Server:
    """The state of one server process: served models, the watcher, the log writer, metrics."""

    def __init__(self, config: ServingConfig):
        self.config = config
        self.engine = engine_for(database_url(config.home))
        self.hasher = prediction_log.IdHasher(prediction_log.id_hash_key(config.home))
        self.models = {spec.name: ServedModel(spec) for spec in load_specs()}
        self.outcome_readers = {
            name: OutcomeReader(m.spec, self.engine, self.hasher) for name, m in self.models.items()
        }
        self.outcome_files_seen: dict[str, dict] = {name: {} for name in self.models}
        self.metrics = Metrics()
        self.log = Batcher(lambda rows: prediction_log.write_predictions(self.engine, rows), LOG_BATCH_ROWS)
        self.governance = Governance.for_home(config.home)
        self.watcher = RegistryWatcher(
            self.models,
            MLflowTracking.for_home(config.home),
            config.poll_seconds,
            public_key=attestation.verification_key(config.home),
            on_refused=self.version_refused,
            also=[self.load_outcome_files],
        )
        self._background: set[asyncio.Task] = set()

    def version_refused(self, model: str, version: str, error: attestation.AttestationError) -> None:
        """Count a refused version and write it to the audit trail, so a bypassed alias move is seen."""
        self.metrics.refused.labels(model, version, error.reason).inc()
        try:
            self.governance.version_refused(model, version, error.reason, str(error), actor="endpoint")
        except Exception:  # noqa: BLE001 - serving the last valid version matters more than the record
            logger.exception("could not write the refusal of %s version %s to the audit trail", model, version)

    def load_outcome_files(self) -> None:
        for name, reader in self.outcome_readers.items():
            folder = outcomes_dir(storage_root(self.config.home), name)
            for file in load_outcome_files(reader, folder, self.outcome_files_seen[name]):
                logger.warning("loaded outcomes of %s from %s", name, file)

    def spawn(self, coroutine) -> None:
        """Run off the response path, keeping a reference so the task is not collected mid-flight."""
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        await self.log.idle()

    def served(self, model: str) -> ServedModel:
        served = self.models.get(model)
        if served is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise ApiError(404, f"unknown model '{model}'; this endpoint serves: {known} (GET /v1/models)")
        return served

    def require(self, scope: str | None):
        """A dependency letting a request through only with a token of ``scope`` (None: any valid token)."""

        async def check_token(request: Request) -> None:
            # async: FastAPI would run a plain function on a worker thread for every request.
            request.state.client = events.ANONYMOUS
            if not self.config.tokens:
                self._loopback_only(request)
                return
            scheme, _, secret = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not secret:
                raise ApiError(401, "missing bearer token: send the header 'Authorization: Bearer <token>'")
            matches = [t for t in self.config.tokens if hmac.compare_digest(secret.encode(), t.secret.encode())]
            if not matches:
                raise ApiError(401, "bearer token not accepted")
            token = matches[0]
            request.state.client = token.name
            if scope is not None and not token.allows(scope):
                raise ApiError(
                    403,
                    f"token '{token.name}' has scope(s) {'+'.join(sorted(token.scopes))}, not '{scope}' that this "
                    f"route needs; ask the operator for a token configured as name:{scope}:token",
                )

        return check_token

    @staticmethod
    def _loopback_only(request: Request) -> None:
        """Without tokens only this machine may ask: a second lock behind the binding check, per request."""
        client = request.client.host if request.client else None
        if not is_loopback(client):
            raise ApiError(403, "this endpoint has no API tokens configured and answers loopback clients only")

    # ------------------------------------------------------------------ predict

    async def predict(self, served: ServedModel, records: list, partial: bool, request: Request | None = None) -> dict:
        started = time.perf_counter()
        typed, errors = served.validator.validate(records)
        transformation_ms = (time.perf_counter() - started) * 1000
        if errors and not partial:
            raise ApiError(
                422,
                f"{len(errors)} problem(s) in {len(records)} record(s); nothing was scored. Fix them, or add "
                "?partial=true to score the valid records and get the errors per record",
                errors,
            )
        release = served.release  # one release for the whole request, whatever swaps meanwhile
        if release.champion is None:
            raise ApiError(503, _no_champion(served))
        answers = await self._score(self._route(served, release, typed))
        latency_ms = (time.perf_counter() - started) * 1000
        rows = [self._log_row(served, answer, latency_ms) for answer in answers]
        if rows:  # partial with every record invalid: nothing scored, nothing to log
            await self.log.submit(rows)  # answered only once the log holds every prediction id returned
        if events.wanted():
            events.log_predictions(rows, **events.caller(request, started), transformation_ms=transformation_ms)
        for answer in answers:
            self.metrics.predictions.labels(served.spec.name, answer.version.version, answer.route).inc()
        if served.policy == "shadow" and release.challenger is not None:
            self.spawn(self._shadow(served, release.challenger, answers, rows))
        predictions = [
            {"record": answer.index, "prediction_id": row["id"], "version": row["version"], "route": row["route"]}
            | answer.output
            for answer, row in sorted(zip(answers, rows), key=lambda pair: pair[0].index)
        ]
        body = {"model": served.spec.name, "predictions": predictions}
        if partial:
            body["errors"] = [e.as_dict() for e in errors]
        return body

    @staticmethod
    def _route(served: ServedModel, release: Release, typed: list[dict | None]) -> dict:
        """Valid records by the version that answers them: the champion, or the challenger for the canary share."""
        routed: dict[tuple[LoadedVersion, str], list[tuple[int, dict]]] = {}
        for index, record in enumerate(typed):
            if record is None:
                continue
            canary = (
                served.policy == "canary"
                and release.challenger is not None
                and served.routes_to_challenger(record[served.spec.route_column])
            )
            key = (release.challenger, CANARY_ROUTE) if canary else (release.champion, CHAMPION_ROUTE)
            routed.setdefault(key, []).append((index, record))
        return routed

    @staticmethod
    async def _score(routed: dict) -> list[Answer]:
        """Each route's records through its version's micro-batch queue, concurrently."""
        groups = list(routed.items())
        results = await asyncio.gather(
            *(version.batcher.submit([record for _, record in items]) for (version, _), items in groups)
        )
        return [
            Answer(index, record, version, route, output)
            for ((version, route), items), outputs in zip(groups, results)
            for (index, record), output in zip(items, outputs)
        ]

    def _log_row(self, served: ServedModel, answer: Answer, latency_ms: float, shadow_of: str | None = None) -> dict:
        return prediction_log.prediction_row(
            served.spec, self.hasher, answer.version.version, answer.route, answer.record, answer.output, latency_ms,
            shadow_of=shadow_of,
        )  # fmt: skip

    async def _shadow(self, served: ServedModel, challenger: LoadedVersion, answers: list[Answer], rows: list[dict]):
        """Score what the champion answered with the challenger too, and log it beside the answer."""
        started = time.perf_counter()
        try:
            outputs = await challenger.batcher.submit([answer.record for answer in answers])
        except Exception:  # noqa: BLE001 - a failing shadow must never affect patients' answers
            logger.exception("shadow version %s of %s failed to score", challenger.version, served.spec.name)
            return
        latency_ms = (time.perf_counter() - started) * 1000
        shadow_rows = [
            self._log_row(served, Answer(a.index, a.record, challenger, SHADOW_ROUTE, output), latency_ms, row["id"])
            for a, row, output in zip(answers, rows, outputs)
        ]
        await self.log.submit(shadow_rows)
        self.metrics.predictions.labels(served.spec.name, challenger.version, SHADOW_ROUTE).inc(len(shadow_rows))

    # ------------------------------------------------------------------ outcomes

    async def outcomes(self, served: ServedModel, records: list, request: Request | None = None) -> dict:
        started = time.perf_counter()
        reader = self.outcome_readers[served.spec.name]
        rows, errors = await asyncio.to_thread(reader.read, records, "api")
        if errors:
            raise ApiError(422, f"{len(errors)} problem(s) in {len(records)} outcome(s); nothing was stored", errors)
        await asyncio.to_thread(prediction_log.write_outcomes, self.engine, rows)
        if events.wanted():
            events.log_outcomes(rows, **events.caller(request, started))
        return {"model": served.spec.name, "accepted": len(rows)}


def _no_champion(served: ServedModel) -> str:
    if served.wanted[0] and served.load_error:
        return f"{served.spec.name} version {served.wanted[0]} could not be loaded: {served.load_error}"
    if served.wanted[0]:
        return f"{served.spec.name} version {served.wanted[0]} is loading; retry in a few seconds (GET /readyz)"
    return f"{served.spec.name} has no champion yet: it is served once a version passes its gates and is deployed"


def create_app(config: ServingConfig | None = None) -> FastAPI:
    """The endpoint app; uvicorn calls this once per worker process (``--factory``)."""
    configure_logging()  # each worker is a process of its own: its lines follow the log settings too
    config = config or ServingConfig.from_env()
    check_binding(config.host, config.tokens)  # whoever starts the app, not only the CLI
    server = Server(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Load what the registry names before this worker accepts a connection: with several
        # workers on one socket, a worker that is still loading must not take requests.
        await asyncio.to_thread(server.watcher.poll)
        server.watcher.start()
        yield
        await server.drain()
        server.watcher.stop()

    app = FastAPI(
        title="ml_platform endpoint",
        description="Clinical risk models served from the platform's registry: champion, canary and shadow releases.",
        version="1",
        lifespan=lifespan,
        # The docs and the schema need an admin token: routes of their own below.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.server = server
    authorised = [Depends(server.require(None))]
    admin = [Depends(server.require(ADMIN))]

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        body = {"detail": exc.detail}
        if exc.errors:
            body["errors"] = [e.as_dict() for e in exc.errors]
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_parameters(request: Request, exc: RequestValidationError):
        """A bad path or query parameter: the same error body as every other error, naming the parameter."""
        problems = "; ".join(f"{' '.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"detail": f"invalid request: {problems[:500]}"}, status_code=422)

    async def observed(model: str, route: str, version_of, work):
        """Run a handler's work, counting the request and its latency under the version that answered."""
        started, status, served = time.perf_counter(), 200, server.models.get(model)
        try:
            return await work()
        except HTTPException as exc:
            status = exc.status_code
            raise
        except Exception:
            status = 500
            raise
        finally:
            version = version_of(served) if served else ""
            label = model if served else "unknown"
            server.metrics.observe(label, version, route, status, time.perf_counter() - started)

    def champion_version(served: ServedModel) -> str:
        champion = served.release.champion
        return champion.version if champion else ""

    @app.post(
        "/v1/models/{model}/predict",
        dependencies=[Depends(server.require(PREDICT))],
        summary="Score one record or a list of records",
        openapi_extra=predict_openapi(server.models),
        responses=documented(400, 401, 403, 404, 413, 415, 422, 503),
    )
    async def predict(model: str, request: Request, partial: bool = False):
        """Per record: probability and label at the model's threshold (or the value), version, prediction id.

        With `partial=true` the valid records are scored and each invalid one gets its errors;
        otherwise one invalid record means nothing is scored (422).
        """

        async def work():
            request.state.received = time.perf_counter()  # event.duration counts from here
            served = server.served(model)
            records = as_records(await read_json(request, config), config, "records")
            return await server.predict(served, records, partial, request)

        return await observed(model, "predict", champion_version, work)

    @app.post(
        "/v1/models/{model}/outcomes",
        dependencies=[Depends(server.require(OUTCOMES))],
        summary="Record observed outcomes",
        openapi_extra=outcomes_openapi(server.models),
        responses=documented(400, 401, 403, 404, 413, 415, 422),
    )
    async def outcomes(model: str, request: Request):
        """Outcomes by `prediction_id` or by the model's id column, with `outcome` and optionally `observed_at`."""

        async def work():
            request.state.received = time.perf_counter()
            served = server.served(model)
            records = as_records(await read_json(request, config), config, "outcomes")
            return await server.outcomes(served, records, request)

        return await observed(model, "outcomes", lambda served: "", work)

    @app.get(
        "/v1/models",
        dependencies=authorised,
        summary="Every model: policy, versions, readiness",
        responses=documented(401, 403),
    )
    async def list_models():
        return {"models": [served.describe() for served in server.models.values()]}

    @app.get(
        "/v1/models/{model}",
        dependencies=authorised,
        summary="One model: policy, versions and inputs",
        responses=documented(401, 403, 404, 422),
    )
    async def get_model(model: str):
        served = server.served(model)
        return {**served.describe(), "inputs": served.validator.json_schema(), "example": example_record(served.spec)}

    @app.get("/healthz", summary="The process is up")
    async def healthz():
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Every model with a champion has it loaded",
        responses={
            200: {"model": Readiness, "description": "Every champion is loaded"},
            503: {"model": Readiness, "description": "The registry was not read yet, or a champion is loading"},
        },
    )
    async def readyz():
        if not server.watcher.polled_once.is_set():
            return JSONResponse({"ready": False, "detail": "the model registry has not been read yet"}, 503)
        waiting = {name: s.describe() for name, s in server.models.items() if not s.ready}
        if waiting:
            return JSONResponse({"ready": False, "waiting": waiting}, 503)
        return {"ready": True, "models": {name: s.release.versions()[0] for name, s in server.models.items()}}

    @app.get(
        "/metrics",
        dependencies=admin,
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses=documented(401, 403),
    )
    async def metrics():
        server.metrics.served.clear()
        for name, served in server.models.items():
            for alias, loaded in (("champion", served.release.champion), ("challenger", served.release.challenger)):
                if loaded:
                    server.metrics.served.labels(name, alias, loaded.version).set(1)
        return PlainTextResponse(server.metrics.text(), media_type="text/plain; version=0.0.4")

    @app.get("/openapi.json", dependencies=admin, include_in_schema=False)
    async def openapi():
        return JSONResponse(app.openapi())

    # The docs page's Swagger UI is served by the endpoint itself, not from a CDN: hospital
    # networks often have no internet, and /docs must not render blank there.
    app.mount(DOCS_ASSETS, StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static"), name="docs-assets")

    @app.get("/docs", dependencies=admin, include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - docs",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    return app
