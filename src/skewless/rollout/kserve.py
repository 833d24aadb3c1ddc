"""Cluster deployment: create or patch the KServe InferenceService that serves a model version.

The objects come from :mod:`skewless.rollout.kserve_objects`. The deploy step, ``skewless
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

from skewless.data.storage import StorageError
from skewless.rollout import tf_serving
from skewless.rollout.kserve_objects import (
    GROUP,
    PLURAL,
    RUNTIMES,
    VERSION,
    VERSION_ANNOTATION,
    ClusterDeployError,
    candidate_name,
    inference_service,
    storage_uri,
)


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
    if feature_store and runtime != "skewless":
        print(f"{namespace}/{name} runs {runtime}, which cannot look features up by id: it serves "
              f"requests that carry every feature (the feature store is not used)")  # fmt: skip
        feature_store = ""
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
            model: dict[str, Any] = {"storageUri": uri}
            if feature_store:  # the args and env inference_service() gives the server
                model.update(_with_server_settings(before, desired))
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


def _model(isvc: dict[str, Any]) -> dict[str, Any]:
    """An InferenceService's ``spec.predictor.model`` (empty when it has none)."""
    model: dict[str, Any] = isvc.get("spec", {}).get("predictor", {}).get("model", {})
    return model


def _with_server_settings(before: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """The ``args`` and ``env`` of ``desired``'s model merged into ``before``'s (a JSON merge
    patch replaces lists whole): flags and variables set by hand stay, ours are replaced."""
    had, want = _model(before), _model(desired)
    args, old_args = [], list(had.get("args", []))
    while old_args:
        arg = old_args.pop(0)
        if arg in want["args"][::2]:  # our flag: drop it and its value
            old_args = old_args[1:]
        else:
            args.append(arg)
    ours = {item["name"] for item in want["env"]}
    env = [item for item in had.get("env", []) if item.get("name") not in ours]
    return {"args": [*args, *want["args"]], "env": [*env, *want["env"]]}


def feature_store_of(isvc: dict[str, Any]) -> str:
    """The feature repository an InferenceService's server reads ("" for none)."""
    args = list(_model(isvc).get("args", []))
    return args[args.index("--feature-store") + 1] if "--feature-store" in args[:-1] else ""


def _runtime_of(isvc: dict[str, Any]) -> str:
    """Which of :data:`RUNTIMES` an existing InferenceService runs."""
    name = _model(isvc).get("runtime")
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
    lets it serve by id (:func:`apply_version`). A new Standard-mode candidate serves as
    production does: its runtime, and its feature store unless one is given.

    Returns:
        The name of the InferenceService that now serves the version.
    """
    common: dict[str, Any] = {
        "version": version, "mode": mode, "timeout_seconds": timeout_seconds, "api": api,
        "feature_store": feature_store, "runtime": runtime,
    }  # fmt: skip
    if role == "canary" and mode == "Standard":
        common["api"] = api = api or _api()
        production = _get(api, namespace, name)
        if production is not None:  # a new candidate serves as production does
            common["runtime"] = _runtime_of(production)
            common["feature_store"] = feature_store or feature_store_of(production)
        target = candidate_name(name)
        apply_version(target, namespace, uri, **common)
        return target
    percent = canary_percent if role == "canary" else None
    apply_version(name, namespace, uri, canary_percent=percent, **common)
    return name
