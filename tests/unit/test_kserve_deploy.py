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

from skewless.rollout.kserve import deploy_role, wait_ready
from skewless.rollout.kserve_objects import ClusterDeployError, inference_service, storage_uri


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            _merge(target.setdefault(key, {}), value)
        else:
            target[key] = value


class _Cluster:
    """Objects as the API server keeps them, and status as KServe v0.20.0's controller writes it.

    ``status.observedGeneration`` is the predictor workload's generation, not the
    InferenceService's (KServe copies it from the Deployment or Knative Service): it starts at 7
    here, as after a few HPA scales, and moves when a spec change rolls out. The controller lags:
    after a change, the next ``lag`` reads still see the old status.
    """

    def __init__(self, ready: bool = True, lag: int = 2) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.ready = ready
        self.lag = lag
        self.calls: list[str] = []
        self.reads = 0
        self._pending: dict[str, tuple[int, dict[str, Any]]] = {}

    def _status(self, name: str, rolled_out: bool) -> None:
        old = self.objects[name].get("status", {}).get("observedGeneration", 6)
        condition = {"type": "Ready", "status": "True" if self.ready else "False",
                     "reason": "" if self.ready else "RevisionMissing",
                     "message": "" if self.ready else "image pull failed"}  # fmt: skip
        status = {"observedGeneration": old + 1 if rolled_out else old, "conditions": [condition]}
        self._pending[name] = (self.lag, status)

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        from kubernetes.client.exceptions import ApiException

        self.reads += 1
        if name not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        if name in self._pending:
            reads_left, status = self._pending[name]
            if reads_left == 0:
                self.objects[name]["status"] = status
                del self._pending[name]
            else:
                self._pending[name] = (reads_left - 1, status)
        return copy.deepcopy(self.objects[name])

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.calls.append(f"create {body['metadata']['name']}")
        obj = copy.deepcopy(body)
        obj["metadata"]["generation"] = 1
        self.objects[obj["metadata"]["name"]] = obj
        self._status(obj["metadata"]["name"], rolled_out=True)
        return copy.deepcopy(obj)

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.calls.append(f"patch {name}")
        obj = self.objects[name]
        spec = copy.deepcopy(obj.get("spec"))
        _merge(obj, body)
        if obj.get("spec") != spec:
            obj["metadata"]["generation"] += 1
            self._status(name, rolled_out=True)
        return copy.deepcopy(obj)


@pytest.fixture(autouse=True)
def _no_wait(monkeypatch):
    monkeypatch.setattr("skewless.rollout.kserve.POLL_SECONDS", 0.0)


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
    cluster = _Cluster(ready=False, lag=0)
    with pytest.raises(ClusterDeployError) as failure:
        deploy_role("ranking", "kubeflow", "s3://b/1", version="1", role="production",
                    canary_percent=0, mode="Standard", api=cluster, timeout_seconds=0)  # fmt: skip
    message = str(failure.value)
    assert "InferenceService kubeflow/ranking not Ready after 0 s" in message
    assert "Ready=False RevisionMissing: image pull failed" in message
    assert "kubectl describe inferenceservice ranking -n kubeflow" in message
    # A Ready left from before the change is not taken for the change's.
    cluster.objects["ranking"]["status"]["conditions"][0]["status"] = "True"
    observed = cluster.objects["ranking"]["status"]["observedGeneration"]
    with pytest.raises(ClusterDeployError, match="not Ready"):
        wait_ready(cluster, "kubeflow", "ranking", timeout_seconds=0, after=observed)


def test_a_change_waits_for_its_rollout_not_for_counters_that_never_meet():
    # observedGeneration is the workload's (7, 8, ...), never the InferenceService's (1, 2, ...).
    cluster = _Cluster(lag=3)
    args = {"namespace": "kubeflow", "mode": "Standard", "api": cluster, "timeout_seconds": 60}
    deploy_role("ranking", uri="s3://b/1", version="1", role="production", canary_percent=0, **args)
    isvc = cluster.objects["ranking"]
    assert isvc["status"]["observedGeneration"] != isvc["metadata"]["generation"]
    reads = cluster.reads
    deploy_role("ranking", uri="s3://b/2", version="2", role="production", canary_percent=0, **args)
    # It read past the stale Ready (3 reads of lag) until the rollout showed.
    assert cluster.reads - reads >= 4
    assert cluster.objects["ranking"]["status"]["observedGeneration"] == 8
    # The version already served: nothing rolls out, nothing to wait for.
    reads = cluster.reads
    deploy_role("ranking", uri="s3://b/2", version="2", role="production", canary_percent=0, **args)
    assert cluster.reads - reads <= 2


