"""The KServe objects skewless renders: our ServingRuntime and the InferenceService of a version.

One function builds each (:func:`serving_runtime`, :func:`inference_service`); ``manifests/base``
holds the same objects for ``kubectl apply -k`` (tests/unit/test_manifests.py renders them and
compares). Applying them to a cluster is :mod:`skewless.rollout.kserve`.
"""

from __future__ import annotations

from typing import Any

from skewless.data.storage import MINIO_SECRET_ENV, is_remote
from skewless.image import IMAGE
from skewless.rollout import tf_serving

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
MODES = ("Standard", "Knative")
VERSION_ANNOTATION = "skewless.dev/model-version"
RUNTIME = "skewless"
MODEL_FORMAT = "skewless-ranking"
READER_SERVICE_ACCOUNT = "skewless-model-reader"
UID = 10001  # the image's user (Dockerfile)
RUNTIMES = {
    "skewless": (RUNTIME, MODEL_FORMAT, "v2"),  # `skewless serve`: validation, V1/V2, lookups
    "tf-serving": (tf_serving.RUNTIME, tf_serving.MODEL_FORMAT, "v1"),
}
"""What may serve a version: the runtime, its model format and protocol."""
S3_SECRET = "skewless-s3"
"""The object-store credentials in manifests/base (secretGenerator; keys as the environment)."""


class ClusterDeployError(RuntimeError):
    """An InferenceService could not be applied or did not become Ready; the message says why."""


def storage_uri(artifact_uri: str) -> str:
    """The URI KServe's storage initializer reads for a pipeline artifact.

    KFP on MinIO records artifacts as ``minio://bucket/key``; KServe reads the same object store
    through its S3 client, so that becomes ``s3://bucket/key``. Other schemes pass through.
    """
    if artifact_uri.startswith("minio://"):
        return "s3://" + artifact_uri.removeprefix("minio://")
    if "://" not in artifact_uri:
        raise ClusterDeployError(
            f"{artifact_uri!r} is a local path; a cluster deployment needs an object-store URI "
            "(s3://, gs://, minio://) that the storage initializer can read"
        )
    return artifact_uri


