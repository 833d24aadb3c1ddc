"""A stand-in for the Kubeflow Model Registry REST service, for tests on a machine without it.

The real service (a Go server over a database) cannot run here, so the Kubeflow backend is tested
with the real ``model-registry`` Python client talking real HTTP to this server, which implements
the part of the service's OpenAPI contract (``/api/model_registry/v1``) the backend uses: registered
models (create, find by name, get, patch, list, list versions), model versions (create, find by name
under a model) and model-version artifacts. Like the real service it assigns ids and timestamps,
answers 404 with ``{"code", "message"}`` for a missing object, and refuses a duplicate name (model,
or version under one model) with 409. It stores custom properties as given.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from support import JsonHandler

BASE = "/api/model_registry/v1alpha3"


class _Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.models: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, dict[str, Any]] = {}
        self.artifacts: dict[str, list[dict[str, Any]]] = {}

    def stamp(self, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
        now = str(int(time.time() * 1000))
        return {**body, **extra, "id": str(next(self.ids)), "createTimeSinceEpoch": now,
                "lastUpdateTimeSinceEpoch": now}  # fmt: skip


class _Handler(JsonHandler):
    store: _Store

    def _missing(self, what: str) -> None:
        self._send(404, {"code": "404", "message": f"{what} not found"})

    @staticmethod
    def _list(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"items": items, "size": len(items), "pageSize": max(len(items), 1),
                "nextPageToken": ""}  # fmt: skip

    def do_GET(self) -> None:
        """Reads: lists, finds by name, gets by id."""
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path.removeprefix(BASE)
        store = self.store
        with store.lock:
            if path == "/registered_models":
                return self._send(200, self._list(list(store.models.values())))
            if path == "/registered_model":
                found = [m for m in store.models.values() if m["name"] == query.get("name")]
                return self._send(200, found[0]) if found else self._missing("registered model")
            if path == "/model_version":
                found = [v for v in store.versions.values()
                         if v["name"] == query.get("name")
                         and v["registeredModelId"] == query.get("parentResourceId")]  # fmt: skip
                return self._send(200, found[0]) if found else self._missing("model version")
            parts = path.strip("/").split("/")
            if parts[0] == "registered_models" and len(parts) >= 2:
                if parts[1] not in store.models:
                    return self._missing("registered model")
                if len(parts) == 2:
                    return self._send(200, store.models[parts[1]])
                if parts[2:] == ["versions"]:
                    versions = [v for v in store.versions.values()
                                if v["registeredModelId"] == parts[1]]  # fmt: skip
                    return self._send(200, self._list(versions))
            if parts[0] == "model_versions" and len(parts) == 3 and parts[2] == "artifacts":
                return self._send(200, self._list(store.artifacts.get(parts[1], [])))
        return self._missing(path)

    def do_POST(self) -> None:
        """Creates: registered models, model versions, model-version artifacts."""
        path = urlparse(self.path).path.removeprefix(BASE)
        body = self._body()
        store = self.store
        with store.lock:
            if path == "/registered_models":
                if any(m["name"] == body.get("name") for m in store.models.values()):
                    return self._send(409, {"code": "409", "message": "model name exists"})
                created = store.stamp(body, state="LIVE")
                store.models[created["id"]] = created
                return self._send(201, created)
            if path == "/model_versions":
                if body.get("registeredModelId") not in store.models:
                    return self._missing("registered model")
                if any(v["name"] == body.get("name")
                       and v["registeredModelId"] == body["registeredModelId"]
                       for v in store.versions.values()):  # fmt: skip
                    return self._send(409, {"code": "409", "message": "version name exists"})
                created = store.stamp(body, state="LIVE")
                store.versions[created["id"]] = created
                return self._send(201, created)
            parts = path.strip("/").split("/")
            if parts[0] == "model_versions" and len(parts) == 3 and parts[2] == "artifacts":
                if parts[1] not in store.versions:
                    return self._missing("model version")
                created = store.stamp(body, state="LIVE")
                store.artifacts.setdefault(parts[1], []).append(created)
                return self._send(201, created)
        return self._missing(path)

    def do_PATCH(self) -> None:
        """Updates a registered model (fields given replace the stored ones)."""
        path = urlparse(self.path).path.removeprefix(BASE)
        parts = path.strip("/").split("/")
        body = self._body()
        with self.store.lock:
            if parts[0] == "registered_models" and len(parts) == 2:
                model = self.store.models.get(parts[1])
                if model is None:
                    return self._missing("registered model")
                model.update(body)
                model["lastUpdateTimeSinceEpoch"] = str(int(time.time() * 1000))
                return self._send(200, model)
        return self._missing(path)


@contextmanager
def model_registry_standin() -> Iterator[str]:
    """Runs the stand-in on a free loopback port; yields its base URL (``http://127.0.0.1:N``)."""
    handler = type("Handler", (_Handler,), {"store": _Store()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