def test_a_feature_store_gives_the_server_its_repository_and_the_object_store_keys():
    from skewless.cli import IN_CLUSTER_FEATURE_REPO
    from skewless.rollout.kserve_objects import S3_SECRET

    cluster = _Cluster()
    args = {"namespace": "kubeflow", "mode": "Standard", "api": cluster, "timeout_seconds": 5}
    deploy_role("ranking", uri="s3://b/1", version="1", role="production", canary_percent=0, **args)
    assert "args" not in cluster.objects["ranking"]["spec"]["predictor"]["model"]
    deploy_role("ranking", uri="s3://b/2", version="2", role="production", canary_percent=0,
                feature_store=IN_CLUSTER_FEATURE_REPO, **args)  # fmt: skip
    model = cluster.objects["ranking"]["spec"]["predictor"]["model"]
    assert model["args"] == ["--feature-store", IN_CLUSTER_FEATURE_REPO]
    assert {e["name"]: e["valueFrom"]["secretKeyRef"] for e in model["env"]} == {
        key: {"name": S3_SECRET, "key": key}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    # A rollback or canary from the CLI knows no feature store: the server keeps its own.
    deploy_role("ranking", uri="s3://b/1", version="1", role="production", canary_percent=0, **args)
    model = cluster.objects["ranking"]["spec"]["predictor"]["model"]
    assert model["storageUri"] == "s3://b/1" and model["args"][1] == IN_CLUSTER_FEATURE_REPO
    with pytest.raises(ClusterDeployError, match="not from a step's disk"):
        inference_service("ranking", "kubeflow", "s3://b/1", feature_store="runs/feature_repo")


def test_tf_serving_serves_each_version_from_a_numbered_folder_of_its_own(minio, tmp_path):
    """TF Serving reads ``<base>/<n>/saved_model.pb`` and serves the highest n: each version gets
    a base holding only its own folder, a rollback points back at the older base, and a runtime
    chosen at creation stays (the CLI's rollback does not name it)."""
    from skewless.rollout import tf_serving

    artifacts = {}
    for version in ("1", "2"):
        model = tmp_path / f"model{version}"
        (model / "variables").mkdir(parents=True)
        (model / "saved_model.pb").write_bytes(f"graph {version}".encode())
        (model / "variables" / "variables.index").write_bytes(f"index {version}".encode())
        artifacts[version] = minio.upload(model, f"v2/artifacts/run{version}/train/model")

    def objects(prefix: str) -> dict[str, bytes]:
        listed = minio.client.list_objects_v2(Bucket="mlpipeline", Prefix=prefix)
        return {
            o["Key"].removeprefix(prefix): minio.client.get_object(
                Bucket="mlpipeline", Key=o["Key"]
            )["Body"].read()
            for o in listed.get("Contents", [])
        }

    cluster = _Cluster()
    args = {"namespace": "kubeflow", "mode": "Standard", "api": cluster, "timeout_seconds": 5}
    deploy_role("ranking", uri=artifacts["1"], version="1", role="production", canary_percent=0,
                runtime="tf-serving", **args)  # fmt: skip
    model = cluster.objects["ranking"]["spec"]["predictor"]["model"]
    assert (model["runtime"], model["modelFormat"], model["protocolVersion"]) == (
        "kserve-tensorflow-serving",
        {"name": "tensorflow"},
        "v1",
    )
    assert model["storageUri"] == "s3://mlpipeline/v2/artifacts/run1/train/model.tf-serving"
    assert objects("v2/artifacts/run1/train/model.tf-serving/") == {
        "1/saved_model.pb": b"graph 1", "1/variables/variables.index": b"index 1"
    }  # fmt: skip
    # The next version, then a rollback, as `skewless promote/rollback --kserve` send them.
    deploy_role("ranking", uri=artifacts["2"], version="2", role="production", canary_percent=0,
                **args)  # fmt: skip
    model = cluster.objects["ranking"]["spec"]["predictor"]["model"]
    assert model["runtime"] == "kserve-tensorflow-serving"
    assert model["storageUri"] == "s3://mlpipeline/v2/artifacts/run2/train/model.tf-serving"
    assert set(objects("v2/artifacts/run2/train/model.tf-serving/")) == {
        "2/saved_model.pb", "2/variables/variables.index"
    }  # fmt: skip
    deploy_role("ranking", uri=artifacts["1"], version="1", role="production", canary_percent=0,
                **args)  # fmt: skip
    assert cluster.objects["ranking"]["spec"]["predictor"]["model"]["storageUri"].endswith(
        "run1/train/model.tf-serving"
    )
    assert len(objects("v2/artifacts/run1/")) == 4  # the model and one copy, not two
    with pytest.raises(ValueError, match="positive whole number"):
        tf_serving.base_path(artifacts["1"], "latest")
    with pytest.raises(ClusterDeployError, match="cannot look features up by id"):
        inference_service("ranking", "kubeflow", "s3://b/m", runtime="tf-serving",
                          feature_store="minio://b/repo")  # fmt: skip
    # The pipeline passes its feature store to every deploy; TF Serving serves without it.
    deploy_role("ranking", uri=artifacts["2"], version="2", role="production", canary_percent=0,
                feature_store="minio://mlpipeline/skewless/feature_repo", **args)  # fmt: skip
    assert "args" not in cluster.objects["ranking"]["spec"]["predictor"]["model"]
    with pytest.raises(ClusterDeployError, match="laying version 3 out for TF Serving"):
        deploy_role("ranking-2", uri="minio://mlpipeline/missing", version="3", role="production",
                    canary_percent=0, runtime="tf-serving", **args)  # fmt: skip


def test_a_candidate_serves_as_production_does_and_hand_set_flags_survive_a_deploy():
    from skewless.rollout.kserve import feature_store_of

    repo = "minio://mlpipeline/skewless/feature_repo"
    cluster = _Cluster()
    args = {"namespace": "kubeflow", "mode": "Standard", "api": cluster, "timeout_seconds": 5}
    deploy_role("ranking", uri="s3://b/1", version="1", role="production", canary_percent=0,
                feature_store=repo, **args)  # fmt: skip
    model = cluster.objects["ranking"]["spec"]["predictor"]["model"]
    model["args"] = ["--allow-push", *model["args"]]  # set by hand with kubectl edit
    model["env"].append({"name": "EXTRA", "value": "1"})
    # `skewless canary --kserve` names no feature store: the new candidate reads production's.
    deploy_role("ranking", uri="s3://b/2", version="2", role="canary", canary_percent=10, **args)
    assert feature_store_of(cluster.objects["ranking-candidate"]) == repo
    # The next pipeline deploy replaces our flag and variables, and keeps the hand-set ones.
    deploy_role("ranking", uri="s3://b/3", version="3", role="production", canary_percent=0,
                feature_store="minio://mlpipeline/other_repo", **args)  # fmt: skip
    model = cluster.objects["ranking"]["spec"]["predictor"]["model"]
    assert model["args"] == ["--allow-push", "--feature-store", "minio://mlpipeline/other_repo"]
    assert [e["name"] for e in model["env"]] == ["EXTRA", "AWS_ACCESS_KEY_ID",
                                                 "AWS_SECRET_ACCESS_KEY"]  # fmt: skip


def test_a_bad_runtime_or_mode_is_refused_before_any_alias_moves(tmp_path):
    from skewless.rollout.deploy import DeployError, deploy_version

    with pytest.raises(DeployError, match="kserve runtime 'triton'"):
        deploy_version(tmp_path, "ranking", 1, "run", target="kserve", runtime="triton")
    assert not any(tmp_path.iterdir())  # no registry was even opened
