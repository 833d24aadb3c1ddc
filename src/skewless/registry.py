"""Model registry: versions of named models, their metadata and lineage, and movable aliases.

Every trained model becomes a new version of a named model, recording its artifact URI and
checksum, metrics, gate decision, the hashes of the feature spec and of the training statistics,
the code version, the pipeline run, and when it was registered. Aliases (``production``,
``candidate``) point at versions; every move of an alias is kept in its history with who moved it
and why, which is what a rollback reads.

This module holds the embedded SQLite backend. It is safe under concurrent writers: each write is
one ``BEGIN IMMEDIATE`` transaction (version numbers are allocated inside it), the database runs in
WAL mode, and writers wait for the lock instead of failing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

ALIASES = ("production", "candidate")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    artifact_uri TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    metrics TEXT NOT NULL,
    gate TEXT NOT NULL,
    spec_sha256 TEXT NOT NULL,
    stats_sha256 TEXT NOT NULL,
    code_version TEXT NOT NULL,
    run_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS alias_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    set_at TEXT NOT NULL
);
"""


class RegistryError(RuntimeError):
    """A registry request cannot be met; the message names the model, version or alias."""


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


def directory_sha256(path: str | Path) -> str:
    """Checksum of a folder: its files' relative paths and contents, in sorted order."""
    root = Path(path)
    if not root.is_dir():
        raise RegistryError(f"artifact folder not found: {root}")
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class SQLiteRegistry:
    """The embedded registry backend: one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        """Opens (creating if needed) the registry at ``path``."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE) below.
        connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        connection.row_factory = sqlite3.Row
        return connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            yield connection
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        finally:
            connection.close()

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
    ) -> ModelVersion:
        """Records ``artifact_dir`` as the next version of ``name`` and returns it."""
        if not name or not name.replace("-", "_").isidentifier():
            raise RegistryError(f"model name {name!r} must be letters, digits, '-' or '_'")
        sha = directory_sha256(artifact_dir)
        with self._write() as connection:
            row = connection.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE name = ?", (name,)
            ).fetchone()
            version = int(row[0])
            connection.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, version, str(Path(artifact_dir).resolve()), sha, json.dumps(metrics),
                 json.dumps(gate), spec_sha256, stats_sha256, code_version, run_id, _now()),
            )  # fmt: skip
        return self.get(name, version)

    def set_alias(
        self, name: str, alias: str, version: int, *, actor: str, reason: str
    ) -> ModelVersion:
        """Points ``alias`` at ``version`` of ``name``, recording who and why."""
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}; aliases are {list(ALIASES)}")
        with self._write() as connection:
            exists = connection.execute(
                "SELECT 1 FROM versions WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
            if exists is None:
                raise RegistryError(f"model {name!r} has no version {version}")
            connection.execute(
                "INSERT INTO alias_history (name, alias, version, actor, reason, set_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, alias, version, actor, reason, _now()),
            )
        return self.get(name, version)

    def alias_history(self, name: str, alias: str) -> list[dict[str, Any]]:
        """Every move of ``alias`` for ``name``, oldest first."""
        with closing(self._connect()) as connection:
            rows = connection.execute(
                "SELECT version, actor, reason, set_at FROM alias_history "
                "WHERE name = ? AND alias = ? ORDER BY id",
                (name, alias),
            ).fetchall()
        return [dict(row) for row in rows]

    def _current_aliases(self, connection: sqlite3.Connection, name: str) -> dict[str, int]:
        rows = connection.execute(
            "SELECT alias, version FROM alias_history WHERE id IN "
            "(SELECT MAX(id) FROM alias_history WHERE name = ? GROUP BY alias)",
            (name,),
        ).fetchall()
        return {row["alias"]: int(row["version"]) for row in rows}

    def get(self, name: str, ref: int | str) -> ModelVersion:
        """A version by number, or by alias (``production``) or ``latest``."""
        with closing(self._connect()) as connection:
            aliases = self._current_aliases(connection, name)
            if isinstance(ref, str) and not ref.isdigit():
                if ref == "latest":
                    row = connection.execute(
                        "SELECT MAX(version) FROM versions WHERE name = ?", (name,)
                    ).fetchone()
                    if row[0] is None:
                        raise RegistryError(f"no model named {name!r}")
                    ref = int(row[0])
                elif ref in aliases:
                    ref = aliases[ref]
                else:
                    raise RegistryError(f"model {name!r} has no version with alias {ref!r}")
            row = connection.execute(
                "SELECT * FROM versions WHERE name = ? AND version = ?", (name, int(ref))
            ).fetchone()
        if row is None:
            raise RegistryError(f"model {name!r} has no version {ref}")
        held = tuple(sorted(a for a, v in aliases.items() if v == int(row["version"])))
        return ModelVersion(
            name=row["name"],
            version=int(row["version"]),
            artifact_uri=row["artifact_uri"],
            sha256=row["sha256"],
            metrics=json.loads(row["metrics"]),
            gate=json.loads(row["gate"]),
            spec_sha256=row["spec_sha256"],
            stats_sha256=row["stats_sha256"],
            code_version=row["code_version"],
            run_id=row["run_id"],
            created_at=row["created_at"],
            aliases=held,
        )

    def list_versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every version (of one model, or of all), by name then version."""
        with closing(self._connect()) as connection:
            query = "SELECT name, version FROM versions"
            rows = connection.execute(
                query + (" WHERE name = ?" if name else "") + " ORDER BY name, version",
                (name,) if name else (),
            ).fetchall()
        return [self.get(row["name"], int(row["version"])) for row in rows]

    def rollback(
        self, name: str, *, to: int | None = None, actor: str, reason: str = ""
    ) -> ModelVersion:
        """Moves ``production`` back: to ``to``, or to the version that held it before.

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
        self.verified_artifact(name, to)  # never roll back onto a tampered artifact
        note = f"rollback from {current}" + (f": {reason}" if reason else "")
        return self.set_alias(name, "production", to, actor=actor, reason=note)

    def verified_artifact(self, name: str, ref: int | str) -> Path:
        """The artifact folder of a version, after checking its files against the checksum.

        Raises:
            ChecksumMismatchError: The files changed since registration; the registry refuses
                to hand out the artifact.
        """
        version = self.get(name, ref)
        actual = directory_sha256(version.artifact_uri)
        if actual != version.sha256:
            raise ChecksumMismatchError(
                f"{name} version {version.version}: artifact {version.artifact_uri} has checksum "
                f"{actual[:12]}..., registered as {version.sha256[:12]}...; refusing to serve it"
            )
        return Path(version.artifact_uri)
