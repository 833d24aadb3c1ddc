"""Local deployment: publish a promoted model into a versioned model repository.

The layout is the one TensorFlow Serving and KServe's TF runtime read::

    <repository>/<model_name>/<version>/saved_model.pb     (version: 1, 2, 3 ...)
    <repository>/<model_name>/production.json              which version serves, and why

The local model server serves ``production``; the cluster path deploys the same artifact as a
KServe InferenceService.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

PRODUCTION_FILE = "production.json"


class DeployError(RuntimeError):
    """A model cannot be published or found."""


def _versions(model_root: Path) -> list[int]:
    if not model_root.is_dir():
        return []
    return sorted(int(p.name) for p in model_root.iterdir() if p.is_dir() and p.name.isdigit())


def production_model(repository: str | Path, model_name: str) -> Path | None:
    """The production version's folder, or None when nothing has been promoted yet."""
    pointer = Path(repository) / model_name / PRODUCTION_FILE
    if not pointer.is_file():
        return None
    version_dir = pointer.parent / str(json.loads(pointer.read_text())["version"])
    if not (version_dir / "saved_model.pb").is_file():
        raise DeployError(f"{pointer} points at {version_dir}, which holds no SavedModel")
    return version_dir


def publish_local(
    model_dir: str | Path, repository: str | Path, model_name: str, record: dict[str, Any]
) -> dict[str, Any]:
    """Copies the SavedModel in as the next version and makes it production.

    The copy goes to a temporary folder first and is renamed into place, so a reader never sees a
    half-written version; the production pointer is replaced atomically the same way.

    Args:
        model_dir: Exported SavedModel.
        repository: Model repository root (created).
        model_name: Model name, the folder under the root.
        record: Facts stored with the promotion (metrics, gate decision, run id).

    Returns:
        The production record, with ``version`` and ``path``.
    """
    source = Path(model_dir)
    if not (source / "saved_model.pb").is_file():
        raise DeployError(f"{source} is not a SavedModel folder (no saved_model.pb)")
    root = Path(repository) / model_name
    root.mkdir(parents=True, exist_ok=True)
    version = (_versions(root) or [0])[-1] + 1
    staging = root / f".staging-{version}-{os.getpid()}"
    shutil.copytree(source, staging)
    target = root / str(version)
    os.rename(staging, target)
    production = {
        **record,
        "model_name": model_name,
        "version": version,
        "path": str(target),
        "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    pointer_tmp = root / f".{PRODUCTION_FILE}.{os.getpid()}"
    pointer_tmp.write_text(json.dumps(production, indent=1))
    os.replace(pointer_tmp, root / PRODUCTION_FILE)
    return production
