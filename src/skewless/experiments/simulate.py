"""Plays the default data's planted world against a live model server, with known ground truth.

Each simulated request is one user (a randomization unit) in one context asking the server to
score ``candidates`` random items, the top-ranked one being shown; or, two-stage
(``recommend=True``), asking the server's ``recommend`` endpoint for its best item out of the
``candidates`` it retrieves from the whole catalogue. The click on the shown item is drawn from
the planted true click probability (:func:`skewless.data.world.click_logit`, through
:func:`skewless.data.generate.impressions`), then sent to the server's ``POST /v1/feedback``
with the request id the prediction answered with. Because the truth is known, the simulator also
reports each variant's expected click rate, which the experiment's measured rate should match.

Everything random is drawn up front from ``seed``, so a run is reproducible whatever the order in
which concurrent requests are answered (the server's variant assignment is itself deterministic).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
import time
import urllib.parse
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from skewless.data.generate import impressions
from skewless.data.world import CATEGORIES, DEVICES, MAX_HISTORY, N_USERS, make_world


class SimulationError(RuntimeError):
    """The server could not be played against; the message says what it answered."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every random draw of a simulation, made before the first request."""

    units: np.ndarray  # user index per unit
    history: np.ndarray  # (units, MAX_HISTORY) category indices: a unit's history is fixed
    history_len: np.ndarray
    request_unit: np.ndarray  # unit index per request
    device: np.ndarray
    hour: np.ndarray
    weekday: np.ndarray
    items: np.ndarray  # (requests, candidates) item indices
    click_draw: np.ndarray  # uniform per request: click if below the shown item's probability


def plan(units: int, requests: int, candidates: int, seed: int, world: Any) -> Plan:
    """The draws for ``requests`` requests from ``units`` users, ``candidates`` items each."""
    if not 1 <= units <= N_USERS:
        raise SimulationError(f"units must be 1 to {N_USERS}, got {units}")
    if not 1 <= candidates <= world.n_items:
        raise SimulationError(f"candidates must be 1 to {world.n_items}, got {candidates}")
    rng = np.random.default_rng([seed, 0x51A])
    users = rng.choice(N_USERS, units, replace=False)
    history_len = rng.integers(0, MAX_HISTORY + 1, units)
    draws = rng.random((units, MAX_HISTORY))
    history = (world.user_pref_cdf[users][:, None, :] < draws[:, :, None]).sum(axis=2)
    history = np.minimum(history, len(CATEGORIES) - 1)
    request_unit = rng.integers(0, units, requests)
    own = rng.random(requests) < 0.85
    device = np.where(
        own, world.user_device[users[request_unit]], rng.integers(0, len(DEVICES), requests)
    )
    items = np.stack(
        [rng.choice(world.n_items, candidates, replace=False) for _ in range(requests)]
    )
    return Plan(
        units=users,
        history=history,
        history_len=history_len,
        request_unit=request_unit,
        device=device,
        hour=rng.integers(0, 24, requests),
        weekday=rng.integers(0, 7, requests),
        items=items,
        click_draw=rng.random(requests),
    )


