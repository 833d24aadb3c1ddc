"""Loading what a server serves: a SavedModel folder or URI, or a registry version, verified; and
the :class:`~skewless.serving.routing.Routing` of a traffic split (production and a canary).

Each version becomes a :class:`~skewless.serving.routing.LoadedVersion`: the SavedModel, its
signature, the request validator built from the spec stored inside it and, when it has one, its
retrieval stage.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path

from skewless.artifacts import SPEC_ASSET
from skewless.contract.spec import FeatureSpec, load_spec
from skewless.registry.core import Registry, Traffic
from skewless.retrieval.artifact import has_retrieval
from skewless.serving.routing import LoadedVersion, Routing
from skewless.serving.validation import RequestValidator


class ModelLoadError(RuntimeError):
    """The model folder cannot be served; the message names it and why."""


def resolve_model_dir(model: str | Path) -> Path:
    """A local SavedModel folder for a path or a storage URI (s3://, gs://, hdfs://, file://).

    URIs are copied to a temporary folder with pyarrow's filesystems, which read credentials the
    usual way (AWS_* environment variables, GOOGLE_APPLICATION_CREDENTIALS, ...).
    """
    text = str(model)
    if "://" in text and not text.startswith("file://"):
        import pyarrow.fs

        target = Path(tempfile.mkdtemp(prefix="skewless-model-"))
        pyarrow.fs.copy_files(text, str(target))
        path = target
    else:
        path = Path(text.removeprefix("file://"))
    if not (path / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{model} is not an exported SavedModel folder (no saved_model.pb)")
    return path


def model_spec(model_dir: str | Path) -> FeatureSpec:
    """The feature spec stored inside an exported model."""
    absent = FileNotFoundError(f"{model_dir} has no {SPEC_ASSET}; was it exported by skewless?")
    return load_spec(Path(model_dir) / SPEC_ASSET, absent=absent)


def load_version(
    name: str,
    version: int | None,
    *,
    model_dir: Path | None,
    registry: Registry | None,
    max_request_rows: int,
    lookup: frozenset[str],
) -> LoadedVersion:
    """Loads ``name``'s registry ``version`` (downloaded and verified when remote), or the folder
    ``model_dir`` when ``version`` is None.

    Raises:
        ModelLoadError: TensorFlow cannot load the folder.
    """
    import tensorflow as tf

    if version is None:
        assert model_dir is not None
        label = model_dir.name
    else:
        assert registry is not None
        label = str(version)
        # A remote artifact (the object store, on a cluster) is downloaded here, then
        # verified; a local one is read in place and nothing is created.
        download_to = Path(tempfile.gettempdir()) / (
            f"skewless-{name}-{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )
        model_dir = registry.verified_artifact(name, version, download_to=download_to)
    try:
        saved_model = tf.saved_model.load(str(model_dir))
    except (OSError, ValueError) as err:  # TensorFlow's words for a file it cannot parse
        reason = str(err).splitlines()[0][:200]
        raise ModelLoadError(
            f"{model_dir}: not a SavedModel TensorFlow can load ({reason})"
        ) from None
    spec = model_spec(model_dir)
    validator = RequestValidator(spec, max_batch=max_request_rows, lookup=lookup)
    retriever = query_validator = None
    if has_retrieval(model_dir):
        from skewless.retrieval.retriever import Retriever
        from skewless.serving.recommend import MAX_QUERIES, query_spec

        retriever = Retriever(model_dir)
        query_validator = RequestValidator(query_spec(spec), max_batch=MAX_QUERIES, lookup=lookup)
    loaded = LoadedVersion(
        label, model_dir, saved_model, saved_model.signatures["serving_default"], validator,
        retriever, query_validator,
    )  # fmt: skip
    # Printed, not logged: it happens before kserve configures logging, and in each worker.
    print(
        f"skewless: loaded model {name!r} version {label} from {model_dir} in process "
        f"{os.getpid()}",
        file=sys.stderr,
        flush=True,
    )
    return loaded


def load_routing(
    name: str,
    traffic: Traffic,
    current: Routing | None,
    *,
    model_dir: Path | None,
    registry: Registry | None,
    max_request_rows: int,
    lookup: frozenset[str],
) -> Routing:
    """What serves ``traffic``: its production and candidate versions, each loaded, or reused
    when ``current`` already serves it (a canary's start or promotion loads one version, not two).

    Without a registry (``traffic`` names no version), the one version is the folder
    ``model_dir``.
    """

    def version(number: int | None) -> LoadedVersion:
        for loaded in (current.production, current.candidate) if current else ():
            if loaded is not None and number is not None and loaded.version == str(number):
                return loaded
        return load_version(
            name, number, model_dir=model_dir, registry=registry,
            max_request_rows=max_request_rows, lookup=lookup,
        )  # fmt: skip

    production = version(traffic.production)
    candidate = version(traffic.candidate) if traffic.candidate is not None else None
    return Routing(production, candidate, traffic.candidate_percent if candidate else 0, name)
