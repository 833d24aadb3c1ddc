"""The cluster path, checked statically (no cluster or Docker engine runs on these machines).

- Every overlay renders with a real kustomize (the one built into ``kubectl``).
- Built-in objects validate against the Kubernetes OpenAPI schema of the version in
  manifests/versions.env (``kubernetes-validate``, strict: unknown fields are errors).
- InferenceService and ServingRuntime objects validate against KServe's API types as the kserve SDK
  generates them from KServe's Go types (see ``_check_kserve``): every field must exist in KServe's
  schema with the right type.
- The same objects validate against the ``openAPIV3Schema`` of KServe's real CRDs of the pinned
  version, with unknown fields made errors (as ``kubectl apply``'s strict field validation does).
  Fetched upstream files may not be committed here, so the CRDs are read from the project's
  shared data (``../shared/kserve-crds/<KSERVE_VERSION>/``, or ``$SKEWLESS_KSERVE_CRDS``); until
  they are placed there this test reports itself skipped with that reason (see docs/cluster.md).
- ``checkov`` reports no failed check on the rendered manifests, nor on the Dockerfile.
- The base's objects equal what the deploy step creates, and the image tag is the one in
  src/skewless/image.py.
- The training overlay's TFJob has the structure of the Training Operator v1.8.1 CRD (its
  ``openAPIV3Schema``, checked by hand against ``manifests/base/crds/kubeflow.org_tfjobs.yaml``
  of kubeflow/training-operator at tag v1.8.1, which is not in the shared data yet) and its
  workers run ``python -m skewless.model.distributed`` with arguments it parses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes.client
import kubernetes_validate
import pytest
import yaml
from kserve import models as kserve_models

from skewless.image import IMAGE
from skewless.rollout.kserve_objects import inference_service, serving_runtime

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OVERLAYS = ["kind-standard", "kind-knative", "tf-serving-runtime", "kind-experiment"]
# What the training overlay adds to the base.
TRAINING_KINDS = ("TFJob", "PersistentVolumeClaim", "NetworkPolicy")
KSERVE_KINDS = {"InferenceService": "V1beta1InferenceService",
                "ServingRuntime": "V1alpha1ServingRuntime"}  # fmt: skip


def _versions() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (MANIFESTS / "versions.env").read_text().splitlines()
             if line.strip() and not line.startswith("#"))  # fmt: skip
    return {key: value for key, value in pairs}


@cache
def _render(target: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is needed to render manifests/"
    rendered = subprocess.run([kubectl, "kustomize", str(MANIFESTS / target)],
                              capture_output=True, text=True, check=False)  # fmt: skip
    assert rendered.returncode == 0, f"kustomize {target} failed: {rendered.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(rendered.stdout) if doc)


def _one(objects: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def _model_class(type_name: str) -> Any:
    return getattr(kserve_models, type_name, None) or getattr(kubernetes.client, type_name)


def _check_kserve(value: Any, type_name: str, path: str) -> list[str]:
    """Errors of ``value`` against a KServe/Kubernetes SDK model type: unknown fields, wrong types.

    The kserve SDK's models are generated from KServe's Go API types, the same types its CRD
    schemas are generated from; nested Kubernetes types come from the kubernetes client.
    """
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [e for i, item in enumerate(value)
                for e in _check_kserve(item, type_name[5:-1], f"{path}[{i}]")]  # fmt: skip
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return [f"{path}: expected a map, got {type(value).__name__}"]
        inner = type_name[type_name.index(",") + 1 : -1].strip()
        return [e for k, v in value.items() for e in _check_kserve(v, inner, f"{path}.{k}")]
    scalars: dict[str, tuple[type, ...]] = {"str": (str,), "bool": (bool,), "int": (int,),
                                            "float": (int, float), "datetime": (str,)}  # fmt: skip
    if type_name in scalars:
        ok = isinstance(value, scalars[type_name]) and not (
            type_name in ("int", "float") and isinstance(value, bool)
        )
        return [] if ok else [f"{path}: expected {type_name}, got {value!r}"]
    if type_name == "object":
        return []
    model = _model_class(type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({type_name}), got {value!r}"]
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in by_json:
            errors.append(f"{path}.{key}: no such field in {type_name}")
        else:
            errors += _check_kserve(item, model.openapi_types[by_json[key]], f"{path}.{key}")
    return errors


def _validate(obj: dict[str, Any]) -> list[str]:
    if obj["kind"] in KSERVE_KINDS:
        return _check_kserve(obj, KSERVE_KINDS[obj["kind"]], obj["kind"])
    version = _versions()["KUBERNETES_VERSION"]
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{obj['kind']}/{obj['metadata']['name']}: {err.message} at {list(err.path)}"]
    return []


def _crd_folder() -> Path:
    configured = os.environ.get("SKEWLESS_KSERVE_CRDS")
    if configured:
        return Path(configured)
    return ROOT.parent / "shared" / "kserve-crds" / _versions()["KSERVE_VERSION"]


def _json_schema(node: dict[str, Any], *, root: bool = False) -> dict[str, Any]:
    """A CRD's structural openAPIV3Schema as JSON Schema, with Kubernetes' meaning kept.

    Unknown fields are errors except under ``x-kubernetes-preserve-unknown-fields``;
    ``x-kubernetes-int-or-string`` takes either; ``nullable`` admits null; ``metadata`` is
    checked by the API server's ObjectMeta, not the CRD, so it is left open.
    """
    out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes") and k not in
           ("properties", "items", "additionalProperties", "nullable", "description")}  # fmt: skip
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in node:
        out["properties"] = {
            k: {"type": "object"} if root and k == "metadata" else _json_schema(v)
            for k, v in node["properties"].items()
        }
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _json_schema(node["additionalProperties"])
    if "items" in node:
        out["items"] = _json_schema(node["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            out[key] = [_json_schema(n) for n in node[key]]
    return out


@cache
def _crd_validators() -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) -> a validator of that kind's CRD schema."""
    folder = _crd_folder()
    files = sorted(folder.glob("*.yaml"))
    if not files:
        pytest.skip(
            f"KServe {_versions()['KSERVE_VERSION']} CRDs are not in {folder}: fetched upstream "
            "files may not be committed, so the project owner places them in the shared data "
            "(config/crd/full/serving.kserve.io_{inferenceservices,servingruntimes}.yaml of that "
            "tag); set SKEWLESS_KSERVE_CRDS to validate against another copy"
        )
    validators = {}
    for file in files:
        for crd in (d for d in yaml.safe_load_all(file.read_text()) if d):
            for version in crd["spec"]["versions"]:
                schema = _json_schema(version["schema"]["openAPIV3Schema"], root=True)
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                validators[key] = jsonschema.Draft7Validator(schema)
    return validators


