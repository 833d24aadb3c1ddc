"""The model server over real HTTP and gRPC: correct, strict with bad input, and batching."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from support import example, log_lines, post, serving

from skewless.serving.protocol import BATCH_ROWS_HEADER

EXAMPLE = example()
NUMERIC = {"age", "price", "hour"}


@pytest.fixture(scope="module")
def server(trained):
    with serving(trained.model_dir) as addresses:
        yield addresses


@pytest.fixture(scope="module")
def rows(ingested: Path) -> pd.DataFrame:
    return pd.read_parquet(ingested / "eval.parquet").head(16)


def _in_process(model_dir: str, rows: pd.DataFrame) -> np.ndarray:
    signature = tf.saved_model.load(model_dir).signatures["serving_default"]
    return signature(**{
        n: tf.constant(rows[n].to_numpy(dtype=np.float32 if n in NUMERIC else object))
        for n in EXAMPLE
    })["probability"].numpy()  # fmt: skip


def _instances(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {n: (float(r[n]) if n in NUMERIC else r[n]) for n in EXAMPLE} for _, r in rows.iterrows()
    ]


def _v2_inputs(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "name": n,
            "shape": [len(rows)],
            "datatype": "FP32" if n in NUMERIC else "BYTES",
            "data": [float(v) if n in NUMERIC else v for v in rows[n]],
        }
        for n in EXAMPLE
    ]


def test_every_protocol_equals_the_in_process_signature(server, trained, rows):
    expected = _in_process(trained.model_dir, rows)
    url = f"{server['http']}/v1/models/ranking:predict"
    status, body, _ = post(url, {"instances": _instances(rows)})
    assert status == 200
    # Bit for bit: one thread per op in the server (runtime.one_thread_per_op) changes nothing.
    np.testing.assert_array_equal(np.float32(body["predictions"]), expected)

    columns = {n: [float(v) if n in NUMERIC else v for v in rows[n]] for n in EXAMPLE}
    status, body, _ = post(url, {"inputs": columns})
    assert status == 200
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-6)

    status, body, _ = post(f"{server['http']}/v2/models/ranking/infer",
                           {"id": "r1", "inputs": _v2_inputs(rows)})  # fmt: skip
    assert status == 200 and body["id"] == "r1"
    assert body["outputs"][0]["name"] == "probability" and body["outputs"][0]["shape"] == [16]
    np.testing.assert_allclose(body["outputs"][0]["data"], expected, rtol=1e-6)

    from kserve import InferenceGRPCClient, InferInput, InferRequest

    async def grpc_call() -> np.ndarray:
        client = InferenceGRPCClient(url=server["grpc"])
        inputs = []
        for spec in _v2_inputs(rows):
            tensor = InferInput(spec["name"], spec["shape"], spec["datatype"])
            data = np.asarray(spec["data"], dtype=np.float32 if spec["datatype"] == "FP32"
                              else np.object_)  # fmt: skip
            tensor.set_data_from_numpy(data, binary_data=False)
            inputs.append(tensor)
        response = await client.infer(InferRequest(model_name="ranking", infer_inputs=inputs))
        await client.close()
        return response.outputs[0].as_numpy()

    np.testing.assert_allclose(asyncio.run(grpc_call()), expected, rtol=1e-6)


SETTINGS = """
import gc, os, sys
from skewless.serving import main
from skewless.serving.listen import ListeningServer
from skewless.serving.server import RankingModel

load = RankingModel.load

def loading(model):  # TensorFlow's runtime starts as the model loads: the variable must be set
    print(os.environ.get("TF_NUM_INTRAOP_THREADS"))
    return load(model)

def report(server, models):  # where serve() would start listening
    print(gc.get_threshold()[0])