def serving_runtime(namespace: str, image: str = IMAGE) -> dict[str, Any]:
    """The ServingRuntime that runs ``skewless serve`` on the model KServe downloaded.

    The storage initializer puts the model under ``/mnt/models``; the server speaks V1 and V2 REST
    on 8080 and V2 gRPC on 8081 on every address of the pod, and runs as a non-root user on a
    read-only root filesystem.
    """
    probe = {"httpGet": {"path": "/v2/health/ready", "port": 8080}, "periodSeconds": 10}
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {
            "name": RUNTIME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "skewless"},
            # Read by checkov on the pod this runtime becomes (tests/unit/test_manifests.py).
            "annotations": {
                "checkov.io/skip1": "CKV_K8S_43=the image is built locally and kind-loaded by "
                "tag (make image kind-load); there is no registry digest to pin",
            },
        },
        "spec": {
            "supportedModelFormats": [{"name": MODEL_FORMAT, "version": "1", "autoSelect": True}],
            "protocolVersions": ["v1", "v2", "grpc-v2"],
            "multiModel": False,
            "containers": [
                {
                    "name": "kserve-container",
                    "image": image,
                    "args": [
                        "serve",
                        "--model",
                        "/mnt/models",
                        "--name",
                        "{{.Name}}",
                        # Pod traffic arrives on the pod's address (skewless serve's default
                        # is this machine only).
                        "--host",
                        "0.0.0.0",
                        "--http-port",
                        "8080",
                        "--grpc-port",
                        "8081",
                    ],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {
                        "requests": {"cpu": "1", "memory": "2Gi"},
                        "limits": {"cpu": "2", "memory": "4Gi"},
                    },
                    "readinessProbe": {**probe, "initialDelaySeconds": 10},
                    "livenessProbe": {
                        "httpGet": {"path": "/v2/health/live", "port": 8080},
                        "initialDelaySeconds": 60,
                        "periodSeconds": 20,
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
        },
    }


def inference_service(
    name: str,
    namespace: str,
    uri: str,
    *,
    mode: str = "Standard",
    version: str = "",
    canary_percent: int | None = None,
    feature_store: str = "",
    runtime: str = "skewless",
) -> dict[str, Any]:
    """The InferenceService for one model version, served by our runtime (or TF Serving).

    Args:
        name: InferenceService name (the model's name in its URLs).
        namespace: Namespace it lives in.
        uri: Storage URI of the exported SavedModel folder.
        mode: KServe deployment mode, ``Standard`` (HPA on CPU) or ``Knative`` (request-based
            autoscaling with scale to zero).
        version: Registry version, recorded as an annotation.
        canary_percent: Knative only: the share of traffic the new revision takes.
        feature_store: A feature repository in the object store: the server reads it (with the
            pipeline's object-store credentials) and looks features up by id in the Redis it
            names (manifests/feature-store). Its arguments extend the runtime's (KServe v0.20.0
            concatenates them: pkg/controller/v1beta1/inferenceservice/utils/utils.go,
            MergeRuntimeContainers).
        runtime: ``skewless`` or ``tf-serving`` (:mod:`skewless.rollout.tf_serving`; ``uri``
            is then the version's TF Serving base path).
    """
    if mode not in MODES:
        raise ClusterDeployError(f"deployment mode {mode!r}: expected one of {list(MODES)}")
    if runtime not in RUNTIMES:
        raise ClusterDeployError(f"runtime {runtime!r}: expected one of {list(RUNTIMES)}")
    if feature_store and runtime != "skewless":
        raise ClusterDeployError(
            f"runtime {runtime!r} cannot look features up by id; serve with the skewless runtime "
            "or without a feature store"
        )
    runtime_name, model_format, protocol = RUNTIMES[runtime]
    if canary_percent is not None and mode != "Knative":
        raise ClusterDeployError("canaryTrafficPercent exists only in Knative mode")
    knative = mode == "Knative"
    predictor: dict[str, Any] = {
        "serviceAccountName": READER_SERVICE_ACCOUNT,
        # The server never calls the Kubernetes API.
        "automountServiceAccountToken": False,
        "minReplicas": 0 if knative else 1,
        "maxReplicas": 4,
        # Knative scales on in-flight requests per pod; Standard's HPA on CPU utilization.
        "scaleMetric": "concurrency" if knative else "cpu",
        "scaleTarget": 16 if knative else 70,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "model": {
            "modelFormat": {"name": model_format},
            "runtime": runtime_name,
            "protocolVersion": protocol,
            "storageUri": uri,
            "resources": {
                "requests": {"cpu": "1", "memory": "2Gi"},
                "limits": {"cpu": "2", "memory": "4Gi"},
            },
        },
    }
    if feature_store:
        if not is_remote(feature_store):
            raise ClusterDeployError(
                f"feature store {feature_store!r}: a model server pod reads a feature repository "
                "from the object store (minio://...), not from a step's disk"
            )
        predictor["model"]["args"] = ["--feature-store", feature_store]
        predictor["model"]["env"] = [
            {"name": env, "valueFrom": {"secretKeyRef": {"name": S3_SECRET, "key": env}}}
            for env in MINIO_SECRET_ENV.values()
        ]
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "skewless"},
            "annotations": {
                "serving.kserve.io/deploymentMode": mode,
                **({"serving.kserve.io/autoscalerClass": "hpa"} if not knative else {}),
                VERSION_ANNOTATION: version,
            },
        },
        "spec": {"predictor": predictor},
    }


def candidate_name(name: str) -> str:
    """The InferenceService a Standard-mode canary runs as."""
    return f"{name}-candidate"
