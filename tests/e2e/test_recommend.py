"""The two-stage endpoint over real HTTP: retrieve with the index, rank with the ranker, best k.

The expected answer is computed in this process from the same exported model (the retrieval
artifact's :class:`Retriever` and the ranker's SavedModel signature), so the test checks that the
server's items are exactly the ranker's top k of the retrieved candidates, in V1 and V2, and that
a canary moves both stages at once.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import example, post, serving

QUERY_FIELDS = ("user_id", "age", "country", "device", "history", "hour", "weekday")


def _query(**overrides: Any) -> dict[str, Any]:
    row = {name: value for name, value in example().items() if name in QUERY_FIELDS}
    return {**row, **overrides}


def expected(model_dir: str | Path, queries: list[dict[str, Any]], k: int, candidates: int):
    """Items and probabilities the two stages give in this process."""
    import tensorflow as tf

    from skewless.retrieval.retriever import Retriever

    retriever = Retriever(model_dir)
    signature = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    columns = {
        name: np.array([q[name] for q in queries], dtype=np.float32 if name in ("age", "hour")
                       else object)
        for name in QUERY_FIELDS
    }  # fmt: skip
    rows, _ = retriever.retrieve(columns, candidates)
    answers = []
    for index, found in enumerate(rows):
        items = retriever.catalogue.iloc[found]
        raw = {
            name: tf.constant(np.repeat(columns[name][index : index + 1], len(found)))
            if name in columns else tf.constant(items[name].to_numpy())
            for name in signature.structured_input_signature[1]
        }  # fmt: skip
        probability = signature(**raw)["probability"].numpy()
        best = np.argsort(-probability, kind="stable")[:k]
        answers.append((list(items[retriever.item_key].to_numpy()[best]), probability[best]))
    return answers


@pytest.fixture(scope="module")
def server(trained):
    with serving(trained.model_dir) as addresses:
        yield addresses


def test_recommend_answers_the_rankers_top_k_of_the_retrieved_candidates(server, trained):
    queries = [_query(), _query(user_id="u000007", history="", hour=3, device="desktop")]
    status, body, headers = post(f"{server['http']}/v1/models/recommend:predict",
                                 {"instances": queries, "k": 5, "candidates": 40})  # fmt: skip
    assert status == 200, body
    assert headers["x-model-version"]
    want = expected(trained.model_dir, queries, 5, 40)
    assert len(body["predictions"]) == 2
    for answer, (items, probability) in zip(body["predictions"], want, strict=True):
        assert answer["items"] == items
        np.testing.assert_allclose(answer["scores"], probability, rtol=1e-5, atol=1e-6)
        assert answer["scores"] == sorted(answer["scores"], reverse=True)
        assert len(answer["retrieval_scores"]) == 5


def test_recommend_over_v2_gives_the_same_items(server, trained):
    query = _query()
    inputs = [
        {"name": name, "shape": [1], "datatype": "FP32" if name in ("age", "hour") else "BYTES",
         "data": [query[name]]}
        for name in QUERY_FIELDS
    ]  # fmt: skip
    request = {"inputs": inputs, "parameters": {"k": 3, "candidates": 30}}
    status, body, _ = post(f"{server['http']}/v2/models/recommend/infer", request)
    assert status == 200, body
    outputs = {output["name"]: output for output in body["outputs"]}
    assert outputs["items"]["shape"] == [1, 3]
    ((items, probability),) = expected(trained.model_dir, [query], 3, 30)
    assert outputs["items"]["data"] == items
    np.testing.assert_allclose(outputs["scores"]["data"], probability, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"instances": [_query()], "k": 0}, "k must be an integer from 1"),
        ({"instances": [_query()], "k": 50, "candidates": 10}, "k must be an integer from 1 to 10"),
        ({"instances": [_query()], "candidates": 10**6}, "candidates must be an integer"),
        ({"instances": [{**_query(), "price": 3.0}]}, "unknown field 'price'"),
        ({"instances": [_query(age="old")]}, "instances[0].age"),
        ({"instances": [_query()], "topk": 3}, "unknown top-level field 'topk'"),
        ({"inputs": {}}, "unknown top-level field 'inputs'"),
    ],
)
def test_bad_recommend_requests_are_400s_naming_the_problem(server, body, message):
    status, answer, _ = post(f"{server['http']}/v1/models/recommend:predict", body)
    assert status == 400 and message in answer["error"], answer


def test_a_canary_moves_retrieval_and_ranking_together(trained, shuffled_model, tmp_path):
    from skewless.registry.sqlite import SQLiteRegistry
    from skewless.rollout.deploy import deploy_version, register_local

    repository = tmp_path / "models"
    evaluation = {"metrics": {}, "gate": {"promote": True, "reasons": []}}
    register_local(trained.model_dir, repository, "ranking", evaluation=evaluation,
                   stats_path=None, run_id="r1")  # fmt: skip
    second = register_local(shuffled_model, repository, "ranking", evaluation=evaluation,
                            stats_path=None, run_id="r2")  # fmt: skip
    deploy_version(repository, "ranking", 1, "r1")
    registry = SQLiteRegistry(repository / "registry.db")
    query = _query()
    want = {
        "1": expected(trained.model_dir, [query], 10, 100)[0][0],
        "2": expected(shuffled_model, [query], 10, 100)[0][0],
    }
    assert want["1"] != want["2"]  # two different models, so the test can tell them apart
    with serving("", "--registry", str(repository / "registry.db")) as server:
        url = f"{server['http']}/v1/models/recommend:predict"
        body = {"instances": [query], "k": 10, "candidates": 100}
        status, answer, headers = post(url, body)
        assert (status, headers["x-model-version"]) == (200, "1")
        assert answer["predictions"][0]["items"] == want["1"]
        registry.start_canary("ranking", second["version"], 100, actor="test")
        deadline = time.monotonic() + 600  # a hang guard: the watcher polls every second
        while headers["x-model-version"] == "1" and time.monotonic() < deadline:
            time.sleep(0.2)
            status, answer, headers = post(url, body)
        assert (status, headers["x-model-version"]) == (200, "2")
        assert answer["predictions"][0]["items"] == want["2"]


def test_the_simulator_plays_the_two_stage_path(trained, tmp_path):
    from support import SKEWLESS

    from skewless.experiments.logs import feedback_path, read_records

    log = tmp_path / "requests.jsonl"
    with serving(trained.model_dir, "--request-log", str(log)) as server:
        completed = subprocess.run(
            [*SKEWLESS, "simulate", "--endpoint", server["http"], "--units", "15", "--requests",
             "30", "--seed", "3", "--candidates", "50", "--recommend", "--json"],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout)
    assert result["requests"] == 30
    (group,) = result["versions"].values()
    assert group["requests"] == 30 and 0 < group["expected_click_rate"] < 1
    exposures = [r for r in read_records(log, what="exposure") if r.get("status") == 200]
    assert len(exposures) == 30 and all(len(r["items"]) == 1 for r in exposures)
    # Each click came back as feedback on the request id of a recommend answer.
    clicks = list(read_records(feedback_path(log), what="feedback")) if result["clicks"] else []
    assert len(clicks) == result["clicks"]
    assert {c["request_id"] for c in clicks} <= {r["request_id"] for r in exposures}


def test_the_endpoints_name_is_reserved(trained):
    from support import SKEWLESS

    completed = subprocess.run(
        [*SKEWLESS, "serve", "--model", trained.model_dir, "--name", "recommend"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode != 0
    assert "reserved for the two-stage endpoint" in completed.stderr
    assert "Traceback" not in completed.stderr
