"""The model server's exposure, over real sockets: where it listens, clients that stall their
headers, and gRPC bytes that are not a request."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import pytest
from support import example, log_lines, post, serving

EXAMPLE = example()
NUMERIC = {"age", "price", "hour"}


def _listening(addresses: dict[str, Any]) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the server and its worker processes.

    grpc binds an IPv4 address as an IPv6 socket on its IPv4-mapped form (``::ffff:127.0.0.1``),
    which is reached through that IPv4 address only; it is shown as the IPv4 address.
    """
    import ipaddress

    import psutil

    server = psutil.Process(addresses["process"].pid)
    found = set()
    for process in (server, *server.children(recursive=True)):
        for connection in process.connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN:
                address = ipaddress.ip_address(connection.laddr.ip)
                mapped = getattr(address, "ipv4_mapped", None)
                found.add((str(mapped or address), connection.laddr.port))
    return found


def _ports(addresses: dict[str, Any]) -> tuple[int, int]:
    return int(addresses["http"].rsplit(":", 1)[1]), int(addresses["grpc"].rsplit(":", 1)[1])


def test_the_server_listens_on_this_machine_only_unless_told(trained):
    # One REST process, then two REST workers: the parent binds their socket, in KServe's
    # multi-process path, from the same uvicorn configuration.
    for extra in ([], ["--workers", "2"]):
        with serving(trained.model_dir, *extra) as addresses:
            http, grpc = _ports(addresses)
            assert _listening(addresses) == {("127.0.0.1", http), ("127.0.0.1", grpc)}, extra
            status, answer, _ = post(
                f"{addresses['http']}/v1/models/ranking:predict", {"instances": [EXAMPLE]}
            )
            assert status == 200 and 0 < answer["predictions"][0] < 1
    with serving(trained.model_dir, "--host", "0.0.0.0") as addresses:
        http, grpc = _ports(addresses)
        # grpc takes a wildcard address for every address, IPv6 included (as KServe's [::]).
        assert _listening(addresses) == {("0.0.0.0", http), ("::", grpc)}


def test_a_bad_host_is_one_clear_line(tmp_path):
    import subprocess

    from support import SKEWLESS

    done = subprocess.run([*SKEWLESS, "serve", "--model", str(tmp_path), "--host", "my laptop"],
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "skewless serve: error: --host: expected an IP address to listen on (127.0.0.1: "
        "this machine only; 0.0.0.0: every IPv4 address; '::': every address), got 'my laptop'"
    )
    # An address, but not one of this machine's (TEST-NET-3, never assigned).
    done = subprocess.run([*SKEWLESS, "serve", "--model", str(tmp_path), "--host", "203.0.113.7"],
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "skewless serve: error: --host 203.0.113.7: not an address of this machine"
    )


