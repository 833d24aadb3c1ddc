"""KServe's web app as ``skewless serve`` shapes it: limits, errors, feedback, logging.

KServe's FastAPI app is a module global (``kserve.model_server.app``) that every REST worker
imports afresh; :func:`limit_app` and :func:`add_feedback_route` adjust it in each process before
its first request. Model management is off unless asked for (:class:`ReadOnlyRepository`), a
refused request is one short log line (:class:`RefusedRequestFilter`), and logs can be JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from kserve.errors import InvalidInput, ServerNotReady
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from starlette.middleware import Middleware

from skewless.features.store import StoreUnavailable
from skewless.serving.exposures import NO_LOG
from skewless.serving.fastpath import V1Predict
from skewless.serving.protocol import json_object, media_type
from skewless.serving.validation import RequestError

if TYPE_CHECKING:
    from skewless.serving.server import RankingModel

_DOC_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
FEEDBACK_PATH = "/v1/feedback"


def limit_app(max_body_mb: float) -> None:
    """Sets the request body limit on KServe's FastAPI app, removes its schema and docs pages and
    puts V1 predict on its short path (:mod:`skewless.serving.fastpath`).

    KServe's app is a module global (``kserve.model_server.app``); FastAPI builds its middleware,
    including the body limit, at the first request, so this must run before it.
    """
    from kserve.model_server import app

    app.max_body_size = int(max_body_mb * 1024 * 1024)
    app.add_exception_handler(RequestValidationError, _schema_error)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    if not any(m.cls is BinaryHeaderCheck for m in app.user_middleware):
        app.add_middleware(BinaryHeaderCheck)
    if not any(m.cls is V1Predict for m in app.user_middleware):
        # Last in the list is innermost: every other middleware still wraps V1 predict.
        app.user_middleware.append(Middleware(V1Predict))
    app.openapi_url = None
    _drop_routes(app, _DOC_PATHS)
    time_only_when_logged(app)


def time_only_when_logged(app: Any) -> None:
    """Leaves KServe's timing middleware out of the app while nothing would log what it measures.

    KServe adds ``timing_asgi.TimingMiddleware`` to every app it starts
    (``kserve/protocol/rest/server.py``, ``RESTServer._add_middlewares``, at v0.21.0), after our
    model has loaded. Its only output is two ``kserve.trace`` INFO lines per request (wall and CPU
    time), which the default server discards (no ``--access-log``), yet it still matches the route
    and calls ``getrusage`` twice per request: in a process with TensorFlow's thread pools that was
    a third of the event loop's samples at concurrency 32 (py-spy). FastAPI builds the
    middleware stack from ``user_middleware`` at the first request (the lifespan's), so the check
    runs then, against the logging configuration the server started with.
    """
    from timing_asgi import TimingMiddleware

    if getattr(app, "_skewless_timing_checked", False):  # once per app, however often we load
        return
    build = app.build_middleware_stack

    def build_stack() -> Any:
        if not logging.getLogger("kserve.trace").isEnabledFor(logging.INFO):
            kept = [m for m in app.user_middleware if m.cls is not TimingMiddleware]
            app.user_middleware[:] = kept
        return build()

    app.build_middleware_stack = build_stack
    app._skewless_timing_checked = True


def _drop_routes(app: Any, paths: set[str]) -> None:
    """Removes the app's routes at ``paths`` (a route added again replaces, never doubles)."""
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", "") not in paths]


def add_feedback_route(model: RankingModel) -> None:
    """Adds ``POST /v1/feedback`` for ``model`` to KServe's app (once per process)."""
    from fastapi.responses import ORJSONResponse
    from kserve.model_server import app

    async def feedback(request: Request) -> ORJSONResponse:
        # 501 when this server keeps no exposure log: there is nothing to join outcomes to.
        if model.logs is None:
            return ORJSONResponse(status_code=501, content={"error": NO_LOG})
        status, body = await model.logs.outcomes(
            await request.body(), media_type(dict(request.headers))
        )
        return ORJSONResponse(status_code=status, content=body)

    _drop_routes(app, {FEEDBACK_PATH})
    app.add_api_route(FEEDBACK_PATH, feedback, methods=["POST"], include_in_schema=False)


def add_push_route(model: RankingModel) -> None:
    """Adds ``POST /push`` (new feature values, Feast's body) for ``model``'s feature store."""
    from fastapi.responses import ORJSONResponse
    from kserve.model_server import app

    from skewless.serving.lookup import PUSH_PATH

    async def push(request: Request) -> ORJSONResponse:
        # 403 when pushing is off; 400 naming the problem; else what was written.
        lookup = model.lookup
        assert lookup is not None
        if not model.config.allow_push:
            return ORJSONResponse(
                status_code=403,
                content={"error": "pushing features is off: start the server with --allow-push"},
            )
        try:
            payload = json_object(await request.body(), dict(request.headers))
            spec = model.routing.production.validator.spec
            written = await asyncio.to_thread(lookup.push, payload, spec)
        except RequestError as err:
            return ORJSONResponse(status_code=400, content={"error": str(err)[:500]})
        return ORJSONResponse(status_code=200, content=written)

    _drop_routes(app, {PUSH_PATH})
    app.add_api_route(PUSH_PATH, push, methods=["POST"], include_in_schema=False)


async def _store_unavailable(request: Any, error: Exception) -> Any:
    """The feature store cannot be read: 503 with a retry hint, never an answer without it."""
    from fastapi.responses import ORJSONResponse

    return ORJSONResponse(
        status_code=503, content={"error": str(error)[:500]}, headers={"Retry-After": "1"}
    )


async def _schema_error(request: Any, error: Exception) -> Any:
    """A body that does not fit the protocol's schema: 422 naming where, never echoing the input.

    FastAPI's own handler echoes the input, and an input holding a lone surrogate (JSON's
    ``"\ud800"``) cannot be encoded, which turned a client's mistake into a 500.
    """
    from fastapi.responses import ORJSONResponse

    problems = []
    for item in getattr(error, "errors", lambda: [])()[:3]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        problems.append(f"{where}: {item.get('msg', 'invalid')}")
    message = "request does not match the protocol's schema: " + "; ".join(problems)
    safe = message.encode("utf-8", "backslashreplace").decode("utf-8")[:500]
    return ORJSONResponse(status_code=422, content={"error": safe})


class BinaryHeaderCheck:
    """ASGI middleware: a malformed ``inference-header-content-length`` is a 400, not a 500.

    KServe parses that header (the V2 binary-data extension) with a bare ``int()``, so a
    non-numeric or negative value became ``500 ValueError``.
    """

    def __init__(self, app: Any) -> None:
        """Wraps ``app``."""
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Answers 400 for a bad header; passes everything else through."""
        if scope["type"] == "http":
            for key, value in scope.get("headers", []):
                if key.lower() == b"inference-header-content-length" and not value.isdigit():
                    shown = value[:40].decode("latin-1")
                    message = f"inference-header-content-length must be a byte count, got {shown!r}"
                    body = orjson.dumps({"error": message})
                    headers = [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ]
                    await send({"type": "http.response.start", "status": 400, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)


class ReadOnlyRepository(ModelRepositoryExtension):
    """KServe's model repository extension without load and unload (index still answers).

    Anyone who reaches the port could otherwise unload the model (REST
    ``/v2/repository/models/NAME/unload`` or gRPC ``RepositoryModelUnload``) and leave the server
    answering 404 until a restart. ``skewless serve --allow-model-management`` restores them.
    """

    async def load(self, model_name: str) -> None:
        """Refused: loading is off."""
        raise ManagementOff()

    async def unload(self, model_name: str) -> None:
        """Refused: unloading is off."""
        raise ManagementOff()


class ManagementOff(NotImplementedError):
    """Model management was asked for and is off: REST answers 501, gRPC UNIMPLEMENTED."""

    def __init__(self) -> None:
        """The one message, also as ``reason`` (which KServe's gRPC error mapping reads)."""
        self.reason = (
            "model repository load/unload is off on this server (skewless serve "
            "--allow-model-management turns it on)"
        )
        super().__init__(self.reason)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        document = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document)


class RefusedRequestFilter(logging.Filter):
    """KServe logs every 400 (and 501, 503) with its traceback; a refused request is one short
    line."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrites records of refused requests; passes everything else."""
        error = record.exc_info[1] if record.exc_info else None
        status = 400 if isinstance(error, InvalidInput) else None
        if isinstance(error, ManagementOff):
            status = 501
        if isinstance(error, ServerNotReady):  # a readiness probe while no model is loaded
            status = 503
        if status is not None:
            message = str(error)
            record.msg = f"refused request ({status}): %s"
            record.args = (message if len(message) <= 300 else message[:300] + "...",)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def configure_logging(*, access_log: bool, log_format: str) -> None:
    """KServe's logging configuration with our defaults: request lines only with ``access_log``.

    Raises:
        ValueError: An unknown ``log_format``.
    """
    import copy

    from kserve import logging as kserve_logging

    if log_format not in ("text", "json"):
        raise ValueError(f"log format must be text or json, got {log_format!r}")
    config = copy.deepcopy(kserve_logging.KSERVE_LOG_CONFIG)
    request_level = "INFO" if access_log else "WARNING"
    config["loggers"]["uvicorn.access"]["level"] = request_level
    config["loggers"]["kserve.trace"]["level"] = request_level
    if log_format == "json":
        for name in config["formatters"]:
            config["formatters"][name] = {"()": f"{__name__}.JsonFormatter"}
    kserve_logging.configure_logging(config)
    logging.getLogger("kserve").addFilter(RefusedRequestFilter())
