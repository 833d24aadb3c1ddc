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
import dataclasses
import functools
import gc
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from kserve.protocol.infer_type import InferRequest

from skewless.contract.kinds import kind_of
from skewless.contract.spec import SPEC_ASSET, FeatureSpec, load_spec
from skewless.experiments.logs import DEFAULT_LOG_MAX_MB
from skewless.registry import open_registry
from skewless.registry.core import Registry, Traffic
from skewless.retrieval.artifact import has_retrieval
from skewless.serving.app import (
    ReadOnlyRepository,
    add_feedback_route,
    add_push_route,
    configure_logging,
    limit_app,
)
from skewless.serving.batching import DEFAULT_BATCH_ROWS, MicroBatcher
from skewless.serving.exposures import NO_LOG, ExperimentLogs, failures_logged
from skewless.serving.exposures import request_id as new_request_id
from skewless.serving.lookup import (
    DEFAULT_FEATURE_LOG_SAMPLE,
    LOOKED_UP_HEADER,
    FeatureLog,
    FeatureLookup,
)
from skewless.serving.protocol import (
    BATCH_ROWS_HEADER,
    REQUEST_ID_HEADER,
    VERSION_HEADER,
    check_content_type,
    example_curl,
    experiment_unit,
    json_object,
    prediction_response,
    v2_columns,
)
from skewless.serving.routing import LoadedVersion, Routing
from skewless.serving.validation import (
    DEFAULT_ITEM_FIELD,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_MB,
    DEFAULT_UNIT_FIELD,
    RawRequest,
    RequestError,
    RequestValidator,
)

LOAD_WAIT_SECONDS = 600.0  # how long a request waits for a worker still loading the model


class ModelLoadError(RuntimeError):
    """The model folder cannot be served; the message names it and why."""


