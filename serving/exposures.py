"""What a model server records for online experiments: an exposure per request, outcomes posted
back to ``POST /v1/feedback``, both appended beside each other (:mod:`skewless.experiments.logs`).

``skewless experiment report`` joins the two (docs/experiments.md lists every field).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from skewless.experiments.logs import AppendLog, FeedbackError, feedback_path, parse_feedback
from skewless.serving.protocol import REQUEST_ID_HEADER, VERSION_HEADER, Headers
from skewless.serving.routing import Routing
from skewless.serving.validation import RequestError

FEEDBACK_TYPES = ("", "application/json", "application/x-ndjson", "application/jsonl")
NO_LOG = (
    "feedback is off: this server keeps no exposure log (start it with --request-log FILE, or "
    "serve from a --registry)"
)


def request_id(headers: Mapping[str, str] | None, given: str | None) -> str:
    """The id an exposure and its feedback share: the client's ``x-request-id`` (Istio sets one
    on a cluster), else a V2 request's ``id``, else a new one; at most 128 characters."""
    return ((headers or {}).get(REQUEST_ID_HEADER) or given or uuid.uuid4().hex)[:128]


@contextlib.contextmanager
def failures_logged(
    logs: ExperimentLogs | None, routing: Routing, role: str, version: str, started: float,
    unit: str | None,
) -> Iterator[None]:  # fmt: skip
    """Answers a refused request (:class:`RequestError`) with a 400, and logs refused (400) and
    failed (500) requests as exposures, so a report counts each variant's errors."""
    try:
        yield
    except RequestError as err:
        if logs is not None:
            logs.exposure(routing, role, version, started, unit, 400)
        raise InvalidInput(str(err)) from None
    except Exception:
        if logs is not None:
            logs.exposure(routing, role, version, started, unit, 500)
        raise


def answered(
    logs: ExperimentLogs | None, routing: Routing, role: str, version: str, started: float,
    unit: str | None, payload: Any, headers: Headers, response_headers: Headers, **fields: Any,
) -> str | None:  # fmt: skip
    """Logs an answered request (200) as an exposure with ``fields``, and says in the response
    which version answered and the id its feedback joins on; returns that id (None without a
    log)."""
    exposure_id = None
    if logs is not None:
        given = payload.id if isinstance(payload, InferRequest) else None
        exposure_id = request_id(headers, given)
        logs.exposure(routing, role, version, started, unit, 200, request_id=exposure_id, **fields)
    if response_headers is not None:
        response_headers[VERSION_HEADER] = version
        if exposure_id is not None:
            response_headers[REQUEST_ID_HEADER] = exposure_id
    return exposure_id


class ExperimentLogs:
    """The exposure log and, beside it, the feedback log of one served model."""

    def __init__(self, model: str, exposure_log: str | Path, *, max_bytes: int) -> None:
        """Opens both logs (created if missing) for appending.

        Args:
            model: The served model's name, recorded on every line.
            exposure_log: The exposure log; the feedback log goes beside it.
            max_bytes: Size past which each log rotates.
        """
        self.model = model
        self.exposures = AppendLog(exposure_log, max_bytes=max_bytes)
        self.feedback = AppendLog(feedback_path(exposure_log), max_bytes=max_bytes)

    def exposure(
        self,
        routing: Routing,
        role: str,
        version: str,
        started: float,
        unit: str | None,
        status: int,
        *,
        probability: np.ndarray | None = None,
        items: Sequence[Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        """One exposure line: who saw which version's scores for which items, and how fast.

        Refused (400) and failed (500) requests are logged too, with their status, so a report
        can count each variant's errors.
        """
        record: dict[str, Any] = {
            "time": round(time.time(), 3),
            "request_id": request_id,
            "model": self.model,
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
        self.exposures.write(record)

    async def outcomes(self, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
        """``POST /v1/feedback``: appends outcome records beside the exposures they follow.

        Returns:
            The HTTP status and JSON body: 200 ``{"accepted": N}``, or 400 naming the bad
            record or content type (nothing is written).
        """
        if content_type not in FEEDBACK_TYPES:
            return 400, {"error": f"unsupported content type {content_type!r}: send "
                         "application/json (a list) or application/x-ndjson (lines)"}  # fmt: skip
        try:
            records = parse_feedback(body, model=self.model, received=round(time.time(), 3))
        except FeedbackError as err:
            return 400, {"error": str(err)[:500]}
        await asyncio.to_thread(self.feedback.write_many, records)
        return 200, {"accepted": len(records)}