class _Client:
    """One keep-alive HTTP connection per thread."""

    def __init__(self, endpoint: str) -> None:
        parsed = urllib.parse.urlsplit(endpoint)
        if parsed.scheme != "http" or not parsed.hostname:
            raise SimulationError(f"--endpoint {endpoint!r}: expected http://HOST:PORT")
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.local = threading.local()

    def post(self, path: str, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        data = json.dumps(body).encode()
        for attempt in (1, 2):  # a kept-alive connection the server closed: reconnect once
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
                self.local.connection = connection
            try:
                connection.request(
                    "POST", path, body=data, headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                payload = response.read()
                headers = {k.lower(): v for k, v in response.getheaders()}
                return response.status, json.loads(payload or b"{}"), headers
            except (http.client.HTTPException, OSError) as err:
                connection.close()
                self.local.connection = None
                if attempt == 2:
                    raise SimulationError(
                        f"cannot reach the server at http://{self.host}:{self.port}{path}: {err}"
                    ) from None
        raise AssertionError("unreachable")


def simulate(
    endpoint: str,
    *,
    units: int,
    requests: int,
    seed: int,
    model: str = "ranking",
    candidates: int = 10,
    world_seed: int = 0,
    concurrency: int = 4,
    recommend: bool = False,
) -> dict[str, Any]:
    """Plays ``requests`` requests from ``units`` users against ``endpoint``; sends the clicks.

    Args:
        endpoint: The server's HTTP address (``http://localhost:8080``).
        units: Distinct users taking part.
        requests: Requests to send (each scores ``candidates`` items for one user).
        seed: Seed of every draw.
        model: The served model's name.
        candidates: Items scored per request; the top one is shown.
        world_seed: Seed of the data the model was trained on (its users and items).
        concurrency: Requests in flight at once.
        recommend: Ask ``/v1/models/recommend:predict`` (retrieval, then ranking) for one item
            out of ``candidates`` retrieved, instead of scoring random candidates.

    Returns:
        ``{"requests", "clicks", "started", "finished", "versions": {version: {"requests",
        "units", "clicks", "expected_click_rate"}}}``; started and finished are Unix
        times, so ``skewless experiment report --since/--until`` can analyze exactly this run.

    Raises:
        SimulationError: The server refused a request or the feedback.
    """
    from skewless.serving.protocol import REQUEST_ID_HEADER, VERSION_HEADER

    world = make_world(world_seed)
    drawn = plan(units, requests, candidates, seed, world)
    client = _Client(endpoint)
    predict_path = f"/v1/models/{urllib.parse.quote(model)}:predict"
    if recommend:
        from skewless.contract.spec import load_spec
        from skewless.serving.recommend import RECOMMEND_NAME

        predict_path = f"/v1/models/{RECOMMEND_NAME}:predict"
        query_fields = [f.name for f in load_spec().on_side("user", "context")]

    def impression(index: int, items: np.ndarray) -> tuple[Any, np.ndarray]:
        """The raw rows and planted logits of request ``index``'s user seeing ``items``."""
        unit, k = int(drawn.request_unit[index]), len(items)
        return impressions(
            world,
            np.full(k, drawn.units[unit]),
            items,
            np.full(k, drawn.device[index]),
            np.full(k, drawn.hour[index]),
            np.full(k, drawn.weekday[index]),
            np.repeat(drawn.history[unit][None, :], k, axis=0),
            np.full(k, drawn.history_len[unit]),
        )

    def one(index: int) -> tuple[str, str, float, bool]:
        if recommend:
            frame, _ = impression(index, drawn.items[index][:1])
            (row,) = json.loads(frame[query_fields].to_json(orient="records"))
            body = {"instances": [row], "k": 1, "candidates": candidates}
            status, answer, headers = client.post(predict_path, body)
            if status != 200:
                raise SimulationError(f"{predict_path} answered {status}: {answer}")
            item = answer["predictions"][0]["items"][0]
            frame, logit = impression(index, np.array([int(item.lstrip("i"))]))
            shown = 0
        else:
            frame, logit = impression(index, drawn.items[index])
            instances = json.loads(frame.to_json(orient="records"))
            status, answer, headers = client.post(predict_path, {"instances": instances})
            if status != 200:
                raise SimulationError(f"{predict_path} answered {status}: {answer}")
            shown = int(np.argmax(answer["predictions"]))
        probability = float(1 / (1 + np.exp(-logit[shown])))
        clicked = bool(drawn.click_draw[index] < probability)
        request_id = headers.get(REQUEST_ID_HEADER)
        if request_id is None:
            raise SimulationError(
                "the server returned no x-request-id: it keeps no exposure log (serve from a "
                "--registry, or with --request-log FILE)"
            )
        if clicked:
            status, body, _ = client.post(
                "/v1/feedback", [{"request_id": request_id, "outcome": "click"}]
            )
            if status != 200:
                raise SimulationError(f"/v1/feedback answered {status}: {body}")
        return headers.get(VERSION_HEADER, "?"), str(frame["user_id"][0]), probability, clicked

    started = time.time()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    finished = time.time() + 0.001
    by_version: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "units": set(), "clicks": 0, "expected": 0.0}
    )
    for version, user, probability, clicked in results:
        group = by_version[version]
        group["requests"] += 1
        group["units"].add(user)
        group["clicks"] += int(clicked)
        group["expected"] += probability
    return {
        "requests": requests,
        "clicks": sum(int(clicked) for *_, clicked in results),
        "started": started,
        "finished": finished,
        "versions": {
            version: {
                "requests": g["requests"],
                "units": len(g["units"]),
                "clicks": g["clicks"],
                # The planted probability of the shown items: the rate this version truly earns.
                "expected_click_rate": g["expected"] / g["requests"],
            }
            for version, g in sorted(by_version.items())
        },
    }
