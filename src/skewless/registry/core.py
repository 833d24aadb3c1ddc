"""Model registry: versions of named models, their metadata and lineage, and movable aliases.

Every trained model becomes a new version of a named model, recording its artifact URI and
checksum, metrics, gate decision, the hashes of the feature spec and of the training statistics,
the code version, the pipeline run, and when it was registered. Aliases (``production``,
``candidate``) point at versions; every move of an alias is kept in its history with who moved it
and why, which is what a rollback reads.

A candidate can take a share of traffic (a canary) before it is promoted to ``production``; the
share is recorded with the ``candidate`` alias, and servers following the registry split traffic by
it. Only a version the gate passed may hold ``production`` or ``candidate``.

One interface, two backends. :class:`Registry` holds all the behaviour (aliases, history, canary,
promotion, rollback, checksum verification) over five storage primitives;
:class:`skewless.registry.sqlite.SQLiteRegistry` (embedded, the default) and
:class:`skewless.registry.kubeflow.KubeflowRegistry` (the Kubeflow Model Registry, for clusters)
implement them; :func:`skewless.registry.open_registry` picks one from a locator.
"""

from __future__ import annotations

import abc
import time
from pathlib import Path
from typing import Any

from skewless.data import storage
from skewless.registry.versions import (
    ALIASES,
    ChecksumMismatchError,
    ModelVersion,
    RegistryError,
    Traffic,
    check_model_name,
    directory_sha256,
)

__all__ = [
    "ALIASES",
    "ChecksumMismatchError",
    "ModelVersion",
    "Registry",
    "RegistryError",
    "Traffic",
    "check_model_name",
    "directory_sha256",
]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _check_artifact(
    name: str, version: int, record: dict[str, Any], *, local_copy: Path | None = None
) -> None:
    """Raises ChecksumMismatchError when a version's files (or a copy of them) changed."""
    actual = directory_sha256(local_copy if local_copy is not None else record["artifact_uri"])
    if actual != record["sha256"]:
        copy = f" (copied to {local_copy})" if local_copy is not None else ""
        raise ChecksumMismatchError(
            f"{name} version {version}: artifact {record['artifact_uri']}{copy} has checksum "
            f"{actual[:12]}..., registered as {record['sha256'][:12]}...; refusing to serve it"
        )


