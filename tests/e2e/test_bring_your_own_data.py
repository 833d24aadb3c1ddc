"""Bring your own data: `spec infer` drafts a spec for a public CSV, and `run --spec` trains on it.

The data is TFX's Chicago taxi sample (15,002 rows, blanks in many columns, integer codes), which
we did not generate.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import tensorflow as tf
from support import SKEWLESS, public_taxi_csv

from skewless.contract.spec import load_spec


def _skewless(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SKEWLESS, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_spec_infer_then_run_with_that_spec_trains_on_the_users_data(tmp_path: Path):
    taxi = public_taxi_csv(tmp_path)
    spec_path = tmp_path / "taxi_spec.yaml"
    drafted = _skewless(
        "spec", "infer", "--data", str(taxi), "--label", "big_tipper", "--exclude", "tips",
        "--out", str(spec_path),
    )  # fmt: skip
    assert drafted.returncode == 0, drafted.stderr[-2000:]
    assert f"--spec {spec_path}" in drafted.stdout
    spec = load_spec(spec_path)

    workdir = tmp_path / "run"
    completed = _skewless(
        "run", "--data", str(taxi), "--spec", str(spec_path), "--no-serve", "--workdir",
        str(workdir),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    summary = json.loads((workdir / "run_summary.json").read_text())
    assert summary["rows"]["rows_in"] == 15_002
    assert summary["rows"]["rows_quarantined"] == 0
    assert summary["metrics"]["auc"] > 0.6
    # 15k rows, 22.5% positive: the default hyperparameters (batch size from the row count) pass
    # the default gate, calibration included, without tuning.
    assert summary["gate"]["promote"] is True, summary["gate"]
    assert summary["train"]["hparams"]["batch_size"] == 128, summary["train"]["hparams"]
    # No event time and no sides in the drafted spec: the feature store step says why it skipped.
    assert summary["feature_store"]["materialized"] == 0
    assert "no 'kind: timestamp' feature" in summary["feature_store"]["reason"]
    model_dirs = sorted((workdir / "models").glob("*/*/saved_model.pb"))
    assert model_dirs, list((workdir / "models").rglob("*"))[:20]
    signature = tf.saved_model.load(str(model_dirs[-1].parent)).signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == {f.name for f in spec.model_inputs}


def test_a_spec_file_that_is_not_there_is_one_clear_line(tmp_path: Path):
    completed = _skewless("run", "--spec", str(tmp_path / "nope.yaml"), "--no-serve",
                          "--workdir", str(tmp_path / "w"), timeout=120)  # fmt: skip
    assert completed.returncode != 0
    assert completed.stderr.strip().splitlines() == [
        f"skewless run: error: cannot read spec file {tmp_path / 'nope.yaml'}: No such file or "
        "directory"
    ]
