"""Cluster deployment: create or patch the KServe InferenceService that serves a model version.

One function builds the InferenceService (:func:`inference_service`); ``manifests/base`` holds the
same object for ``kubectl apply -k`` (a test renders it and compares). The deploy step, ``skewless
promote/canary/rollback --kserve NAMESPACE`` and a first deployment all go through
:func:`apply_version`, which touches only InferenceServices (the RBAC in manifests/ allows get,
create, patch and watch on them, in one namespace, and nothing else).

Canary, in the form KServe v0.20 supports in each deployment mode:

- ``Knative``: the InferenceService's ``predictor.canaryTrafficPercent``. Patching the storage URI
  with a percentage makes a new revision that takes that share while the last fully rolled-out one
  keeps the rest; promotion removes the percentage; rollback points back at the old URI.
- ``Standard`` (raw Deployments + HPA): KServe has no traffic split in this mode, so the candidate
  runs as its own InferenceService ``<name>-candidate`` for an explicit A/B (clients or a gateway
  choose); promotion points ``<name>`` at the candidate's URI.
"""

from __future__ import annotations

import time
from typing import Any

from skewless.data.storage import MINIO_SECRET_ENV, StorageError, is_remote
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
    on 8080 and V2 gRPC on 8081, and runs as a non-root user on a read-only root filesystem.
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


def _api() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as err:
            raise ClusterDeployError(f"no Kubernetes cluster to talk to: {err}") from None
    return client.CustomObjectsApi()


def _get(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        found: dict[str, Any] = api.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
        return found
    except ApiException as err:
        if err.status == 404:
            return None
        raise ClusterDeployError(f"reading InferenceService {namespace}/{name}: {err}") from err
    except HTTPError as err:  # the API server cannot be reached at all
        raise ClusterDeployError(f"cannot reach the Kubernetes API server: {err}") from None


def apply_version(
    name: str,
    namespace: str,
    artifact: str,
    *,
    version: str,
    mode: str = "Standard",
    canary_percent: int | None = None,
    timeout_seconds: float = 600,
    api: Any = None,
    feature_store: str = "",
    runtime: str = "skewless",
) -> dict[str, Any]:
    """Creates the InferenceService, or patches its storage URI (and canary share), then waits.

    Args:
        name: InferenceService name.
        namespace: Its namespace.
        artifact: The version's artifact as the registry records it (``minio://`` for KFP's
            store); the InferenceService gets the form KServe's storage initializer reads
            (:func:`storage_uri`), for TF Serving the version's base path.
        version: Registry version (annotation).
        mode: ``Standard`` or ``Knative``.
        canary_percent: Knative: share for the new revision; None rolls it out fully.
        timeout_seconds: How long to wait for Ready.
        api: A ``kubernetes.client.CustomObjectsApi`` (default: from in-cluster or kube config).
        feature_store: The feature repository the server reads by id ("" for none; a patch
            then leaves the server's arguments as they are).
        runtime: What serves a new InferenceService (:data:`RUNTIMES`); an existing one keeps
            the runtime it has, so a rollback from the CLI serves TF Serving's layout too.

    Returns:
        The InferenceService's status once Ready.

    Raises:
        ClusterDeployError: The API refused the change, or Ready did not come in time (the message
            lists the InferenceService's conditions).
    """
    from kubernetes.client.exceptions import ApiException

    api = api or _api()
    before = _get(api, namespace, name)
    if before is not None:
        runtime = _runtime_of(before)
    uri = _served_uri(artifact, version, runtime)
    desired = inference_service(
        name, namespace, uri, mode=mode, version=version, canary_percent=canary_percent,
        feature_store=feature_store, runtime=runtime,
    )  # fmt: skip
    try:
        if before is None:
            api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, desired)
            after = None
        else:
            model = {"storageUri": uri}
            if feature_store:  # the args and env inference_service() gives the server
                model.update({k: desired["spec"]["predictor"]["model"][k] for k in ("args", "env")})
            patch = {
                "metadata": {"annotations": {VERSION_ANNOTATION: version}},
                # A JSON merge patch: None deletes the field, which rolls the new revision out.
                "spec": {"predictor": {"canaryTrafficPercent": canary_percent, "model": model}},
            }
            patched = api.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, patch
            )
            # A spec change rolls the workload out, which bumps its generation; an unchanged spec
            # (the version already served) rolls nothing out and has nothing to wait for.
            changed = _generation(patched) != _generation(before)
            after = before.get("status", {}).get("observedGeneration") if changed else None
    except ApiException as err:
        raise ClusterDeployError(
            f"applying InferenceService {namespace}/{name}: {err.status} {err.reason}: {err.body}"
        ) from err
    return wait_ready(api, namespace, name, timeout_seconds, after=after)


