"""Local deployment: publish a promoted model into a versioned repository and the registry.

The layout is the one TensorFlow Serving and KServe's TF runtime read, plus the registry::

    <repository>/<model_name>/<version>/saved_model.pb     (version: 1, 2, 3 ...)
    <repository>/registry.db                               versions, lineage, aliases

The registry's ``production`` alias says which version serves; the local server asks for it and
gets the folder only after its checksum is verified. The cluster path deploys the same artifact as a
KServe InferenceService.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
from pathlib import Path
from typing import Any

from skewless import __version__
from skewless.artifacts import SPEC_ASSET
from skewless.registry import open_registry as registry_at
from skewless.registry.core import Registry, check_model_name
from skewless.registry.versions import file_sha256

REGISTRY_FILE = "registry.db"


class DeployError(RuntimeError):
    """A model cannot be published or found."""


def registry_for(repository: str | Path) -> Registry:
    """The registry that lives beside a model repository."""
    return registry_at(Path(repository) / REGISTRY_FILE)


def production_model(repository: str | Path, model_name: str) -> Path | None:
    """The verified production version's folder, or None when nothing has been promoted yet.

    Raises:
        ChecksumMismatchError: The production artifact changed since it was registered.
    """
    found = production_to_beat(repository, model_name, registry="")
    return found.path if found is not None else None


@dataclasses.dataclass(frozen=True)
class ProductionModel:
    """The production version a candidate must beat, as a local folder."""

    version: int
    path: Path


def production_to_beat(
    repository: str | Path, model_name: str, *, registry: str, workdir: str | Path | None = None
) -> ProductionModel | None:
    """The current production version, looked up when the evaluate step runs.

    Asking the registry at run time (not taking a path when the run is submitted) keeps a
    recurring run honest: each run is gated against whatever serves when it evaluates. An
    artifact in the object store is downloaded under ``workdir`` and verified there (without
    ``workdir``, only a local artifact will do).

    Returns:
        None when no version is production yet (the gate then applies its absolute floors).

    Raises:
        RegistryError: The registry cannot be read or the artifact cannot be fetched.
        ChecksumMismatchError: The production artifact changed since it was registered.
    """
    if not registry and not (Path(repository) / REGISTRY_FILE).is_file():
        return None
    store = open_registry(repository, registry)
    version = store.traffic(model_name).production
    if version is None:
        return None
    download_to = Path(workdir) / f"production-{version}" if workdir is not None else None
    path = store.verified_artifact(model_name, version, download_to=download_to)
    return ProductionModel(version, path)


def _file_sha256(path: Path) -> str:
    return file_sha256(path) if path.is_file() else ""


def _lineage(
    model_dir: Path, evaluation: dict[str, Any], stats_path: str | Path | None, run_id: str
) -> dict[str, Any]:
    """What a registration records besides the artifact: metrics, gate, hashes, code, run."""
    return {
        "metrics": evaluation["metrics"],
        "gate": evaluation["gate"],
        "spec_sha256": _file_sha256(model_dir / SPEC_ASSET),
        "stats_sha256": _file_sha256(Path(stats_path)) if stats_path else "",
        "code_version": __version__,
        "run_id": run_id,
    }


def _next_version(model_root: Path, registry: Registry, name: str) -> int:
    """The version the registry will allocate next; its folder is made free for it.

    The registry alone numbers versions. A folder already holding that number was left by a run
    that stopped between writing the folder and registering it (a crash, a kill): nothing refers
    to it, so it is removed, as are staging folders of processes that no longer run.
    """
    registered = registry.list_versions(name)
    version = max((v.version for v in registered), default=0) + 1
    orphan = model_root / str(version)
    if orphan.exists():
        shutil.rmtree(orphan)
    for staging in model_root.glob(".staging-*"):
        pid = staging.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)
    return version


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def register_local(
    model_dir: str | Path,
    repository: str | Path,
    model_name: str,
    *,
    evaluation: dict[str, Any],
    stats_path: str | Path | None,
    run_id: str,
) -> dict[str, Any]:
    """Copies the SavedModel in as the next version and registers it, promoted or not.

    A refused candidate is registered too, with the gate's reasons, so every trained model is
    accounted for; only :func:`deploy_version` lets a version take traffic. The copy goes to a
    temporary folder first and is renamed into place, so a reader never sees a half-written one.

    Args:
        model_dir: Exported SavedModel.
        repository: Model repository root (created).
        model_name: Model name, the folder under the root.
        evaluation: The evaluate step's result (metrics and gate decision are recorded).
        stats_path: The training split's statistics, hashed into the lineage.
        run_id: The pipeline run that produced the model.

    Returns:
        The registered version as a dict (``version``, ``artifact_uri``, ``sha256``, ...).
    """
    check_model_name(model_name)  # it becomes a folder: nothing is copied under a bad one
    source = Path(model_dir)
    if not (source / "saved_model.pb").is_file():
        raise DeployError(f"{source} is not a SavedModel folder (no saved_model.pb)")
    root = Path(repository) / model_name
    root.mkdir(parents=True, exist_ok=True)
    registry = registry_for(repository)
    # One writer at a time from choosing the number to writing the row: a folder numbered past
    # the registry can then only be a dead run's leftover, never a live writer's work.
    with (root / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        version = _next_version(root, registry, model_name)
        staging = root / f".staging-{version}-{os.getpid()}"
        shutil.copytree(source, staging)
        target = root / str(version)
        os.rename(staging, target)
        registered = registry.register(
            model_name, target, **_lineage(target, evaluation, stats_path, run_id)
        )
    if registered.version != version:
        raise DeployError(
            f"registry allocated version {registered.version} for {target}; another writer "
            "published at the same time"
        )
    return registered.to_dict()


def open_registry(repository: str | Path, registry: str = "") -> Registry:
    """The registry a pipeline step uses: the Kubeflow Model Registry at ``registry`` (a URL),
    or else the SQLite file beside the model repository."""
    return registry_at(registry or Path(repository) / REGISTRY_FILE)


def register_version(
    model_dir: str | Path,
    model_uri: str,
    repository: str | Path,
    model_name: str,
    *,
    registry: str,
    evaluation: dict[str, Any],
    stats_path: str | Path | None,
    run_id: str,
) -> int:
    """Registers a trained model (promoted or not) and returns its version number.

    Without ``registry`` the files are copied into the local repository (:func:`register_local`);
    with a Kubeflow Model Registry URL they stay where the pipeline stored them (``model_uri``,
    as KFP records it: ``minio://`` for its own store) and the checksum is taken from the step's
    local copy.
    """
    if not registry and not str(repository):
        raise DeployError(
            "nowhere to register the model: set registry (a Kubeflow Model Registry URL; on a "
            "cluster) or model_repository (a folder; on one machine)"
        )
    if not registry:
        registered = register_local(model_dir, repository, model_name, evaluation=evaluation,
                                    stats_path=stats_path, run_id=run_id)  # fmt: skip
        return int(registered["version"])
    version = open_registry(repository, registry).register(
        model_name,
        model_dir,
        artifact_uri=model_uri,
        **_lineage(Path(model_dir), evaluation, stats_path, run_id),
    )
    return version.version


def deploy_version(
    repository: str | Path,
    model_name: str,
    version: int,
    run_id: str,
    canary_percent: int = 0,
    *,
    registry: str = "",
    target: str = "local",
    namespace: str = "kubeflow",
    mode: str = "Standard",
    timeout_seconds: float = 600,
    feature_store: str = "",
    runtime: str = "skewless",
) -> dict[str, Any]:
    """Puts a registered, gate-approved version into service.

    With no production version yet, or ``canary_percent`` 0, the version becomes production at
    once. Otherwise it becomes the candidate taking ``canary_percent`` of requests beside
    production, until ``skewless promote`` (or a rollback) ends the canary. The registry records
    the decision; with ``target="kserve"`` the InferenceService follows it
    (:func:`skewless.rollout.kserve.deploy_role`), and the step waits for it to be Ready; with a
    ``feature_store`` (an object-store folder) it serves by id from that repository, and
    ``runtime="tf-serving"`` serves a new InferenceService with KServe's TF Serving runtime.

    Returns:
        ``{"role": "production" | "canary", "version", "canary_percent", "artifact"}`` (plus
        ``"inference_service"`` for a cluster deployment).

    Raises:
        RegistryError: The gate refused the version (it can never take traffic), or its artifact
            no longer matches its checksum (checked before any alias moves).
        ClusterDeployError: The InferenceService was refused or did not become Ready in time.
    """
    if target not in ("local", "kserve"):
        raise DeployError(f"deploy target {target!r}: expected 'local' or 'kserve'")
    if target == "kserve":  # checked before any alias moves
        from skewless.rollout.kserve_objects import MODES, RUNTIMES

        if runtime not in RUNTIMES or mode not in MODES:
            raise DeployError(
                f"kserve runtime {runtime!r} and mode {mode!r}: expected a runtime of "
                f"{list(RUNTIMES)} and a mode of {list(MODES)}"
            )
    store = open_registry(repository, registry)
    registered = store.get(model_name, version)
    reasons = "; ".join(registered.gate.get("reasons", []))
    has_production = store.traffic(model_name).production is not None
    role = "canary" if canary_percent and has_production else "production"
    note = f"{run_id}: {reasons}"
    if role == "canary":
        store.start_canary(
            model_name, version, canary_percent, actor="pipeline:deploy", reason=note
        )
    else:
        store.set_alias(model_name, "production", version, actor="pipeline:deploy", reason=note)
    result: dict[str, Any] = {
        "role": role,
        "version": version,
        "canary_percent": canary_percent if role == "canary" else 0,
        # The alias move above checked the artifact's checksum; no second pass over its files.
        "artifact": registered.artifact_uri,
    }
    if target == "kserve":
        from skewless.rollout.kserve import deploy_role

        result["inference_service"] = deploy_role(
            model_name, namespace, result["artifact"], version=str(version), role=role,
            canary_percent=canary_percent, mode=mode, timeout_seconds=timeout_seconds,
            feature_store=feature_store, runtime=runtime,
        )  # fmt: skip
    return result
