"""A stand-in for the Kubeflow Pipelines API server, for testing ``skewless submit`` here.

The real server needs a cluster, so ``submit`` is tested with the real ``kfp`` client talking real
HTTP to this server, which answers the part of KFP's ``/apis/v2beta1`` REST contract the client
uses to start runs: health, experiments (list with a name filter, create), runs (create) and
recurring runs (create). It records every body it was sent, for the test to inspect.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from support import JsonHandler

BASE = "/apis/v2beta1"


class KfpApi:
    """What the stand-in was sent."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.experiments: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.recurring_runs: list[dict[str, Any]] = []
        self.ids = itertools.count(1)
        self.lock = threading.Lock()


def _handler(api: KfpApi) -> type[JsonHandler]:
    class Handler(JsonHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == f"{BASE}/healthz":
                self._send(200, {"multi_user": False})
            elif url.path == f"{BASE}/experiments":
                (text,) = parse_qs(url.query).get("filter", ["{}"])
                predicates = json.loads(text).get("predicates", [])
                wanted = [p.get("stringValue", p.get("string_value")) for p in predicates]
                found = [e for e in api.experiments if e["display_name"] in wanted or not wanted]
                self._send(200, {"experiments": found, "total_size": len(found)})
            else:
                self._send(404, {"code": 5, "message": f"no route {url.path}"})

        def do_POST(self) -> None:
            body = self._body()
            path = urlparse(self.path).path
            with api.lock:
                if path == f"{BASE}/experiments":
                    created = {**body, "experiment_id": f"exp-{next(api.ids)}"}
                    api.experiments.append(created)
                elif path == f"{BASE}/runs":
                    created = {**body, "run_id": f"run-{next(api.ids)}", "state": "PENDING"}
                    api.runs.append(created)
                elif path == f"{BASE}/recurringruns":
                    created = {**body, "recurring_run_id": f"rr-{next(api.ids)}"}
                    api.recurring_runs.append(created)
                else:
                    self._send(404, {"code": 5, "message": f"no route {path}"})
                    return
            self._send(200, created)

    return Handler


@contextmanager
def kfp_api_standin() -> Iterator[KfpApi]:
    """Serves the stand-in on a free loopback port; yields what it records."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(KfpApi("")))
    api = KfpApi(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