def _request(port: int, body: bytes) -> bytes:
    return (
        f"POST /v1/models/ranking:predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _response(reader: Any) -> tuple[int, dict[str, Any]]:
    """Reads one HTTP/1.1 response with a Content-Length: (status, JSON body)."""
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status, json.loads(reader.read(length))


def _closed_by_server(port: int, sent: bytes) -> bytes:
    """Opens a connection, sends ``sent`` (never a whole request head), and returns what the
    server answers before it closes (b"" when it closes without a word). The 60 s socket timeout
    only guards against a server that never closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as client:
        client.sendall(sent)
        received = b""
        while chunk := client.recv(4096):
            received += chunk
        return received


def test_a_connection_that_stalls_its_headers_is_closed_and_others_are_not(trained):
    with serving(trained.model_dir, "--header-timeout", "1") as addresses:
        port, _ = _ports(addresses)
        stalls = [
            b"",  # connects and sends nothing
            b"POST /v1/models/ranking:predict HTTP/1.1\r\n",
            b"GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a",
        ]
        clients = []
        for sent in stalls:
            client = socket.create_connection(("127.0.0.1", port), timeout=60)
            client.sendall(sent)
            clients.append(client)
        for client in clients:  # all open at once: each is closed by its own clock
            with client:
                assert client.recv(4096) == b""

        body = json.dumps({"instances": [EXAMPLE]}).encode()
        request = _request(port, body)
        with socket.create_connection(("127.0.0.1", port), timeout=60) as slow:
            reader = slow.makefile("rb")
            # Headers complete, then half the body; the rest only after a connection opened
            # later has been closed for stalling, so more than the timeout has passed.
            slow.sendall(request[: len(request) - len(body) // 2])
            assert _closed_by_server(port, b"GET / HTTP/1.1\r\n") == b""
            slow.sendall(request[len(request) - len(body) // 2 :])
            status, answer = _response(reader)
            assert status == 200 and 0 < answer["predictions"][0] < 1
            # Idle between requests on a keep-alive connection: uvicorn's keep-alive timeout
            # (65 s, KServe's), not the header timeout, applies.
            assert _closed_by_server(port, b"GET / HTTP/1.1\r\n") == b""
            slow.sendall(request)
            assert _response(reader)[0] == 200
            # A later request's headers have the timeout from their first byte.
            slow.sendall(request[:20])
            assert slow.recv(4096) == b""
        with socket.create_connection(("127.0.0.1", port), timeout=60) as idle:
            # A CRLF between requests (httptools skips it, starting no request) must not hold
            # a connection open past the header timeout: uvicorn stops its keep-alive timer on
            # any bytes.
            reader = idle.makefile("rb")
            idle.sendall(request)
            assert _response(reader)[0] == 200
            idle.sendall(b"\r\n")
            assert idle.recv(4096) == b""
        status, answer, _ = post(
            f"{addresses['http']}/v1/models/ranking:predict", {"instances": [EXAMPLE]}
        )
        assert status == 200 and 0 < answer["predictions"][0] < 1


def _infer_request() -> Any:
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name="ranking")
    for name, value in EXAMPLE.items():
        tensor = request.inputs.add(name=name, shape=[1])
        if name in NUMERIC:
            tensor.datatype = "FP32"
            tensor.contents.fp32_contents.append(float(value))
        else:
            tensor.datatype = "BYTES"
            tensor.contents.bytes_contents.append(str(value).encode())
    return request


@pytest.fixture(scope="module")
def server(trained):
    with serving(trained.model_dir) as addresses:
        yield addresses


def test_grpc_bytes_that_are_not_a_request_are_invalid_argument(server):
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    addresses = server
    before = len(log_lines(addresses))
    garbage = [
        b"\xff\xff\xff\xff",  # a field number 0 varint that never ends
        b"\x0a\xff\x01abc",  # model_name: a string said to be 255 bytes long, 3 sent
        b"\x0a\x02\xc3\x28",  # model_name: 2 bytes that are not UTF-8
    ]
    with grpc.insecure_channel(addresses["grpc"]) as channel:
        for method, message in (("ModelInfer", "ModelInferRequest"),
                                ("ModelMetadata", "ModelMetadataRequest")):  # fmt: skip
            call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
            for data in garbage:
                with pytest.raises(grpc.RpcError) as refused:
                    call(data, timeout=60)
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, data
                assert refused.value.details().startswith(
                    f"request is not a valid protobuf inference.{message} ("
                ), refused.value.details()
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        answer = infer(_infer_request(), timeout=60)
    probability = answer.outputs[0]
    assert probability.name == "probability" and len(probability.contents.fp32_contents) == 1
    assert 0 < probability.contents.fp32_contents[0] < 1
    log = "\n".join(log_lines(addresses)[before:])
    assert "Traceback" not in log and log.count("request is not a valid protobuf") == 6, log[-3000:]


def test_a_grpc_input_given_twice_is_refused(server):
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    request = _infer_request()
    again = request.inputs.add(name="age", datatype="FP32", shape=[1])
    again.contents.fp32_contents.append(7.0)
    with grpc.insecure_channel(server["grpc"]) as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
        )
        with pytest.raises(grpc.RpcError) as refused:
            infer(request, timeout=60)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "inputs: 'age' is given more than once"


def test_binary_tensor_data_that_does_not_match_its_header_is_a_400(server):
    """V2's binary extension: an input's ``binary_data_size`` past the payload, or BYTES data
    whose length prefix runs past it, was a 500 from struct/NumPy inside KServe."""
    import urllib.error
    import urllib.request

    url = f"{server['http']}/v2/models/ranking/infer"
    for binary_input in ("user_id", "age"):
        inputs = []
        for name, value in EXAMPLE.items():
            numeric = name in NUMERIC
            tensor = {"name": name, "shape": [1], "datatype": "FP32" if numeric else "BYTES"}
            if name == binary_input:
                tensor["parameters"] = {"binary_data_size": 1000}
            else:
                tensor["data"] = [float(value) if numeric else value]
            inputs.append(tensor)
        header = json.dumps({"inputs": inputs}).encode()
        for content_type in ("application/octet-stream", None):
            request = urllib.request.Request(
                url,
                data=header + b"\x00\x00\x80",  # 3 bytes: no whole length prefix, no whole float
                headers={"inference-header-content-length": str(len(header)),
                         **({"Content-Type": content_type} if content_type else {})},
            )  # fmt: skip
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=60)
            assert refused.value.code == 400, (binary_input, content_type)
            assert json.loads(refused.value.read())["error"].startswith(
                "binary tensor data does not match the request's JSON header ("
            )
    status, answer, _ = post(url.replace("/v2/models/ranking/infer", "/v1/models/ranking:predict"),
                             {"instances": [EXAMPLE]})  # fmt: skip
    assert status == 200 and 0 < answer["predictions"][0] < 1


GRPC_EXAMPLES = int(os.environ.get("SKEWLESS_FUZZ_EXAMPLES", "120"))
FIELDS = [*EXAMPLE, "clicked", "nonsense", ""]
REFUSALS = {"INVALID_ARGUMENT", "NOT_FOUND"}


def _tensor_strategy() -> Any:
    from hypothesis import strategies as st

    return st.fixed_dictionaries(
        {
            "name": st.sampled_from(FIELDS),
            "datatype": st.sampled_from(["FP32", "FP64", "INT64", "INT32", "BYTES", "BOOL", "XX"]),
            "shape": st.lists(st.integers(min_value=-2, max_value=4), max_size=3),
            "fp32": st.lists(st.floats(width=32), max_size=4),
            "int64": st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=4),
            "bytes": st.lists(st.binary(max_size=12), max_size=4),
            "raw": st.booleans(),
        }
    )


def _fuzzed_request(model: str, tensors: list[dict[str, Any]]) -> Any:
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    request = pb.ModelInferRequest(model_name=model)
    raw = []
    for spec in tensors:
        tensor = request.inputs.add(name=spec["name"], datatype=spec["datatype"])
        tensor.shape.extend(spec["shape"])
        if spec["raw"]:  # the raw_input_contents form: bytes, all inputs or none
            raw.append(b"".join(spec["bytes"]))
        else:
            tensor.contents.fp32_contents.extend(spec["fp32"])
            tensor.contents.int64_contents.extend(spec["int64"])
            tensor.contents.bytes_contents.extend(spec["bytes"])
    if raw and len(raw) == len(tensors):
        request.raw_input_contents.extend(raw)
    return request


def test_fuzzed_grpc_requests_are_answered_or_refused_never_a_server_error(server):
    """Whatever bytes or tensors a gRPC client sends, the answer is a result or a refusal
    (INVALID_ARGUMENT, NOT_FOUND), never UNKNOWN or INTERNAL, and valid requests still score."""
    import grpc
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    channel = grpc.insecure_channel(server["grpc"])
    raw_call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    infer = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )

    def outcome(call: Any, request: Any) -> str:
        try:
            call(request, timeout=120)
        except grpc.RpcError as err:
            return str(err.code().name)
        return "OK"

    @settings(max_examples=GRPC_EXAMPLES, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(
        data=st.binary(max_size=200),
        model=st.sampled_from(["ranking", "nope", ""]),
        tensors=st.lists(_tensor_strategy(), max_size=4),
    )
    def check(data: bytes, model: str, tensors: list[dict[str, Any]]) -> None:
        assert outcome(raw_call, data) in REFUSALS | {"OK"}, data
        assert outcome(infer, _fuzzed_request(model, tensors)) in REFUSALS | {"OK"}, tensors
        answer = infer(_infer_request(), timeout=120)
        assert 0 < answer.outputs[0].contents.fp32_contents[0] < 1

    with channel:
        check()