RankingModel.load, ListeningServer.start = loading, report
main.serve(sys.argv[1])
"""


def test_the_serving_process_takes_one_intra_op_thread_unless_told_and_a_young_gc_room(trained):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_NUM_INTRAOP_THREADS"}
    for told, threads in ((None, "1"), ("3", "3")):  # TensorFlow's own variable wins
        if told:
            env["TF_NUM_INTRAOP_THREADS"] = told
        run = subprocess.run([sys.executable, "-c", SETTINGS, trained.model_dir], env=env,
                             capture_output=True, text=True, check=True)  # fmt: skip
        assert run.stdout.split() == [threads, "20000"]


def test_metadata_readiness_and_metrics(server):
    import urllib.request

    with urllib.request.urlopen(f"{server['http']}/v2/models/ranking") as response:
        metadata = json.loads(response.read())
    assert metadata["name"] == "ranking"
    inputs = {i["name"]: (i["datatype"], i["shape"]) for i in metadata["inputs"]}
    assert inputs == {name: ("FP32" if name in NUMERIC else "BYTES", [-1]) for name in EXAMPLE}
    assert metadata["outputs"] == [{"name": "probability", "datatype": "FP32", "shape": [-1]}]
    with urllib.request.urlopen(f"{server['http']}/v1/models/ranking") as response:
        assert json.loads(response.read()) == {"name": "ranking", "ready": True}
    with urllib.request.urlopen(f"{server['http']}/metrics") as response:
        assert "request_predict_seconds" in response.read().decode()


def _row(**changes: Any) -> dict[str, Any]:
    row = {**EXAMPLE, **changes}
    return {k: v for k, v in row.items() if v is not _DROP}


_DROP = object()
V1_BAD = [
    ({"instances": [_row(age="thirty")]}, "instances[0].age: not a number ('thirty')"),
    ({"instances": [_row(age=[30])]}, "instances[0].age: expected a number, got a list"),
    ({"instances": [_row(country=7)]}, "instances[0].country: not in allowed_values ('7')"),
    ({"instances": [_row(country={})]}, "instances[0].country: expected text, got an object"),
    ({"instances": [_row(age=_DROP)]}, "instances[0].age: missing required value"),
    ({"instances": [_row(shoe_size=44)]}, "instances[0]: unknown field 'shoe_size'"),
    ({"instances": [_row(age=7)]}, "instances[0].age: below minimum 13 (7)"),
    ({"instances": [_row(country="XX")]}, "instances[0].country: not in allowed_values ('XX')"),
    ({"instances": [_row(weekday="Someday")]}, "instances[0].weekday: not in allowed_values"),
    ({"instances": [_row(title="x" * 300)]}, "instances[0].title: longer than max_length"),
    ({"instances": [EXAMPLE, _row(price=-1)]}, "instances[1].price: below minimum 0 (-1)"),
    ({"instances": []}, "empty batch: the request has no rows"),
    ({"instances": [EXAMPLE] * 1025}, "batch of 1025 rows exceeds the maximum of 1024"),
    ({"instances": "all"}, 'Expected "instances" to be a list'),  # kserve's own check
    ({"rows": [EXAMPLE]}, "request needs 'instances' (a list of rows) or 'inputs' (columns)"),
    ({"inputs": {"age": [1, 2], "price": [3]}}, "inputs: fields have different lengths [1, 2]"),
    (
        {"instances": [EXAMPLE], "inputs": {"age": [30]}},
        "request has both 'instances' and 'inputs': send one of them",
    ),
]


@pytest.mark.parametrize(("body", "message"), V1_BAD)
def test_bad_v1_requests_are_400s_naming_the_problem(server, body, message):
    status, answer, _ = post(f"{server['http']}/v1/models/ranking:predict", body)
    assert status == 400
    assert message in answer["error"]


def test_non_finite_numbers_malformed_json_and_content_type(server):
    url = f"{server['http']}/v1/models/ranking:predict"
    for literal in ("NaN", "Infinity", "1e999"):
        raw = json.dumps({"instances": [_row(age=0)]}).replace('"age": 0', f'"age": {literal}')
        status, answer, _ = post(url, raw=raw.encode())
        assert status == 400, literal
        assert "age" in answer["error"] or "Unrecognized request format" in answer["error"]
    status, answer, _ = post(url, raw=b'{"instances": [')
    assert status == 400 and "Unrecognized request format" in answer["error"]
    status, answer, _ = post(url, raw=json.dumps({"instances": [EXAMPLE]}).encode(),
                             content_type="text/plain")  # fmt: skip
    assert status == 400 and answer["error"] == (
        "unsupported content type 'text/plain': send application/json"
    )


def test_bad_v2_requests_name_the_input(server):
    url = f"{server['http']}/v2/models/ranking/infer"
    inputs = _v2_inputs(pd.DataFrame([EXAMPLE]))
    wrong_type = [dict(i, datatype="BYTES", data=["old"]) if i["name"] == "age" else i
                  for i in inputs]  # fmt: skip
    status, answer, _ = post(url, {"inputs": wrong_type})
    assert status == 400 and "inputs.age[0]: not a number ('old')" in answer["error"]
    missing = [i for i in inputs if i["name"] != "price"]
    status, answer, _ = post(url, {"inputs": missing})
    assert status == 400 and "inputs.price: missing required field" in answer["error"]


def test_json_content_types_with_parameters_are_json(server):
    url = f"{server['http']}/v1/models/ranking:predict"
    raw = json.dumps({"instances": [EXAMPLE]}).encode()
    for content_type in ("application/json; charset=utf-8", "Application/JSON"):
        status, answer, _ = post(url, raw=raw, content_type=content_type)
        assert status == 200 and 0 < answer["predictions"][0] < 1, (content_type, answer)
    status, answer, _ = post(url, raw=b"{", content_type="application/json; charset=utf-8")
    assert status == 400 and answer["error"].startswith("request body is not valid JSON")


def test_a_v2_input_given_twice_is_refused(server):
    inputs = _v2_inputs(pd.DataFrame([EXAMPLE]))
    age = next(i for i in inputs if i["name"] == "age")
    twice = [*inputs, dict(age, data=[7])]
    status, answer, _ = post(f"{server['http']}/v2/models/ranking/infer", {"inputs": twice})
    assert status == 400 and answer["error"] == "inputs: 'age' is given more than once"


def test_a_refused_request_is_one_short_log_line_and_a_short_answer(server):
    url = f"{server['http']}/v1/models/ranking:predict"
    before = len(log_lines(server))
    status, answer, _ = post(url, {"instances": [_row(country="X" * 1_000_000)]})
    assert status == 400 and len(answer["error"]) < 200, answer["error"][:300]
    new = log_lines(server)[before:]
    assert len(new) == 1 and "refused request (400): instances[0].country" in new[0], new[:5]
    assert len(new[0]) < 500


def test_server_keeps_serving_after_client_errors(server):
    url = f"{server['http']}/v1/models/ranking:predict"
    for body, _ in V1_BAD[:4]:
        post(url, body)
    status, answer, _ = post(url, {"instances": [EXAMPLE]})
    assert status == 200 and 0 < answer["predictions"][0] < 1


def test_concurrent_requests_share_model_calls(server):
    url = f"{server['http']}/v1/models/ranking:predict"
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda _: post(url, {"instances": [EXAMPLE]}), range(256)))
    assert all(status == 200 for status, _, _ in results)
    batch_rows = [int(headers[BATCH_ROWS_HEADER]) for _, _, headers in results]
    # 256 one-row requests from 32 clients: many must have ridden in a batch with others.
    assert max(batch_rows) > 1
    assert sum(1 for rows in batch_rows if rows > 1) > 64
    predictions = {round(answer["predictions"][0], 6) for _, answer, _ in results}
    assert len(predictions) == 1  # batching changes nothing about each row's answer


CAP = """
import sys
from skewless.cli import main
from skewless.serving.listen import ListeningServer

