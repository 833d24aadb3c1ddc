"""Where the retrieval stage lives inside an exported model; TensorFlow-free, so the server, the
evaluation and the CLI can ask without loading it."""

from __future__ import annotations

from pathlib import Path

RETRIEVAL_DIRNAME = "retrieval"  # MODEL/retrieval/: one registered version holds both stages
QUERY_DIRNAME = "query"  # SavedModel: raw query features -> embedding
CANDIDATE_DIRNAME = "candidate"  # SavedModel: raw item features -> embedding
CATALOGUE_FILE = "catalogue.parquet"  # raw item features, one row per item, in index order
EMBEDDINGS_FILE = "embeddings.npy"  # item embeddings, same order
META_FILE = "retrieval.json"  # what was trained, with which features, and its index
SIGNATURE = "serving_default"


def has_retrieval(model_dir: str | Path) -> bool:
    """Whether the exported model at ``model_dir`` carries a retrieval stage."""
    return (Path(model_dir) / RETRIEVAL_DIRNAME / META_FILE).is_file()
