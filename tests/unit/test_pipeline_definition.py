"""The pipeline definition: compiled YAML is current, and parameters mirror the dataclasses."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import yaml
from kfp.components import load_component_from_file

from skewless.evaluation.evaluate import GateConfig
from skewless.image import IMAGE
from skewless.model.train import HParams
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


def test_pipeline_parameters_mirror_hparams_and_gate_config():
    parameters = inspect.signature(ranking_pipeline.pipeline_func).parameters
    for config in (HParams(), GateConfig()):
        for field in dataclasses.fields(config):
            assert field.name in parameters, f"pipeline lacks parameter {field.name}"
            assert parameters[field.name].default == getattr(config, field.name), field.name
            assert parameters[field.name].annotation is type(getattr(config, field.name))


def test_exactly_the_steps_that_read_the_object_store_get_kfps_credentials():
    _spec, platform = yaml.safe_load_all(COMPILED_PATH.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert sorted(executors) == ["exec-deploy", "exec-evaluate", "exec-ingest"]
    for name, config in executors.items():
        assert list(config) == ["secretAsEnv"], name
        (secret,) = config["secretAsEnv"]
        assert secret["secretName"] == "mlpipeline-minio-artifact"
        assert secret["optional"] is False
        assert {(k["secretKey"], k["envVar"]) for k in secret["keyToEnv"]} == {
            ("accesskey", "AWS_ACCESS_KEY_ID"),
            ("secretkey", "AWS_SECRET_ACCESS_KEY"),
        }
