"""V1 predict's short path (serving/fastpath.py) on KServe's real app and endpoints, in process.

Two apps built the way KServe's REST server builds its own (its endpoints, its exception
handlers), one with :class:`V1Predict` innermost among its middleware as ``skewless serve`` has
it: every answer must be byte for byte the same, and the short path must be the one that answered.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import kserve
import pytest
from fastapi import FastAPI
from kserve.errors import InvalidInput
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import RESTServer
from starlette.middleware import Middleware

from skewless.serving.fastpath import V1Predict


class Rows(kserve.Model):
    """Answers how many rows came; refuses a request asking it to."""

    def __init__(self) -> None:
        super().__init__("rows")
        self.ready = True

    async def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
        if payload.get("refuse"):
            raise InvalidInput("refused as asked")
        return {"predictions": [len(payload["instances"])]}


def _app(short_path: bool) -> FastAPI:
    repository = ModelRepository()
    repository.update(Rows())
    dataplane = DataPlane(model_registry=repository)
    server = RESTServer("unused", dataplane, ModelRepositoryExtension(repository), 0)
    app = FastAPI()
    if short_path:
        app.user_middleware.append(Middleware(V1Predict))
    server._register_endpoints(app)
    server._add_exception_handlers(app)
    return app


def _send(app: FastAPI, method: str, path: str, body: bytes = b"") -> tuple[int, bytes, dict]:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(
                method, path, content=body, headers={"content-type": "application/json"}
            )

    response = asyncio.run(go())
    headers = {k: v for k, v in response.headers.items() if k != "date"}
    return response.status_code, response.content, headers


@pytest.mark.parametrize(
    ("method", "path", "body", "short"),
    [
        ("POST", "/v1/models/rows:predict", b'{"instances": [{"a": 1}, {"a": 2}]}', True),
        ("POST", "/v1/models/rows:predict", b'{"instances": [], "refuse": true}', True),  # 400
        ("POST", "/v1/models/rows:predict", b"{not json", True),  # KServe's decode error
        ("POST", "/v1/models/nobody:predict", b'{"instances": []}', True),  # 404
        ("POST", "/v1/models/a/b:predict", b'{"instances": []}', False),  # not a model name
        ("GET", "/v1/models/rows", b"", False),  # not predict
    ],
)  # fmt: skip
def test_the_short_path_answers_exactly_as_kserves_routed_endpoint(method, path, body, short):
    before = V1Predict.taken
    fast = _send(_app(True), method, path, body)
    assert V1Predict.taken - before == (1 if short else 0)
    assert fast == _send(_app(False), method, path, body)
    if path == "/v1/models/rows:predict" and b"refuse" not in body and b"not json" not in body:
        assert fast[:2] == (200, b'{"predictions":[2]}')
