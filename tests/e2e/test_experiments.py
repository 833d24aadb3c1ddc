"""The online-experiment loop against a live server: the simulator plays the planted world,
clicks come back as feedback, and `skewless experiment decide` acts on the numbers.

One registry-backed server follows three experiments in turn (small data, fast):
a model that learned the world against one trained on shuffled labels (promoted), the
shuffled-label model as a canary against it (stopped), and an A/A pair of identical models
(kept running: no significant difference).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from support import SKEWLESS, example, serving

from skewless.experiments.logs import read_records
from skewless.registry.sqlite import SQLiteRegistry
from skewless.rollout.deploy import deploy_version, register_local

WORLD_SEED = "11"  # the seed of the small data the fixtures trained on


def _cli(*args: str) -> str:
    done = subprocess.run([*SKEWLESS, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _wait_for_experiment(endpoint: str, log: Path, experiment: str) -> None:
    """Until the server (which polls the registry) runs ``experiment``: its exposures say so.

    Asking for a version is not enough: the new candidate may already serve in the old
    experiment (as production), before the server has switched.
    """
    deadline = time.monotonic() + 120
    body = json.dumps({"instances": [example()]}).encode()
    while time.monotonic() < deadline:
        request = urllib.request.Request(
            f"{endpoint}/v1/models/ranking:predict", data=body,
            headers={"Content-Type": "application/json", "x-experiment-unit": "probe"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:
            request_id = response.headers["x-request-id"]
        for record in read_records(log):
            if record.get("request_id") == request_id and record["experiment"] == experiment:
                return
        time.sleep(0.5)
    raise AssertionError(f"the server never ran experiment {experiment}")


def _simulate(endpoint: str, seed: int, log: Path) -> dict:
    result = json.loads(_cli(
        "simulate", "--endpoint", endpoint, "--units", "300", "--requests", "1200",
        "--seed", str(seed), "--world-seed", WORLD_SEED, "--json",
    ))  # fmt: skip
    # Sticky: every exposure of a unit in this run carries one variant.
    variants: dict[str, set[str]] = defaultdict(set)
    for record in read_records(log):
        if result["started"] <= record["time"] < result["finished"]:
            variants[record["unit"]].add(record["role"])
    mixed = {u: v for u, v in variants.items() if len(v) > 1}
    assert len(variants) > 250 and not mixed, (len(variants), list(mixed.items())[:5])
    return result


def _window(result: dict) -> list[str]:
    # A lenient latency guardrail: a loaded test machine must not decide the outcome.
    return ["--since", str(result["started"]), "--until", str(result["finished"]),
            "--max-p99-ratio", "100"]  # fmt: skip


def test_better_models_win_worse_ones_are_stopped_and_a_a_stays_level(
    trained, shuffled_model, tmp_path
):
    repository = tmp_path / "models"
    evaluation = {"metrics": {}, "gate": {"promote": True, "reasons": []}}
    for run, model in (("shuffled", shuffled_model), ("good", trained.model_dir),
                       ("twin", trained.model_dir)):  # fmt: skip
        register_local(model, repository, "ranking", evaluation=evaluation, stats_path=None,
                       run_id=run)  # fmt: skip
    deploy_version(repository, "ranking", 1, "shuffled")
    registry_path = repository / "registry.db"
    registry = SQLiteRegistry(registry_path)
    registry.start_canary("ranking", 2, 50, actor="test")
    log = repository / "requests.jsonl"
    common = ["--log", str(log), "--registry", str(registry_path)]
    with serving("", "--registry", str(registry_path)) as server:
        endpoint = server["http"]

        # 1. The model that learned the world beats shuffled labels, and decide promotes it.
        _wait_for_experiment(endpoint, log, "ranking:1:2")
        first = _simulate(endpoint, 1, log)
        truth = first["versions"]
        assert truth["2"]["expected_click_rate"] > truth["1"]["expected_click_rate"] + 0.05
        report = json.loads(_cli("experiment", "report", "--log", str(log), "--json",
                                 *_window(first)))  # fmt: skip
        candidate = report["variants"]["candidate"]
        # The measured rate estimates the planted truth (within 3.3 standard errors: a 95%
        # interval would miss it in one run of twenty by design).
        assert abs(candidate["rate"] - truth["2"]["expected_click_rate"]) < 3.3 * candidate["se"]
        assert report["lift"]["p_value"] < 0.01 and not report["srm"]["mismatch"]
        assert report["feedback"]["matched"] == first["clicks"]
        out = _cli("experiment", "decide", *common, *_window(first))
        assert "version 2 is production now" in out, out
        assert registry.traffic("ranking").production == 2
        assert (
            "experiment decide: promote"
            in registry.alias_history("ranking", "production")[-1]["reason"]
        )

        # 2. Shuffled labels as the canary lose, and decide stops the canary.
        registry.start_canary("ranking", 1, 50, actor="test")
        _wait_for_experiment(endpoint, log, "ranking:2:1")
        second = _simulate(endpoint, 2, log)
        out = _cli("experiment", "decide", *common, *_window(second))
        assert "canary of version 1 stopped" in out and "significant loss" in out, out
        traffic = registry.traffic("ranking")
        assert (traffic.production, traffic.candidate) == (2, None)

        # 3. A/A: an identical model as the canary; no significant difference, keep collecting.
        # At alpha 0.05 an A/A is declared significant in 5% of runs by design (the unit tests
        # and `make bench-experiment` measure that rate); here alpha 0.001, so that a run of this
        # test fails by chance once in a thousand, not once in twenty.
        strict = ["--alpha", "0.001"]
        registry.start_canary("ranking", 3, 50, actor="test")
        _wait_for_experiment(endpoint, log, "ranking:2:3")
        third = _simulate(endpoint, 3, log)
        report = json.loads(_cli("experiment", "report", "--log", str(log), "--json",
                                 *_window(third), *strict))  # fmt: skip
        assert report["experiment"] == "ranking:2:3"
        assert report["lift"]["p_value"] > 0.001
        out = _cli("experiment", "decide", *common, *_window(third), *strict)
        assert "continue: version 3 keeps 50%" in out, out
        assert registry.traffic("ranking").candidate == 3

    text = _cli("experiment", "report", "--log", str(log), *_window(third), *strict)
    assert "decision: CONTINUE: not significant yet" in text, text
    # Every look is in the registry's history, with its numbers, for a user to read.
    shown = json.loads(_cli("models", "show", "ranking", "--registry", str(registry_path)))
    reasons = [event["reason"] for event in shown["candidate_history"]]
    looks = [re.search(r"experiment decide: (\w+)", r) for r in reasons]
    assert [m.group(1) for m in looks if m] == ["promote", "rollback", "continue"]
    assert "lift" in reasons[-1] and "p=" in reasons[-1]


def test_on_a_cluster_the_server_follows_the_model_registry_and_the_object_store(
    trained, minio, tmp_path
):
    """What the `kind-experiment` overlay runs: `skewless serve --registry <Model Registry URL>`
    with artifacts in KFP's object store. Here the Model Registry is its REST stand-in and the
    store a real S3 server on loopback; the server downloads and verifies both versions, keeps
    each user on one of them, and writes exposures and feedback to the log it is given."""
    from model_registry_standin import model_registry_standin
    from support import post

    from skewless.registry.kubeflow import KubeflowRegistry

    uri = minio.upload(Path(trained.model_dir), f"experiment/{tmp_path.name}/model")
    log = tmp_path / "logs" / "requests.jsonl"
    with model_registry_standin() as url:
        registry = KubeflowRegistry(url)
        for run in ("a", "b"):
            registry.register("ranking", trained.model_dir, artifact_uri=uri, metrics={},
                              gate={"promote": True}, spec_sha256="", stats_sha256="",
                              code_version="t", run_id=run)  # fmt: skip
        registry.set_alias("ranking", "production", 1, actor="test", reason="")
        registry.start_canary("ranking", 2, 50, actor="test")
        with serving("", "--registry", url, "--request-log", str(log)) as server:
            predict = f"{server['http']}/v1/models/ranking:predict"
            seen: dict[str, set[str]] = defaultdict(set)
            for user in range(30):
                for _ in range(2):
                    row = {**example(), "user_id": f"u{user:06d}"}
                    status, _, headers = post(predict, {"instances": [row]})
                    assert status == 200
                    seen[row["user_id"]].add(headers["x-model-version"])
            status, body, _ = post(
                f"{server['http']}/v1/feedback",
                [{"request_id": headers["x-request-id"], "outcome": "click"}],
            )
            assert (status, body) == (200, {"accepted": 1})
    assert all(len(versions) == 1 for versions in seen.values())
    assert {v for versions in seen.values() for v in versions} == {"1", "2"}
    exposures = [r for r in read_records(log) if r["status"] == 200]
    assert len(exposures) == 60 and {r["experiment"] for r in exposures} == {"ranking:1:2"}
    assert [r["request_id"] for r in read_records(log.with_name("feedback.jsonl"))] == [
        headers["x-request-id"]
    ]
