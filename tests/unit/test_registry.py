"""The model registry: versions, lineage, aliases with history, canary, checksums, concurrency.

Every behaviour test runs against both backends: the embedded SQLite file, and the Kubeflow Model
Registry through the real ``model-registry`` client over HTTP to a stand-in of its REST service
(tests/model_registry_standin.py; the real service cannot run here).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest
from model_registry_standin import model_registry_standin
from object_store import ObjectStore

from skewless.registry.core import (
    ChecksumMismatchError,
    Registry,
    RegistryError,
    Traffic,
    directory_sha256,
)
from skewless.registry.kubeflow import KubeflowRegistry
from skewless.registry.sqlite import SQLiteRegistry


def _open(locator: str) -> Registry:
    if locator.startswith("http://"):
        return KubeflowRegistry(locator, user_token="test-token")
    return SQLiteRegistry(locator)


@pytest.fixture(params=["sqlite", "kubeflow"])
def locator(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a fresh, empty registry of each backend lives."""
    if request.param == "sqlite":
        yield str(tmp_path / "registry.db")
    else:
        with model_registry_standin() as url:
            yield url


def _artifact(folder: Path, content: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_text(content)
    (folder / "variables").mkdir()
    (folder / "variables" / "v.index").write_text(content * 2)
    return folder


def _register(registry: Registry, artifact: Path, auc: float = 0.74):
    return registry.register(
        "ranking", artifact, metrics={"auc": auc}, gate={"promote": True},
        spec_sha256="s" * 64, stats_sha256="t" * 64, code_version="0.1.0", run_id="run-1",
    )  # fmt: skip


def test_versions_carry_lineage_and_count_up(tmp_path: Path, locator: str):
    registry = _open(locator)
    first = _register(registry, _artifact(tmp_path / "a", "one"))
    second = _register(registry, _artifact(tmp_path / "b", "two"), auc=0.75)
    assert (first.version, second.version) == (1, 2)
    assert second.metrics == {"auc": 0.75} and second.run_id == "run-1"
    assert second.sha256 == directory_sha256(tmp_path / "b") != first.sha256
    assert [v.version for v in registry.list_versions("ranking")] == [1, 2]
    assert registry.get("ranking", "latest").version == 2


def test_aliases_move_and_keep_their_history(tmp_path: Path, locator: str):
    registry = _open(locator)
    _register(registry, _artifact(tmp_path / "a", "one"))
    _register(registry, _artifact(tmp_path / "b", "two"))
    registry.set_alias("ranking", "production", 1, actor="pipeline", reason="gate passed")
    registry.set_alias("ranking", "production", 2, actor="pipeline", reason="gate passed")
    registry.set_alias("ranking", "production", 1, actor="alice", reason="rollback")
    assert registry.get("ranking", "production").version == 1
    assert registry.get("ranking", 1).aliases == ("production",)
    assert registry.get("ranking", 2).aliases == ()
    history = registry.alias_history("ranking", "production")
    assert [(h["version"], h["actor"], h["reason"]) for h in history] == [
        (1, "pipeline", "gate passed"), (2, "pipeline", "gate passed"), (1, "alice", "rollback")
    ]  # fmt: skip


def test_errors_name_what_is_missing(tmp_path: Path, locator: str):
    registry = _open(locator)
    with pytest.raises(RegistryError, match="no model named 'ranking'"):
        registry.get("ranking", "latest")
    _register(registry, _artifact(tmp_path / "a", "one"))
    with pytest.raises(RegistryError, match="has no version 7"):
        registry.get("ranking", 7)
    with pytest.raises(RegistryError, match="no version with alias 'production'"):
        registry.get("ranking", "production")
    with pytest.raises(RegistryError, match="unknown alias 'prod'"):
        registry.set_alias("ranking", "prod", 1, actor="x", reason="y")
    with pytest.raises(RegistryError, match="has no version 3"):
        registry.set_alias("ranking", "production", 3, actor="x", reason="y")
    with pytest.raises(RegistryError, match="artifact folder not found"):
        _register(registry, tmp_path / "nope")


def test_a_tampered_artifact_is_refused(tmp_path: Path, locator: str):
    registry = _open(locator)
    artifact = _artifact(tmp_path / "a", "one")
    _register(registry, artifact)
    assert registry.verified_artifact("ranking", 1) == artifact.resolve()
    (artifact / "variables" / "v.index").write_text("tampered")
    with pytest.raises(ChecksumMismatchError, match="refusing to serve it"):
        registry.verified_artifact("ranking", 1)


def test_an_artifact_in_the_object_store_is_downloaded_and_verified(
    tmp_path: Path, locator: str, minio: ObjectStore
):
    registry = _open(locator)
    artifact = _artifact(tmp_path / "a", "one")
    uri = minio.upload(artifact, f"v2/artifacts/{tmp_path.name}/model")
    registry.register(
        "ranking", artifact, artifact_uri=uri, metrics={"auc": 0.7}, gate={"promote": True},
        spec_sha256="", stats_sha256="", code_version="0.1.0", run_id="run-1",
    )  # fmt: skip
    registry.set_alias(
        "ranking", "production", 1, actor="ci", reason="ok"
    )  # checksummed in the store
    with pytest.raises(RegistryError, match="is remote, not a local folder"):
        registry.verified_artifact("ranking", "production")
    copy = registry.verified_artifact("ranking", "production", download_to=tmp_path / "copy")
    assert directory_sha256(copy) == directory_sha256(artifact)
    assert (copy / "variables" / "v.index").read_text() == "oneone"

    key = uri.removeprefix("minio://mlpipeline/")
    minio.client.put_object(Bucket="mlpipeline", Key=f"{key}/saved_model.pb", Body=b"x")
    with pytest.raises(ChecksumMismatchError, match=rf"{uri} \(copied to .*copy2\)"):
        registry.verified_artifact("ranking", 1, download_to=tmp_path / "copy2")


def test_the_evaluate_step_finds_production_itself(tmp_path: Path, minio: ObjectStore):
    from skewless.rollout.deploy import production_to_beat

    with model_registry_standin() as url:
        workdir = tmp_path / "work"
        assert production_to_beat("", "ranking", registry=url, workdir=workdir) is None
        registry = _open(url)
        for content in ("one", "two"):
            artifact = _artifact(tmp_path / content, content)
            registry.register(
                "ranking", artifact, artifact_uri=minio.upload(artifact, f"pt/{content}"),
                metrics={"auc": 0.7}, gate={"promote": True}, spec_sha256="", stats_sha256="",
                code_version="0.1.0", run_id="run-1",
            )  # fmt: skip
        registry.set_alias("ranking", "production", 2, actor="ci", reason="ok")
        found = production_to_beat("", "ranking", registry=url, workdir=workdir)
        assert found is not None and found.version == 2
        assert (found.path / "saved_model.pb").read_text() == "two"
    # Without a registry URL it is the SQLite file beside the repository; none there yet.
    assert production_to_beat(tmp_path / "repo", "ranking", registry="", workdir=workdir) is None
    assert not (tmp_path / "repo").exists()


def _register_many(args: tuple[str, str, int]) -> list[int]:
    locator, artifact, count = args
    registry = _open(locator)
    return [_register(registry, Path(artifact)).version for _ in range(count)]


def test_concurrent_writers_never_collide(tmp_path: Path, locator: str):
    artifact = _artifact(tmp_path / "a", "one")
    _open(locator)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(_register_many, [(locator, str(artifact), 10)] * 4)
    versions = sorted(v for chunk in results for v in chunk)
    assert versions == list(range(1, 41))  # every writer got its own version, none lost
    assert len(_open(locator).list_versions("ranking")) == 40


def test_rollback_goes_to_the_previous_holder_or_a_named_version(tmp_path: Path, locator: str):
    registry = _open(locator)
    for i, label in enumerate("abc", start=1):
        _register(registry, _artifact(tmp_path / label, label))
        registry.set_alias("ranking", "production", i, actor="pipeline", reason="gate passed")
    assert registry.rollback("ranking", actor="bob", reason="bad canary").version == 2
    assert registry.get("ranking", "production").version == 2
    assert registry.alias_history("ranking", "production")[-1]["reason"] == (
        "rollback from 3: bad canary"
    )
    assert registry.rollback("ranking", to=1, actor="bob").version == 1
    with pytest.raises(RegistryError, match="version 1 is already production"):
        registry.rollback("ranking", to=1, actor="bob")
    (tmp_path / "c" / "saved_model.pb").write_text("tampered")
    with pytest.raises(ChecksumMismatchError):
        registry.rollback("ranking", to=3, actor="bob")
    assert registry.get("ranking", "production").version == 1


def test_rollback_needs_an_earlier_version(tmp_path: Path, locator: str):
    registry = _open(locator)
    _register(registry, _artifact(tmp_path / "a", "a"))
    registry.set_alias("ranking", "production", 1, actor="pipeline", reason="first")
    with pytest.raises(RegistryError, match="no other version to go back to"):
        registry.rollback("ranking", actor="bob")


def test_a_version_the_gate_refused_can_never_take_traffic(tmp_path: Path, locator: str):
    registry = _open(locator)
    _register(registry, _artifact(tmp_path / "a", "a"))
    registry.set_alias("ranking", "production", 1, actor="pipeline", reason="first")
    refused = registry.register(
        "ranking", _artifact(tmp_path / "b", "b"), metrics={"auc": 0.5},
        gate={"promote": False, "reasons": ["failed auc >= min_auc"]}, spec_sha256="s",
        stats_sha256="t", code_version="0.1.0", run_id="run-2",
    )  # fmt: skip
    for alias in ("production", "candidate"):
        with pytest.raises(RegistryError, match=r"refused by the gate \(failed auc >= min_auc\)"):
            registry.set_alias("ranking", alias, refused.version, actor="x", reason="y")
    with pytest.raises(RegistryError, match="refused by the gate"):
        registry.start_canary("ranking", refused.version, 50, actor="x")
    with pytest.raises(RegistryError, match="refused by the gate"):
        registry.rollback("ranking", to=refused.version, actor="x")
    assert registry.traffic("ranking") == Traffic(production=1, candidate=None, candidate_percent=0)


def test_canary_then_promote_then_rollback(tmp_path: Path, locator: str):
    registry = _open(locator)
    for label in "abc":
        _register(registry, _artifact(tmp_path / label, label))
    with pytest.raises(RegistryError, match="no production version yet"):
        registry.start_canary("ranking", 2, 10, actor="pipeline")
    registry.set_alias("ranking", "production", 1, actor="pipeline", reason="first")
    with pytest.raises(RegistryError, match="there is no candidate to promote"):
        registry.promote("ranking", actor="alice")

    assert registry.start_canary("ranking", 2, 10, actor="pipeline") == Traffic(1, 2, 10)
    assert registry.start_canary("ranking", 2, 25, actor="alice") == Traffic(1, 2, 25)
    assert registry.get("ranking", "candidate").version == 2
    assert [h["traffic_percent"] for h in registry.alias_history("ranking", "candidate")] == [
        10, 25
    ]  # fmt: skip
    assert registry.promote("ranking", actor="alice", reason="CTR up").version == 2
    assert registry.traffic("ranking") == Traffic(production=2, candidate=None, candidate_percent=0)
    with pytest.raises(RegistryError, match="candidate version 2 is already production"):
        registry.promote("ranking", actor="alice")

    # Stopping a canary: share 0 leaves production alone.
    registry.start_canary("ranking", 3, 50, actor="pipeline")
    assert registry.start_canary("ranking", 3, 0, actor="alice") == Traffic(2, None, 0)
    # A rollback during a canary stops the canary as well.
    registry.start_canary("ranking", 3, 50, actor="pipeline")
    assert registry.rollback("ranking", actor="bob").version == 1
    assert registry.traffic("ranking") == Traffic(production=1, candidate=None, candidate_percent=0)
    with pytest.raises(RegistryError, match="traffic percent must be 0 to 100"):
        registry.start_canary("ranking", 3, 101, actor="bob")


# A process that registers a model, but is killed (os._exit: no cleanup, no finally) at one point.
_KILLED_AT = """
import os, sys
from skewless.rollout import deploy
from skewless.registry import sqlite
point, model, repository = sys.argv[1], sys.argv[2], sys.argv[3]
if point == "copy":  # the copy is half done
    def copytree(src, dst, **kw):
        os.makedirs(dst)
        open(os.path.join(dst, "variables.index"), "w").close()
        os._exit(9)
    deploy.shutil.copytree = copytree
elif point == "rename":  # the folder is in place, the registry row is not
    sqlite.SQLiteRegistry.register = lambda *a, **k: os._exit(9)
elif point == "alias":  # the row is written, the alias move is not
    sqlite.SQLiteRegistry.set_alias = lambda *a, **k: os._exit(9)
version = deploy.register_local(model, repository, "ranking", evaluation={"metrics": {},
    "gate": {"promote": True, "reasons": []}}, stats_path=None, run_id="killed")
deploy.deploy_version(repository, "ranking", version["version"], "killed")
"""


@pytest.mark.parametrize("point", ["copy", "rename", "alias"])
def test_a_run_killed_while_registering_never_wedges_the_next(tmp_path: Path, point: str):
    import subprocess
    import sys

    from skewless.rollout.deploy import deploy_version, register_local, registry_for

    model = _artifact(tmp_path / "model", "weights")
    repository = tmp_path / "models"
    evaluation = {"metrics": {}, "gate": {"promote": True, "reasons": []}}
    first = register_local(model, repository, "ranking", evaluation=evaluation,
                           stats_path=None, run_id="r1")  # fmt: skip
    deploy_version(repository, "ranking", first["version"], "r1")
    killed = subprocess.run([sys.executable, "-c", _KILLED_AT, point, str(model), str(repository)],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert killed.returncode == 9, killed.stderr

    after = register_local(model, repository, "ranking", evaluation=evaluation,
                           stats_path=None, run_id="r3")  # fmt: skip
    registry = registry_for(repository)
    versions = [v.version for v in registry.list_versions("ranking")]
    assert after["version"] == versions[-1] and versions == list(range(1, len(versions) + 1))
    # Every folder is a registered version; no orphan copy and no staging leftovers remain.
    folders = sorted(p.name for p in (repository / "ranking").iterdir() if p.name != ".lock")
    assert folders == [str(v) for v in versions]
    for version in versions:  # each verifies against its checksum
        registry.verified_artifact("ranking", version)
    assert registry.traffic("ranking").production == 1


def test_a_model_registry_url_without_a_port_gets_the_default_port():
    from skewless.registry.kubeflow import rest_port

    assert rest_port("http://model-registry-service.kubeflow.svc.cluster.local") == 8080
    assert rest_port("https://registry.example.com") == 443
    assert rest_port("http://localhost:9090") == 9090
    assert rest_port("http://localhost", 8081) == 8081
