#!/usr/bin/env bash
# Brings up (or tears down) a kind cluster or a minikube profile with cert-manager, KServe (Standard
# mode; Knative mode too with KNATIVE=1), Kubeflow Pipelines standalone and the Kubeflow Model
# Registry, at the versions in manifests/versions.env. Every step is idempotent: re-running it
# converges, it never duplicates.
#
#   manifests/cluster/cluster.sh up        # or: make cluster [KNATIVE=1] [CLUSTER_TOOL=minikube]
#   manifests/cluster/cluster.sh down      # or: make cluster-down [CLUSTER_TOOL=minikube]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=SCRIPTDIR/../versions.env
source "$here/../versions.env"
CLUSTER="${CLUSTER:-skewless}"
KNATIVE="${KNATIVE:-0}"
CLUSTER_TOOL="${CLUSTER_TOOL:-kind}"
# minikube's driver; docker, like kind (minikube auto-detects others when set to "").
MINIKUBE_DRIVER="${MINIKUBE_DRIVER:-docker}"
case "$CLUSTER_TOOL" in
  kind|minikube) ;;
  *) echo "error: CLUSTER_TOOL must be kind or minikube, got '$CLUSTER_TOOL'" >&2; exit 2 ;;
esac

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "error: '$1' is not installed. $2" >&2
  exit 1
}

check_tools() {
  if [ "$CLUSTER_TOOL" = kind ] || [ "$MINIKUBE_DRIVER" = docker ]; then
    need docker "Install Docker (https://docs.docker.com/get-docker/) and start it."
    docker info >/dev/null 2>&1 || { echo "error: docker is installed but its daemon is not running (docker info failed)." >&2; exit 1; }
  fi
  if [ "$CLUSTER_TOOL" = kind ]; then
    need kind "Install kind ${KIND_VERSION}: https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  else
    need minikube "Install minikube ${MINIKUBE_VERSION}: https://minikube.sigs.k8s.io/docs/start/"
  fi
  need kubectl "Install kubectl (1.32 or newer): https://kubernetes.io/docs/tasks/tools/"
  need helm "Install helm 3: https://helm.sh/docs/intro/install/"
  if [ "$KNATIVE" = "1" ]; then
    need envsubst "Install gettext, which provides envsubst (apt-get install gettext-base; brew install gettext)."
  fi
  local version
  if [ "$CLUSTER_TOOL" = kind ]; then
    version="$(kind version | awk '{print $2}')"
    [ "$version" = "$KIND_VERSION" ] || echo "warning: kind is $version; this setup is pinned to $KIND_VERSION" >&2
  else
    version="$(minikube version --short)"
    [ "$version" = "$MINIKUBE_VERSION" ] || echo "warning: minikube is $version; this setup is pinned to $MINIKUBE_VERSION" >&2
  fi
}

# The cluster itself. minikube's flags as at v1.37.0: --kubernetes-version, --cpus, --memory,
# --disk-size, --driver (cmd/minikube/cmd/start_flags.go), -p (cmd/minikube/cmd/root.go); its
# addons metrics-server, default-storageclass, storage-provisioner (pkg/addons/config.go).
create_cluster() {
  if [ "$CLUSTER_TOOL" = kind ]; then
    step "kind cluster '$CLUSTER'"
    if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
      echo "exists"
    else
      kind create cluster --name "$CLUSTER" --config "$here/kind-config.yaml" --wait 120s
    fi
    kubectl config use-context "kind-$CLUSTER" >/dev/null
  else
    step "minikube profile '$CLUSTER' (Kubernetes v$KUBERNETES_VERSION, driver $MINIKUBE_DRIVER)"
    if minikube status -p "$CLUSTER" >/dev/null 2>&1; then
      echo "exists"
    else
      minikube start -p "$CLUSTER" --kubernetes-version="v$KUBERNETES_VERSION" \
        --driver="$MINIKUBE_DRIVER" --cpus=4 --memory=8g --disk-size=40g
    fi
    # The HPA of Standard-mode predictors reads metrics-server; KFP's MySQL and SeaweedFS claim
    # volumes from the default storage class.
    minikube addons enable metrics-server -p "$CLUSTER"
    minikube addons enable default-storageclass -p "$CLUSTER"
    minikube addons enable storage-provisioner -p "$CLUSTER"
    kubectl config use-context "$CLUSTER" >/dev/null
  fi
}

step() { printf '\n==> %s\n' "$*"; }

