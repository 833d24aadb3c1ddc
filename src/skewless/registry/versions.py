"""What a registry holds: model versions, the traffic between them, names and checksums.

:class:`skewless.registry.core.Registry` keeps these; the two backends store them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any

from skewless.data import storage

ALIASES = ("production", "candidate")
_RECORD_FIELDS = ("artifact_uri", "sha256", "metrics", "gate", "spec_sha256", "stats_sha256",
                  "code_version", "run_id", "created_at")  # fmt: skip


class RegistryError(RuntimeError):
    """A registry request cannot be met; the message names the model, version or alias."""


# A model name is a URL path segment, a folder, and on a cluster an InferenceService name, which
# Kubernetes requires to be a DNS-1123 label.
_MODEL_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")


def check_model_name(name: Any) -> str:
    """Returns ``name`` if it can name a model everywhere it goes.

    Raises:
        RegistryError: It cannot (the message says what a name may hold).
    """
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        raise RegistryError(
            f"model name {str(name)[:80]!r}: use lowercase letters, digits and '-', starting and "
            "ending with a letter or digit, at most 63 characters (a KServe InferenceService name)"
        )
    return name


class ChecksumMismatchError(RegistryError):
    """An artifact's files no longer match the checksum recorded when it was registered."""


@dataclasses.dataclass(frozen=True)
class ModelVersion:
    """One registered version of a named model."""

    name: str
    version: int
    artifact_uri: str
    sha256: str
    metrics: dict[str, Any]
    gate: dict[str, Any]
    spec_sha256: str
    stats_sha256: str
    code_version: str
    run_id: str
    created_at: str
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Traffic:
    """Who serves a model now: production, and a canary candidate with its share (0 when none)."""

    production: int | None
    candidate: int | None
    candidate_percent: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


def file_sha256(path: str | Path) -> str:
    """Checksum of one local file's contents, read a block at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def directory_sha256(path: str | Path) -> str:
    """Checksum of a folder: its files' relative paths and contents, in path order.

    ``path`` may be a local folder or an object-store URI (see :mod:`skewless.data.storage`); the
    same files give the same checksum either way.
    """
    try:
        digest = hashlib.sha256()
        for name, blocks in storage.iter_files(path):
            digest.update(name.encode() + b"\0")
            for block in blocks:
                digest.update(block)
            digest.update(b"\0")
    except storage.StorageError as err:
        raise RegistryError(f"artifact {err}") from err
    return digest.hexdigest()