class Registry(abc.ABC):
    """Registry behaviour over five storage primitives that each backend implements.

    A backend stores version records (numbered per model name, allocated without collisions) and
    an append-only log of alias moves; everything else is derived here, so every backend behaves
    the same way.
    """

    @abc.abstractmethod
    def _insert_version(self, name: str, record: dict[str, Any]) -> int:
        """Stores ``record`` as the next version of ``name``; returns the version number."""

    @abc.abstractmethod
    def _version_record(self, name: str, version: int) -> dict[str, Any] | None:
        """The stored record (keys of ``_RECORD_FIELDS``) of one version, or None."""

    @abc.abstractmethod
    def _version_numbers(self, name: str | None) -> list[tuple[str, int]]:
        """(name, version) of every version, of one model or all, sorted."""

    @abc.abstractmethod
    def _append_alias_event(self, name: str, event: dict[str, Any]) -> None:
        """Appends one alias move (alias, version, actor, reason, set_at, traffic_percent)."""

    @abc.abstractmethod
    def _alias_events(self, name: str) -> list[dict[str, Any]]:
        """Every alias move of ``name``, oldest first."""

    def register(
        self,
        name: str,
        artifact_dir: str | Path,
        *,
        metrics: dict[str, Any],
        gate: dict[str, Any],
        spec_sha256: str,
        stats_sha256: str,
        code_version: str,
        run_id: str,
        artifact_uri: str | None = None,
    ) -> ModelVersion:
        """Records ``artifact_dir`` as the next version of ``name`` and returns it.

        ``artifact_uri`` is where servers will read the files (an object-store URI on a cluster)
        when that is not ``artifact_dir`` itself; the checksum is taken from ``artifact_dir``.
        """
        check_model_name(name)
        record = {
            "artifact_uri": artifact_uri or str(Path(artifact_dir).resolve()),
            "sha256": directory_sha256(artifact_dir),
            "metrics": metrics,
            "gate": gate,
            "spec_sha256": spec_sha256,
            "stats_sha256": stats_sha256,
            "code_version": code_version,
            "run_id": run_id,
            "created_at": _now(),
        }
        return self.get(name, self._insert_version(name, record))

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        actor: str,
        reason: str,
        traffic_percent: int = 0,
    ) -> ModelVersion:
        """Points ``alias`` at ``version`` of ``name``, recording who and why.

        A move that makes the version serve (``production``, or a candidate with a traffic share)
        first checks its artifact against the registered checksum.

        Raises:
            RegistryError: Unknown alias or version, or a version the gate refused (it may never
                take traffic).
            ChecksumMismatchError: The version would serve, and its files changed since
                registration.
        """
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}; aliases are {list(ALIASES)}")
        if not 0 <= traffic_percent <= 100:
            raise RegistryError(f"traffic percent must be 0 to 100, got {traffic_percent}")
        record = self._version_record(name, version)
        if record is None:
            raise RegistryError(f"model {name!r} has no version {version}")
        if not record["gate"].get("promote"):
            reasons = "; ".join(record["gate"].get("reasons", []))
            raise RegistryError(
                f"{name} version {version} was refused by the gate ({reasons}); "
                "it cannot take traffic"
            )
        if alias == "production" or traffic_percent:
            _check_artifact(name, version, record)
        event = {"alias": alias, "version": version, "actor": actor, "reason": reason,
                 "set_at": _now(), "traffic_percent": traffic_percent}  # fmt: skip
        self._append_alias_event(name, event)
        return self.get(name, version)

    def alias_history(self, name: str, alias: str) -> list[dict[str, Any]]:
        """Every move of ``alias`` for ``name``, oldest first."""
        return [
            {key: event[key] for key in ("version", "actor", "reason", "set_at", "traffic_percent")}
            for event in self._alias_events(name)
            if event["alias"] == alias
        ]

    def _current_aliases(self, name: str) -> dict[str, dict[str, Any]]:
        current: dict[str, dict[str, Any]] = {}
        for event in self._alias_events(name):
            current[event["alias"]] = event
        return current

    def get(self, name: str, ref: int | str) -> ModelVersion:
        """A version by number, or by alias (``production``) or ``latest``."""
        aliases = {a: int(e["version"]) for a, e in self._current_aliases(name).items()}
        if isinstance(ref, str) and not ref.isdigit():
            if ref == "latest":
                numbers = [v for _, v in self._version_numbers(name)]
                if not numbers:
                    raise RegistryError(f"no model named {name!r}")
                ref = max(numbers)
            elif ref in aliases:
                ref = aliases[ref]
            else:
                raise RegistryError(f"model {name!r} has no version with alias {ref!r}")
        record = self._version_record(name, int(ref))
        if record is None:
            raise RegistryError(f"model {name!r} has no version {ref}")
        held = tuple(sorted(a for a, v in aliases.items() if v == int(ref)))
        return ModelVersion(name=name, version=int(ref), aliases=held, **record)

    def list_versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every version (of one model, or of all), by name then version."""
        return [self.get(n, v) for n, v in self._version_numbers(name)]

    def traffic(self, name: str) -> Traffic:
        """Which versions serve ``name`` and the candidate's share of requests."""
        current = self._current_aliases(name)
        production = int(current["production"]["version"]) if "production" in current else None
        candidate = current.get("candidate")
        if candidate is None or production is None or int(candidate["version"]) == production:
            return Traffic(production, None, 0)
        percent = int(candidate.get("traffic_percent", 0))
        return Traffic(production, int(candidate["version"]) if percent else None, percent)

    def start_canary(
        self, name: str, version: int, percent: int, *, actor: str, reason: str = ""
    ) -> Traffic:
        """Makes ``version`` the candidate taking ``percent`` of requests (0 stops the canary).

        Raises:
            RegistryError: No production to compare with, the version is already production, or
                the gate refused it.
        """
        production = self.traffic(name).production
        if production is None:
            raise RegistryError(f"{name}: no production version yet; promote one first")
        if version == production and percent:
            raise RegistryError(f"{name}: version {version} is already production")
        self.set_alias(name, "candidate", version, actor=actor, reason=reason,
                       traffic_percent=percent)  # fmt: skip
        return self.traffic(name)

    def promote(self, name: str, *, actor: str, reason: str = "") -> ModelVersion:
        """Makes the candidate production (it then takes all traffic) and ends the canary.

        Raises:
            RegistryError: There is no candidate other than the production version.
        """
        current = self._current_aliases(name)
        if "candidate" not in current:
            raise RegistryError(f"{name}: there is no candidate to promote")
        version = int(current["candidate"]["version"])
        if "production" in current and int(current["production"]["version"]) == version:
            raise RegistryError(f"{name}: candidate version {version} is already production")
        note = "promoted candidate" + (f": {reason}" if reason else "")
        promoted = self.set_alias(name, "production", version, actor=actor, reason=note)
        self.set_alias(name, "candidate", version, actor=actor, reason=note)
        return promoted

    def rollback(
        self, name: str, *, to: int | None = None, actor: str, reason: str = ""
    ) -> ModelVersion:
        """Moves ``production`` back: to ``to``, or to the version that held it before.

        A canary in progress is stopped too: a rollback means the newest models are suspect.

        Raises:
            RegistryError: Nothing to roll back to (no production, or no earlier holder).
        """
        current = self.get(name, "production").version
        if to is None:
            earlier = [h["version"] for h in self.alias_history(name, "production")]
            previous = [v for v in earlier if v != current]
            if not previous:
                raise RegistryError(f"{name}: production has had no other version to go back to")
            to = previous[-1]
        if to == current:
            raise RegistryError(f"{name}: version {to} is already production")
        note = f"rollback from {current}" + (f": {reason}" if reason else "")
        rolled = self.set_alias(name, "production", to, actor=actor, reason=note)
        canary = self.traffic(name)
        if canary.candidate is not None:
            self.set_alias(name, "candidate", canary.candidate, actor=actor, reason=note)
        return rolled

    def verified_uri(self, name: str, ref: int | str) -> str:
        """The artifact URI (or local folder) of a version, after checking its checksum.

        Raises:
            ChecksumMismatchError: The files changed since registration; the registry refuses
                to hand out the artifact.
        """
        version = self.get(name, ref)
        _check_artifact(name, version.version, version.to_dict())
        return version.artifact_uri

    def verified_artifact(
        self, name: str, ref: int | str, *, download_to: str | Path | None = None
    ) -> Path:
        """The artifact of a version as a local folder, checksum-verified (see verified_uri).

        Args:
            name: Model name.
            ref: Version number or alias.
            download_to: Where to copy an artifact that lives in an object store (a folder that
                does not exist yet); the copy is what gets verified. Without it, a remote
                artifact is an error.

        Raises:
            RegistryError: A remote artifact and no ``download_to``, or it cannot be read.
            ChecksumMismatchError: The files differ from the registered checksum.
        """
        version = self.get(name, ref)
        uri = version.artifact_uri
        if not storage.is_remote(uri):
            _check_artifact(name, version.version, version.to_dict())
            return Path(uri.removeprefix("file://"))
        if download_to is None:
            raise RegistryError(f"{name} {ref}: artifact {uri} is remote, not a local folder")
        try:
            local = storage.download(uri, download_to)
        except storage.StorageError as err:
            raise RegistryError(f"{name} version {version.version}: {err}") from err
        _check_artifact(name, version.version, version.to_dict(), local_copy=local)
        return local
