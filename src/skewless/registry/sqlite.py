"""The embedded registry backend: one SQLite file (the default on one machine)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from skewless.registry.core import Registry, RegistryError
from skewless.registry.versions import _RECORD_FIELDS

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
    set_at TEXT NOT NULL,
    traffic_percent INTEGER NOT NULL DEFAULT 0
);
"""


class SQLiteRegistry(Registry):
    """The embedded backend: one SQLite file, safe under concurrent writers.

    Each write is one ``BEGIN IMMEDIATE`` transaction (version numbers are allocated inside it),
    the database runs in WAL mode, and writers wait for the lock instead of failing.
    """

    def __init__(self, path: str | Path) -> None:
        """Opens (creating if needed) the registry at ``path``."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with closing(self._connect()) as connection:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.executescript(_SCHEMA)
                columns = {
                    row["name"] for row in connection.execute("PRAGMA table_info(alias_history)")
                }
                if "traffic_percent" not in columns:  # a registry written before canaries existed
                    connection.execute("ALTER TABLE alias_history ADD COLUMN "
                                       "traffic_percent INTEGER NOT NULL DEFAULT 0")  # fmt: skip
        except sqlite3.DatabaseError as err:
            raise RegistryError(
                f"{self.path} is not a readable registry ({err}); restore it from a backup, or "
                "move it aside and the next run starts a new one"
            ) from None

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

    def _insert_version(self, name: str, record: dict[str, Any]) -> int:
        with self._write() as connection:
            row = connection.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE name = ?", (name,)
            ).fetchone()
            version = int(row[0])
            values = [json.dumps(record[f]) if f in ("metrics", "gate") else record[f]
                      for f in _RECORD_FIELDS]  # fmt: skip
            connection.execute(
                f"INSERT INTO versions (name, version, {', '.join(_RECORD_FIELDS)}) "
                f"VALUES (?, ?, {', '.join('?' * len(_RECORD_FIELDS))})",
                (name, version, *values),
            )
        return version

    def _version_record(self, name: str, version: int) -> dict[str, Any] | None:
        with closing(self._connect()) as connection:
            row = connection.execute(
                "SELECT * FROM versions WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
        if row is None:
            return None
        return {f: json.loads(row[f]) if f in ("metrics", "gate") else row[f]
                for f in _RECORD_FIELDS}  # fmt: skip

    def _version_numbers(self, name: str | None) -> list[tuple[str, int]]:
        with closing(self._connect()) as connection:
            rows = connection.execute(
                "SELECT name, version FROM versions"
                + (" WHERE name = ?" if name else "")
                + " ORDER BY name, version",
                (name,) if name else (),
            ).fetchall()
        return [(row["name"], int(row["version"])) for row in rows]

    def _append_alias_event(self, name: str, event: dict[str, Any]) -> None:
        with self._write() as connection:
            connection.execute(
                "INSERT INTO alias_history "
                "(name, alias, version, actor, reason, set_at, traffic_percent) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, event["alias"], event["version"], event["actor"], event["reason"],
                 event["set_at"], event["traffic_percent"]),
            )  # fmt: skip

    def _alias_events(self, name: str) -> list[dict[str, Any]]:
        with closing(self._connect()) as connection:
            rows = connection.execute(
                "SELECT alias, version, actor, reason, set_at, traffic_percent "
                "FROM alias_history WHERE name = ? ORDER BY id",
                (name,),
            ).fetchall()
        return [dict(row) for row in rows]
