"""TFT analysis on Beam's multi-process runner gives the transform graph the in-process one does.

The same training rows, read as two files by two SDK worker processes
(``--direct_running_mode=multi_processing --direct_num_workers=2``, passed after ``--`` as a user
passes any runner's flags), must give the same vocabularies and transform the same rows to the same
values as the in-process analysis of one file: the analyzers' partial results are combined across
workers, and that merge must not change what the model sees. (Figures: docs/distributed.md.)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import tensorflow as tf
import tensorflow_transform as tft
from support import SKEWLESS


def _transformed(graph: Path, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    layer = tft.TFTransformOutput(str(graph)).transform_features_layer()
    return {k: v.numpy() for k, v in layer({k: tf.constant(v) for k, v in rows.items()}).items()}


def test_analysis_on_two_worker_processes_equals_the_in_process_analysis(
    tmp_path: Path, ingested: Path, transform_dir: Path, default_spec
):
    table = pq.read_table(ingested / "train.parquet")
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), tmp_path / "part-0.parquet")
    pq.write_table(table.slice(half), tmp_path / "part-1.parquet")

    done = subprocess.run(
        [*SKEWLESS, "analyze", "--data", str(tmp_path / "part-*.parquet"), "--out",
         str(tmp_path / "graph"), "--", "--direct_running_mode=multi_processing",
         "--direct_num_workers=2"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    vocabularies = sorted(p.name for p in (transform_dir / "transform_fn" / "assets").iterdir())
    assert len(vocabularies) >= 5  # country, device, items, tags, title, ...
    for name in vocabularies:
        ours = (tmp_path / "graph" / "transform_fn" / "assets" / name).read_bytes()
        assert ours == (transform_dir / "transform_fn" / "assets" / name).read_bytes(), name

    evaluation = pq.read_table(ingested / "eval.parquet").slice(0, 64)
    rows = {f.name: evaluation.column(f.name).to_numpy() for f in default_spec.model_inputs}
    expected = _transformed(transform_dir, rows)
    got = _transformed(tmp_path / "graph", rows)
    assert got.keys() == expected.keys()
    for name, values in expected.items():
        if values.dtype.kind == "f":  # means and variances: summed in another order
            np.testing.assert_allclose(got[name], values, rtol=1e-6, err_msg=name)
        else:  # ids: vocabularies, quantile buckets, hashes
            np.testing.assert_array_equal(got[name], values, err_msg=name)
