"""The KServe model server for exported ranking models.

A thin :class:`kserve.Model` around the SavedModel's ``serving_default`` signature. KServe's
``ModelServer`` provides the protocols: V1 REST (``/v1/models/NAME:predict``), the Open Inference
Protocol (V2) over REST (``/v2/models/NAME/infer``) and gRPC, metadata, readiness and Prometheus
metrics. Requests carry raw feature values named as in the feature spec; the transform runs inside
the model. Every request is validated against the spec the model was exported with before it
reaches TensorFlow, and a bad one gets a 400 naming the field.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np

from skewless.serving.validation import DEFAULT_MAX_BATCH, RequestError, RequestValidator
from skewless.spec import SPEC_ASSET, FeatureSpec, load_spec


def model_spec(model_dir: str | Path) -> FeatureSpec:
    """The feature spec stored inside an exported model."""
    path = Path(model_dir) / SPEC_ASSET
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} has no {SPEC_ASSET}; was it exported by skewless?")
    return load_spec(path)


def _v2_columns(payload: Any) -> dict[str, Any]:
    """Columns of an Open Inference Protocol request, values decoded to Python types."""
    columns: dict[str, Any] = {}
    for tensor in payload.inputs:
        values = np.asarray(tensor.as_numpy()).reshape(-1)
        if tensor.datatype == "BYTES":
            columns[tensor.name] = [
                v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in values
            ]
        else:
            columns[tensor.name] = values.tolist()
    return columns


class RankingModel:
    """Factory for the kserve.Model subclass (kserve is imported only when serving)."""

    @staticmethod
    def create(name: str, model_dir: str | Path, *, max_batch: int = DEFAULT_MAX_BATCH) -> Any:
        """A loaded, ready kserve model serving ``model_dir`` under ``name``."""
        import kserve
        from kserve.errors import InvalidInput
        from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

        class _Model(kserve.Model):
            def __init__(self) -> None:
                super().__init__(name)
                self.model_dir = Path(model_dir)
                self.validator = RequestValidator(model_spec(model_dir), max_batch=max_batch)
                self.signature: Any = None

            def load(self) -> bool:
                import tensorflow as tf

                loaded = tf.saved_model.load(str(self.model_dir))
                self.signature = loaded.signatures["serving_default"]
                self._loaded = loaded  # keeps the signature's resources alive
                self.ready = True
                return True

            def _columns(self, payload: Any) -> dict[str, np.ndarray]:
                if isinstance(payload, InferRequest):
                    return self.validator.from_columns(_v2_columns(payload), "inputs")
                if not isinstance(payload, dict):
                    raise RequestError("request body must be a JSON object")
                if "instances" in payload:
                    return self.validator.from_rows(payload["instances"], "instances")
                if "inputs" in payload:
                    return self.validator.from_columns(payload["inputs"], "inputs")
                raise RequestError("request needs 'instances' (list of rows) or 'inputs' (columns)")

            def probabilities(self, columns: dict[str, np.ndarray]) -> np.ndarray:
                import tensorflow as tf

                tensors = {k: tf.constant(v) for k, v in columns.items()}
                return self.signature(**tensors)["probability"].numpy()

            async def predict(
                self,
                payload: Any,
                headers: dict[str, str] | None = None,
                response_headers: dict[str, str] | None = None,
            ) -> Any:
                try:
                    columns = self._columns(payload)
                except RequestError as err:
                    raise InvalidInput(str(err)) from None
                probability = self.probabilities(columns)
                if isinstance(payload, InferRequest):
                    output = InferOutput(
                        name="probability",
                        shape=list(probability.shape),
                        datatype="FP32",
                        data=probability.astype(np.float32).tolist(),
                    )
                    return InferResponse(
                        model_name=self.name,
                        infer_outputs=[output],
                        response_id=payload.id or str(uuid.uuid4()),
                    )
                return {"predictions": probability.tolist()}

        model = _Model()
        model.load()
        return model


def serve(
    model_dir: str | Path,
    *,
    name: str = "ranking",
    http_port: int = 8080,
    grpc_port: int = 8081,
    max_batch: int = DEFAULT_MAX_BATCH,
    announce: bool = False,
) -> None:
    """Starts the model server in the foreground until interrupted.

    Args:
        model_dir: Exported SavedModel folder.
        name: Model name in the URL paths.
        http_port: REST port.
        grpc_port: gRPC port.
        max_batch: Largest accepted rows per request.
        announce: Print a ready-to-paste curl command first.
    """
    import kserve

    model = RankingModel.create(name, model_dir, max_batch=max_batch)
    if announce:
        print(example_curl(name, http_port, model.validator.spec), flush=True)
    kserve.ModelServer(http_port=http_port, grpc_port=grpc_port, workers=1).start([model])


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
    import json

    body = json.dumps({"instances": [example_row(spec)]})
    return (
        f"\nserving model {name!r} on http://localhost:{http_port} (Ctrl-C to stop). Try:\n\n"
        f"curl -s -H 'Content-Type: application/json' "
        f"http://localhost:{http_port}/v1/models/{name}:predict -d '{body}'\n"
    )
