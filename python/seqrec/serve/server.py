"""``seqrec serve``: a FastAPI application answering recommendations online, served by uvicorn.

Routes: ``POST /v1/recommend`` (a known user or an ad-hoc history -> top-k raw item ids), ``POST /v1/similar``
(an item's nearest items), ``GET /healthz`` (alive), ``GET /readyz`` (a model is loaded), ``GET /metrics``
(Prometheus text), ``POST /admin/reload`` (a new checkpoint, guarded by the token in ``SEQREC_ADMIN_TOKEN``;
SIGHUP reloads the current path). Bad input is a 4xx whose message names the field; the server keeps serving.
Requires the serve extra (``pip install -e ".[serve]"``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import signal
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Literal, Sequence, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from seqrec.serve.batcher import MicroBatcher
from seqrec.serve.online import Answer, OnlineModel, RequestError

TOKEN_ENV = "SEQREC_ADMIN_TOKEN"
MAX_K = 1000
ROUTES = ("/v1/recommend", "/v1/similar", "/healthz", "/readyz", "/metrics", "/admin/reload")
log = logging.getLogger("seqrec.serve")

RawId = Union[int, str]


class RecommendRequest(BaseModel):
    """The body of ``POST /v1/recommend``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored
    user_id: RawId | None = Field(None, description="a known user: their stored history is the input")
    history: list[RawId] | None = Field(None, description="raw item ids, oldest first (instead of user_id)")
    timestamps: list[int] | None = Field(None, description="unix times of the history (time-feature models)")
    k: int = Field(10, ge=1, le=MAX_K, description="how many items")
    exclude: list[RawId] | None = Field(None, description="items never to recommend")
    allow: list[RawId] | None = Field(None, description="the only items that may be recommended")
    exclude_seen: bool = Field(True, description="leave out the items of the history")
    strict: bool = Field(False, description="unknown item ids are a 422 instead of skipped and listed")


class SimilarRequest(BaseModel):
    """The body of ``POST /v1/similar``."""

    model_config = ConfigDict(extra="forbid")
    item_id: RawId
    k: int = Field(10, ge=1, le=MAX_K)
    exclude: list[RawId] | None = None
    allow: list[RawId] | None = None
    strict: bool = False


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checkpoint: str | None = Field(None, description="the new checkpoint (default: the current path again)")


