"""``skewless submit``: the real kfp client, over real HTTP, to a stand-in of the KFP API server.

(tests/kfp_api_standin.py; the real server needs a cluster.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp_api_standin import kfp_api_standin

from skewless.cli import (
    IN_CLUSTER_FEATURE_REPO,
    IN_CLUSTER_ONLINE_STORE,
    IN_CLUSTER_REGISTRY,
    main,
)


def _platform(body: dict) -> dict:
    return body["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]


def test_a_run_is_submitted_with_typed_parameters_and_the_credentials_mapping(capsys):
    with kfp_api_standin() as api:
        code = main([
            "submit", "--host", api.url,
            "--data-uri", "minio://mlpipeline/data/interactions.parquet",
            "--param", "canary_percent=20", "--param", "deploy_target=kserve",
            "--param", "min_auc_gain=0.005", "--param", "epochs=3",
        ])  # fmt: skip
    assert code == 0
    (run,) = api.runs
    last_line = capsys.readouterr().out.splitlines()[-1]
    assert last_line.startswith(f"submitted run {run['run_id']} (skewless-ranking-")
    (experiment,) = api.experiments
    assert experiment["display_name"] == "skewless"
    assert run["experiment_id"] == experiment["experiment_id"]
    assert run["runtime_config"]["parameters"] == {
        "data_uri": "minio://mlpipeline/data/interactions.parquet",
        "registry": IN_CLUSTER_REGISTRY,
        # The feature store as every pod reaches it (manifests/base/feature-store.yaml).
        "feature_repo": IN_CLUSTER_FEATURE_REPO,
        "feature_online_store": IN_CLUSTER_ONLINE_STORE,
        "canary_percent": 20,
        "deploy_target": "kserve",
        # Hyperparameters and gate thresholds travel as one dict each (KFP struct parameters).
        "gate": {"min_auc_gain": 0.005},
        "hparams": {"epochs": 3},
    }
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "skewless-ranking"
    executors = _platform(run)["deploymentSpec"]["executors"]
    assert executors["exec-ingest"]["secretAsEnv"][0]["secretName"] == "mlpipeline-minio-artifact"


def test_a_schedule_makes_one_recurring_run_at_a_time_without_catch_up(capsys):
    with kfp_api_standin() as api:
        code = main([
            "submit", "--host", api.url, "--data-uri", "minio://mlpipeline/d.csv",
            "--registry", "http://registry.example:8080", "--schedule", "0 3 * * *",
        ])  # fmt: skip
        # Submitting again reuses the experiment rather than making a second one.
        assert main(["submit", "--host", api.url, "--data-uri", "minio://mlpipeline/d.csv"]) == 0
    assert code == 0
    (recurring,) = api.recurring_runs
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert int(recurring["max_concurrency"]) == 1
    assert recurring["no_catchup"] is True and recurring["mode"] == "ENABLE"
    assert recurring["runtime_config"]["parameters"]["registry"] == "http://registry.example:8080"
    assert len(api.experiments) == 1 and len(api.runs) == 1
    assert "created recurring run rr-" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--param", "epochs"], "--param 'epochs': expected NAME=VALUE"),
        (["--param", "epoch=3"], "--param 'epoch': unknown parameter"),
        (["--param", "epochs=three"], "--param epochs: expected int, got 'three'"),
        (["--param", "epochs=0"], "--param: hparams.epochs must be at least 1, got 0"),
        (["--param", "hparams={}"], "--param 'hparams': unknown parameter"),
        (["--param", "registry=http://x"], "--param 'registry': unknown parameter"),
        (["--schedule", "0 3 * *"], "--schedule '0 3 * *': expected a cron expression"),
        (["--spec", "nope.yaml"], "nope.yaml"),
    ],
)
def test_bad_flags_fail_before_anything_is_sent(argv: list[str], message: str, capsys):
    with kfp_api_standin() as api:
        assert main(["submit", "--host", api.url, "--data-uri", "minio://b/d.csv", *argv]) == 1
    assert message in capsys.readouterr().err
    assert not api.runs and not api.recurring_runs and not api.experiments


def test_an_unreachable_kfp_is_one_clear_line(capsys, tmp_path: Path):
    assert main(["submit", "--host", "http://127.0.0.1:9", "--data-uri", "minio://b/d.csv"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("skewless submit: error: submitting to KFP at http://127.0.0.1:9")
    assert err.count("\n") == 1


def test_a_local_data_path_is_refused_with_how_to_upload_it(capsys):
    with kfp_api_standin() as api:
        assert main(["submit", "--host", api.url, "--data-uri", "data/interactions.csv"]) == 1
    err = capsys.readouterr().err
    assert "--data-uri 'data/interactions.csv': the cluster's steps cannot read" in err
    assert "skewless upload" in err and not api.runs


def test_upload_puts_a_file_where_the_cluster_steps_read_it(minio, tmp_path: Path, capsys):
    from skewless.data import storage

    local = tmp_path / "interactions.csv"
    local.write_bytes(b"user_id,clicked\nu1,1\n" * 1000)
    uri = "minio://mlpipeline/data/interactions.csv"
    assert main(["upload", str(local), uri]) == 0
    assert capsys.readouterr().out == f"uploaded {local.stat().st_size:,} bytes to {uri}\n"
    assert b"".join(storage.read_blocks(uri)) == local.read_bytes()
    assert main(["upload", str(tmp_path / "none.csv"), uri]) == 1
    assert "file not found" in capsys.readouterr().err
    assert main(["upload", str(local), "elsewhere.csv"]) == 1
    assert "expected an object-store URI" in capsys.readouterr().err


def test_the_documented_overrides_reach_the_run(capsys):
    """docs/cluster.md: `--param kserve_runtime=tf-serving`, and `--param feature_repo=` to skip
    the feature store."""
    with kfp_api_standin() as api:
        code = main([
            "submit", "--host", api.url,
            "--data-uri", "minio://mlpipeline/data/interactions.parquet",
            "--param", "kserve_runtime=tf-serving", "--param", "feature_repo=",
        ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (run,) = api.runs
    parameters = run["runtime_config"]["parameters"]
    assert parameters["kserve_runtime"] == "tf-serving"
    assert parameters["feature_repo"] == ""
    assert parameters["feature_online_store"] == IN_CLUSTER_ONLINE_STORE