def report(server, models):  # where serve() would start listening
    print(sorted({batcher.max_batch_rows for batcher in models[0].batchers.values()}))

ListeningServer.start = report
sys.exit(main(["serve", "--model", *sys.argv[1:]]))
"""


def test_max_batch_rows_reaches_the_batchers_and_caps_each_call_over_http(trained):
    import subprocess
    import sys

    for flags, cap in (([], "[2048]"), (["--max-batch-rows", "3"], "[3]")):
        run = subprocess.run([sys.executable, "-c", CAP, trained.model_dir, *flags],
                             capture_output=True, text=True, check=True)  # fmt: skip
        assert run.stdout.split("\n")[-2] == cap, run.stdout[-500:]
    with serving(trained.model_dir, "--max-batch-rows", "3", "--max-wait-ms", "20") as addresses:
        url = f"{addresses['http']}/v1/models/ranking:predict"
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda _: post(url, {"instances": [EXAMPLE]}), range(128)))
        assert all(status == 200 for status, _, _ in results)
        batch_rows = [int(headers[BATCH_ROWS_HEADER]) for _, _, headers in results]
        # However the requests met, no call passed the cap (the batcher's own tests pin down
        # which requests share a call).
        assert all(1 <= rows <= 3 for rows in batch_rows), sorted(set(batch_rows))
        status, answer, headers = post(url, {"instances": [EXAMPLE] * 5})
        # A request larger than the cap is neither refused nor split: one call of its 5 rows.
        assert status == 200 and len(answer["predictions"]) == 5
        assert headers[BATCH_ROWS_HEADER] == "5"


def test_workers_each_load_the_model_and_serve(trained):
    import re
    import time

    with serving(trained.model_dir, "--workers", "2") as addresses:
        url = f"{addresses['http']}/v1/models/ranking:predict"
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda _: post(url, {"instances": [EXAMPLE]}), range(64)))
        assert all(status == 200 for status, _, _ in results)
        # Workers start in parallel; the first ready one may serve everything above, so wait for
        # every process to report its own load (the deadline only guards against a hang: a
        # worker's load on a fully loaded machine takes minutes).
        pids: set[str] = set()
        deadline = time.monotonic() + 900
        while len(pids) < 3 and time.monotonic() < deadline:
            addresses["log"].seek(0)
            pids = set(re.findall(r"loaded model 'ranking' version \S+ from .* in process (\d+)",
                                  addresses["log"].read()))  # fmt: skip
            time.sleep(0.5)
        addresses["log"].seek(0)
        log = addresses["log"].read()
    # The parent (gRPC) and each of the two REST workers loaded TensorFlow themselves.
    assert len(pids) == 3
    # Each worker logs as `skewless serve` was told to (KServe's own defaults in a worker would
    # write an access line and two latency lines per request).
    assert "POST /v1/models" not in log and "time:wall" not in log, log[-2000:]


def _unread_bytes(port: int) -> list[int]:
    """Bytes waiting unread in the server's end of each established connection on ``port``."""
    queues = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # ESTABLISHED, server side
                queues.append(int(fields[4].split(":")[1], 16))
    return queues


