"""``/v1/models/recommend:predict``: retrieve candidates, rank them, answer the best k.

A second KServe model beside the ranker in the same server, sharing its versions: a request picks
a version exactly as a ranking request does (production, or the canary for its user), and both
stages come from that one registered version (its ``retrieval/`` folder and its ranker), so a
canary, a promotion or a rollback moves retrieval and ranking together.

A request carries the query side of the feature spec (``side: user`` and ``side: context``), rows
(V1 ``instances``) or columns (V2 ``inputs``), validated by the same contract as everything else;
``k`` and ``candidates`` are optional (V1: top-level fields; V2: request parameters). For each
query the retrieval index gives ``candidates`` items; their item features come from the catalogue
shipped with the model; the ranker scores all of them in one batch; the answer is the best ``k``
by ranker probability, with the retrieval similarity beside it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING, Any

import kserve
import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import (
    InferOutput,
    InferRequest,
    InferResponse,
    to_http_parameters,
)

from skewless.contract.spec import FeatureSpec
from skewless.serving.exposures import answered, failures_logged
from skewless.serving.protocol import (
    Headers,
    check_content_type,
    json_object,
    v2_columns,
)
from skewless.serving.validation import RequestError, RequestValidator

if TYPE_CHECKING:
    from skewless.serving.routing import LoadedVersion
    from skewless.serving.server import RankingModel

RECOMMEND_NAME = "recommend"
DEFAULT_K = 10
DEFAULT_CANDIDATES = 300
MAX_CANDIDATES = 2_000
MAX_QUERIES = 64  # queries per request: each is ``candidates`` ranker rows


def query_spec(spec: FeatureSpec) -> FeatureSpec:
    """The spec a recommend request is checked against: the query side, no item features.

    Columns that feed no model (label, key, passthrough) may still ride along, as in ranking.
    """
    kept = {
        name: f
        for name, f in spec.features.items()
        if f.side in ("user", "context") or not f.is_model_input
    }
    return dataclasses.replace(spec, features=kept, crosses=())


def _count(value: Any, name: str, default: int, maximum: int) -> int:
    if value is None:
        return default
    if isinstance(value, list) and len(value) == 1:  # V2 parameters may arrive as one-element lists
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise RequestError(f"{name} must be an integer from 1 to {maximum}, got {value!r}")
    return value


class RecommendModel(kserve.Model):
    """Two-stage recommendations from the versions a :class:`RankingModel` serves."""

    def __init__(self, ranking: RankingModel, name: str = RECOMMEND_NAME) -> None:
        super().__init__(name, return_response_headers=True)
        self.ranking = ranking
        self.ready = True

    def load(self) -> bool:
        """Nothing of its own to load: the versions are the ranking model's."""
        self.ready = True
        return True

    async def healthy(self) -> bool:
        """Ready when the ranking model is and its production version has a retrieval stage."""
        return (
            await self.ranking.healthy() and self.ranking.routing.production.retriever is not None
        )

    def _parse(
        self, payload: Any, headers: dict[str, str] | None, validator: RequestValidator
    ) -> tuple[Any, int, int]:
        """The query request (shape checked), ``k`` and ``candidates``."""
        if isinstance(payload, InferRequest):
            check_content_type(headers)
            params = payload.parameters or {}
            if not isinstance(params, dict):  # gRPC: InferParameter messages
                params = to_http_parameters(params)
            request = validator.shape_columns(v2_columns(payload), "inputs")
        else:
            payload = json_object(payload, headers)
            unknown = set(payload) - {"instances", "k", "candidates"}
            if unknown:
                raise RequestError(
                    f"unknown top-level field {sorted(unknown)[0]!r}; expected 'instances' "
                    "and optionally 'k' and 'candidates'"
                )
            if "instances" not in payload:
                raise RequestError("request needs 'instances': a list of user and context rows")
            params = payload
            request = validator.shape_rows(payload["instances"], "instances")
        if request.rows > MAX_QUERIES:
            raise RequestError(f"{request.rows} queries exceed the maximum of {MAX_QUERIES}")
        candidates = _count(params.get("candidates"), "candidates", DEFAULT_CANDIDATES,
                            MAX_CANDIDATES)  # fmt: skip
        k = _count(params.get("k"), "k", DEFAULT_K, candidates)
        return request, k, candidates

    def recommend(
        self, loaded: LoadedVersion, query: dict[str, np.ndarray], k: int, candidates: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Item ids, ranker probabilities and retrieval scores ``[queries, k]``."""
        import tensorflow as tf

        retriever = loaded.retriever
        assert retriever is not None
        rows, similarity = retriever.retrieve(query, candidates)
        queries, depth = rows.shape
        valid = rows >= 0
        flat = np.where(valid, rows, 0).reshape(-1)
        items = retriever.catalogue.iloc[flat]
        # The ranker's raw row per (query, candidate): the query's features repeated, the
        # candidate's item features from the catalogue shipped with this version.
        names = [f.name for f in loaded.validator.spec.model_inputs]
        columns = {
            name: np.repeat(query[name], depth) if name in query else items[name].to_numpy()
            for name in names
        }
        tensors = {name: tf.constant(values) for name, values in columns.items()}
        probability = np.asarray(loaded.signature(**tensors)["probability"]).reshape(queries, depth)
        probability = np.where(valid, probability, -np.inf)
        # An index may find fewer than asked (a tiny catalogue): answer only items it found.
        k = min(k, int(valid.sum(axis=1).min()))
        best = np.argsort(-probability, axis=1, kind="stable")[:, :k]
        item_ids = items[retriever.item_key].to_numpy().reshape(queries, depth)
        return (
            np.take_along_axis(item_ids, best, axis=1),
            np.take_along_axis(probability, best, axis=1),
            np.take_along_axis(similarity, best, axis=1),
        )

    async def predict(
        self, payload: Any, headers: Headers = None, response_headers: Headers = None
    ) -> Any:
        """Validates the query, retrieves, ranks; answers ``k`` items per query."""
        ranking = self.ranking
        if not await self.healthy():
            raise InvalidInput(
                f"model {ranking.name!r} has no retrieval stage: train it with a spec whose "
                "features name their side (docs/retrieval.md)"
            )
        started = time.perf_counter()
        routing, role, loaded, unit = ranking.assign(payload, headers)
        logs = ranking.logs
        if loaded.retriever is None:  # a canary without a retrieval stage: production answers
            role, loaded = "production", routing.production
        with failures_logged(logs, routing, role, loaded.version, started, unit):
            assert loaded.retriever is not None and loaded.query_validator is not None
            request, k, candidates = self._parse(payload, headers, loaded.query_validator)
            request = await ranking.looked_up(request, loaded.query_validator, response_headers)
            query, (error,) = loaded.query_validator.check([request])
            if error is not None:
                raise RequestError(error)
            items, probability, similarity = await asyncio.to_thread(
                self.recommend, loaded, query, k, candidates
            )
        request_id = answered(
            logs, routing, role, loaded.version, started, unit, payload, headers,
            response_headers, probability=probability.reshape(-1), items=list(items.reshape(-1)),
        )  # fmt: skip
        if isinstance(payload, InferRequest):
            outputs = [
                InferOutput(name="items", shape=list(items.shape), datatype="BYTES",
                            data=[str(v) for v in items.reshape(-1)]),
                InferOutput(name="scores", shape=list(items.shape), datatype="FP32",
                            data=probability.astype(np.float32).reshape(-1).tolist()),
                InferOutput(name="retrieval_scores", shape=list(items.shape), datatype="FP32",
                            data=similarity.astype(np.float32).reshape(-1).tolist()),
            ]  # fmt: skip
            return InferResponse(
                model_name=self.name,
                infer_outputs=outputs,
                response_id=payload.id or request_id or "",
            )
        return {
            "predictions": [
                {
                    "items": [str(v) for v in row_items],
                    "scores": [float(v) for v in row_scores],
                    "retrieval_scores": [float(v) for v in row_similarity],
                }
                for row_items, row_scores, row_similarity in zip(
                    items, probability, similarity, strict=True
                )
            ]
        }
