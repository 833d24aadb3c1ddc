"""Object-store reads as a cluster step makes them, against an S3 server on loopback.

The server (tests/object_store.py) stands in for KFP's MinIO; the reader is the real pyarrow S3
filesystem over real HTTP, configured the way KFP's launcher finds MinIO.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from object_store import ObjectStore

from skewless.data import storage
from skewless.registry.core import RegistryError, directory_sha256


def _folder(root: Path) -> Path:
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(b"graph")
    (root / "variables" / "variables.index").write_bytes(b"index")
    (root / "variables" / "variables.data-00000-of-00001").write_bytes(bytes(range(256)) * 9000)
    (root / "assets.extra").mkdir()
    (root / "assets.extra" / "feature_spec.yaml").write_text("spec")
    return root


def test_kfps_object_store_is_its_default_endpoint_unless_overridden(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv("SKEWLESS_OBJECT_STORE_ENDPOINT", raising=False)
    assert storage.minio_endpoint() == "seaweedfs.kubeflow:9000"
    monkeypatch.setenv("SKEWLESS_OBJECT_STORE_ENDPOINT", "localhost:9000")  # a port-forward
    assert storage.minio_endpoint() == "localhost:9000"


def test_a_minio_uri_without_credentials_names_the_variables_and_the_secret(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    with pytest.raises(storage.StorageError) as caught:
        storage.resolve("minio://mlpipeline/data/interactions.csv")
    message = str(caught.value)
    assert "minio://mlpipeline/data/interactions.csv" in message
    assert "AWS_ACCESS_KEY_ID" in message and "AWS_SECRET_ACCESS_KEY" not in message
    assert "mlpipeline-minio-artifact" in message


def test_local_paths_and_file_uris_are_the_local_disk(tmp_path: Path):
    (tmp_path / "a.csv").write_text("x\n1\n")
    assert storage.is_file(tmp_path / "a.csv") and storage.is_file(f"file://{tmp_path}/a.csv")
    assert not storage.is_file(tmp_path / "missing.csv")
    assert not storage.is_remote(tmp_path / "a.csv")
    assert all(storage.is_remote(u) for u in ("minio://b/k", "s3://b/k", "gs://b/k"))


def test_an_uploaded_folder_lists_reads_and_downloads_byte_for_byte(
    minio: ObjectStore, tmp_path: Path
):
    local = _folder(tmp_path / "model")
    uri = minio.upload(local, "v2/artifacts/ranking/run-1/model")
    expected = sorted(
        (p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()),
        key=lambda name: Path(name).parts,
    )
    assert storage.list_files(uri) == expected == storage.list_files(local)
    assert storage.is_file(f"{uri}/saved_model.pb") and not storage.is_file(f"{uri}/nope.pb")
    copy = storage.download(uri, tmp_path / "copy")
    for name in expected:
        assert (copy / name).read_bytes() == (local / name).read_bytes(), name
    assert not (tmp_path / ".copy.partial").exists()
    with pytest.raises(storage.StorageError, match="already exists"):
        storage.download(uri, copy)


def test_an_object_store_artifact_has_the_same_checksum_as_its_local_copy(
    minio: ObjectStore, tmp_path: Path
):
    local = _folder(tmp_path / "model")
    uri = minio.upload(local, "checksum/model")
    assert directory_sha256(uri) == directory_sha256(local)
    assert directory_sha256(f"{uri}/") == directory_sha256(f"file://{local}")
    minio.client.put_object(Bucket="mlpipeline", Key="checksum/model/saved_model.pb", Body=b"x")
    assert directory_sha256(uri) != directory_sha256(local)


def test_a_missing_object_store_folder_is_a_clear_error(minio: ObjectStore, tmp_path: Path):
    with pytest.raises(RegistryError, match=r"artifact folder not found.*minio://mlpipeline/none"):
        directory_sha256("minio://mlpipeline/none")
    with pytest.raises(storage.StorageError, match="folder not found"):
        storage.download("minio://mlpipeline/none", tmp_path / "x")
    with pytest.raises(RegistryError, match="artifact folder not found"):
        directory_sha256(tmp_path / "empty")


def test_a_download_never_writes_outside_its_target(minio: ObjectStore, tmp_path: Path):
    minio.client.put_object(Bucket="mlpipeline", Key="evil/model/saved_model.pb", Body=b"x")
    minio.client.put_object(Bucket="mlpipeline", Key="evil/model/../../escape.txt", Body=b"x")
    with pytest.raises(storage.StorageError, match="refusing to download object names"):
        storage.download("minio://mlpipeline/evil/model", tmp_path / "deep" / "copy")
    assert not list(tmp_path.rglob("escape.txt"))


def test_s3_uris_use_the_aws_configuration(
    minio: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Any S3-compatible store, reached the AWS way: AWS_ENDPOINT_URL plus the same keys.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{minio.host}:{minio.port}")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    local = _folder(tmp_path / "model")
    minio.upload(local, "aws/model")
    assert storage.is_file("s3://mlpipeline/aws/model/saved_model.pb")
    assert directory_sha256("s3://mlpipeline/aws/model") == directory_sha256(local)