def resolve_model_dir(model: str | Path) -> Path:
    """A local SavedModel folder for a path or a storage URI (s3://, gs://, hdfs://, file://).

    URIs are copied to a temporary folder with pyarrow's filesystems, which read credentials the
    usual way (AWS_* environment variables, GOOGLE_APPLICATION_CREDENTIALS, ...).
    """
    text = str(model)
    if "://" in text and not text.startswith("file://"):
        import pyarrow.fs

        target = Path(tempfile.mkdtemp(prefix="skewless-model-"))
        pyarrow.fs.copy_files(text, str(target))
        path = target
    else:
        path = Path(text.removeprefix("file://"))
    if not (path / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{model} is not an exported SavedModel folder (no saved_model.pb)")
    return path


def model_spec(model_dir: str | Path) -> FeatureSpec:
    """The feature spec stored inside an exported model."""
    path = Path(model_dir) / SPEC_ASSET
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} has no {SPEC_ASSET}; was it exported by skewless?")
    return load_spec(path)


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """How a :class:`RankingModel` admits and batches requests.

    Attributes:
        max_request_rows: Largest accepted rows in one request.
        max_batch_rows: Most rows the batcher puts in one model call.
        max_wait_ms: Extra wait for more requests when a batch already holds several (a lone
            request never waits).
        watch_seconds: How often a registry-backed model checks whether its aliases moved.
        request_log: File to append one exposure (a JSON line) per request to, with outcomes
            (``POST /v1/feedback``) beside it (None: no log, and feedback is off).
        max_body_mb: Largest request body; a larger one is refused with 413 before it is read
            whole (the most rows a request may carry fit in well under the default).
        unit_field: The feature whose value (in the first row) is a request's randomization unit
            for a canary, unless the ``x-experiment-unit`` header names one.
        item_field: The feature naming the item of each row (logged with its score).
        log_max_mb: Size past which the exposure and feedback logs rotate (nothing is deleted).
        feature_store: A feature repository (the pipeline's materialize step writes one):
            requests may leave out the user and item features it holds
            (:mod:`skewless.serving.lookup`).
        feature_log: With a feature store, the file a sample of the scored rows' entity
            features is appended to, for ``skewless skew-report``.
        feature_log_sample: The share of rows logged there.
        allow_push: Accept new feature values at ``POST /push`` (off by default: anyone who
            reaches the port could otherwise rewrite what the model sees).
    """

    max_request_rows: int = DEFAULT_MAX_BATCH
    max_batch_rows: int = DEFAULT_BATCH_ROWS
    max_wait_ms: float = 1.0
    watch_seconds: float = 1.0
    request_log: str | None = None
    max_body_mb: float = DEFAULT_MAX_BODY_MB
    unit_field: str = DEFAULT_UNIT_FIELD
    item_field: str = DEFAULT_ITEM_FIELD
    log_max_mb: float = DEFAULT_LOG_MAX_MB
    feature_store: str | None = None
    feature_log: str | None = None
    feature_log_sample: float = DEFAULT_FEATURE_LOG_SAMPLE
    allow_push: bool = False


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

    def _load_version(self, version: int | None, current: Routing | None) -> LoadedVersion:
        """Loads one version (None: the folder given at start), or reuses it if already loaded."""
        for loaded in (current.production, current.candidate) if current else ():
            if loaded is not None and version is not None and loaded.version == str(version):
                return loaded
        import tensorflow as tf

        if version is None:
            assert self.model_dir is not None
            label, model_dir = self.model_dir.name, self.model_dir
        else:
            assert self.registry is not None
            label = str(version)
            # A remote artifact (the object store, on a cluster) is downloaded here, then
            # verified; a local one is read in place and nothing is created.
            download_to = Path(tempfile.gettempdir()) / (
                f"skewless-{self.name}-{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            )
            model_dir = self.registry.verified_artifact(self.name, version, download_to=download_to)
        try:
            saved_model = tf.saved_model.load(str(model_dir))
        except (OSError, ValueError) as err:  # TensorFlow's words for a file it cannot parse
            reason = str(err).splitlines()[0][:200]
            raise ModelLoadError(
                f"{model_dir}: not a SavedModel TensorFlow can load ({reason})"
            ) from None
        spec = model_spec(model_dir)
        lookup = self.lookup.fields if self.lookup is not None else frozenset()
        validator = RequestValidator(spec, max_batch=self.config.max_request_rows, lookup=lookup)
        retriever = query_validator = None
        if has_retrieval(model_dir):
            from skewless.retrieval.retriever import Retriever
            from skewless.serving.recommend import MAX_QUERIES, query_spec

            retriever = Retriever(model_dir)
            query_validator = RequestValidator(
                query_spec(spec), max_batch=MAX_QUERIES, lookup=lookup
            )
        loaded = LoadedVersion(
            label, model_dir, saved_model, saved_model.signatures["serving_default"], validator,
            retriever, query_validator,
        )  # fmt: skip
        # Printed, not logged: it happens before kserve configures logging, and in each worker.
        print(
            f"skewless: loaded model {self.name!r} version {label} from {model_dir} "
            f"in process {os.getpid()}",
            file=sys.stderr,
            flush=True,
        )
        return loaded

    def _route(self, traffic: Traffic, current: Routing | None) -> Routing:
        if self.registry is not None and traffic.production is None:
            raise FileNotFoundError(
                f"registry {self.registry_locator} has no production {self.name}"
            )
        production = self._load_version(traffic.production, current)
        candidate = None
        if traffic.candidate is not None:
            candidate = self._load_version(traffic.candidate, current)
        return Routing(
            production, candidate, traffic.candidate_percent if candidate else 0, self.name
        )

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
        # One batcher per role: a batch is one model call, so it never mixes two versions.
        self.batchers = {
            role: MicroBatcher(
                functools.partial(self.score, role),
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
        self._loaded = threading.Event()
        threading.Thread(target=self._load_then_signal, name="model-load", daemon=True).start()

    def _load_then_signal(self) -> None:
        try:
            self.load()
        finally:
            self._loaded.set()

    def score(self, role: str, requests: Sequence[RawRequest]) -> tuple[list[Any], str]:
        """One validation pass and one signature call for a batch of requests of one role.

        Returns:
            Per request its probabilities or the :class:`RequestError` that refuses it (the
            others are still scored), and the version that answered.
        """
        import tensorflow as tf

        routing = self.routing  # read once: a swap mid-call must not mix versions
        loaded = routing.candidate if role == "candidate" else routing.production
        if loaded is None:  # the canary ended between routing and this call
            loaded = routing.production
        columns, errors = loaded.validator.check(requests)
        results: list[Any] = [RequestError(e) if e is not None else None for e in errors]
        if any(e is None for e in errors):
            tensors = {name: tf.constant(values) for name, values in columns.items()}
            probability = np.asarray(loaded.signature(**tensors)["probability"])
            start = 0
            for index, request in enumerate(requests):
                if errors[index] is None:
                    results[index] = probability[start : start + request.rows]
                    start += request.rows
        return results, loaded.version

    def raw_request(
        self, payload: Any, headers: dict[str, str] | None, validator: RequestValidator
    ) -> RawRequest:
        """The model-input columns of a V1 or V2 request, shape checked (values not yet)."""
        if isinstance(payload, InferRequest):
            check_content_type(headers)
            return validator.shape_columns(v2_columns(payload), "inputs")
        payload = json_object(payload, headers)
        if "instances" in payload and "inputs" in payload:
            raise RequestError("request has both 'instances' and 'inputs': send one of them")
        if "instances" in payload:
            return validator.shape_rows(payload["instances"], "instances")
        if "inputs" in payload:
            return validator.shape_columns(payload["inputs"], "inputs")
        raise RequestError("request needs 'instances' (a list of rows) or 'inputs' (columns)")

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
        self,
        payload: Any,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        """Picks a version by the traffic split, validates against its spec, then predicts."""
        started = time.perf_counter()
        if not await self.healthy():  # a worker still loading its copy waits, not refuses
            raise ModelLoadError(f"model {self.name!r} is not loaded in process {os.getpid()}")
        routing, role, loaded, unit = self.assign(payload, headers)
        logs = self.logs
        with failures_logged(logs, routing, role, loaded.version, started, unit):
            request = self.raw_request(payload, headers, loaded.validator)
            request = await self.looked_up(request, loaded.validator, response_headers)
            # Values are checked with the rest of the batch, in one pass.
            probability, batch_rows, version = await self.batchers[role].submit(
                request, request.rows
            )
        if self.feature_log is not None:
            self.feature_log.record(request)
        request_id = None
        if logs is not None:
            request_id = new_request_id(
                headers, payload.id if isinstance(payload, InferRequest) else None
            )
            logs.exposure(routing, role, version, started, unit, 200, probability=probability,
                          items=request.columns.get(self.config.item_field),
                          request_id=request_id)  # fmt: skip
        if response_headers is not None:
            # Which version answered, and how many rows shared its model call.
            response_headers[VERSION_HEADER] = version
            response_headers[BATCH_ROWS_HEADER] = str(batch_rows)
            if request_id is not None:
                response_headers[REQUEST_ID_HEADER] = request_id
        return prediction_response(self.name, payload, probability, request_id)

    async def push_features(
        self, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """``POST /push``: the HTTP status and JSON answer (400 naming the problem, 403 when
        pushing is off)."""
        assert self.lookup is not None
        if not self.config.allow_push:
            return 403, {"error": "pushing features is off: start the server with --allow-push"}
        try:
            payload = json_object(body, headers)
            spec = self.routing.production.validator.spec
            return 200, await asyncio.to_thread(self.lookup.push, payload, spec)
        except RequestError as err:
            return 400, {"error": str(err)[:500]}

    async def record_feedback(self, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
        """``POST /v1/feedback``: the HTTP status and JSON answer (501 when this server keeps no
        exposure log, so there is nothing to join outcomes to)."""
        if self.logs is None:
            return 501, {"error": NO_LOG}
        return await self.logs.outcomes(body, content_type)


def serve(
    model: str | Path | None = None,
    *,
    registry: str | Path | None = None,
    name: str = "ranking",
    http_port: int = 8080,
    grpc_port: int = 8081,
    workers: int = 1,
    config: ServingConfig | None = None,
    announce: bool = False,
    access_log: bool = False,
    log_format: str = "text",
    allow_model_management: bool = False,
) -> None:
    """Starts the model server in the foreground; SIGTERM or Ctrl-C drains and stops it.

    Args:
        model: Exported SavedModel folder or storage URI.
        registry: Instead of ``model``: a registry file; serves ``name``'s production version
            and follows the alias (rollbacks and promotions apply without a restart).
        name: Model name in the URL paths.
        http_port: REST port.
        grpc_port: gRPC port.
        workers: REST worker processes, each with its own copy of the model.
        config: Admission and batching settings.
        announce: Print a ready-to-paste curl command first.
        access_log: Log a line (and KServe's latency lines) per request. Off by default: at
            thousands of requests per second the lines cost throughput and fill disks; errors,
            4xx summaries and start-up are logged either way.
        log_format: ``text``, or ``json`` (one JSON object per line, for a log collector).
        allow_model_management: Answer the V2 model repository's load and unload (REST and
            gRPC); off by default, since anyone who reaches the port could unload the model.
    """
    from skewless.serving.recommend import RECOMMEND_NAME, RecommendModel

    if name == RECOMMEND_NAME:
        raise ModelLoadError(
            f"model name {name!r} is reserved for the two-stage endpoint; pick another --name"
        )
    configure_logging(access_log=access_log, log_format=log_format)
    if registry is not None:
        ranking = RankingModel(name, None, config, registry=registry)
    else:
        assert model is not None, "give a model or a registry"
        ranking = RankingModel(name, resolve_model_dir(model), config)
    ranking.load()
    if announce:
        lookup = ranking.lookup
        print(
            example_curl(
                name, http_port, ranking.validator.spec,
                by_id=lookup.online.sample_ids() if lookup else None,
                looked_up=lookup.fields if lookup else frozenset(),
            ),
            flush=True,
        )  # fmt: skip
    server = kserve.ModelServer(
        http_port=http_port,
        grpc_port=grpc_port,
        workers=workers,
        enable_latency_logging=access_log,
    )
    if not allow_model_management:
        server.model_repository_extension = ReadOnlyRepository(server.registered_models)
    models: list[kserve.Model] = [ranking]
    if ranking.routing.production.retriever is not None:
        models.append(RecommendModel(ranking))
    server.start(models)
