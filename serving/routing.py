"""Which loaded version answers a request: production, or a canary's candidate (sticky)."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skewless.serving.validation import (
    RawRequest,
    RequestError,
    RequestValidator,
)


@dataclasses.dataclass(frozen=True)
class LoadedVersion:
    """One loaded model version; swapped as a whole so a call never mixes two versions."""

    version: str
    model_dir: Path
    saved_model: Any
    signature: Any
    validator: RequestValidator
    # The retrieval stage shipped in the same version (None: a ranker-only model), and the
    # validator of recommend requests (the spec's query side).
    retriever: Any = None
    query_validator: RequestValidator | None = None

    def prepare(self, requests: Sequence[RawRequest]) -> PreparedBatch:
        """A batch's Python stage: one validation pass, then the signature's tensors."""
        columns, errors = self.validator.check(requests)
        tensors = None
        if any(error is None for error in errors):
            import tensorflow as tf

            tensors = {name: tf.constant(values) for name, values in columns.items()}
        return PreparedBatch(self, [request.rows for request in requests], errors, tensors)


@dataclasses.dataclass(frozen=True)
class PreparedBatch:
    """Requests validated together and their valid rows as the signature's input tensors."""

    loaded: LoadedVersion
    rows: list[int]  # per request
    errors: list[str | None]  # per request: None, or why it is refused
    tensors: dict[str, Any] | None  # None when every request is refused

    def score(self) -> tuple[list[Any], str]:
        """One signature call (TensorFlow's threads do the work, without the GIL).

        Returns:
            Per request its probabilities or the :class:`RequestError` that refuses it (the
            others are still scored), and the version that answered.
        """
        results: list[Any] = [RequestError(e) if e is not None else None for e in self.errors]
        if self.tensors is not None:
            probability = np.asarray(self.loaded.signature(**self.tensors)["probability"])
            start = 0
            for index, rows in enumerate(self.rows):
                if self.errors[index] is None:
                    results[index] = probability[start : start + rows]
                    start += rows
        return results, self.loaded.version


@dataclasses.dataclass(frozen=True)
class Routing:
    """What serves now: production, an optional canary, and the canary's share of requests."""

    production: LoadedVersion
    candidate: LoadedVersion | None = None
    candidate_percent: int = 0
    experiment: str = ""  # the model name: with the candidate's version, it salts the buckets

    @property
    def experiment_id(self) -> str | None:
        """The experiment being run, ``MODEL:PRODUCTION:CANDIDATE`` (None without a canary)."""
        if self.candidate is None or self.candidate_percent <= 0:
            return None
        return f"{self.experiment}:{self.production.version}:{self.candidate.version}"

    def pick(self, unit: str | None = None) -> tuple[str, LoadedVersion]:
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
