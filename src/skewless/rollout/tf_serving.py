"""Serving a version with KServe's TensorFlow Serving runtime instead of ours.

The exported SavedModel needs no Python at serving time (the TFT transform is in its graph and its
``serving_default`` signature takes raw features), so TF Serving can serve it. TF Serving does not
load a SavedModel folder itself: it watches a *base path* whose children are numbered version
folders (``<base>/<n>/saved_model.pb``) and serves the highest number. KServe's runtime passes the
downloaded model as that base (``--model_base_path=/mnt/models``, chart kserve-runtime-configs
files/runtimes/resources.yaml at v0.20.0).

So each version gets a base of its own beside its artifact, ``<artifact>.tf-serving/``, holding one
folder named by the registry version: the InferenceService points at it, and a rollback points at
the older version's base (a base holding every version would serve the newest one, whatever the
registry says).
"""

from __future__ import annotations

from skewless.data import storage

RUNTIME = "kserve-tensorflow-serving"
"""KServe's ClusterServingRuntime (``make cluster`` turns the chart's runtimes on and sets TF
Serving 2.21.0, the release of the TensorFlow that exports our models)."""
MODEL_FORMAT = "tensorflow"
SUFFIX = ".tf-serving"
_MARKER = "saved_model.pb"  # copied last: its presence means the copy is whole


def base_path(artifact: str, version: str) -> str:
    """Lays a version's SavedModel out as TF Serving reads it; returns the base to serve.

    Copies ``artifact`` (a SavedModel folder in the object store) to
    ``<artifact>.tf-serving/<version>/`` unless a whole copy is there already.

    Raises:
        ValueError: ``version`` is not a positive whole number (TF Serving's version folders are).
        storage.StorageError: The artifact cannot be read or the copy written.
    """
    if not version.isdigit() or int(version) < 1:
        raise ValueError(f"version {version!r}: TF Serving needs a positive whole number")
    base = f"{artifact.rstrip('/')}{SUFFIX}"
    target = storage.join(base, str(int(version)))
    if not storage.is_file(storage.join(target, _MARKER)):
        storage.copy_folder(artifact, target, last=_MARKER)
    return base