@dataclass
class Outcome:
    """What one request of a batch gets: an answer or the error of its own input."""

    answer: Answer | None = None
    unknown: list[Any] | None = None
    error: RequestError | None = None


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (two apps in one process never mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("seqrec_requests", "requests by route and HTTP status", ["route", "status"], registry=r)
        self.latency = Histogram("seqrec_request_seconds", "request latency by route", ["route"], registry=r,
                                 buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0))
        self.batch = Histogram("seqrec_batch_size", "requests per encoder pass", registry=r,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.model = Gauge("seqrec_model_info", "the model being served (value 1)", ["version", "index"], registry=r)
        self.load_seconds = Gauge("seqrec_model_load_seconds", "seconds the served model took to load", registry=r)
        self.loaded_at = Gauge("seqrec_model_loaded_timestamp_seconds", "when the served model was loaded", registry=r)
        self.reloads = Counter("seqrec_reloads", "model reloads by outcome", ["outcome"], registry=r)

    def serving(self, model: OnlineModel) -> None:
        self.model.clear()
        self.model.labels(model.version, model.index_kind).set(1)
        self.load_seconds.set(model.load_seconds)
        self.loaded_at.set(model.loaded_at)


class State:
    """The model being served and how to replace it. Swapping ``model`` is one assignment: a batch reads it
    once when it starts, so requests in flight finish on the model they started with."""

    def __init__(self, checkpoint: Path, index: Literal["exact", "hnsw"]):
        self.checkpoint = checkpoint
        self.index = index
        self.model: OnlineModel | None = None
        self.load_error: str | None = None
        self.reload_lock = asyncio.Lock()


def _recommend_batch(requests: Sequence[RecommendRequest], model: OnlineModel) -> list[Outcome]:
    """Resolved with the batch's own model (a reload between arrival and batch cannot mix catalogues)."""
    outcomes: list[Outcome] = []
    queries = []
    for req in requests:
        try:
            q = model.resolve(req.user_id, req.history, req.k, req.exclude, req.allow, req.exclude_seen,
                              req.strict, req.timestamps)
        except RequestError as e:
            outcomes.append(Outcome(error=e))
            continue
        outcomes.append(Outcome(unknown=q.unknown))
        queries.append(q)
    answers = iter(model.recommend(queries))
    for o in outcomes:
        if o.error is None:
            o.answer = next(answers)
    return outcomes


def create_app(
    checkpoint: str | os.PathLike[str],
    index: Literal["exact", "hnsw"] = "exact",
    max_batch: int = 32,
    max_wait_ms: float = 2.0,
    max_body_bytes: int = 1 << 20,
) -> FastAPI:
    """The application; the model loads in the background after start (``/readyz`` says when it is ready).

    Parameters
    ----------
    checkpoint : path
        A ``.ckpt`` written by ``seqrec fit`` (it holds the catalogue, the raw ids and the item table).
    index : str
        ``exact`` or ``hnsw`` retrieval (``seqrec.serve.online.OnlineModel``).
    max_batch, max_wait_ms : int, float
        Micro-batching: a request waits up to ``max_wait_ms`` for others, batches hold up to ``max_batch``
        (1: no batching).
    max_body_bytes : int
        Larger request bodies get 413 before they are parsed.
    """
    state = State(Path(checkpoint), index)
    metrics = Metrics()
    batcher: MicroBatcher[RecommendRequest, Outcome] = MicroBatcher(
        _recommend_batch, lambda: state.model, max_batch, max_wait_ms, on_batch=metrics.batch.observe)

    async def load(path: Path) -> OnlineModel:
        # Its own thread, not the batcher's: the old model keeps answering while the new one loads.
        return await asyncio.get_running_loop().run_in_executor(None, OnlineModel, path, state.index)

    async def first_load() -> None:
        try:
            state.model = await load(state.checkpoint)
            metrics.serving(state.model)
            log.info("serving %s (%s index, loaded in %.1f s)", state.model.version, index, state.model.load_seconds)
        except Exception as e:
            state.load_error = f"{type(e).__name__}: {e}"
            log.error("could not load %s: %s", state.checkpoint, state.load_error)

    async def reload(path: Path) -> dict[str, Any]:
        async with state.reload_lock:
            old = state.model
            try:
                new = await load(path)
            except Exception as e:
                metrics.reloads.labels("failed").inc()
                message = f"{path}: {type(e).__name__}: {e}"
                log.error("reload failed, still serving %s: %s", old.version if old else None, message)
                raise RequestError(422, "checkpoint", f"could not load ({message}); still serving "
                                                      f"{old.version if old else 'nothing'}") from None
            state.model, state.checkpoint, state.load_error = new, path, None
            metrics.serving(new)
            metrics.reloads.labels("ok").inc()
            log.info("reloaded: serving %s (was %s)", new.version, old.version if old else None)
            return {"model_version": new.version, "previous_version": old.version if old else None,
                    "load_seconds": round(new.load_seconds, 3)}

    def on_sighup() -> None:
        async def run() -> None:
            try:
                await reload(state.checkpoint)
            except RequestError:
                pass  # logged by reload; the old model serves on

        asyncio.get_running_loop().create_task(run())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        loading = asyncio.get_running_loop().create_task(first_load())
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests), or no SIGHUP
            pass
        yield
        loading.cancel()
        await batcher.stop()

    app = FastAPI(title="seqrec", lifespan=lifespan)

    def error(status: int, message: str, **extra: Any) -> JSONResponse:
        return JSONResponse({"error": message, **extra}, status_code=status)

    def ready_model() -> OnlineModel:
        if state.model is None:
            raise RequestError(503, "model", state.load_error or "still loading; /readyz says when it is ready")
        return state.model

    @app.exception_handler(RequestError)
    async def request_error(request: Request, e: RequestError) -> JSONResponse:
        return error(e.status, str(e), field=e.field)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        problems = []
        status = 422
        for err in e.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            if err.get("type") == "json_invalid":
                status = 400
                problems.append(f"body: malformed JSON ({err.get('ctx', {}).get('error', err.get('msg'))})")
            else:
                problems.append(f"{where}: {err.get('msg')}")
        return error(status, "; ".join(problems), fields=[p.split(":", 1)[0] for p in problems])

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return error(500, f"internal error: {type(e).__name__}: {e}")

    @app.middleware("http")
    async def measure(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        route = request.url.path if request.url.path in ROUTES else "other"
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body_bytes):
            response: Response = error(413, f"body: {length} bytes is more than the limit of {max_body_bytes}")
        else:
            response = await call_next(request)
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - start)
        return response

    async def body(request: Request) -> bytes:
        # A chunked body has no content-length: count it as it arrives.
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise RequestError(413, "body", f"more than the limit of {max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def parse(raw: bytes, model: type[BaseModel]) -> Any:
        from pydantic import ValidationError

        try:
            return model.model_validate_json(raw or b"{}")
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None

    @app.post("/v1/recommend")
    async def recommend(request: Request) -> JSONResponse:
        req: RecommendRequest = parse(await body(request), RecommendRequest)
        ready_model()
        done = await batcher.submit(req)
        outcome = done.result
        if outcome.error is not None:
            raise outcome.error
        assert outcome.answer is not None
        a = outcome.answer
        return JSONResponse({
            "items": [{"item_id": i, "score": s} for i, s in zip(a.items, a.scores)],
            "model_version": done.context.version,
            "unknown_items": outcome.unknown or [],
            "history_used": a.history_used,
        })

    @app.post("/v1/similar")
    async def similar(request: Request) -> JSONResponse:
        req: SimilarRequest = parse(await body(request), SimilarRequest)
        model = ready_model()
        answer, unknown = await asyncio.get_running_loop().run_in_executor(
            batcher._pool, lambda: model.similar(req.item_id, req.k, req.exclude, req.allow, req.strict))
        return JSONResponse({
            "items": [{"item_id": i, "score": s} for i, s in zip(answer.items, answer.scores)],
            "model_version": model.version,
            "unknown_items": unknown,
        })

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if state.model is None:
            return JSONResponse({"status": "failed" if state.load_error else "loading", "error": state.load_error},
                                status_code=503)
        return JSONResponse({"status": "ready", "model_version": state.model.version,
                             "items": state.model.num_items, "index": state.model.index_kind})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload")
    async def admin_reload(request: Request) -> JSONResponse:
        expected = os.environ.get(TOKEN_ENV)
        if not expected:
            raise RequestError(403, "token", f"reload is disabled: start the server with {TOKEN_ENV} set")
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise RequestError(401, "token", "missing or wrong token (header 'Authorization: Bearer <token>')")
        req: ReloadRequest = parse(await body(request), ReloadRequest)
        return JSONResponse(await reload(Path(req.checkpoint) if req.checkpoint else state.checkpoint))

    app.state.seqrec = state
    app.state.metrics = metrics
    return app


def serve(checkpoint: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8000,
          index: Literal["exact", "hnsw"] = "exact", max_batch: int = 32, max_wait_ms: float = 2.0,
          max_body_bytes: int = 1 << 20, access_log: bool = False) -> None:
    """Runs the server until interrupted (``seqrec serve``)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(checkpoint, index, max_batch, max_wait_ms, max_body_bytes)
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info")
