"""V1 predict without FastAPI's routing layers: KServe's own endpoint, called directly.

Every request through KServe's FastAPI app pays for route matching, a request object, dependency
solving and the exception middleware before KServe's ``V1Endpoints.predict`` runs. For a one-row
ranking request that is a large share of the work (``make bench-serving``). :class:`V1Predict` sits
innermost among the app's middleware (so the body limit, timing, access log and error pages around
it all still apply) and hands ``POST /v1/models/{name}:predict`` straight to that same KServe
endpoint, the bound method the app routes to; an exception goes through the app's own exception
handlers, as FastAPI's would. Everything else passes through untouched.
"""

from __future__ import annotations

from typing import Any

PREFIX, SUFFIX = "/v1/models/", ":predict"


class V1Predict:
    """ASGI middleware: V1 predict straight to KServe's endpoint (see the module docstring)."""

    taken = 0
    """Requests answered on this path in this process (a test reads it)."""

    def __init__(self, app: Any) -> None:
        """Wraps ``app`` (the rest of FastAPI's stack)."""
        self.app = app
        self.endpoint: Any = None
        self.searched = False  # the routes are walked once, found or not

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Answers V1 predict; passes everything else (and unknown layouts) through."""
        path = scope.get("path", "")
        name = path[len(PREFIX) : -len(SUFFIX)]
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not path.startswith(PREFIX)
            or not path.endswith(SUFFIX)
            or not name
            or "/" in name
            or self._find(scope["app"]) is None
        ):
            await self.app(scope, receive, send)
            return
        from fastapi.responses import ORJSONResponse
        from starlette.requests import Request

        request = Request(scope, receive)
        try:
            response = await self.endpoint(name, request)
        except Exception as error:  # the app's handler for it, as its exception middleware
            handler = _handler(scope["app"], error)
            if handler is None:
                raise  # the server error middleware outside answers 500, as without this path
            response = await handler(request, error)
        if isinstance(response, dict):
            response = ORJSONResponse(content=response)
        V1Predict.taken += 1
        await response(scope, receive, send)

    def _find(self, app: Any) -> Any:
        """KServe's ``V1Endpoints.predict`` that ``app`` routes to (looked up once; None when it
        has none, and every request then takes the routed path)."""
        if not self.searched:
            self.searched = True
            from kserve.protocol.rest.v1_endpoints import V1Endpoints

            routes = list(app.router.routes)
            while routes and self.endpoint is None:
                route = routes.pop()
                inner = getattr(route, "original_router", None)  # FastAPI's included router
                routes.extend(getattr(inner, "routes", []))
                endpoint = getattr(route, "endpoint", None)
                if (
                    isinstance(getattr(endpoint, "__self__", None), V1Endpoints)
                    and getattr(endpoint, "__name__", "") == "predict"
                ):
                    self.endpoint = endpoint
        return self.endpoint


def _handler(app: Any, error: Exception) -> Any:
    """The app's exception handler for ``error``'s class or its nearest base, but not the
    catch-all ``Exception`` one (the server error middleware applies that)."""
    for cls in type(error).__mro__:
        if cls is Exception:
            return None
        if cls in app.exception_handlers:
            return app.exception_handlers[cls]
    return None