def test_sigterm_drains_requests_in_flight(trained):
    """Requests the server has read when SIGTERM arrives are answered before it exits.

    No sleep decides what is in flight: sixteen raw connections send their whole request, and the
    signal goes only once the kernel shows every byte read by the server (its receive queues
    empty). A 3 s batch wait keeps those requests inside the batcher when the signal lands.
    """
    import signal
    import socket
    import time

    with serving(trained.model_dir, "--max-wait-ms", "3000") as addresses:
        port = int(addresses["http"].rsplit(":", 1)[1])
        body = json.dumps({"instances": [EXAMPLE]}).encode()
        request = (
            f"POST /v1/models/ranking:predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        clients = [socket.create_connection(("127.0.0.1", port), timeout=120) for _ in range(16)]
        for client in clients:
            client.sendall(request)
        deadline = time.monotonic() + 300  # a guard against a hang, not a timing assumption
        while True:  # until the server holds all sixteen: accepted, and every byte read
            queues = _unread_bytes(port)
            if len(queues) == 16 and not any(queues):
                break
            assert time.monotonic() < deadline, f"server never read the requests: {queues}"
            time.sleep(0.01)
        addresses["process"].send_signal(signal.SIGTERM)
        answers = []
        for client in clients:
            with client:
                answers.append(client.makefile("rb").read())
        assert addresses["process"].wait(timeout=120) == 0
    assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers), answers[:2]
    assert all(b'"predictions":[' in answer for answer in answers)


def test_by_default_requests_write_no_log_lines_and_errors_still_do(server):
    url = f"{server['http']}/v1/models/ranking:predict"
    before = len(log_lines(server))
    for _ in range(20):
        assert post(url, {"instances": [EXAMPLE]})[0] == 200
    new = log_lines(server)[before:]
    assert not [line for line in new if "POST /v1/models" in line or "requestId" in line], new


def test_access_log_and_json_logs_are_options(trained):
    with serving(trained.model_dir, "--access-log", "--log-format", "json") as addresses:
        url = f"{addresses['http']}/v1/models/ranking:predict"
        for _ in range(5):
            assert post(url, {"instances": [EXAMPLE]})[0] == 200
        records = [json.loads(line) for line in log_lines(addresses) if line.startswith("{")]
    requests = [
        r for r in records if r["logger"] == "uvicorn.access" and "POST /v1/" in r["message"]
    ]
    assert len(requests) >= 5, records[-10:]
    assert {"time", "level", "logger", "message"} <= set(requests[0])
    # KServe's latency lines come with the access log (the default server leaves them out, and
    # the middleware that measures them: test_app_timing.py).
    timings = [r for r in records if r["logger"] == "kserve.trace" and "time:wall" in r["message"]]
    assert len(timings) >= 5, records[-10:]