up() {
  check_tools
  create_cluster

  step "cert-manager $CERT_MANAGER_VERSION"
  helm upgrade --install cert-manager cert-manager --repo https://charts.jetstack.io \
    --version "$CERT_MANAGER_VERSION" --namespace cert-manager --create-namespace \
    --set crds.enabled=true --wait --timeout 5m

  if [ "$KNATIVE" = "1" ]; then
    step "Knative operator $KNATIVE_OPERATOR_VERSION, Knative Serving $KNATIVE_SERVING_VERSION (Kourier)"
    helm upgrade --install knative-operator knative-operator --repo https://knative.github.io/operator \
      --version "$KNATIVE_OPERATOR_VERSION" --namespace knative-operator --create-namespace --wait --timeout 5m
    KNATIVE_SERVING_VERSION="$KNATIVE_SERVING_VERSION" envsubst < "$here/knative-serving.yaml" | kubectl apply -f -
    kubectl wait --for=condition=Ready knativeserving/knative-serving -n knative-serving --timeout=10m
  fi

  step "KServe $KSERVE_VERSION (default deployment mode: Standard)"
  helm upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd \
    --version "$KSERVE_VERSION" --namespace kserve --create-namespace --wait --timeout 5m
  helm upgrade --install kserve-resources oci://ghcr.io/kserve/charts/kserve-resources \
    --version "$KSERVE_VERSION" --namespace kserve \
    --set kserve.version="$KSERVE_VERSION" --set kserve.controller.deploymentMode=Standard \
    --wait --timeout 10m
  # The chart installs no runtime unless servingruntime.enabled (default false); TF Serving's
  # default tag (2.6.2) cannot load graphs TensorFlow 2.21 writes, so it serves with ours.
  helm upgrade --install kserve-runtime-configs oci://ghcr.io/kserve/charts/kserve-runtime-configs \
    --version "$KSERVE_VERSION" --namespace kserve \
    --set kserve.servingruntime.enabled=true \
    --set kserve.servingruntime.tensorflow.tag="$TF_SERVING_VERSION" --wait --timeout 5m

  step "Kubeflow Pipelines $KFP_VERSION (standalone, platform-agnostic)"
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=$KFP_VERSION"
  kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=$KFP_VERSION"

  step "Kubeflow Model Registry $MODEL_REGISTRY_VERSION (namespace kubeflow)"
  kubectl apply -k "github.com/kubeflow/model-registry/manifests/kustomize/overlays/db?ref=$MODEL_REGISTRY_VERSION" -n kubeflow

  if [ "$CLUSTER_TOOL" = kind ]; then  # minikube has it as an addon, enabled above
    step "metrics-server $METRICS_SERVER_CHART_VERSION (the HPA of Standard-mode predictors reads CPU from it)"
    # kind's kubelets serve self-signed certificates, hence --kubelet-insecure-tls.
    helm upgrade --install metrics-server metrics-server --repo https://kubernetes-sigs.github.io/metrics-server/ \
      --version "$METRICS_SERVER_CHART_VERSION" --namespace kube-system \
      --set 'args={--kubelet-insecure-tls}' --wait --timeout 5m
  fi

  step "waiting for Kubeflow Pipelines and the Model Registry (first start pulls images: ~5-10 min)"
  # Only their Deployments: an InferenceService applied to kubeflow earlier (its predictor
  # included) is not part of the platform, and a re-run must not wait on it.
  kubectl wait --for=condition=Available deployment -l application-crd-id=kubeflow-pipelines \
    -n kubeflow --timeout=20m
  kubectl wait --for=condition=Available deployment/model-registry-deployment \
    deployment/model-registry-db -n kubeflow --timeout=10m

  echo
  echo "cluster '$CLUSTER' is ready. Next: make image image-load && kubectl apply -k manifests/overlays/kind-$([ "$KNATIVE" = "1" ] && echo knative || echo standard)"
}

down() {
  if [ "$CLUSTER_TOOL" = kind ]; then
    need kind "Nothing to remove without kind."
    if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
      kind delete cluster --name "$CLUSTER"
    else
      echo "no kind cluster named '$CLUSTER'"
    fi
  else
    need minikube "Nothing to remove without minikube."
    if minikube profile list -o json 2>/dev/null | grep -q "\"Name\":\"$CLUSTER\""; then
      minikube delete -p "$CLUSTER"
    else
      echo "no minikube profile named '$CLUSTER'"
    fi
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down   (KNATIVE=1 adds KServe's Knative mode; CLUSTER_TOOL=minikube)" >&2; exit 2 ;;
esac
