"""Where a feature repository lives: a local folder, or a folder in the object store.

On one machine the repository is a folder that the materialize step, the model server and
``skewless skew-report`` share. On a cluster they run in different pods, so the repository lives
in the pipeline's object store (``minio://mlpipeline/...``, see :mod:`skewless.data.storage`)
and the online store is a Redis that every pod reaches: the step builds the repository in a
scratch folder and uploads it; a server or a report reads a copy. A server's pushes go to Redis
and, one file per push, to the repository's :data:`~skewless.features.store.PUSHED_DIR`, which
the next materialize (and any copy read here) folds into the offline tables.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from skewless.data import storage
from skewless.features.pushed import include_pushed
from skewless.features.store import (
    CONFIG_FILE,
    PUSHED_DIR,
    REGISTRY_FILE,
    SPEC_FILE,
    VIEWS_FILE,
    EntityView,
    FeatureStoreError,
)


def is_remote(repo: str | Path) -> bool:
    """Whether the repository is a folder in an object store."""
    return storage.is_remote(repo)


def exists(repo: str | Path) -> bool:
    """Whether ``repo`` holds a repository written by the materialize step.

    Raises:
        FeatureStoreError: The store cannot be read (credentials, endpoint).
    """
    try:
        return all(storage.is_file(storage.join(repo, n)) for n in (CONFIG_FILE, VIEWS_FILE))
    except storage.StorageError as err:
        raise FeatureStoreError(str(err)) from None


def check(repo: str | Path) -> None:
    """Fails unless ``repo`` holds a repository written by the materialize step.

    Raises:
        FeatureStoreError: It does not, or the store cannot be read; the message says which.
    """
    if not exists(repo):
        raise FeatureStoreError(
            f"{repo} is not a feature repository written by the materialize step (no "
            f"{CONFIG_FILE} and {VIEWS_FILE})"
        )


@contextmanager
def writable(repo: str | Path) -> Iterator[Path]:
    """The repository as a local folder to build in; a remote one is downloaded first (when it
    exists) and uploaded when the block ends without an error (a failed build publishes nothing).
    """
    if not is_remote(repo):
        yield Path(repo)
        return
    with tempfile.TemporaryDirectory(prefix="skewless-feature-repo-") as scratch:
        local = Path(scratch) / "repo"
        if exists(repo):
            storage.download(repo, local)
        else:  # a first run
            local.mkdir()
        yield local
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            name = file.relative_to(local).as_posix()
            if not name.startswith(f"{PUSHED_DIR}/"):  # already there, and never changed here
                storage.upload(file, storage.join(repo, name))


def readable(repo: str | Path, scratch: Path, *, offline: bool = True) -> Path:
    """The repository as a local folder: itself, or a copy of a remote one made in ``scratch``
    (an empty folder) with its pushed values folded into the offline tables.

    Args:
        repo: The repository.
        scratch: Where a remote repository's copy goes.
        offline: Copy the offline tables too; a server needs only the configuration, the views
            and Feast's registry (the online store is the Redis it names).

    Raises:
        FeatureStoreError: ``repo`` is not a repository, or cannot be read.
    """
    check(repo)
    if not is_remote(repo):
        return Path(repo)
    local = scratch / "repo"
    try:
        if offline:
            storage.download(repo, local)
            include_pushed(local)
            return local
        for name in (CONFIG_FILE, VIEWS_FILE, SPEC_FILE, REGISTRY_FILE):
            (local / name).parent.mkdir(parents=True, exist_ok=True)
            with (local / name).open("wb") as out:
                for block in storage.read_blocks(storage.join(repo, name)):
                    out.write(block)
    except storage.StorageError as err:
        raise FeatureStoreError(str(err)) from None
    return local


def record_push(repo: str | Path, view: EntityView, frame: pd.DataFrame) -> None:
    """Adds pushed values to a remote repository's record, one new object per push (replicas
    never write the same object), named so that a later push sorts after an earlier one.

    Raises:
        storage.StorageError: The object store refuses the write.
    """
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex}.parquet"
    with tempfile.TemporaryDirectory(prefix="skewless-push-") as scratch:
        local = Path(scratch) / name
        frame.to_parquet(local, index=False)
        storage.upload(local, storage.join(repo, f"{PUSHED_DIR}/{view.name}/{name}"))
