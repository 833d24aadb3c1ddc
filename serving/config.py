"""How ``skewless serve`` listens (:class:`Listening`) and admits, batches, logs and looks features
up (:class:`ServingConfig`)."""

from __future__ import annotations

import dataclasses
import ipaddress

from skewless.experiments.logs import DEFAULT_LOG_MAX_MB
from skewless.serving.batching import DEFAULT_BATCH_ROWS
from skewless.serving.lookup import DEFAULT_FEATURE_LOG_SAMPLE
from skewless.serving.validation import (
    DEFAULT_ITEM_FIELD,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_MB,
    DEFAULT_UNIT_FIELD,
)

DEFAULT_HOST = "127.0.0.1"
"""Where a local ``skewless serve`` listens: this machine only. The container sets 0.0.0.0."""
DEFAULT_HEADER_TIMEOUT = 10.0
"""Seconds a client has to send a request's headers before its connection is closed."""
PORTS = (1, 65535)
"""The ports a server may listen on (the CLI's ``--http-port`` and ``--grpc-port`` take these)."""


def check_host(host: str) -> str:
    """``host`` as an IP address to listen on, or a ValueError saying what is expected.

    An address, not a name: a name can resolve to several addresses, and REST and gRPC would
    each pick their own.
    """
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(
            f"expected an IP address to listen on (127.0.0.1: this machine only; 0.0.0.0: every "
            f"IPv4 address; '::': every address), got {host!r}"
        ) from None


@dataclasses.dataclass(frozen=True)
class Listening:
    """Where and how the server listens.

    Attributes:
        host: The IP address REST and gRPC listen on: this machine only by default; the
            container's command says 0.0.0.0.
        http_port: REST port.
        grpc_port: gRPC port.
        workers: REST worker processes, each with its own copy of the model.
        header_timeout: Seconds a REST client has to send a request's headers (from connecting,
            or from a later request's first byte) before its connection is closed.

    Raises:
        ValueError: ``host`` is not an IP address, the ports are the same or not ports,
            ``workers`` is under 1, or ``header_timeout`` is not positive.
    """

    host: str = DEFAULT_HOST
    http_port: int = 8080
    grpc_port: int = 8081
    workers: int = 1
    header_timeout: float = DEFAULT_HEADER_TIMEOUT

    def __post_init__(self) -> None:
        """Checks the values (and writes the host as ``ipaddress`` does)."""
        object.__setattr__(self, "host", check_host(self.host))
        for field in ("http_port", "grpc_port"):
            if not PORTS[0] <= getattr(self, field) <= PORTS[1]:
                raise ValueError(
                    f"{field} must be a port ({PORTS[0]}-{PORTS[1]}), got {getattr(self, field)}"
                )
        if self.http_port == self.grpc_port:
            raise ValueError(f"the REST and gRPC ports are both {self.http_port}: give two ports")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if not self.header_timeout > 0:
            raise ValueError(
                f"the header timeout must be positive seconds, got {self.header_timeout}"
            )


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """How a :class:`RankingModel` admits and batches requests.

    Attributes:
        max_request_rows: Largest accepted rows in one request.
        max_batch_rows: Most rows the batcher puts in one model call: a request that would
            pass them waits for the next call; a single larger request runs alone.
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
        allow_model_management: Answer the V2 model repository's load and unload (REST and
            gRPC); off by default, since anyone who reaches the port could unload the model.
        access_log: Log a line (and KServe's latency lines) per request. Off by default: at
            thousands of requests per second the lines cost throughput and fill disks; errors,
            4xx summaries and start-up are logged either way.
        log_format: ``text``, or ``json`` (one JSON object per line, for a log collector).
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
    allow_model_management: bool = False
    access_log: bool = False
    log_format: str = "text"
