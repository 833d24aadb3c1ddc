"""Our cluster assumptions against the upstream releases we pin, not against ourselves.

Reads the reference data in ``../shared/upstream/`` (see its SOURCE.md: KFP 2.17.0's
platform-agnostic install rendered, Knative Serving 1.21.1's default config maps, KServe v0.20.0's
runtime charts). Each test fails when our code, manifests or docs name something the pinned
release does not define. Skipped, with the reason printed, when the shared data is absent.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from skewless.data import storage

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = Path(os.environ.get("SKEWLESS_UPSTREAM", ROOT.parent / "shared" / "upstream"))


def _upstream(relative: str) -> Path:
    path = UPSTREAM / relative
    if not path.is_file():
        pytest.skip(f"upstream reference {path} is absent (set SKEWLESS_UPSTREAM to its folder)")
    return path


@cache
def _kfp_objects() -> list[dict[str, Any]]:
    text = _upstream("kfp-2.17.0/platform-agnostic-without-argo.yaml").read_text()
    return [d for d in yaml.safe_load_all(text) if d]


def _kfp(kind: str, name: str) -> dict[str, Any] | None:
    return next(
        (o for o in _kfp_objects() if o["kind"] == kind and o["metadata"]["name"] == name), None
    )


def _service_port(endpoint: str) -> tuple[dict[str, Any] | None, int]:
    host, port = endpoint.rsplit(":", 1)
    name, namespace = host.split(".")[:2]
    assert namespace == "kubeflow", endpoint
    return _kfp("Service", name), int(port)


def test_the_object_store_endpoint_is_a_service_and_port_of_kfp_2_17_0():
    service, port = _service_port(storage.OBJECT_STORE_ENDPOINT)
    assert service is not None, f"KFP 2.17.0 has no Service for {storage.OBJECT_STORE_ENDPOINT}"
    assert port in [p["port"] for p in service["spec"]["ports"]]


def test_kserve_reads_models_from_the_same_store():
    base = yaml.safe_load((ROOT / "manifests" / "base" / "kustomization.yaml").read_text())
    annotations = [
        g["options"]["annotations"] for g in base.get("secretGenerator", [])
        if "annotations" in g.get("options", {})
    ]  # fmt: skip
    endpoints = {a["serving.kserve.io/s3-endpoint"] for a in annotations}
    assert endpoints == {storage.OBJECT_STORE_ENDPOINT}
    service, port = _service_port(storage.OBJECT_STORE_ENDPOINT)
    assert service is not None and port in [p["port"] for p in service["spec"]["ports"]]


def test_kfps_credentials_secret_has_the_keys_the_pipeline_maps():
    secret = _kfp("Secret", storage.MINIO_SECRET)
    assert secret is not None, f"KFP 2.17.0 defines no Secret {storage.MINIO_SECRET!r}"
    keys = set(secret.get("stringData") or {}) | set(secret.get("data") or {})
    assert set(storage.MINIO_SECRET_ENV) <= keys


def test_no_file_names_a_service_that_kfp_2_17_0_removed():
    services = {o["metadata"]["name"] for o in _kfp_objects() if o["kind"] == "Service"}
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    named: dict[str, set[str]] = {}
    pattern = re.compile(r"\b(?:svc/)?([a-z0-9-]+)\.kubeflow(?:\.svc)?(?:\.cluster\.local)?:\d+")
    for relative in tracked:
        if relative.startswith("tests/") or not relative.endswith((".py", ".md", ".yaml", ".sh")):
            continue
        for name in pattern.findall((ROOT / relative).read_text(errors="replace")):
            named.setdefault(name, set()).add(relative)
    for forwarded in re.findall(
        r"port-forward -n kubeflow svc/([a-z0-9-]+)", (ROOT / "docs" / "cluster.md").read_text()
    ):
        named.setdefault(forwarded, set()).add("docs/cluster.md (port-forward)")
    # The Model Registry comes from its own release; `<name>-predictor` is KServe's Service for
    # our own InferenceService; our base renders the feature store's Redis.
    ours = subprocess.run(["kubectl", "kustomize", str(ROOT / "manifests" / "base")],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    rendered = {o["metadata"]["name"] for o in yaml.safe_load_all(ours)
                if o and o["kind"] == "Service"}  # fmt: skip
    assert rendered == {"feast-redis"}
    allowed = services | rendered | {"model-registry-service"}
    unknown = {
        n: sorted(f) for n, f in named.items() if n not in allowed and not n.endswith("-predictor")
    }
    assert not unknown, f"not a Service of KFP 2.17.0: {unknown}"


def _knative_default(configmap: str, key: str) -> str:
    """A key's default from Knative 1.21.1's config map (documented in its ``_example`` block)."""
    document = yaml.safe_load(_upstream(f"knative-serving-v1.21.1/{configmap}.yaml").read_text())
    match = re.search(
        rf"^\s*{re.escape(key)}:\s*\"?([^\"\n]*)\"?$", document["data"]["_example"], re.M
    )
    assert match, f"{key} is not in Knative's {configmap} defaults"
    return match.group(1)


def _our_knative_config() -> dict[str, dict[str, str]]:
    text = (ROOT / "manifests" / "cluster" / "knative-serving.yaml").read_text()
    serving = next(d for d in yaml.safe_load_all(text) if d and d["kind"] == "KnativeServing")
    return serving["spec"].get("config", {})


POD_SECURITY_FIELDS = {"fsGroup", "runAsGroup", "runAsNonRoot", "supplementalGroups", "runAsUser",
                       "seccompProfile"}  # fmt: skip


def test_the_pod_security_context_we_render_is_a_knative_feature_we_turn_on():
    isvc = yaml.safe_load((ROOT / "manifests" / "base" / "inferenceservice.yaml").read_text())
    used = set(isvc["spec"]["predictor"].get("securityContext", {})) & POD_SECURITY_FIELDS
    assert used, "the predictor sets no pod-level security field; this test would check nothing"
    flag = "kubernetes.podspec-securitycontext"
    assert _knative_default("features", flag) == "disabled"  # why we must turn it on
    assert _our_knative_config().get("features", {}).get(flag) in ("enabled", "allowed")


def test_knative_does_not_resolve_the_tag_of_our_kind_loaded_image():
    from skewless.image import IMAGE

    registry = IMAGE.split("/")[0]
    key = "registries-skipping-tag-resolving"
    defaults = _knative_default("deployment", key).split(",")
    ours = _our_knative_config().get("deployment", {}).get(key, "").split(",")
    assert registry not in defaults  # why it must be configured
    assert registry in ours and set(defaults) <= set(ours)


def test_make_cluster_waits_for_deployments_the_pinned_releases_define():
    """The readiness wait names KFP's Deployments by their label and the Model Registry's by
    name; both must select exactly the Deployments of KFP 2.17.0 and Model Registry v0.3.8."""
    script = (ROOT / "manifests" / "cluster" / "cluster.sh").read_text().replace("\\\n", " ")
    waits = [
        line for line in script.splitlines() if "kubectl wait" in line and "deployment" in line
    ]
    (selector,) = re.findall(r"deployment -l (\S+)=(\S+)", " ".join(waits))
    kfp = [o for o in _kfp_objects() if o["kind"] == "Deployment"]
    assert kfp and all(o["metadata"]["labels"].get(selector[0]) == selector[1] for o in kfp)
    text = _upstream("model-registry-v0.3.8/overlays-db.yaml").read_text()
    registry = {d["metadata"]["name"] for d in yaml.safe_load_all(text)
                if d and d["kind"] == "Deployment"}  # fmt: skip
    named = set(re.findall(r"deployment/([\w-]+)", " ".join(waits)))
    assert named == registry


def test_the_tf_serving_overlay_names_a_runtime_make_cluster_installs_new_enough():
    """KServe v0.20.0's runtime chart creates its ClusterServingRuntimes only with
    ``kserve.servingruntime.enabled`` (default false), and its TF Serving tag (2.6.2) predates the
    TensorFlow that writes our SavedModels."""
    charts = "kserve-v0.20.0/charts/kserve-runtime-configs"
    values = yaml.safe_load(_upstream(f"{charts}/values.yaml").read_text())
    template = _upstream(f"{charts}/templates/runtimes/resources.yaml").read_text()
    assert template.startswith("{{- if .Values.kserve.servingruntime.enabled }}")
    assert values["kserve"]["servingruntime"]["enabled"] is False  # so we must turn it on
    base = _upstream(f"{charts}/files/runtimes/resources.yaml").read_text()
    runtimes = {d["metadata"]["name"] for d in yaml.safe_load_all(base) if d}
    overlay = ROOT / "manifests" / "overlays" / "tf-serving-runtime" / "kustomization.yaml"
    (named,) = re.findall(r"value: (kserve-[\w-]+)", overlay.read_text())
    assert named in runtimes
    script = (ROOT / "manifests" / "cluster" / "cluster.sh").read_text()
    assert "--set kserve.servingruntime.enabled=true" in script
    assert '--set kserve.servingruntime.tensorflow.tag="$TF_SERVING_VERSION"' in script
    pins = dict(
        line.split("=", 1)
        for line in (ROOT / "manifests" / "versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    pinned_tf = re.search(r"tensorflow==(\d+\.\d+)", (ROOT / "pyproject.toml").read_text())
    assert pinned_tf and pins["TF_SERVING_VERSION"].startswith(pinned_tf.group(1) + ".")


def test_the_model_registry_url_names_the_pinned_releases_service_and_http_port():
    """``skewless submit``'s default ``--registry`` and the kind-experiment overlay's server and
    decide job reach the Model Registry at this URL: Model Registry v0.3.8's Service
    (``kubectl kustomize manifests/kustomize/overlays/db`` at tag v0.3.8) must define it."""
    from urllib.parse import urlsplit

    from skewless.cli import IN_CLUSTER_REGISTRY

    url = urlsplit(IN_CLUSTER_REGISTRY)
    assert url.scheme == "http" and url.hostname is not None
    name, namespace = url.hostname.split(".")[:2]
    text = _upstream("model-registry-v0.3.8/overlays-db.yaml").read_text()
    services = {d["metadata"]["name"]: d for d in yaml.safe_load_all(text)
                if d and d["kind"] == "Service"}  # fmt: skip
    assert name in services, f"Model Registry v0.3.8 has no Service {name!r}: {sorted(services)}"
    ports = {p["port"]: p for p in services[name]["spec"]["ports"]}
    assert url.port in ports and ports[url.port].get("appProtocol") == "http"
    script = (ROOT / "manifests" / "cluster" / "cluster.sh").read_text()
    (installed_in,) = re.findall(
        r"model-registry/manifests/kustomize/overlays/db\S*\s+-n\s+(\S+)", script
    )
    assert namespace == installed_in  # the namespace make cluster installs it into
    overlay = ROOT / "manifests" / "overlays" / "kind-experiment"
    for file in ("kustomization.yaml", "experiment-decide.yaml"):
        assert IN_CLUSTER_REGISTRY in (overlay / file).read_text(), file
