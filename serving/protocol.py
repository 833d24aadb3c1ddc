"""The wire: V1 and V2 request and answer shapes, the headers, and an example request.

What a client sends and gets back, kept apart from the model: the V2 columns of an Open Inference
Protocol request, the JSON media types, the answer for each protocol, the headers the server reads
(``x-experiment-unit``, ``x-request-id``) and sets (``x-model-version``, ``x-request-id``,
``x-skewless-batch-rows``), the randomization unit of a request, and the example row and curl
command ``skewless serve`` prints.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from typing import Any

import numpy as np
import orjson
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from skewless.contract.spec import FeatureSpec
from skewless.serving.validation import RawRequest, RequestError, RequestValidator

JSON_TYPES = ("application/json", "application/cloudevents+json")
BATCH_ROWS_HEADER = "x-skewless-batch-rows"
VERSION_HEADER = "x-model-version"
REQUEST_ID_HEADER = "x-request-id"  # KServe's and Istio's name; feedback joins on it
UNIT_HEADER = "x-experiment-unit"
Headers = dict[str, str] | None
"""A request's headers, or the response's that a model may set (KServe's ``predict`` takes both)."""


def v2_columns(payload: InferRequest) -> dict[str, Any]:
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


def media_type(headers: dict[str, str] | None) -> str:
    """The request's media type without parameters ("application/json; charset=utf-8" ->
    "application/json"), lowercase; "" when there is no content type."""
    return (headers or {}).get("content-type", "").split(";")[0].strip().lower()


def check_content_type(headers: dict[str, str] | None) -> None:
    content_type = (headers or {}).get("content-type", "")
    if content_type and not media_type(headers).startswith((*JSON_TYPES, "application/grpc")):
        raise RequestError(f"unsupported content type {content_type!r}: send application/json")


def json_object(payload: Any, headers: dict[str, str] | None) -> dict[str, Any]:
    """A V1 request body as a JSON object, whatever form KServe handed it over in.

    KServe decodes only an exact "application/json"; with parameters ("; charset=utf-8") the
    body arrives as bytes. A JSON media type is JSON whatever its parameters.
    """
    check_content_type(headers)
    if isinstance(payload, bytes | str):
        if media_type(headers) not in JSON_TYPES:
            raise RequestError("request body must be a JSON object")
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError as err:
            raise RequestError(f"request body is not valid JSON: {err}") from None
    if not isinstance(payload, dict):
        raise RequestError(f"request body must be a JSON object, got {type(payload).__name__}")
    return payload


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


def example_curl(
    name: str,
    http_port: int,
    spec: FeatureSpec,
    *,
    by_id: dict[str, str] | None = None,
    looked_up: frozenset[str] = frozenset(),
    host: str = "127.0.0.1",
) -> str:
    """A ready-to-paste curl command for the V1 predict endpoint of a server listening on
    ``host``; with ``by_id`` (ids the feature store knows) a second one that sends only ids and
    context."""
    # A server on every address (or loopback) is reached as localhost; one on a single address
    # only there (an IPv6 address in brackets, as URLs write it).
    address = ipaddress.ip_address(host)
    if address.is_unspecified or address.is_loopback:
        host = "localhost"
    elif address.version == 6:
        host = f"[{host}]"
    base = f"http://{host}:{http_port}"
    url = f"{base}/v1/models/{name}:predict"
    curl = "curl -s -H 'Content-Type: application/json'"
    text = (
        f"\nserving model {name!r} on {base} (Ctrl-C to stop). Try:\n\n"
        f"{curl} {url} -d '{json.dumps({'instances': [example_row(spec)]})}'\n"
    )
    if by_id:
        row = {k: v for k, v in example_row(spec).items() if k not in looked_up} | by_id
        text += (
            f"\nor send only ids and context (the rest is read from the feature store):\n\n"
            f"{curl} -i {url} -d '{json.dumps({'instances': [row]})}'\n"
        )
    return text


def request_columns(
    payload: Any, headers: dict[str, str] | None, validator: RequestValidator
) -> RawRequest:
    """The model-input columns of a V1 or V2 request, shape checked (values not yet)."""
    from kserve.protocol.infer_type import InferRequest

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