def _runtime_of(isvc: dict[str, Any]) -> str:
    """Which of :data:`RUNTIMES` an existing InferenceService runs."""
    name = isvc.get("spec", {}).get("predictor", {}).get("model", {}).get("runtime")
    return next((key for key, (runtime, _, _) in RUNTIMES.items() if runtime == name), "skewless")


def _served_uri(artifact: str, version: str, runtime: str) -> str:
    """The storage URI that serves ``artifact`` with ``runtime``."""
    if runtime != "tf-serving":
        return storage_uri(artifact)
    storage_uri(artifact)  # a local path fails here, before any copy
    try:
        return storage_uri(tf_serving.base_path(artifact, version))
    except (StorageError, ValueError) as err:
        raise ClusterDeployError(f"laying version {version} out for TF Serving: {err}") from None


def _generation(obj: Any) -> Any:
    return (obj or {}).get("metadata", {}).get("generation")


POLL_SECONDS = 2.0  # between reads of the InferenceService while waiting


def wait_ready(
    api: Any,
    namespace: str,
    name: str,
    timeout_seconds: float,
    *,
    after: int | None = None,
) -> dict[str, Any]:
    """Polls until the InferenceService is Ready (and, given ``after``, has rolled a change out).

    ``status.observedGeneration`` of an InferenceService is not its own: KServe v0.20.0 copies it
    from the predictor's Deployment (Standard mode, ``PropagateRawStatus``) or Knative Service
    (``PropagateStatus``) in pkg/apis/serving/v1beta1/inference_service_status.go, so it never
    equals ``metadata.generation`` once an HPA has scaled or the object was edited. What shows
    that a change has rolled out is that counter moving past its value before the change
    (``after``); Ready then describes the new pods.

    Raises:
        ClusterDeployError: Timeout; the message lists every condition with its reason.
    """
    deadline = time.monotonic() + timeout_seconds
    conditions: list[dict[str, Any]] = []
    while True:
        found = _get(api, namespace, name) or {}
        status = found.get("status", {})
        conditions = status.get("conditions", [])
        observed = status.get("observedGeneration")
        current = after is None or (observed is not None and observed > after)
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        if ready and current:
            return dict(status)
        if time.monotonic() >= deadline:
            lines = [
                f"  {c.get('type')}={c.get('status')} {c.get('reason', '')}: {c.get('message', '')}"
                for c in conditions
            ] or ["  (no conditions yet)"]
            raise ClusterDeployError(
                f"InferenceService {namespace}/{name} not Ready after {timeout_seconds:.0f} s:\n"
                + "\n".join(lines)
                + f"\n(kubectl describe inferenceservice {name} -n {namespace})"
            )
        time.sleep(POLL_SECONDS)


def candidate_name(name: str) -> str:
    """The InferenceService a Standard-mode canary runs as."""
    return f"{name}-candidate"


def deploy_role(
    name: str,
    namespace: str,
    uri: str,
    *,
    version: str,
    role: str,
    canary_percent: int,
    mode: str,
    timeout_seconds: float = 600,
    api: Any = None,
    feature_store: str = "",
    runtime: str = "skewless",
) -> str:
    """Serves a version as production or as a canary, in the form ``mode`` supports.

    ``uri`` is the artifact as the registry records it (``minio://`` for KFP's store); the
    InferenceService gets the form KServe's storage initializer reads (:func:`storage_uri`).
    ``runtime`` serves a new InferenceService (an existing one keeps its own); ``feature_store``
    lets it serve by id (:func:`apply_version`).

    Returns:
        The name of the InferenceService that now serves the version.
    """
    common: dict[str, Any] = {
        "version": version, "mode": mode, "timeout_seconds": timeout_seconds, "api": api,
        "feature_store": feature_store, "runtime": runtime,
    }  # fmt: skip
    if role == "canary" and mode == "Standard":
        target = candidate_name(name)
        apply_version(target, namespace, uri, **common)
        return target
    percent = canary_percent if role == "canary" else None
    apply_version(name, namespace, uri, canary_percent=percent, **common)
    return name