def _crd_errors(obj: dict[str, Any]) -> list[str]:
    validator = _crd_validators().get((obj["apiVersion"], obj["kind"]))
    assert validator is not None, f"no CRD in {_crd_folder()} for {obj['apiVersion']} {obj['kind']}"
    return sorted(
        f"{obj['kind']}.{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(obj)
    )


def _kserve_objects() -> Iterator[dict[str, Any]]:
    for overlay in OVERLAYS:
        yield from (o for o in _render(f"overlays/{overlay}") if o["kind"] in KSERVE_KINDS)
    yield inference_service("ranking", "kubeflow", "s3://b/m", mode="Knative", canary_percent=10)
    yield inference_service("ranking-candidate", "kubeflow", "s3://b/m", mode="Standard")
    yield inference_service("ranking", "kubeflow", "s3://b/m", feature_store="minio://b/repo")
    yield inference_service("ranking", "kubeflow", "s3://b/m.tf-serving", runtime="tf-serving")


def test_kserve_objects_validate_against_kserves_real_crd_schemas():
    objects = list(_kserve_objects())
    assert len(objects) == 2 * len(OVERLAYS) + 4
    assert [e for obj in objects for e in _crd_errors(obj)] == []
    isvc = inference_service("ranking", "kubeflow", "s3://b/m")
    isvc["spec"]["predictor"]["canaryTrafficPercnt"] = 10  # a typo
    isvc["spec"]["predictor"]["minReplicas"] = "1"  # a string for an integer
    errors = _crd_errors(isvc)
    assert len(errors) == 2
    assert "'canaryTrafficPercnt' was unexpected" in errors[0] + errors[1]
    assert "'1' is not of type 'integer'" in errors[0] + errors[1]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_every_object_validates(overlay: str):
    objects = _render(f"overlays/{overlay}")
    kinds = sorted(o["kind"] for o in objects)
    extra = ["CronJob", "PersistentVolumeClaim"] if overlay == "kind-experiment" else []
    feature_store = ["Deployment", "NetworkPolicy", "PersistentVolumeClaim", "Service"]
    assert kinds == sorted(["InferenceService", "NetworkPolicy", "Role", "RoleBinding", "Secret",
                            "ServiceAccount", "ServingRuntime", *feature_store,
                            *extra])  # fmt: skip
    errors = [e for obj in objects for e in _validate(obj)]
    assert errors == []
    assert {o["metadata"].get("namespace") for o in objects} == {"kubeflow"}


