"""Helpers for tests that talk to a real server process over loopback."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

SKEWLESS = [sys.executable, "-m", "skewless.cli"]
REPO = Path(__file__).resolve().parent.parent
TAXI_IN_WHEEL = "tfx/examples/chicago_taxi_pipeline/data/big_tipper_label/data.csv"


def public_taxi_csv(out_dir: Path) -> Path:
    """The Chicago taxi sample (15,002 rows, blanks in many columns) from TFX's wheel.

    Data we did not generate. ``make test`` fetches the wheel from the package registry into
    ``.cache/public-data`` (``SKEWLESS_PUBLIC_DATA``); the CSV is read out of it, nothing installed.
    """
    folder = Path(os.environ.get("SKEWLESS_PUBLIC_DATA", REPO / ".cache" / "public-data"))
    wheels = sorted(folder.glob("tfx-*.whl"))
    assert wheels, f"no TFX wheel in {folder}: run `make test` (it downloads it) first"
    target = out_dir / "taxi.csv"
    with zipfile.ZipFile(wheels[-1]) as wheel:
        target.write_bytes(wheel.read(TAXI_IN_WHEEL))
    return target


def example() -> dict[str, Any]:
    """A valid raw row of the default spec, as ``skewless serve`` prints it in its curl example."""
    from skewless.contract.spec import load_spec
    from skewless.serving.protocol import example_row

    return example_row(load_spec())


def step_environment() -> dict[str, str]:
    """The environment of a process a step or a pod runs in: without the Keras choice
    (``TF_USE_LEGACY_KERAS``) a TFT import in this process may have left, whatever conftest did."""
    return {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}


def tf_serving_gap(model_dir: str | Path, rows: Any) -> float:
    """Loads an exported model as TF Serving does, and returns the largest difference between its
    probabilities for ``rows`` (a DataFrame of raw features) and the TF2 signature's.

    TF Serving's loader is TF1's session loader: it restores the variables by name, then runs the
    init op (tables from the vocabulary assets). There is no ``tensorflow_model_server`` here.
    """
    import numpy as np
    import tensorflow as tf

    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(model_dir))
        signature = meta.signature_def["serving_default"]
        feeds = {signature.inputs[n].name: rows[n].to_numpy() for n in signature.inputs}
        served = session.run(signature.outputs["probability"].name, feeds)
    loaded = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    reference = loaded(**{n: tf.constant(rows[n].to_numpy()) for n in signature.inputs})
    return float(np.abs(served - reference["probability"].numpy()).max())


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(
    url: str, body: Any = None, *, raw: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any], dict[str, str]]:  # fmt: skip
    """POSTs JSON (or raw bytes); returns (status, decoded JSON body, headers)."""
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


@contextlib.contextmanager
def serving(model_dir: str, *args: str, name: str = "ranking") -> Iterator[dict[str, Any]]:
    """Runs ``skewless serve`` on free ports until the block ends; yields its addresses.

    ``model_dir`` may be empty when ``args`` name the model another way (``--registry``).
    """
    http_port, grpc_port = free_port(), free_port()
    # A file, not a pipe: nobody reads a pipe during the test, and a full one blocks the server.
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            [*SKEWLESS, "serve", *(["--model", model_dir] if model_dir else []), "--name", name,
             "--http-port", str(http_port), "--grpc-port", str(grpc_port), *args],
            stdout=log, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )  # fmt: skip
        try:
            _wait_ready(f"http://127.0.0.1:{http_port}/v2/models/{name}/ready", process, log)
            yield {"http": f"http://127.0.0.1:{http_port}", "grpc": f"127.0.0.1:{grpc_port}",
                   "process": process, "log": log}  # fmt: skip
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def log_lines(addresses: dict[str, Any]) -> list[str]:
    """Every line the server :func:`serving` started has logged so far."""
    log = addresses["log"]
    log.flush()
    log.seek(0)
    return list(log.read().splitlines())


def _wait_ready(url: str, process: subprocess.Popen[str], log: Any, seconds: float = 900) -> None:
    """Waits until ``url`` answers 200 or the server exits. The deadline only guards against a
    hang: on a fully loaded machine, importing TensorFlow and loading a model took over 120 s
    (the deadline before, which failed the workers and README tests under load)."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited: {log.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


class JsonHandler(BaseHTTPRequestHandler):
    """Base of the stand-in API servers: JSON in, JSON out, no access log."""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests report what matters."""

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length", 0))
        return json.loads(self.rfile.read(length)) if length else {}


def user_values(at: str, history: str = "tools") -> Any:
    """One push of user u000001's features (age 70, JP, tablet) at time ``at``, as a frame."""
    import numpy as np
    import pandas as pd

    return pd.DataFrame(
        {"user_id": ["u000001"], "event_timestamp": [pd.Timestamp(at)], "age": [np.float32(70)],
         "country": ["JP"], "device": ["tablet"], "history": [history]}
    ).astype({"event_timestamp": "datetime64[us, UTC]"})  # fmt: skip
