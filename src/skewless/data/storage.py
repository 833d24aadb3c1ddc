"""Where steps read data and model artifacts: local paths, or the pipeline's object store.

On one machine everything is a local path. On a cluster the raw data and every model artifact live
in the pipeline's S3-compatible store, named by URI, and are read through pyarrow's filesystems:

- ``minio://bucket/key``: Kubeflow Pipelines' own object store. KFP 2.17.0 ships SeaweedFS as the
  Service ``seaweedfs`` (S3 on port 9000 -> 8333; MinIO and its ``minio-service`` were removed in
  2.16.0, kubeflow/pipelines "chore: Remove minio (#12613)"), and its launcher defaults to
  ``seaweedfs.kubeflow:9000`` (backend/src/v2/objectstore/config.go at tag 2.17.0); KFP still
  names the scheme ``minio://``. Reached over plain HTTP at :data:`OBJECT_STORE_ENDPOINT`, or at
  ``$SKEWLESS_OBJECT_STORE_ENDPOINT`` (for a port-forward), with the credentials in
  ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (the pipeline maps KFP's
  ``mlpipeline-minio-artifact`` Secret onto them).
- ``s3://bucket/key``: S3 or any S3-compatible store, configured the AWS way (the same variables,
  ``AWS_ENDPOINT_URL`` for a non-AWS endpoint).
- ``gs://bucket/key``: Google Cloud Storage with the ambient credentials.
- anything else (``file://`` or a plain path): the local disk.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

import pyarrow
import pyarrow.fs as pafs

MINIO_SECRET = "mlpipeline-minio-artifact"
"""KFP's Secret with its object-store credentials (keys ``accesskey``, ``secretkey``)."""
MINIO_SECRET_ENV = {"accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}
"""How the pipeline maps that Secret's keys onto a step's environment."""
OBJECT_STORE_ENDPOINT = "seaweedfs.kubeflow:9000"
"""KFP 2.17.0's object store as pods reach it (Service ``seaweedfs``, port ``http-s3-compat``)."""
ENDPOINT_ENV = "SKEWLESS_OBJECT_STORE_ENDPOINT"
_REMOTE_SCHEMES = ("minio://", "s3://", "gs://", "gcs://")


class StorageError(RuntimeError):
    """A URI cannot be resolved or read: bad scheme, missing object, or missing credentials."""


def is_remote(uri: str | Path) -> bool:
    """Whether ``uri`` names an object in a store rather than a local file."""
    return str(uri).startswith(_REMOTE_SCHEMES)


def minio_endpoint() -> str:
    """``host:port`` of KFP's store: ``$SKEWLESS_OBJECT_STORE_ENDPOINT``, else KFP's default."""
    return os.environ.get(ENDPOINT_ENV, "") or OBJECT_STORE_ENDPOINT


def resolve(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """The filesystem that holds ``uri`` and the path of ``uri`` inside it.

    Raises:
        StorageError: A ``minio://`` URI without credentials in the environment, or a URI pyarrow
            cannot open.
    """
    text = str(uri)
    if text.startswith("minio://"):
        return _minio_filesystem(text), text.removeprefix("minio://").rstrip("/")
    if is_remote(text):
        try:
            filesystem, path = pafs.FileSystem.from_uri(text)
        except (OSError, ValueError) as err:
            raise StorageError(f"{text}: cannot open the store: {err}") from err
        return filesystem, path.rstrip("/")
    local = Path(text.removeprefix("file://")).resolve()
    return pafs.LocalFileSystem(), local.as_posix()


def _minio_filesystem(uri: str) -> pafs.FileSystem:
    missing = [name for name in MINIO_SECRET_ENV.values() if not os.environ.get(name)]
    if missing:
        raise StorageError(
            f"{uri}: reading KFP's object store needs {' and '.join(missing)} in the environment; "
            f"in a pipeline step they come from the Secret {MINIO_SECRET!r} (keys accesskey, "
            "secretkey); elsewhere export them (and port-forward svc/seaweedfs 9000, setting "
            f"{ENDPOINT_ENV}=localhost:9000)"
        )
    return pafs.S3FileSystem(
        endpoint_override=minio_endpoint(),
        scheme="http",
        access_key=os.environ[MINIO_SECRET_ENV["accesskey"]],
        secret_key=os.environ[MINIO_SECRET_ENV["secretkey"]],
        region=os.environ.get("AWS_REGION", "us-east-1"),
    )


def join(folder: str | Path, name: str) -> str:
    """The URI (or path) of ``name`` inside ``folder``."""
    return f"{str(folder).rstrip('/')}/{name}"


def is_file(uri: str | Path) -> bool:
    """Whether ``uri`` names an existing file (or object)."""
    filesystem, path = resolve(uri)
    try:
        return filesystem.get_file_info(path).type == pafs.FileType.File
    except OSError as err:
        raise StorageError(f"{uri}: cannot be read: {err}") from err


def open_input_file(uri: str | Path) -> pyarrow.NativeFile:
    """Opens a file for random access (what Parquet and the CSV reader want)."""
    filesystem, path = resolve(uri)
    try:
        return filesystem.open_input_file(path)
    except OSError as err:
        raise StorageError(f"{uri}: cannot be opened: {err}") from err


def list_files(uri: str | Path) -> list[str]:
    """Relative paths of every file under a folder, sorted as the local walk sorts them.

    Raises:
        StorageError: The folder does not exist or holds no file.
    """
    filesystem, base = resolve(uri)
    return _list(filesystem, base, uri)


def _list(filesystem: pafs.FileSystem, base: str, uri: str | Path) -> list[str]:
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
    except OSError as err:  # FileNotFoundError and NotADirectoryError included
        raise StorageError(f"folder not found: {uri} ({err})") from err
    names = [i.path[len(base) :].lstrip("/") for i in infos if i.type == pafs.FileType.File]
    if not names:
        raise StorageError(f"folder not found or empty: {uri}")
    return sorted(names, key=lambda name: PurePosixPath(name).parts)


def _blocks(filesystem: pafs.FileSystem, path: str, uri: str | Path) -> Iterator[bytes]:
    try:
        with filesystem.open_input_stream(path, compression=None) as handle:
            yield from iter(lambda: handle.read(1 << 20), b"")
    except OSError as err:
        raise StorageError(f"{uri}: cannot be read: {err}") from err


def read_blocks(uri: str | Path) -> Iterator[bytes]:
    """A file's bytes, in blocks, without holding it whole in memory."""
    filesystem, path = resolve(uri)
    return _blocks(filesystem, path, uri)


def iter_files(uri: str | Path) -> Iterator[tuple[str, Iterator[bytes]]]:
    """Every file under a folder, in :func:`list_files` order: its relative name and its bytes.

    One filesystem (one connection setup) serves the whole folder.
    """
    filesystem, base = resolve(uri)
    for name in _list(filesystem, base, uri):
        yield name, _blocks(filesystem, f"{base}/{name}", join(uri, name))


def upload(local: str | Path, uri: str | Path) -> int:
    """Copies a local file to ``uri`` (an object, or a local path); returns the bytes written.

    Raises:
        StorageError: The file does not exist, or the store refuses the write.
    """
    source = Path(local)
    if not source.is_file():
        raise StorageError(f"file not found: {source}")
    filesystem, path = resolve(uri)
    try:
        with source.open("rb") as handle:
            return _write(filesystem, path, uri, iter(lambda: handle.read(1 << 20), b""))
    except OSError as err:  # the local file, read
        raise StorageError(f"{source}: cannot be read: {err}") from err


def _write(filesystem: pafs.FileSystem, path: str, uri: str | Path, blocks: Iterable[bytes]) -> int:
    """Writes ``blocks`` to ``path`` in ``filesystem`` (``uri`` names it in errors); returns
    the bytes written."""
    written = 0
    try:
        if isinstance(filesystem, pafs.LocalFileSystem):
            filesystem.create_dir(str(PurePosixPath(path).parent), recursive=True)
        with filesystem.open_output_stream(path) as out:
            for block in blocks:
                out.write(block)
                written += len(block)
    except OSError as err:
        raise StorageError(f"{uri}: cannot be written: {err}") from err
    return written


def download(uri: str | Path, destination: str | Path) -> Path:
    """Copies a remote folder to a local one (created; it must not exist yet) and returns it.

    The files go to a sibling staging folder first, renamed into place when complete, so a
    reader never sees a partial copy.
    """
    target = Path(destination)
    if target.exists():
        raise StorageError(f"download target already exists: {target}")
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    filesystem, base = resolve(uri)
    names = _list(filesystem, base, uri)
    unsafe = [n for n in names if n.startswith("/") or ".." in PurePosixPath(n).parts]
    if unsafe:  # an object key could otherwise write outside the target folder
        raise StorageError(f"{uri}: refusing to download object names that leave it: {unsafe}")
    for name in names:
        local = staging / name
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            with local.open("wb") as out:
                for block in _blocks(filesystem, f"{base}/{name}", join(uri, name)):
                    out.write(block)
        except (OSError, StorageError) as err:
            shutil.rmtree(staging, ignore_errors=True)
            raise StorageError(f"{join(uri, name)}: cannot be downloaded: {err}") from err
    staging.rename(target)
    return target


def copy_folder(source: str | Path, target: str | Path, *, last: str = "") -> int:
    """Copies every file under ``source`` to the same names under ``target`` (either may be in a
    store or local); the file named ``last`` is written after all others, so a reader that waits
    for it never sees a partial copy. Returns the files copied.

    Raises:
        StorageError: The source folder is missing or empty, or a file cannot be read or written.
    """
    target_fs, target_base = resolve(target)
    files = list(iter_files(source))
    files.sort(key=lambda item: item[0] == last)  # stable: ``last`` moves to the end
    for name, blocks in files:
        _write(target_fs, f"{target_base}/{name}", join(target, name), blocks)
    return len(files)
