"""Each KFP component through the real local runner (kfp.local.SubprocessRunner) on tiny data.

kfp.local cannot hand an artifact to a bare component call, so the components run as the real
pipeline function (the one `skewless run` and a cluster run), with tiny hyperparameters and a
lenient gate; each test then checks one task's outputs as the runner recorded them (files plus
``executor_output.json``). No ``from __future__ import annotations``:
KFP reads the test pipeline's annotations as live types.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from kfp import local
from redis_server import redis_server

from skewless.data.generate import write_dataset
from skewless.pipelines.ranking import PIPELINE_NAME, ranking_pipeline

# Settings small enough for a test; everything else is the pipeline's default.
TINY_HPARAMS = {"epochs": 1, "batch_size": 256, "cross_layers": 1, "deep_layers": 1,
                "deep_width": 32, "dropout": 0.0, "l2": 0.0, "patience": 1}  # fmt: skip
LENIENT_GATE = {"min_auc": 0.0, "max_log_loss": 10.0, "max_calibration_error": 1.0,
                "min_recall_lift": 0.0}  # fmt: skip
REMOTE_REPO = "minio://mlpipeline/components/feature_repo"  # as `skewless submit` passes one


class Task:
    """One task's recorded outputs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.executor_output = json.loads((folder / "executor_output.json").read_text())

    def path(self, name: str) -> Path:
        return self.folder / name

    def metadata(self, name: str) -> dict[str, Any]:
        return self.executor_output["artifacts"][name]["artifacts"][0]["metadata"]

    def parameter(self, name: str) -> Any:
        return self.executor_output["parameterValues"][name]


def _run_chain(
    pipeline_root: Path, data_uri: str, model_repository: Path, feature_repo: str,
    online_store: str = "",
) -> dict[str, Task]:  # fmt: skip
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    ranking_pipeline(data_uri=data_uri, model_repository=str(model_repository),
                     hparams=TINY_HPARAMS, gate=LENIENT_GATE, feature_repo=feature_repo,
                     feature_online_store=online_store)  # fmt: skip
    (run_dir,) = pipeline_root.iterdir()
    return {p.name: Task(p) for p in run_dir.iterdir() if p.is_dir()}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, _object_store_server) -> Iterator[dict[str, Any]]:
    """The chain twice into one repository: from a local file, then as on a cluster (data and
    feature repository in the object store, the online store a Redis)."""
    root = tmp_path_factory.mktemp("kfp")
    data = write_dataset(2_000, 4, root / "raw.parquet", show_progress=False)
    tasks = _run_chain(root / "runs", str(data), root / "models", str(root / "feature_repo"))
    # The second run's steps see the object store as cluster steps do (they inherit this
    # environment).
    with pytest.MonkeyPatch.context() as env, redis_server() as redis:
        for name, value in _object_store_server.environment().items():
            env.setenv(name, value)
        uri = _object_store_server.upload(data, "data/components/raw.parquet")
        second = _run_chain(root / "runs-2", uri, root / "models", REMOTE_REPO, redis.url)
        yield {"tasks": tasks, "second": second, "root": root, "data_uri": uri, "redis": redis}


def test_every_component_ran(run):
    assert set(run["tasks"]) == {
        "ingest", "materialize", "transform", "train", "evaluate", "register", "deploy"
    }  # fmt: skip


def test_materialize_component(run):
    task = run["tasks"]["materialize"]
    metrics = task.metadata("feature_metrics")
    assert metrics["materialized"] == 1
    mismatches = {k: v for k, v in metrics.items() if k.startswith("mismatch_")}
    assert set(mismatches) == {f"mismatch_{n}" for n in
                               ("age", "country", "device", "history", "title", "item_tags",
                                "price")}  # fmt: skip
    assert set(mismatches.values()) == {0.0}
    summary = json.loads(task.path("feature_summary").read_text())
    # What the deploy step serves by id from: the repository written.
    assert task.parameter("Output") == summary["repository"]
    # Each clean row observes its user and its item; the tables keep each entity's first
    # observation and each change (an item's values never change in the generated data).
    clean = run["tasks"]["ingest"].metadata("ingest_metrics")["rows_clean"]
    users, items = summary["views"]["user_features"], summary["views"]["item_features"]
    assert users["entities"] < users["rows"] <= clean
    assert items["rows"] == items["entities"] < clean
    assert (Path(summary["repository"]) / "feature_store.yaml").is_file()


def test_materialize_component_on_a_cluster_writes_the_object_store_and_redis(run, minio):
    from skewless.features.online import OnlineFeatures

    summary = json.loads(run["second"]["materialize"].path("feature_summary").read_text())
    assert summary["repository"] == REMOTE_REPO and summary["online_store"] == run["redis"].url
    assert run["second"]["materialize"].parameter("Output") == REMOTE_REPO
    assert set(summary["point_in_time_mismatch"].values()) == {0.0}
    online = OnlineFeatures(REMOTE_REPO)
    view = next(v for v in online.views if v.side == "user")
    users = pd.read_parquet(run["root"] / "raw.parquet", columns=["user_id"])["user_id"]
    values, found = online.lookup(view, list(users.unique()[:50]))
    assert found.all() and all(isinstance(h, str) for h in values["history"])


