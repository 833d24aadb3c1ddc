"""Shared fixtures: small generated datasets and the default spec."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from skewless.generate import write_dataset
from skewless.spec import FeatureSpec, load_spec


@pytest.fixture(scope="session")
def default_spec() -> FeatureSpec:
    """The spec shipped for the default data."""
    return load_spec()


@pytest.fixture(scope="session")
def small_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 rows of default data (seed 11) as Parquet."""
    return write_dataset(
        3_000, 11, tmp_path_factory.mktemp("data") / "small.parquet", show_progress=False
    )
