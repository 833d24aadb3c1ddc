"""The pipeline definition: compiled YAML is current; settings travel as whole typed configs."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import yaml
from kfp.components import load_component_from_file

from skewless.config import from_overrides
from skewless.evaluation.evaluate import GateConfig
from skewless.image import IMAGE
from skewless.model.hparams import HParams
from skewless.pipelines.ranking import COMPILED_PATH, compile_pipeline, ranking_pipeline


def test_committed_yaml_equals_a_fresh_compile(tmp_path: Path):
    fresh = compile_pipeline(tmp_path / "pipeline.yaml")
    fresh_documents = list(yaml.safe_load_all(fresh.read_text()))
    assert fresh_documents == list(yaml.safe_load_all(COMPILED_PATH.read_text())), (
        "pipelines/ranking_pipeline.yaml is stale: run `make compile` and commit it"
    )


def test_compiled_yaml_loads_with_the_kfp_sdk_and_uses_our_image():
    component = load_component_from_file(str(COMPILED_PATH))
    assert component.name == "skewless-ranking"
    spec, _platform = yaml.safe_load_all(COMPILED_PATH.read_text())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {IMAGE}
    commands = [
        " ".join(e["container"]["command"]) for e in spec["deploymentSpec"]["executors"].values()
    ]
    assert not any("pip install" in c for c in commands)


def test_hyperparameters_and_gate_travel_whole_and_are_rebuilt_with_their_defaults():
    parameters = inspect.signature(ranking_pipeline.pipeline_func).parameters
    # One dict per tier, holding only overrides: no hyperparameter is spelled in the pipeline.
    assert parameters["hparams"].default == {} and parameters["gate"].default == {}
    for config in (HParams(), GateConfig()):
        assert not {f.name for f in dataclasses.fields(config)} & set(parameters)
    assert from_overrides(HParams, {}, "hparams") == HParams()
    assert from_overrides(HParams, {"epochs": 5.0, "dropout": 0}, "hparams") == HParams(
        epochs=5, dropout=0.0
    )  # JSON does not keep 5 and 5.0 apart
    assert from_overrides(GateConfig, {"min_auc": "0.7"}, "gate").min_auc == 0.7
    for overrides, message in (
        ({"epoch": 5}, "hparams: unknown setting 'epoch'; known: ['batch_size'"),
        ({"epochs": 2.5}, "hparams.epochs: expected int, got 2.5"),
        ({"epochs": True}, "hparams.epochs: expected int, got True"),
        ({"epochs": 0}, "hparams.epochs must be at least 1, got 0"),
        ({"l2": "nan"}, "hparams.l2: expected a finite number, got nan"),
        ({"l2": float("inf")}, "hparams.l2: expected a finite number, got inf"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            from_overrides(HParams, overrides, "hparams")


def test_exactly_the_steps_that_read_the_object_store_get_kfps_credentials():
    _spec, platform = yaml.safe_load_all(COMPILED_PATH.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert sorted(executors) == ["exec-deploy", "exec-evaluate", "exec-ingest", "exec-materialize"]
    for name, config in executors.items():
        assert list(config) == ["secretAsEnv"], name
        (secret,) = config["secretAsEnv"]
        assert secret["secretName"] == "mlpipeline-minio-artifact"
        assert secret["optional"] is False
        assert {(k["secretKey"], k["envVar"]) for k in secret["keyToEnv"]} == {
            ("accesskey", "AWS_ACCESS_KEY_ID"),
            ("secretkey", "AWS_SECRET_ACCESS_KEY"),
        }