def test_the_validators_reject_what_the_cluster_would():
    isvc = inference_service("ranking", "kubeflow", "s3://b/m")
    isvc["spec"]["predictor"]["canaryTrafficPercnt"] = 10  # a typo
    isvc["spec"]["predictor"]["minReplicas"] = "1"  # a string for an integer
    assert sorted(_validate(isvc)) == [
        "InferenceService.spec.predictor.canaryTrafficPercnt: no such field in "
        "V1beta1PredictorSpec",
        "InferenceService.spec.predictor.minReplicas: expected int, got '1'",
    ]
    role = _one(_render("base"), "Role")
    role["rules"][0]["verb"] = ["get"]
    assert _validate(role) and "verb" in _validate(role)[0]


def test_base_objects_equal_what_the_deploy_step_creates():
    objects = _render("base")
    isvc = _one(objects, "InferenceService")
    expected = inference_service(
        "ranking", "kubeflow", isvc["spec"]["predictor"]["model"]["storageUri"]
    )
    assert isvc == expected
    assert _one(objects, "ServingRuntime") == serving_runtime("kubeflow")


def test_knative_overlay_is_the_knative_inference_service():
    isvc = _one(_render("overlays/kind-knative"), "InferenceService")
    uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    assert isvc == inference_service("ranking", "kubeflow", uri, mode="Knative")


def test_tf_serving_overlay_is_the_tf_serving_inference_service_the_deploy_step_creates():
    isvc = _one(_render("overlays/tf-serving-runtime"), "InferenceService")
    uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    assert isvc == inference_service("ranking", "kubeflow", uri, runtime="tf-serving")
    assert isvc["spec"]["predictor"]["model"]["runtime"] == "kserve-tensorflow-serving"


def test_image_tag_is_defined_once():
    runtime = _one(_render("base"), "ServingRuntime")
    assert runtime["spec"]["containers"][0]["image"] == IMAGE
    name, tag = IMAGE.rsplit(":", 1)
    kustomization = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": name, "newTag": tag}]
    makefile = (ROOT / "Makefile").read_text()
    assert "src/skewless/image.py" in makefile and not re.search(re.escape(tag) + r"\b", makefile)


def test_deploy_step_rbac_is_inference_services_in_its_namespace_only():
    objects = _render("overlays/kind-standard")
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = _one(objects, "Role")
    rule = {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"],
            "verbs": ["get", "create", "patch", "watch"]}  # fmt: skip
    assert role["rules"] == [rule]
    binding = _one(objects, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner",
                                    "namespace": "kubeflow"}]  # fmt: skip