def test_model_management_is_off_unless_asked_for(server, trained):
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    before = len(log_lines(server))
    status, answer, _ = post(f"{server['http']}/v2/repository/models/ranking/unload", {})
    assert status == 501 and "--allow-model-management" in answer["error"]
    with grpc.insecure_channel(server["grpc"]) as channel:
        stub = GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="ranking"))
    assert "--allow-model-management" in refused.value.details()
    status, answer, _ = post(
        f"{server['http']}/v1/models/ranking:predict", {"instances": [EXAMPLE]}
    )
    assert status == 200 and 0 < answer["predictions"][0] < 1
    assert not [line for line in log_lines(server)[before:] if "Traceback" in line]

    with serving(trained.model_dir, "--allow-model-management") as managed:
        assert _server_ready(managed) == (200, True)
        status, answer, _ = post(f"{managed['http']}/v2/repository/models/ranking/unload", {})
        assert status == 200 and answer == {"name": "ranking", "unload": True}
        # No model loaded: the server is not ready (KServe said ready whatever its models).
        assert _server_ready(managed) == (503, False)
        assert not [line for line in log_lines(managed) if "Traceback" in line]


def _server_ready(addresses: dict[str, Any]) -> tuple[int, bool]:
    """REST /v2/health/ready's status and gRPC ServerReady's answer."""
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    try:
        with urllib.request.urlopen(f"{addresses['http']}/v2/health/ready", timeout=60) as answer:
            status = answer.status
    except urllib.error.HTTPError as err:
        status = err.code
    with grpc.insecure_channel(addresses["grpc"]) as channel:
        ready = GRPCInferenceServiceStub(channel).ServerReady(pb.ServerReadyRequest(), timeout=60)
    return status, ready.ready


