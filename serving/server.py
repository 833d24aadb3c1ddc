"""The KServe model server for exported ranking models.

A thin :class:`kserve.Model` around the SavedModel's ``serving_default`` signature. KServe's
``ModelServer`` provides the protocols: V1 REST (``/v1/models/NAME:predict``), the Open Inference
Protocol (V2) over REST (``/v2/models/NAME/infer``) and gRPC, metadata, readiness and Prometheus
metrics (``/metrics``). Requests carry raw feature values named as in the feature spec; the
transform runs inside the model. Every request is validated against the spec the model was exported
with before it reaches TensorFlow, and a bad one gets a 400 naming the field.

Served from a registry (a SQLite file, or a Kubeflow Model Registry on a cluster), the model
follows it: ``production`` takes the requests, and a canary ``candidate`` takes its recorded share
of the users, each user sticking to one version (:mod:`skewless.serving.routing`); each answer names
its version in the ``x-model-version`` header. With an exposure log, every request is logged
(request id, experiment, variant, version, unit, items and scores, status, latency) and outcomes
arrive at ``POST /v1/feedback`` (:mod:`skewless.serving.app`), which ``skewless experiment
report`` joins (docs/experiments.md). The wire formats are in :mod:`skewless.serving.protocol`.

Concurrent requests are micro-batched (:mod:`skewless.serving.batching`). With ``workers > 1``
KServe spawns REST worker processes and hands each a pickled copy of the model; a pickled
:class:`RankingModel` carries only its path and settings, and each worker loads TensorFlow itself.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kserve

from skewless.contract.kinds import kind_of
from skewless.registry import open_registry
from skewless.registry.core import Registry, Traffic
from skewless.serving.app import (
    add_feedback_route,
    add_push_route,
    configure_logging,
    limit_app,
)
from skewless.serving.batching import MicroBatcher
from skewless.serving.config import ServingConfig
from skewless.serving.exposures import ExperimentLogs, answered, failures_logged
from skewless.serving.loading import ModelLoadError, load_routing
from skewless.serving.lookup import (
    LOOKED_UP_HEADER,
    FeatureLog,
    FeatureLookup,
)
from skewless.serving.protocol import (
    BATCH_ROWS_HEADER,
    Headers,
    experiment_unit,
    prediction_response,
    request_columns,
)
from skewless.serving.routing import LoadedVersion, PreparedBatch, Routing
from skewless.serving.validation import (
    RawRequest,
    RequestValidator,
)

LOAD_WAIT_SECONDS = 600.0  # how long a request waits for a worker still loading the model
YOUNG_OBJECTS = 20_000  # the collector's first threshold (Python's default is 700)


class RankingModel(kserve.Model):
    """Serves one exported ranking model; validates, batches, predicts."""

    def __init__(
        self,
        name: str,
        model_dir: str | Path | None = None,
        config: ServingConfig | None = None,
        *,
        registry: str | Path | None = None,
    ) -> None:
        """Stores the settings; :meth:`load` loads the model (a folder, or the version a registry
        alias points at), as KServe's model lifecycle expects.

        Args:
            name: Model name in the URL paths (and in the registry).
            model_dir: Exported SavedModel folder (when not serving from a registry).
            config: Admission and batching settings (defaults when None).
            registry: A registry file, or a Kubeflow Model Registry URL (on a cluster); the model
                serves ``production`` plus a canary ``candidate`` at its share, and follows both
                when they move (a rollback, a canary or a promotion takes effect without a
                restart). Artifacts in an object store are downloaded and checksum-verified.
        """
        super().__init__(name, return_response_headers=True)
        if (model_dir is None) == (registry is None):
            raise ValueError("give exactly one of model_dir and registry")
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.registry_locator = str(registry) if registry is not None else None
        self.registry: Registry | None = None  # opened by load(), in each process
        self.config = config or ServingConfig()
        self.lookup: FeatureLookup | None = None  # opened by load() with a feature store
        self.feature_log: FeatureLog | None = None
        self._loaded = threading.Event()  # set by load(); the work happens there, as in KServe

    def _traffic(self) -> Traffic:
        """The versions to serve now (a folder-backed model has only its one version)."""
        if self.registry is None:
            return Traffic(production=None, candidate=None, candidate_percent=0)
        return self.registry.traffic(self.name)

    def _route(self, traffic: Traffic, current: Routing | None) -> Routing:
        if self.registry is not None and traffic.production is None:
            raise FileNotFoundError(
                f"registry {self.registry_locator} has no production {self.name}"
            )
        return load_routing(
            self.name, traffic, current, model_dir=self.model_dir, registry=self.registry,
            max_request_rows=self.config.max_request_rows,
            lookup=self.lookup.fields if self.lookup is not None else frozenset(),
        )  # fmt: skip

    def load(self) -> bool:
        """Loads the versions to serve, starts the batchers and (for a registry) the watcher."""
        # Here, not in serve(): each REST worker process imports KServe's app afresh and loads
        # its copy of this model before its first request.
        limit_app(self.config.max_body_mb)
        self.registry = open_registry(self.registry_locator) if self.registry_locator else None
        self.lookup, self.feature_log = None, None
        if self.config.feature_store:
            self.lookup = FeatureLookup(self.config.feature_store)
            if self.config.feature_log:
                self.feature_log = FeatureLog(
                    self.config.feature_log, self.lookup, self.config.feature_log_sample,
                    max_bytes=int(self.config.log_max_mb * 2**20),
                )  # fmt: skip
        self.served = self._traffic()
        self.routing = self._route(self.served, None)
        # TensorFlow leaves hundreds of thousands of long-lived Python objects; a full GC pass
        # over them stalls the event loop for ~100 ms (p99 at 32 clients fell from 268 ms to
        # 22 ms with this). Freezing moves them out of the collector's sight.
        gc.collect()
        gc.freeze()
        # The youngest generation was collected about once per 500-row request (its 500 decoded
        # rows): 0.17 ms of the event loop's CPU each. The collector counts objects allocated and
        # not yet freed, so with room for the rows of the requests in flight, answered requests
        # no longer set it off; garbage cycles still do.
        gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])
        # One batcher per role: a batch is one model call, so it never mixes two versions.
        self.batchers = {
            role: MicroBatcher(
                PreparedBatch.score,
                prepare=functools.partial(self.prepare, role),
                max_batch_rows=self.config.max_batch_rows,
                max_wait_ms=self.config.max_wait_ms,
            )
            for role in ("production", "candidate")
        }
        self.logs = (
            ExperimentLogs(self.name, self.config.request_log,
                           max_bytes=int(self.config.log_max_mb * 2**20))
            if self.config.request_log
            else None
        )  # fmt: skip
        add_feedback_route(self)
        if self.lookup is not None:
            add_push_route(self)
        if self.registry is not None:
            threading.Thread(target=self._watch, name="registry-watch", daemon=True).start()
        self.ready = True
        self._loaded.set()
        return True

    async def healthy(self) -> bool:
        """Whether the model serves; a worker still loading its copy answers once it is done.

        KServe asks this before every prediction and answers 503 when it is false. With several
        REST workers on one port, a request can reach a worker still loading while another one
        already serves (a pod is Ready as soon as one worker is): it waits for the load, as
        :meth:`predict` does, instead of failing.
        """
        if not self._loaded.is_set():
            await asyncio.to_thread(self._loaded.wait, LOAD_WAIT_SECONDS)
        return bool(self.ready)

    def get_input_types(self) -> list[dict[str, Any]]:
        """V2 model metadata: every model input, one value per row, typed by its kind."""
        spec = self.validator.spec
        return [
            {"name": f.name, "datatype": kind_of(f).v2_datatype(f), "shape": [-1]}
            for f in spec.model_inputs
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        """V2 model metadata: the engagement probability, one per row."""
        return [{"name": "probability", "datatype": "FP32", "shape": [-1]}]

    @property
    def validator(self) -> RequestValidator:
        """The production version's request validator."""
        return self.routing.production.validator

    def _watch(self) -> None:
        """Follows the aliases: loads new versions off the event loop, then swaps them in.

        Each poll is one small registry read; an artifact is checksummed (a pass over all its
        files) only when an alias has actually moved to it.
        """
        assert self.registry is not None
        while True:
            time.sleep(self.config.watch_seconds)
            try:
                traffic = self._traffic()
                if traffic != self.served:
                    self.routing = self._route(traffic, self.routing)
                    self.served = traffic
            except Exception as err:  # keep serving the current versions, and say why
                print(f"skewless: not switching versions: {err}", file=sys.stderr, flush=True)

    def __getstate__(self) -> dict[str, Any]:
        """Pickles settings only: a loaded SavedModel cannot cross processes."""
        state = dict(self.__dict__)
        for key in ("routing", "batchers", "logs", "served", "_loaded",
                    "registry", "lookup", "feature_log"):  # fmt: skip
            state.pop(key, None)
        state["ready"] = False
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restores the settings and loads the model in this (worker) process, in the background.

        KServe unpickles a REST worker's models before the worker answers its parent's liveness
        pings, and the parent kills a worker that has not answered within 5 s
        (kserve/protocol/rest/multiprocess/server.py): loading TensorFlow here, on a busy
        machine, got workers killed before they ever served. So the load runs in a thread, and
        readiness checks and requests wait until it is done (:meth:`healthy`).
        """
        self.__dict__.update(state)
        # KServe's worker then leaves logging as configured here (it configures its defaults,
        # which log every request, only where nothing is configured yet).
        configure_logging(access_log=self.config.access_log, log_format=self.config.log_format)
        self._loaded = threading.Event()
        threading.Thread(target=self._load_then_signal, name="model-load", daemon=True).start()

    def _load_then_signal(self) -> None:
        try:
            self.load()
        finally:
            self._loaded.set()

    def prepare(self, role: str, requests: Sequence[RawRequest]) -> PreparedBatch:
        """A batch of one role's requests validated in one pass, as the signature's tensors."""
        routing = self.routing  # read once: a swap mid-call must not mix versions
        loaded = routing.candidate if role == "candidate" else routing.production
        if loaded is None:  # the canary ended between routing and this call
            loaded = routing.production
        return loaded.prepare(requests)

    def score(self, role: str, requests: Sequence[RawRequest]) -> tuple[list[Any], str]:
        """Both stages at once: per request its probabilities or its :class:`RequestError`, and
        the version that answered."""
        return self.prepare(role, requests).score()

    async def looked_up(
        self,
        request: RawRequest,
        validator: RequestValidator,
        response_headers: dict[str, str] | None,
    ) -> RawRequest:
        """The request with the features it leaves out read from the feature store (as it is
        without one); the answer's header names what was read. Ranking and recommend share it."""
        if self.lookup is None:
            return request
        request, names = await asyncio.to_thread(self.lookup.fill, request, validator.spec)
        if response_headers is not None:
            response_headers[LOOKED_UP_HEADER] = ",".join(names)
        return request

    def assign(
        self, payload: Any, headers: dict[str, str] | None
    ) -> tuple[Routing, str, LoadedVersion, str | None]:
        """The routing now, the role and version that answer this request, and its unit.

        The unit matters only to a canary's assignment and to the exposure log, so it is read
        only when one of them is there.
        """
        routing = self.routing  # read once: a swap mid-request must not mix versions
        unit = (
            experiment_unit(payload, headers, self.config.unit_field)
            if routing.candidate is not None or self.logs is not None
            else None
        )
        role, loaded = routing.pick(unit)
        return routing, role, loaded, unit

    async def predict(
        self, payload: Any, headers: Headers = None, response_headers: Headers = None
    ) -> Any:
        """Picks a version by the traffic split, validates against its spec, then predicts."""
        started = time.perf_counter()
        if not await self.healthy():  # a worker still loading its copy waits, not refuses
            raise ModelLoadError(f"model {self.name!r} is not loaded in process {os.getpid()}")
        routing, role, loaded, unit = self.assign(payload, headers)
        logs = self.logs
        with failures_logged(logs, routing, role, loaded.version, started, unit):
            request = request_columns(payload, headers, loaded.validator)
            request = await self.looked_up(request, loaded.validator, response_headers)
            # Values are checked with the rest of the batch, in one pass.
            probability, batch_rows, version = await self.batchers[role].submit(
                request, request.rows
            )
        if self.feature_log is not None:
            self.feature_log.record(request)
        request_id = answered(
            logs, routing, role, version, started, unit, payload, headers, response_headers,
            probability=probability, items=request.columns.get(self.config.item_field),
        )  # fmt: skip
        if response_headers is not None:  # how many rows shared its model call
            response_headers[BATCH_ROWS_HEADER] = str(batch_rows)
        return prediction_response(self.name, payload, probability, request_id)