def test_experiment_overlay_serves_from_the_model_registry_with_logs_on_a_volume():
    from skewless.cli import IN_CLUSTER_REGISTRY, parse

    objects = _render("overlays/kind-experiment")
    runtime = _one(objects, "ServingRuntime")["spec"]
    container = runtime["containers"][0]
    # The arguments are ones `skewless serve` parses, and they mean what the overlay says.
    serve = parse([a.replace("{{.Name}}", "ranking") for a in container["args"]])
    args = serve.params
    assert (serve.command_path, args["registry"], args["name"]) == (
        "skewless serve", IN_CLUSTER_REGISTRY, "ranking"
    )  # fmt: skip
    assert args["host"] == "0.0.0.0"  # reached on the pod's address, not only from inside it
    volume = next(v for v in runtime["volumes"] if "persistentVolumeClaim" in v)
    name = volume["persistentVolumeClaim"]["claimName"]
    (claim,) = [
        o for o in objects if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == name
    ]
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert Path(args["request_log"]).parent == Path(mount["mountPath"])
    assert container["envFrom"] == [
        {"secretRef": {"name": _one(objects, "Secret")["metadata"]["name"]}}
    ]
    predictor = _one(objects, "InferenceService")["spec"]["predictor"]
    assert "storageUri" not in predictor["model"]
    # A ReadWriteOnce volume: one pod writes the logs.
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"] and predictor["maxReplicas"] == 1

    # The scheduled decision reads the same logs (read-only) and acts on the same registry.
    job = _one(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    decider = job["containers"][0]
    assert decider["image"] == IMAGE == container["image"]
    decide = parse(decider["args"])
    assert (decide.command_path, decide.params["registry"]) == (
        "skewless experiment decide", IN_CLUSTER_REGISTRY
    )  # fmt: skip
    assert decide.params["if_running"] and decide.params["sequential"]
    assert decide.params["log"] == args["request_log"]
    job_volume = next(v for v in job["volumes"] if "persistentVolumeClaim" in v)
    assert job_volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    job_mount = next(m for m in decider["volumeMounts"] if m["name"] == job_volume["name"])
    assert job_mount["mountPath"] == mount["mountPath"] and job_mount["readOnly"] is True


def test_pods_run_as_non_root_with_limits():
    objects = _render("overlays/kind-standard")
    container = _one(objects, "ServingRuntime")["spec"]["containers"][0]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert set(container["resources"]) == {"requests", "limits"}
    predictor = _one(objects, "InferenceService")["spec"]["predictor"]
    assert predictor["securityContext"]["runAsNonRoot"] is True
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile


def _predictor_pod(objects: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """The Deployment KServe makes of the InferenceService and its ServingRuntime.

    checkov does not read CRDs, so the pod they become is written out for it: the runtime's
    container with the model's resources, the predictor's pod-level settings and the runtime's
    volumes and annotations (its justified skips).
    """
    runtime = _one(objects, "ServingRuntime")
    predictor = _one(objects, "InferenceService")["spec"]["predictor"]
    container = {**runtime["spec"]["containers"][0], "resources": predictor["model"]["resources"]}
    labels = {"serving.kserve.io/inferenceservice": "ranking"}
    pod_fields = ("serviceAccountName", "automountServiceAccountToken", "securityContext")
    pod = {**{k: predictor[k] for k in pod_fields}, "containers": [container],
           "volumes": runtime["spec"]["volumes"]}  # fmt: skip
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "ranking-predictor",
            "namespace": "kubeflow",
            "annotations": runtime["metadata"]["annotations"],
        },
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def _training_workers() -> dict[str, Any]:
    """The TFJob's worker pods as the batch Job they behave like, for checkov (which reads no
    CRD): the replicas' pod template, with the TFJob's justified skips."""
    tfjob = _one(_render("overlays/kind-training"), "TFJob")
    worker = tfjob["spec"]["tfReplicaSpecs"]["Worker"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "skewless-ranker-worker",
            "namespace": "kubeflow",
            "annotations": tfjob["metadata"]["annotations"],
        },
        "spec": {
            "parallelism": worker["replicas"],
            "template": {
                **worker["template"],
                "spec": {**worker["template"]["spec"], "restartPolicy": "Never"},
            },
        },
    }


def test_checkov_finds_no_failed_check(tmp_path: Path):
    checkov = os.environ.get("SKEWLESS_CHECKOV") or shutil.which("checkov")
    assert checkov, "checkov is needed: `make test` installs it in .venv-tools"
    for overlay in OVERLAYS:
        objects = _render(f"overlays/{overlay}")
        documents = [*objects, _predictor_pod(objects)]
        (tmp_path / f"{overlay}.yaml").write_text(yaml.safe_dump_all(documents))
    base = _render("base")
    training = [o for o in _render("overlays/kind-training") if o not in base]
    (tmp_path / "kind-training.yaml").write_text(
        yaml.safe_dump_all([*training, _training_workers()])
    )
    result = subprocess.run(
        [checkov, "--directory", str(tmp_path), "--framework", "kubernetes", "--output", "json",
         "--compact", "--skip-download"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    report = json.loads(result.stdout)
    results = [r.get("results", {}) for r in (report if isinstance(report, list) else [report])]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}"
              for r in results for c in r.get("failed_checks", [])]  # fmt: skip
    passed = sum(len(r.get("passed_checks", [])) for r in results)
    skipped = {c["check_id"] for r in results for c in r.get("skipped_checks", [])}
    assert failed == [], "\n".join(failed)
    assert passed > 100  # the pod, RBAC, ServiceAccount, Secret and NetworkPolicy checks all ran
    # Only those justified on the ServingRuntime (the third: the experiment overlay's
    # credentials in the environment, the only way pyarrow's S3 client takes them).
    assert skipped == {"CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_35"}