def test_a_body_over_the_limit_is_a_413_and_the_schema_pages_are_gone(trained):
    with serving(trained.model_dir, "--max-body-mb", "0.5") as limited:
        url = f"{limited['http']}/v1/models/ranking:predict"
        # As curl sends a large body: headers first, with Expect: 100-continue. The server
        # refuses on the declared length, before any body byte is sent (no race with the send).
        port = int(limited["http"].rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=60) as client:
            client.sendall(
                b"POST /v1/models/ranking:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 700000\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            answer_bytes = client.makefile("rb").readline()
        assert answer_bytes.startswith(b"HTTP/1.1 413"), answer_bytes
        status, answer, _ = post(url, {"instances": [EXAMPLE]})
        assert status == 200 and 0 < answer["predictions"][0] < 1
        for page in ("/openapi.json", "/docs"):
            try:
                with urllib.request.urlopen(f"{limited['http']}{page}", timeout=30) as response:
                    status = response.status
            except urllib.error.HTTPError as err:
                status = err.code
            assert status == 404, page


def test_a_malformed_binary_header_is_a_400(server):
    url = f"{server['http']}/v2/models/ranking/infer"
    body = json.dumps({"inputs": _v2_inputs(pd.DataFrame([EXAMPLE]))}).encode()
    for value in ("xyz", "-5", "1e3"):
        request = urllib.request.Request(
            url, data=body, headers={"inference-header-content-length": value}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert refused.value.code == 400, value
        assert (
            "inference-header-content-length must be a byte count"
            in json.loads(refused.value.read())["error"]
        )


def test_a_canary_gives_each_user_one_version_and_the_report_shows_it(trained, tmp_path):
    from skewless.experiments.ab_report import summarize
    from skewless.registry.sqlite import SQLiteRegistry
    from skewless.rollout.deploy import deploy_version, register_local

    repository = tmp_path / "models"
    evaluation = {"metrics": {}, "gate": {"promote": True, "reasons": []}}
    for run in ("r1", "r2"):  # the same model twice: two versions, one world
        version = register_local(trained.model_dir, repository, "ranking",
                                 evaluation=evaluation, stats_path=None, run_id=run)  # fmt: skip
    deploy_version(repository, "ranking", 1, "r1")
    registry = repository / "registry.db"
    SQLiteRegistry(registry).start_canary("ranking", version["version"], 50, actor="test")
    log = tmp_path / "requests.jsonl"
    with serving("", "--registry", str(registry), "--request-log", str(log),
                 "--experiment-unit", "user_id") as server:  # fmt: skip
        url = f"{server['http']}/v1/models/ranking:predict"
        seen: dict[str, set[str]] = {}
        for user in range(40):
            for _ in range(4):
                status, _, headers = post(url, {"instances": [_row(user_id=f"u{user:06d}")]})
                assert status == 200
                seen.setdefault(f"u{user:06d}", set()).add(headers["x-model-version"])
        # A unit named in the header wins over the row's user_id.
        request = urllib.request.Request(
            url, data=json.dumps({"instances": [EXAMPLE]}).encode(),
            headers={"Content-Type": "application/json", "x-experiment-unit": "u000003"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.headers["x-model-version"] in seen["u000003"]
    assert all(len(versions) == 1 for versions in seen.values())
    assert {v for versions in seen.values() for v in versions} == {"1", "2"}
    report = summarize(log)
    assert report["units_in_several_versions"] == 0
    assert sum(v["units"] for v in report["versions"]) == 40
    assert sum(v["requests_without_unit"] for v in report["versions"]) == 0


def test_the_experiment_unit_field_is_a_flag():
    from skewless.serving.protocol import experiment_unit

    assert experiment_unit({"instances": [{"device": "tv", "user_id": "u1"}]}, {}, "device") == "tv"
    assert experiment_unit({"instances": [{"user_id": "u1"}]}, {}, "device") is None
    assert experiment_unit({"inputs": {"user_id": [7, 8]}}, {}, "user_id") == "7"
    assert experiment_unit({"instances": "garbage"}, {"x-experiment-unit": "u9"}, "user_id") == "u9"
    assert experiment_unit({"instances": [[]]}, None, "user_id") is None


def test_feedback_is_refused_whole_and_clearly_over_http(server, trained, tmp_path):
    # Without an exposure log there is nothing to join outcomes to: 501, saying how to get one.
    status, body, _ = post(f"{server['http']}/v1/feedback", [{"request_id": "r", "outcome": "c"}])
    assert status == 501 and "--request-log" in body["error"]

    log = tmp_path / "requests.jsonl"
    with serving(trained.model_dir, "--request-log", str(log)) as logged:
        url = f"{logged['http']}/v1/feedback"
        status, _, headers = post(f"{logged['http']}/v1/models/ranking:predict",
                                  {"instances": [EXAMPLE]})  # fmt: skip
        request_id = headers["x-request-id"]
        good = {"request_id": request_id, "outcome": "click"}
        status, body, _ = post(url, [good, {"request_id": request_id}])
        assert (status, body) == (400, {"error": "feedback[1]: outcome is missing (a name such "
                                                 "as 'click')"})  # fmt: skip
        status, body, _ = post(url, raw=b"outcome=click", content_type="text/plain")
        assert status == 400 and "unsupported content type 'text/plain'" in body["error"]
        lines = (json.dumps(good) + "\n" + json.dumps({**good, "value": 2})).encode()
        status, body, _ = post(url, raw=lines, content_type="application/x-ndjson")
        assert (status, body) == (200, {"accepted": 2})
    feedback = [
        json.loads(line) for line in log.with_name("feedback.jsonl").read_text().splitlines()
    ]
    # The refused calls wrote nothing; the accepted one wrote both records.
    assert [(r["request_id"], r["value"]) for r in feedback] == [
        (request_id, 1.0),
        (request_id, 2.0),
    ]
    (exposure,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert exposure["request_id"] == request_id and exposure["items"] == [EXAMPLE["item_id"]]


def test_the_exposure_log_takes_its_item_field_and_rotation_size_from_flags(trained, tmp_path):
    from skewless.experiments.logs import read_records, segments

    log = tmp_path / "exposures.jsonl"
    # 0.0001 MB (104 bytes): every exposure line passes it, so each write rotates the file.
    with serving(trained.model_dir, "--request-log", str(log), "--item-field", "title",
                 "--log-max-mb", "0.0001") as logged:  # fmt: skip
        for _ in range(3):
            status, _, _ = post(f"{logged['http']}/v1/models/ranking:predict",
                                {"instances": [EXAMPLE]})  # fmt: skip
            assert status == 200
    exposures = list(read_records(log))
    assert [r["items"] for r in exposures] == [[EXAMPLE["title"]]] * 3
    assert len(segments(log)) == 4  # three rotated segments, then the new (empty) live file
    # A log named otherwise gets its outcomes beside it, by the same name.
    assert log.with_name("exposures.feedback.jsonl").exists()