def test_ingest_component(run):
    task = run["tasks"]["ingest"]
    assert task.metadata("ingest_metrics")["rows_in"] == 2_000
    assert task.metadata("ingest_metrics")["rows_quarantined"] == 0
    assert {p.name for p in task.path("ingested").iterdir()} >= {
        "train.parquet", "eval.parquet", "quarantine.parquet", "stats.json", "ingest_summary.json"
    }  # fmt: skip


def test_transform_component(run):
    task = run["tasks"]["transform"]
    assert (task.path("transform_graph") / "transform_fn" / "saved_model.pb").is_file()
    assert (task.path("transform_graph") / "transformed_metadata").is_dir()
    assert task.metadata("transform_metrics")["seconds"] > 0


def test_train_component(run):
    task = run["tasks"]["train"]
    assert (task.path("model") / "saved_model.pb").is_file()
    assert task.metadata("model")["signatures"] == ["serving_default", "serve_tf_examples"]
    assert any(task.path("tensorboard").rglob("events.out.tfevents.*"))
    assert (task.path("tensorboard") / "training_summary.json").is_file()
    # The transformed chunks lived in a scratch folder inside the artifact for the step only.
    assert not any(task.path("tensorboard").glob(".transformed-*"))
    assert {p.name for p in task.path("tensorboard").iterdir()} == {"logs", "training_summary.json"}
    metrics = task.metadata("train_metrics")
    assert 0.0 < metrics["eval_auc"] <= 1.0 and metrics["epochs_run"] == 1


def test_evaluate_component(run):
    task = run["tasks"]["evaluate"]
    assert task.parameter("Output") is True  # every floor was set to pass
    metrics = task.metadata("eval_metrics")
    assert {"auc", "pr_auc", "log_loss", "calibration_error", "accuracy", "bayes_optimal_auc",
            "baseline_auc"} <= set(metrics)  # fmt: skip
    assert metrics["baseline_auc"] == run["tasks"]["train"].metadata("train_metrics")[
        "baseline_eval_auc"]  # fmt: skip
    classification = task.metadata("classification")
    assert len(classification["confidenceMetrics"]) == 50
    assert classification["confusionMatrix"]["annotationSpecs"] == [
        {"displayName": "0"}, {"displayName": "1"}
    ]  # fmt: skip
    assert "<h1>Evaluation: PROMOTE</h1>" in task.path("report").read_text()
    assert json.loads(task.path("evaluation").read_text())["gate"]["promote"] is True
    assert task.metadata("evaluation")["compared_with_version"] == 0  # nothing served yet


def test_ingest_component_reads_data_from_the_object_store(run):
    first, second = run["tasks"]["ingest"], run["second"]["ingest"]
    assert json.loads((second.path("ingested") / "ingest_summary.json").read_text())[
        "data"] == run["data_uri"]  # fmt: skip
    for key in ("rows_in", "rows_quarantined", "rows_train", "rows_eval"):
        assert second.metadata("ingest_metrics")[key] == first.metadata("ingest_metrics")[key]


def test_evaluate_component_finds_the_production_model_in_the_registry_itself(run):
    # The first run made version 1 production; the second run's evaluate step looked it up.
    task = run["second"]["evaluate"]
    assert task.metadata("evaluation")["compared_with_version"] == 1
    evaluation = json.loads(task.path("evaluation").read_text())
    assert set(evaluation["production_metrics"]) >= {"auc", "log_loss"}
    (gain,) = [c for c in evaluation["gate"]["checks"] if "production_auc" in c["check"]]
    assert gain["value"] == pytest.approx(
        evaluation["metrics"]["auc"] - evaluation["production_metrics"]["auc"]
    )


def test_deploy_component(run):
    from skewless.rollout.deploy import production_model, registry_for

    assert run["tasks"]["register"].parameter("Output") == 1
    deployed = json.loads(run["tasks"]["deploy"].parameter("Output"))
    # Nothing served before, so the canary share does not apply: the version goes to production.
    assert (deployed["role"], deployed["version"], deployed["canary_percent"]) == (
        "production",
        1,
        0,
    )
    version_dir = Path(deployed["artifact"])
    assert version_dir == (run["root"] / "models" / "ranking" / "1").resolve()
    assert (version_dir / "saved_model.pb").is_file()
    registry = registry_for(run["root"] / "models")
    production = registry.get("ranking", "production")
    assert production.version == 1 and production.aliases == ("production",)
    assert production.run_id.startswith(PIPELINE_NAME)
    assert "auc" in production.metrics and production.gate["promote"] is True
    assert len(production.spec_sha256) == 64 and len(production.stats_sha256) == 64
    assert production_model(run["root"] / "models", "ranking") == version_dir
