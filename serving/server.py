"""The KServe model server for exported ranking models.

A thin :class:`kserve.Model` around the SavedModel's ``serving_default`` signature. KServe's
``ModelServer`` provides the protocols: V1 REST (``/v1/models/NAME:predict``), the Open Inference
Protocol (V2) over REST (``/v2/models/NAME/infer``) and gRPC, metadata, readiness and Prometheus
metrics (``/metrics``). Requests carry raw feature values named as in the feature spec; the
transform runs inside the model. Every request is validated against the spec the model was exported
with before it reaches TensorFlow, and a bad one gets a 400 naming the field.

Served from a registry, the model follows it: ``production`` takes the requests, and a canary
``candidate`` takes its recorded share of the users, each user sticking to one version (see
:meth:`_Routing.pick`); each answer names its version in the ``x-model-version`` header. Every
answered request can be logged (version, role, user, rows, latency, mean probability) as one JSON
line, which ``skewless ab-report`` summarizes.

Concurrent requests are micro-batched (:mod:`skewless.serving.batching`). With ``workers > 1``
KServe spawns REST worker processes and hands each a pickled copy of the model; a pickled
:class:`RankingModel` carries only its path and settings, and each worker loads TensorFlow itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import hashlib
import json
import logging
import os
import random
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
import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from skewless.contract.kinds import kind_of
from skewless.contract.spec import SPEC_ASSET, FeatureSpec, load_spec
from skewless.experiments.ab_report import REQUEST_LOG as REQUEST_LOG
from skewless.experiments.logs import (
    DEFAULT_LOG_MAX_MB,
    AppendLog,
    FeedbackError,
    feedback_path,
    parse_feedback,
)
from skewless.registry import open_registry
from skewless.registry.core import Registry, Traffic
from skewless.serving.batching import DEFAULT_BATCH_ROWS, MicroBatcher
from skewless.serving.validation import (
    DEFAULT_ITEM_FIELD,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_MB,
    DEFAULT_UNIT_FIELD,
    RawRequest,
    RequestError,
    RequestValidator,
)

_JSON_TYPES = ("application/json", "application/cloudevents+json")
LOAD_WAIT_SECONDS = 600.0  # how long a request waits for a worker still loading the model
# FastAPI's schema and docs pages: nothing a client of a model server needs, and a map for others.
_DOC_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
BATCH_ROWS_HEADER = "x-skewless-batch-rows"
VERSION_HEADER = "x-model-version"
REQUEST_ID_HEADER = "x-request-id"  # KServe's and Istio's name; feedback joins on it
FEEDBACK_PATH = "/v1/feedback"
_FEEDBACK_TYPES = ("", "application/json", "application/x-ndjson", "application/jsonl")


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


def _v2_columns(payload: InferRequest) -> dict[str, Any]:
    """Columns of an Open Inference Protocol request as Python lists (BYTES as bytes)."""
    columns: dict[str, Any] = {}
    for tensor in payload.inputs:
        if tensor.name in columns:
            raise RequestError(f"inputs: {tensor.name!r} is given more than once")
        try:
            values = np.asarray(tensor.as_numpy()).reshape(-1)
        except Exception as err:  # kserve raises several types for bad tensors
            raise RequestError(f"inputs.{tensor.name}: cannot be read as a tensor: {err}") from None
        # BYTES stay bytes: the contract decodes them and refuses what is not UTF-8.
        columns[tensor.name] = values.tolist()
    return columns


def _media_type(headers: dict[str, str] | None) -> str:
    """The request's media type without parameters ("application/json; charset=utf-8" ->
    "application/json"), lowercase; "" when there is no content type."""
    return (headers or {}).get("content-type", "").split(";")[0].strip().lower()


def _check_content_type(headers: dict[str, str] | None) -> None:
    content_type = (headers or {}).get("content-type", "")
    if content_type and not _media_type(headers).startswith((*_JSON_TYPES, "application/grpc")):
        raise RequestError(f"unsupported content type {content_type!r}: send application/json")


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


@dataclasses.dataclass(frozen=True)
class _Loaded:
    """One loaded model version; swapped as a whole so a call never mixes two versions."""

    version: str
    model_dir: Path
    saved_model: Any
    signature: Any
    validator: RequestValidator


@dataclasses.dataclass(frozen=True)
class _Routing:
    """What serves now: production, an optional canary, and the canary's share of requests."""

    production: _Loaded
    candidate: _Loaded | None = None
    candidate_percent: int = 0
    experiment: str = ""  # the model name: with the candidate's version, it salts the buckets

    @property
    def experiment_id(self) -> str | None:
        """The experiment being run, ``MODEL:PRODUCTION:CANDIDATE`` (None without a canary)."""
        if self.candidate is None or self.candidate_percent <= 0:
            return None
        return f"{self.experiment}:{self.production.version}:{self.candidate.version}"

    def pick(self, unit: str | None = None) -> tuple[str, _Loaded]:
        """The role and version for one request: the canary with its share, else production.

        With a randomization ``unit`` (a user id), the choice is sticky: a stable hash of the
        experiment (model and candidate version) and the unit puts the unit in one of 10,000
        buckets, and the candidate takes the lowest ``percent`` of them. The same unit gets the
        same version on every request, in every worker and after restarts, and raising the share
        only moves units to the candidate (monotone), never back. Without a unit, the request is
        assigned at random.
        """
        if self.candidate is None or self.candidate_percent <= 0:
            return "production", self.production
        if unit is None:
            draw = random.random() * 100
        else:
            salt = f"{self.experiment}:{self.candidate.version}:{unit}"
            digest = hashlib.sha256(salt.encode("utf-8", "backslashreplace")).digest()
            draw = int.from_bytes(digest[:8], "big") % 10_000 / 100
        if draw < self.candidate_percent:
            return "candidate", self.candidate
        return "production", self.production


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
        self._loaded = threading.Event()  # set by load(); the work happens there, as in KServe

    def _traffic(self) -> Traffic:
        """The versions to serve now (a folder-backed model has only its one version)."""
        if self.registry is None:
            return Traffic(production=None, candidate=None, candidate_percent=0)
        return self.registry.traffic(self.name)

    def _load_version(self, version: int | None, current: _Routing | None) -> _Loaded:
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
            # A remote artifact (the object store, on a cluster) is downloaded, then verified.
            download_to = Path(tempfile.mkdtemp(prefix=f"skewless-{self.name}-{version}-")) / "m"
            model_dir = self.registry.verified_artifact(self.name, version, download_to=download_to)
        try:
            saved_model = tf.saved_model.load(str(model_dir))
        except (OSError, ValueError) as err:  # TensorFlow's words for a file it cannot parse
            reason = str(err).splitlines()[0][:200]
            raise ModelLoadError(
                f"{model_dir}: not a SavedModel TensorFlow can load ({reason})"
            ) from None
        validator = RequestValidator(model_spec(model_dir), max_batch=self.config.max_request_rows)
        loaded = _Loaded(
            label, model_dir, saved_model, saved_model.signatures["serving_default"], validator
        )
        # Printed, not logged: it happens before kserve configures logging, and in each worker.
        print(
            f"skewless: loaded model {self.name!r} version {label} from {model_dir} "
            f"in process {os.getpid()}",
            file=sys.stderr,
            flush=True,
        )
        return loaded

    def _route(self, traffic: Traffic, current: _Routing | None) -> _Routing:
        if self.registry is not None and traffic.production is None:
            raise FileNotFoundError(
                f"registry {self.registry_locator} has no production {self.name}"
            )
        production = self._load_version(traffic.production, current)
        candidate = None
        if traffic.candidate is not None:
            candidate = self._load_version(traffic.candidate, current)
        return _Routing(
            production, candidate, traffic.candidate_percent if candidate else 0, self.name
        )

    def load(self) -> bool:
        """Loads the versions to serve, starts the batchers and (for a registry) the watcher."""
        # Here, not in serve(): each REST worker process imports KServe's app afresh and loads
        # its copy of this model before its first request.
        limit_app(self.config.max_body_mb)
        self.registry = open_registry(self.registry_locator) if self.registry_locator else None
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
        self.request_log: AppendLog | None = None
        self.feedback_log: AppendLog | None = None
        if self.config.request_log:
            max_bytes = int(self.config.log_max_mb * 2**20)
            self.request_log = AppendLog(self.config.request_log, max_bytes=max_bytes)
            self.feedback_log = AppendLog(
                feedback_path(self.config.request_log), max_bytes=max_bytes
            )
        add_feedback_route(self)
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
        for key in ("routing", "batchers", "request_log", "feedback_log", "served", "_loaded",
                    "registry"):  # fmt: skip
            state.pop(key, None)
        state["ready"] = False
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restores the settings and loads the model in this (worker) process, in the background.

        KServe unpickles a REST worker's models before the worker answers its parent's liveness
        pings, and the parent kills a worker that has not answered within 5 s
        (kserve/protocol/rest/multiprocess/server.py): loading TensorFlow here, on a busy
        machine, got workers killed before they ever served. So the load runs in a thread;
        readiness says false and requests wait until it is done.
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
        _check_content_type(headers)
        if isinstance(payload, InferRequest):
            return validator.shape_columns(_v2_columns(payload), "inputs")
        if isinstance(payload, bytes | str):
            # KServe decodes only an exact "application/json"; with parameters ("; charset=utf-8")
            # the body arrives as bytes. A JSON media type is JSON whatever its parameters.
            if _media_type(headers) not in _JSON_TYPES:
                raise RequestError("request body must be a JSON object")
            try:
                payload = orjson.loads(payload)
            except orjson.JSONDecodeError as err:
                raise RequestError(f"request body is not valid JSON: {err}") from None
        if not isinstance(payload, dict):
            raise RequestError(f"request body must be a JSON object, got {type(payload).__name__}")
        if "instances" in payload and "inputs" in payload:
            raise RequestError("request has both 'instances' and 'inputs': send one of them")
        if "instances" in payload:
            return validator.shape_rows(payload["instances"], "instances")
        if "inputs" in payload:
            return validator.shape_columns(payload["inputs"], "inputs")
        raise RequestError("request needs 'instances' (a list of rows) or 'inputs' (columns)")

    async def predict(
        self,
        payload: Any,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        """Picks a version by the traffic split, validates against its spec, then predicts."""
        started = time.perf_counter()
        if not self._loaded.is_set():  # a worker still loading its copy: wait, don't refuse
            await asyncio.to_thread(self._loaded.wait, LOAD_WAIT_SECONDS)
        if not self.ready:
            raise ModelLoadError(f"model {self.name!r} is not loaded in process {os.getpid()}")
        routing = self.routing
        logging_on = self.request_log is not None
        # The unit matters only to a canary's assignment and to the exposure log.
        unit = (
            experiment_unit(payload, headers, self.config.unit_field)
            if routing.candidate is not None or logging_on
            else None
        )
        role, loaded = routing.pick(unit)
        request: RawRequest | None = None
        try:
            request = self.raw_request(payload, headers, loaded.validator)
            # Values are checked with the rest of the batch, in one pass.
            probability, batch_rows, version = await self.batchers[role].submit(
                request, request.rows
            )
        except RequestError as err:
            if logging_on:
                self._log_exposure(routing, role, loaded.version, None, started, unit, None, 400)
            raise InvalidInput(str(err)) from None
        except Exception:
            if logging_on:
                self._log_exposure(routing, role, loaded.version, None, started, unit, None, 500)
            raise
        request_id = None
        if logging_on:
            request_id = (headers or {}).get(REQUEST_ID_HEADER) or (
                payload.id if isinstance(payload, InferRequest) and payload.id else None
            )
            request_id = (request_id or uuid.uuid4().hex)[:128]
            items = request.columns.get(self.config.item_field)
            self._log_exposure(
                routing, role, version, probability, started, unit, items, 200, request_id
            )
        if response_headers is not None:
            # Which version answered, and how many rows shared its model call.
            response_headers[VERSION_HEADER] = version
            response_headers[BATCH_ROWS_HEADER] = str(batch_rows)
            if request_id is not None:
                response_headers[REQUEST_ID_HEADER] = request_id
        return prediction_response(self.name, payload, probability, request_id)

    def _log_exposure(
        self,
        routing: _Routing,
        role: str,
        version: str,
        probability: np.ndarray | None,
        started: float,
        unit: str | None,
        items: Sequence[Any] | None,
        status: int,
        request_id: str | None = None,
    ) -> None:
        """One exposure line: who saw which version's scores for which items, and how fast.

        Refused (400) and failed (500) requests are logged too, with their status, so a
        report can count each variant's errors.
        """
        assert self.request_log is not None
        record: dict[str, Any] = {
            "time": round(time.time(), 3),
            "request_id": request_id,
            "model": self.name,
            "experiment": routing.experiment_id,
            "split": routing.candidate_percent,  # the candidate's configured share, percent
            "role": role,  # the variant: production or candidate
            "version": version,
            "unit": unit,  # None: assigned at random, reported apart
            "status": status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        if probability is not None:
            record["rows"] = len(probability)
            record["mean_probability"] = round(float(probability.mean()), 6)
            record["scores"] = [round(float(p), 6) for p in probability]
            if items is not None:
                record["items"] = [
                    v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in items
                ]
        self.request_log.write(record)

    async def record_feedback(self, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
        """``POST /v1/feedback``: appends outcome records beside the exposures they follow.

        Returns:
            The HTTP status and JSON body: 200 ``{"accepted": N}``; 400 naming the bad record
            (nothing is written); 501 when this server keeps no exposure log.
        """
        if self.feedback_log is None:
            return 501, {"error": "feedback is off: this server keeps no exposure log (start it "
                         "with --request-log FILE, or serve from a --registry)"}  # fmt: skip
        if content_type not in _FEEDBACK_TYPES:
            return 400, {"error": f"unsupported content type {content_type!r}: send "
                         "application/json (a list) or application/x-ndjson (lines)"}  # fmt: skip
        try:
            records = parse_feedback(body, model=self.name, received=round(time.time(), 3))
        except FeedbackError as err:
            return 400, {"error": str(err)[:500]}
        await asyncio.to_thread(self.feedback_log.write_many, records)
        return 200, {"accepted": len(records)}


UNIT_HEADER = "x-experiment-unit"


def experiment_unit(payload: Any, headers: dict[str, str] | None, field: str) -> str | None:
    """The request's randomization unit: the ``x-experiment-unit`` header, else the value of
    ``field`` (``user_id``) in its first row; None when it has neither (or it is malformed: the
    request is then assigned at random and validated as usual)."""
    given = (headers or {}).get(UNIT_HEADER)
    if given:
        return given[:200]
    value: Any = None
    try:
        if isinstance(payload, InferRequest):
            for tensor in payload.inputs:
                if tensor.name == field:
                    value = np.asarray(tensor.as_numpy()).reshape(-1)[0]
        elif isinstance(payload, dict) and isinstance(payload.get("instances"), list):
            first = payload["instances"][0]
            value = first.get(field) if isinstance(first, dict) else None
        elif isinstance(payload, dict) and isinstance(payload.get("inputs"), dict):
            column = payload["inputs"].get(field)
            value = column[0] if isinstance(column, list) and column else None
    except Exception:  # a malformed request: validation names the problem, not this
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
        return str(value)[:200]
    return None


def limit_app(max_body_mb: float) -> None:
    """Sets the request body limit on KServe's FastAPI app and removes its schema and docs pages.

    KServe's app is a module global (``kserve.model_server.app``); FastAPI builds its middleware,
    including the body limit, at the first request, so this must run before it.
    """
    from kserve.model_server import app

    app.max_body_size = int(max_body_mb * 1024 * 1024)
    app.add_exception_handler(RequestValidationError, _schema_error)
    if not any(m.cls is BinaryHeaderCheck for m in app.user_middleware):
        app.add_middleware(BinaryHeaderCheck)
    app.openapi_url = None
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", "") not in _DOC_PATHS]


def add_feedback_route(model: RankingModel) -> None:
    """Adds ``POST /v1/feedback`` for ``model`` to KServe's app (once per process)."""
    from fastapi.responses import ORJSONResponse
    from kserve.model_server import app

    async def feedback(request: Request) -> ORJSONResponse:
        status, body = await model.record_feedback(
            await request.body(), _media_type(dict(request.headers))
        )
        return ORJSONResponse(status_code=status, content=body)

    app.router.routes = [r for r in app.router.routes if getattr(r, "path", "") != FEEDBACK_PATH]
    app.add_api_route(FEEDBACK_PATH, feedback, methods=["POST"], include_in_schema=False)


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


def prediction_response(
    name: str, payload: Any, probability: np.ndarray, request_id: str | None = None
) -> Any:
    """The answer to a V1 request (``{"predictions": [...]}``) or a V2 one (``probability``);
    a V2 answer's id is the request's id (or ``request_id``, or a new one)."""
    if isinstance(payload, InferRequest):
        output = InferOutput(
            name="probability",
            shape=list(probability.shape),
            datatype="FP32",
            data=probability.astype(np.float32).tolist(),
        )
        return InferResponse(
            model_name=name,
            infer_outputs=[output],
            response_id=payload.id or request_id or str(uuid.uuid4()),
        )
    return {"predictions": probability.tolist()}


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
    configure_logging(access_log=access_log, log_format=log_format)
    if registry is not None:
        ranking = RankingModel(name, None, config, registry=registry)
    else:
        assert model is not None, "give a model or a registry"
        ranking = RankingModel(name, resolve_model_dir(model), config)
    ranking.load()
    if announce:
        print(example_curl(name, http_port, ranking.validator.spec), flush=True)
    server = kserve.ModelServer(
        http_port=http_port,
        grpc_port=grpc_port,
        workers=workers,
        enable_latency_logging=access_log,
    )
    if not allow_model_management:
        server.model_repository_extension = ReadOnlyRepository(server.registered_models)
    server.start([ranking])


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
    """KServe logs every 400 (and 501) with its traceback; a refused request is one short line."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrites records of refused requests; passes everything else."""
        error = record.exc_info[1] if record.exc_info else None
        status = 400 if isinstance(error, InvalidInput) else None
        if isinstance(error, ManagementOff):
            status = 501
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


def example_row(spec: FeatureSpec) -> dict[str, Any]:
    """A plausible raw row for ``spec`` (from the default data when the spec is the default)."""
    if set(spec.features) >= {"age", "country", "history", "item_tags", "price"}:
        return {
            "user_id": "u000042",
            "age": 29,
            "country": "US",
            "device": "mobile",
            "history": "books|music|books",
            "item_id": "i00017",
            "title": "Classic books1 books sale",
            "item_tags": "books|movies",
            "price": 12.5,
            "hour": 21,
            "weekday": "Fri",
        }
    row: dict[str, Any] = {}
    for feature in spec.model_inputs:
        if feature.kind == "numeric":
            row[feature.name] = feature.min_value if feature.min_value is not None else 0.0
        elif feature.allowed_values:
            row[feature.name] = feature.allowed_values[0]
        else:
            row[feature.name] = "example"
    return row


def example_curl(name: str, http_port: int, spec: FeatureSpec) -> str:
    """A ready-to-paste curl command for the V1 predict endpoint."""
    body = json.dumps({"instances": [example_row(spec)]})
    return (
        f"\nserving model {name!r} on http://localhost:{http_port} (Ctrl-C to stop). Try:\n\n"
        f"curl -s -H 'Content-Type: application/json' "
        f"http://localhost:{http_port}/v1/models/{name}:predict -d '{body}'\n"
    )
