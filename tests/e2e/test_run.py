"""End to end: ``skewless run`` through the KFP local runner, then the model over real HTTP."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from support import example

SKEWLESS = [sys.executable, "-m", "skewless.cli"]
EXAMPLE = example()
INPUTS = list(EXAMPLE)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("run")
    completed = subprocess.run(
        [*SKEWLESS, "run", "--no-serve", "--workdir", str(workdir), "--rows", "4000",
         "--param", "epochs=3", "--param", "max_calibration_error=0.2",
         "--param", "min_recall_lift=0"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return {"workdir": workdir, "stdout": completed.stdout, "stderr": completed.stderr,
            "summary": json.loads((workdir / "run_summary.json").read_text())}  # fmt: skip


def test_run_summary(run):
    summary = run["summary"]
    assert summary["rows"] == {"rows_in": 4000, "rows_clean": 4000, "rows_quarantined": 0,
                               "rows_train": summary["rows"]["rows_train"],
                               "rows_eval": 4000 - summary["rows"]["rows_train"]}  # fmt: skip
    assert set(summary["step_seconds"]) == {"generate", "ingest", "materialize", "transform",
                                            "train", "evaluate", "register", "deploy"}  # fmt: skip
    assert summary["registered_version"] == 1
    assert all(seconds > 0 for seconds in summary["step_seconds"].values())
    metrics = summary["metrics"]
    assert 0.5 < metrics["auc"] <= metrics["bayes_optimal_auc"] + 0.05
    assert {"pr_auc", "log_loss", "calibration_error", "accuracy", "baseline_auc"} <= set(metrics)
    assert summary["gate"]["promote"] is True and summary["deployed"] is True
    assert summary["deployment"] == "production"  # nothing served before: no canary
    assert Path(summary["served_model_path"]).name == "1"
    assert "eval AUC" in run["stdout"] and "PROMOTED" in run["stdout"]


def test_run_materializes_the_feature_store_and_checks_it(run):
    store = run["summary"]["feature_store"]
    assert store["materialized"] == 1
    assert store["repository"] == str(run["workdir"] / "feature_repo")
    users, items = store["views"]["user_features"], store["views"]["item_features"]
    assert users["entities"] < users["rows"] <= 4000  # first observations and changes
    assert items["rows"] == items["entities"] < 4000  # an item's values never change here
    assert store["point_in_time_rows"] > 0
    assert set(store["point_in_time_mismatch"].values()) == {0.0}
    assert f"feature store: {store['repository']}" in run["stdout"]


def test_run_summary_has_the_retrieval_stage_measured_three_ways(run):
    retrieval = run["summary"]["retrieval"]
    assert retrieval["queries"] > 50 and retrieval["items"] > 1_000
    for name in ("model", "exact", "popularity"):
        recall = retrieval["recall"][name]
        assert set(recall) == {"10", "100", "500"}
        assert 0 <= recall["10"] <= recall["100"] <= recall["500"] <= 1
    # The index answers nearly what exact search over the same embeddings answers.
    assert retrieval["index_overlap_with_exact_at_100"] >= 0.95
    assert abs(retrieval["recall"]["model"]["100"] - retrieval["recall"]["exact"]["100"]) <= 0.05
    (lift,) = [c for c in run["summary"]["gate"]["checks"] if c["check"].startswith("recall@100")]
    popular = retrieval["recall"]["popularity"]["100"]
    assert lift["threshold"] == 0.0  # this test's --param min_recall_lift=0
    assert lift["value"] == pytest.approx(retrieval["recall"]["model"]["100"] / popular)


def test_console_shows_a_line_per_step_and_keeps_each_steps_log(run):
    lines = (run["stdout"] + run["stderr"]).splitlines()
    assert len(lines) < 40, "\n".join(lines)
    steps = {"ingest", "materialize", "transform", "train", "evaluate", "register", "deploy"}
    for step in steps:
        log = run["workdir"] / "logs" / f"{step}.log"
        (line,) = [line for line in lines if line.split()[:1] == [step]]
        assert "SUCCESS" in line and str(log) in line
        text = log.read_text()
        assert f"Executing task '{step}'" in text and f"Task '{step}' finished" in text
    assert run["summary"]["step_logs"]["train"] == str(run["workdir"] / "logs" / "train.log")
    # The runner's executor dumps stay in the logs, off the console.
    assert "executor_input" not in run["stdout"]
    assert "executor_input" in (run["workdir"] / "logs" / "train.log").read_text().lower()


def test_exported_model_scores_raw_rows(run):
    summary = run["summary"]
    model = tf.saved_model.load(summary["model_path"]).signatures["serving_default"]
    rows = pd.read_parquet(summary["data"]).head(5)
    names = [n for n in model.structured_input_signature[1]]
    out = model(**{n: tf.constant(rows[n].to_numpy(dtype=np.float32 if rows[n].dtype.kind in "if"
                                                   else object)) for n in names})  # fmt: skip
    probability = out["probability"].numpy()
    assert probability.shape == (5,) and ((probability > 0) & (probability < 1)).all()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def server(run):
    port = _free_port()
    process = subprocess.Popen(
        [*SKEWLESS, "serve", "--model", run["summary"]["served_model_path"], "--http-port",
         str(port), "--grpc-port", str(_free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/v2/models/ranking/ready", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail(f"server did not become ready: {process.stdout.read()[-2000:]}")
    yield base
    process.terminate()
    process.wait(timeout=30)


def test_http_predictions_equal_the_in_process_signature(run, server):
    rows = pd.read_parquet(run["summary"]["data"]).head(8)
    instances = [{n: (row[n].item() if hasattr(row[n], "item") else row[n]) for n in INPUTS}
                 for _, row in rows.iterrows()]  # fmt: skip
    status, body = _post(f"{server}/v1/models/ranking:predict", {"instances": instances})
    assert status == 200
    signature = tf.saved_model.load(run["summary"]["served_model_path"]).signatures[
        "serving_default"]  # fmt: skip
    expected = signature(**{n: tf.constant(rows[n].to_numpy(
        dtype=np.float32 if rows[n].dtype.kind in "if" else object)) for n in INPUTS}
    )["probability"].numpy()  # fmt: skip
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-6)

    v2 = {"inputs": [
        {"name": n, "shape": [8], "datatype": "FP32" if rows[n].dtype.kind in "if" else "BYTES",
         "data": rows[n].tolist()} for n in INPUTS]}  # fmt: skip
    status, body = _post(f"{server}/v2/models/ranking/infer", v2)
    assert status == 200
    np.testing.assert_allclose(body["outputs"][0]["data"], expected, rtol=1e-6)


def test_bad_request_is_a_400_naming_the_field(run, server):
    row = {**EXAMPLE, "age": "thirty"}
    status, body = _post(f"{server}/v1/models/ranking:predict", {"instances": [row]})
    assert status == 400
    assert body["error"] == "instances[0].age: not a number ('thirty')"
    # The server keeps serving after a client error.
    status, _ = _post(f"{server}/v1/models/ranking:predict",
                      {"instances": [EXAMPLE]})  # fmt: skip
    assert status == 200


def test_models_cli_lists_the_registered_production_version(run):
    registry = str(run["workdir"] / "models" / "registry.db")
    listed = subprocess.run([*SKEWLESS, "models", "list", "--registry", registry, "--json"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    (version,) = json.loads(listed.stdout)
    assert version["version"] == 1 and version["aliases"] == ["production"]
    assert version["artifact_uri"] == run["summary"]["served_model_path"]
    assert version["metrics"]["auc"] == run["summary"]["metrics"]["auc"]
    missing = subprocess.run([*SKEWLESS, "models", "show", "ranking:5", "--registry", registry],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert missing.returncode == 1
    assert "model 'ranking' has no version 5" in missing.stderr


_USERS = itertools.count()


def _answers(url: str, count: int, versions: list[str]) -> dict[str, int]:
    """Sends ``count`` one-row requests; records and counts the answering versions."""
    from support import post

    from skewless.serving.protocol import VERSION_HEADER

    counts: dict[str, int] = {}
    for _ in range(count):
        # A new user each time: a canary assigns users, not requests, to versions.
        user = f"u{next(_USERS):06d}"
        status, _, headers = post(url, {"instances": [{**EXAMPLE, "user_id": user}]})
        assert status == 200
        versions.append(headers[VERSION_HEADER])
        counts[headers[VERSION_HEADER]] = counts.get(headers[VERSION_HEADER], 0) + 1
    return counts


def _until(url: str, version: str, versions: list[str], seconds: float = 60) -> float:
    """Polls until a request is answered by ``version``; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if _answers(url, 1, versions) == {version: 1}:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"server never answered from version {version} within {seconds} s")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run([*SKEWLESS, *args], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def test_second_run_canary_promote_and_rollback_in_the_live_server(run):
    from support import post, serving

    from skewless.serving.protocol import VERSION_HEADER

    workdir = run["workdir"]
    second = subprocess.run(
        [*SKEWLESS, "run", "--no-serve", "--workdir", str(workdir), "--rows", "4000",
         "--param", "epochs=3", "--param", "max_calibration_error=0.2",
         "--param", "min_recall_lift=0",
         "--param", "min_auc_gain=-1.0"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads((workdir / "run_summary.json").read_text())
    # The second run was gated against the first (now production) on the same eval rows...
    assert summary["production_metrics"]["auc"] == pytest.approx(run["summary"]["metrics"]["auc"])
    # ...and, passing, became a canary beside it (default share 10%), not production.
    assert summary["deployment"] == "canary"
    assert summary["traffic"] == {"production": 1, "candidate": 2, "candidate_percent": 10}
    assert Path(summary["served_model_path"]).name == "1"
    assert "is a canary taking 10% of users" in second.stdout

    registry = str(workdir / "models" / "registry.db")
    log = workdir / "models" / "requests.jsonl"
    versions: list[str] = []
    with serving("", "--registry", registry) as server:
        url = f"{server['http']}/v1/models/ranking:predict"
        _cli("canary", "ranking", "--percent", "50", "--registry", registry)
        _until(url, "2", versions)
        counts = _answers(url, 400, versions)
        # Binomial(400, 0.5): mean 200, sd 10; the bounds are 6 sd wide.
        assert set(counts) == {"1", "2"} and 140 < counts["2"] < 260, counts

        report = json.loads(_cli("ab-report", "--log", str(log), "--json").stdout)
        assert report["requests"] == len(versions)
        assert {v["version"]: v["requests"] for v in report["versions"]} == {
            version: versions.count(version) for version in set(versions)
        }
        by_version = {v["version"]: v for v in report["versions"]}
        assert (
            by_version["2"]["roles"] == ["candidate"] and "production" in by_version["1"]["roles"]
        )
        assert all(v["latency_ms"]["p50"] > 0 for v in report["versions"])

        _cli("promote", "ranking", "--registry", registry, "--reason", "test")
        _until(url, "2", versions)
        time.sleep(1.5)  # past one watch interval: no stale routing left
        assert _answers(url, 50, versions) == {"2": 50}

        started = time.monotonic()
        rollback = _cli("rollback", "ranking", "--registry", registry, "--reason", "test")
        assert "production is now version 1" in rollback.stdout
        _until(url, "1", versions)
        switched_after = time.monotonic() - started
        status, after, headers = post(url, {"instances": [EXAMPLE]})
    assert status == 200 and headers[VERSION_HEADER] == "1"
    v1 = tf.saved_model.load(run["summary"]["served_model_path"]).signatures["serving_default"]
    expected = v1(**{n: tf.constant([v], dtype=tf.float32 if isinstance(v, int | float)
                                    else tf.string) for n, v in EXAMPLE.items()})  # fmt: skip
    assert after["predictions"][0] == pytest.approx(float(expected["probability"][0]), rel=1e-6)
    print(f"rollback took effect in the live server after {switched_after:.2f} s")


def test_shuffled_labels_are_refused_registered_and_never_served(run, tmp_path):
    from skewless.registry.core import RegistryError
    from skewless.rollout.deploy import deploy_version, registry_for

    workdir = run["workdir"]
    registry = registry_for(workdir / "models")
    production_before = registry.get("ranking", "production").version
    frame = pd.read_parquet(run["summary"]["data"])
    frame["clicked"] = np.random.default_rng(0).permutation(frame["clicked"].to_numpy())
    shuffled = tmp_path / "shuffled.parquet"
    frame.to_parquet(shuffled)
    completed = subprocess.run(
        [*SKEWLESS, "run", "--no-serve", "--workdir", str(workdir), "--data", str(shuffled),
         "--param", "epochs=3"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "REJECTED" in completed.stdout
    summary = json.loads((workdir / "run_summary.json").read_text())
    refused = registry.get("ranking", summary["registered_version"])
    assert refused.gate["promote"] is False
    assert any(reason.startswith("failed auc >= min_auc") for reason in refused.gate["reasons"])
    assert refused.aliases == ()
    assert registry.get("ranking", "production").version == production_before
    assert "deploy" not in summary["step_seconds"]
    for canary_percent in (0, 50):
        with pytest.raises(RegistryError, match="was refused by the gate"):
            deploy_version(workdir / "models", "ranking", refused.version, "manual", canary_percent)


def test_a_failing_step_names_its_log_and_shows_its_last_lines(tmp_path):
    data = tmp_path / "no_label.csv"
    rows = pd.DataFrame([{**EXAMPLE, "clicked": 1}] * 50).drop(columns=["age"])
    rows.to_csv(data, index=False)
    completed = subprocess.run(
        [*SKEWLESS, "run", "--no-serve", "--workdir", str(tmp_path / "w"), "--data", str(data)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert completed.returncode != 0
    log = tmp_path / "w" / "logs" / "ingest.log"
    last = completed.stderr.strip().splitlines()[-1]
    assert last == f"skewless run: error: step 'ingest' failed; its log: {log}", completed.stderr
    assert "FAILURE" in completed.stdout and str(log) in completed.stdout
    # Above it, the reason the step raised (its traceback stays in the log).
    reason = completed.stderr.strip().splitlines()[-2]
    assert reason.startswith("IngestError: ") and "'age'" in reason, completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
    assert "Traceback" in log.read_text()
