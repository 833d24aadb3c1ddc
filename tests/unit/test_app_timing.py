"""KServe's timing middleware is in the served app only when its latency lines are logged.

The app is built the way KServe's REST server builds its own (its ``_add_middlewares``), after
``skewless serve``'s shaping of it; FastAPI builds the middleware stack at the first request, and
the stack is walked here layer by layer.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import RESTServer
from timing_asgi import TimingMiddleware

from skewless.serving.app import time_only_when_logged


def _layers(app: FastAPI) -> list[type]:
    layer: Any = app.build_middleware_stack()
    found = []
    while layer is not None and layer is not app.router:
        found.append(type(layer))
        layer = getattr(layer, "app", None)
    return found


@pytest.mark.parametrize(("level", "timed"), [(logging.WARNING, False), (logging.INFO, True)])
def test_timing_middleware_is_built_only_when_kserve_trace_logs_info(level, timed):
    trace = logging.getLogger("kserve.trace")
    before = trace.level
    app = FastAPI()
    time_only_when_logged(app)  # skewless serve shapes the app before KServe adds its middleware
    time_only_when_logged(app)  # once per app, however often a model loads
    repository = ModelRepository()
    server = RESTServer("unused", DataPlane(repository), ModelRepositoryExtension(repository), 0)
    server._add_middlewares(app)
    try:
        trace.setLevel(level)
        layers = _layers(app)
    finally:
        trace.setLevel(before)
    assert (TimingMiddleware in layers) is timed, layers
    assert len(layers) >= 2  # the walk reached past the outermost layer