def test_checkov_finds_no_failed_check_in_the_dockerfile():
    checkov = os.environ.get("SKEWLESS_CHECKOV") or shutil.which("checkov")
    assert checkov, "checkov is needed: `make test` installs it in .venv-tools"
    result = subprocess.run(
        [checkov, "--file", str(ROOT / "Dockerfile"), "--framework", "dockerfile", "--output",
         "json", "--compact", "--skip-download"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    results = json.loads(result.stdout)["results"]
    failed = [f"{c['check_id']}: {c['check_name']}" for c in results["failed_checks"]]
    assert failed == [], "\n".join(failed)
    assert len(results["passed_checks"]) > 40  # non-root USER, no ADD, pinned base, ...
    assert {c["check_id"] for c in results["skipped_checks"]} == {"CKV_DOCKER_2"}  # justified there


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and In/NotIn/Exists expressions) on pod labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        if operator == "In" and labels.get(key) not in expression["values"]:
            return False
        if operator == "NotIn" and labels.get(key) in expression["values"]:
            return False
        if operator == "Exists" and key not in labels:
            return False
    return True


def test_the_network_policy_covers_production_and_canary_pods():
    from skewless.rollout.kserve_objects import candidate_name

    (policy,) = [o for o in _render("base") if o["metadata"]["name"] == "skewless-model-server"]
    selector = policy["spec"]["podSelector"]
    label = "serving.kserve.io/inferenceservice"  # KServe labels the predictor pods with it
    for name in ("ranking", candidate_name("ranking")):
        assert _selects(selector, {label: name}), name
    assert not _selects(selector, {label: "some-other-model"})


def test_the_feature_stores_redis_is_where_submit_points_pinned_non_root_and_namespace_only():
    from skewless.cli import IN_CLUSTER_ONLINE_STORE

    objects = _render("base")
    deployment = _one(objects, "Deployment")
    (service,) = [o for o in objects if o["kind"] == "Service"]
    host, port = IN_CLUSTER_ONLINE_STORE.removeprefix("redis://").rsplit(":", 1)
    meta = service["metadata"]
    assert host == f"{meta['name']}.{meta['namespace']}.svc.cluster.local"
    assert [p["port"] for p in service["spec"]["ports"]] == [int(port)]
    pod = deployment["spec"]["template"]
    assert _selects({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"])
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "redis:7.2.16-alpine"  # a release, never a moving tag
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/data" in {m["mountPath"] for m in container["volumeMounts"]}  # the one writable path
    (policy,) = [o for o in objects if o["metadata"]["name"] == "feast-redis"
                 and o["kind"] == "NetworkPolicy"]  # fmt: skip
    assert _selects(policy["spec"]["podSelector"], pod["metadata"]["labels"])
    assert policy["spec"]["ingress"] == [
        {
            "from": [{"podSelector": {}}],  # this namespace only
            "ports": [{"port": int(port), "protocol": "TCP"}],
        }
    ]


def test_a_server_with_a_feature_store_gets_arguments_skewless_serve_takes_and_its_keys():
    """KServe v0.20.0 appends the InferenceService's args to the runtime's
    (MergeRuntimeContainers); together they must parse as ``skewless serve``, and the keys it
    reads must be the ones the base's Secret holds."""
    from skewless.cli import IN_CLUSTER_FEATURE_REPO, parse
    from skewless.rollout.kserve_objects import S3_SECRET

    objects = _render("base")
    runtime = _one(objects, "ServingRuntime")["spec"]["containers"][0]["args"]
    repo = IN_CLUSTER_FEATURE_REPO
    isvc = inference_service("ranking", "kubeflow", "s3://b/m", feature_store=repo)
    model = isvc["spec"]["predictor"]["model"]
    serve = parse([a.replace("{{.Name}}", "ranking") for a in runtime] + model["args"])
    assert serve.command_path == "skewless serve"
    assert serve.params["feature_store"] == IN_CLUSTER_FEATURE_REPO
    assert serve.params["model"] == "/mnt/models"
    assert serve.params["host"] == "0.0.0.0"  # reached on the pod's address, not only from inside
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    assert secret["metadata"]["name"] == S3_SECRET
    assert {e["valueFrom"]["secretKeyRef"]["key"] for e in model["env"]} == set(secret["data"])


# The fields of kubeflow.org/v1 TFJob's spec and of a replica spec in the CRD's openAPIV3Schema at
# kubeflow/training-operator v1.8.1 (manifests/base/crds/kubeflow.org_tfjobs.yaml); the CRD must
# be placed in the shared data for a full schema test, as KServe's are.
TFJOB_SPEC_FIELDS = {"enableDynamicWorker", "runPolicy", "successPolicy", "tfReplicaSpecs"}
TFJOB_RUN_POLICY_FIELDS = {"activeDeadlineSeconds", "backoffLimit", "cleanPodPolicy",
                           "schedulingPolicy", "suspend", "ttlSecondsAfterFinished"}  # fmt: skip
TFJOB_REPLICA_FIELDS = {"replicas", "restartPolicy", "template"}


def test_the_training_job_is_a_tfjob_whose_workers_run_the_distributed_entry_point():
    from skewless.model.distributed import build_parser

    objects = _render("overlays/kind-training")
    base = _render("base")
    assert sorted(o["kind"] for o in objects) == sorted([*(o["kind"] for o in base),
                                                         *TRAINING_KINDS])  # fmt: skip
    assert [e for o in objects if o["kind"] != "TFJob" for e in _validate(o)] == []
    assert {o["metadata"].get("namespace") for o in objects} == {"kubeflow"}

    job = _one(objects, "TFJob")
    assert job["apiVersion"] == "kubeflow.org/v1"
    assert set(job["spec"]) <= TFJOB_SPEC_FIELDS
    assert set(job["spec"]["runPolicy"]) <= TFJOB_RUN_POLICY_FIELDS
    assert list(job["spec"]["tfReplicaSpecs"]) == ["Worker"]  # worker 0 is the chief
    worker = job["spec"]["tfReplicaSpecs"]["Worker"]
    assert set(worker) <= TFJOB_REPLICA_FIELDS and worker["replicas"] == 2
    assert worker["restartPolicy"] in ("Always", "OnFailure", "Never", "ExitCode")
    pod = worker["template"]["spec"]
    # The operator's webhook (pkg/webhooks/tensorflow at v1.8.1) wants a container named so.
    (container,) = pod["containers"]
    assert container["name"] == "tensorflow" and container["image"] == IMAGE
    # A pod spec as Kubernetes validates it: the CRD embeds the PodTemplateSpec schema.
    pod_errors = _validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "worker", "namespace": "kubeflow"},
            "spec": pod,
        }
    )
    assert pod_errors == []  # fmt: skip

    assert container["command"] == ["python", "-m", "skewless.model.distributed"]
    args = build_parser().parse_args(container["args"])
    json.loads(args.hparams)
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "training"]
    for path in (args.train, args.eval, args.transform, args.out):
        assert Path(path).is_relative_to(mount["mountPath"]), path
    (volume,) = [v for v in pod["volumes"] if v["name"] == "training"]
    claim_name = volume["persistentVolumeClaim"]["claimName"]
    (claim,) = [o for o in objects if o["kind"] == "PersistentVolumeClaim"
                and o["metadata"]["name"] == claim_name]  # fmt: skip
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]  # kind: one node, per-node mode
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert set(container["resources"]) == {"requests", "limits"}
    # The workers reach each other on the operator's port (2222), and nothing else reaches them.
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy" and o not in base]
    labels = worker["template"]["metadata"]["labels"]
    assert _selects(policy["spec"]["podSelector"], labels)
    ((rule,),) = [r["from"] for r in policy["spec"]["ingress"]]
    assert _selects(rule["podSelector"], labels) and set(rule) == {"podSelector"}
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": 2222, "protocol": "TCP"}]
