"""The cluster deploy logic: which InferenceService gets which change, and how failure reads.

No Kubernetes API server runs here, so ``_Cluster`` stands in for one: it stores objects, applies
JSON merge patches as the API server does (None deletes a field), bumps ``metadata.generation`` on
every change and lets the test set the controller's status. The objects themselves are validated
against KServe's schema in test_manifests.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from skewless.rollout.kserve import (
    ClusterDeployError,
    deploy_role,
    inference_service,
    storage_uri,
    wait_ready,
)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            _merge(target.setdefault(key, {}), value)
        else:
            target[key] = value


class _Cluster:
    def __init__(self, ready: bool = True) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.ready = ready
        self.calls: list[str] = []

    def _status(self, obj: dict[str, Any]) -> None:
        generation = obj["metadata"]["generation"]
        condition = {"type": "Ready", "status": "True" if self.ready else "False",
                     "reason": "" if self.ready else "RevisionMissing",
                     "message": "" if self.ready else "image pull failed"}  # fmt: skip
        obj["status"] = {"observedGeneration": generation, "conditions": [condition]}

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        from kubernetes.client.exceptions import ApiException

        if name not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.objects[name])

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.calls.append(f"create {body['metadata']['name']}")
        obj = copy.deepcopy(body)
        obj["metadata"]["generation"] = 1
        self._status(obj)
        self.objects[obj["metadata"]["name"]] = obj

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.calls.append(f"patch {name}")
        obj = self.objects[name]
        _merge(obj, body)
        obj["metadata"]["generation"] += 1
        self._status(obj)


def test_storage_uri_reads_kfp_minio_artifacts_through_s3():
    assert storage_uri("minio://mlpipeline/v2/artifacts/p/r/train/model") == (
        "s3://mlpipeline/v2/artifacts/p/r/train/model"
    )
    assert storage_uri("gs://bucket/model") == "gs://bucket/model"
    with pytest.raises(ClusterDeployError, match="is a local path"):
        storage_uri("/tmp/model")


def test_knative_canary_then_promotion_patches_one_inference_service():
    cluster = _Cluster()
    args = {"namespace": "kubeflow", "mode": "Knative", "api": cluster, "timeout_seconds": 5}
    deploy_role("ranking", uri="s3://b/1", version="1", role="production", canary_percent=0, **args)
    # As the registry records a KFP artifact; the InferenceService reads it through S3.
    deploy_role("ranking", uri="minio://b/2", version="2", role="canary", canary_percent=10, **args)
    predictor = cluster.objects["ranking"]["spec"]["predictor"]
    assert (
        predictor["canaryTrafficPercent"] == 10 and predictor["model"]["storageUri"] == "s3://b/2"
    )
    deploy_role("ranking", uri="s3://b/2", version="2", role="production", canary_percent=0, **args)
    predictor = cluster.objects["ranking"]["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor  # rolled out fully
    assert cluster.calls == ["create ranking", "patch ranking", "patch ranking"]
    assert (
        cluster.objects["ranking"]["metadata"]["annotations"]["skewless.dev/model-version"] == "2"
    )


def test_standard_mode_canary_is_a_separate_inference_service():
    cluster = _Cluster()
    args = {"namespace": "kubeflow", "mode": "Standard", "api": cluster, "timeout_seconds": 5}
    deploy_role("ranking", uri="s3://b/1", version="1", role="production", canary_percent=0, **args)
    served = deploy_role("ranking", uri="s3://b/2", version="2", role="canary", canary_percent=10,
                         **args)  # fmt: skip
    assert served == "ranking-candidate"
    assert cluster.objects["ranking"]["spec"]["predictor"]["model"]["storageUri"] == "s3://b/1"
    candidate = cluster.objects["ranking-candidate"]["spec"]["predictor"]
    assert (
        candidate["model"]["storageUri"] == "s3://b/2" and "canaryTrafficPercent" not in candidate
    )
    with pytest.raises(ClusterDeployError, match="only in Knative mode"):
        inference_service("ranking", "kubeflow", "s3://b/1", mode="Standard", canary_percent=10)


def test_not_ready_in_time_fails_with_the_conditions():
    cluster = _Cluster(ready=False)
    with pytest.raises(ClusterDeployError) as failure:
        deploy_role("ranking", "kubeflow", "s3://b/1", version="1", role="production",
                    canary_percent=0, mode="Standard", api=cluster, timeout_seconds=0)  # fmt: skip
    message = str(failure.value)
    assert "InferenceService kubeflow/ranking not Ready after 0 s" in message
    assert "Ready=False RevisionMissing: image pull failed" in message
    assert "kubectl describe inferenceservice ranking -n kubeflow" in message
    # A stale Ready (from the previous generation) is not taken for the new one.
    cluster.objects["ranking"]["status"]["observedGeneration"] = 0
    cluster.ready = True
    cluster.objects["ranking"]["status"]["conditions"][0]["status"] = "True"
    with pytest.raises(ClusterDeployError, match="not Ready"):
        wait_ready(cluster, "kubeflow", "ranking", timeout_seconds=0)
