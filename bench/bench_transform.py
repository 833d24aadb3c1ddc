"""Should training read materialized transformed data, or transform in-process on the fly?

Measured side by side on the same clean training split and the same transform graph:

* materialize: TFT's ``TransformDataset`` on Beam (the local FnApiRunner) writes transformed
  tf.Examples to TFRecord, and training then parses them back into arrays;
* in-process: the transform graph's Keras layer applied to Parquet record batches, written to
  chunk files (``skewless.model.inputs.transform_split``), which is what training does.

Also reports TFT analysis time. Writes bench/results/transform.{json,md}.
Usage: python bench/bench_transform.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import provenance


def _materialize(train: Path, spec, transform_dir: Path, out: Path) -> float:
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder
    from tfx_bsl.tfxio.parquet_tfxio import ParquetTFXIO

    from skewless.model.transform import _to_tfxio_batches, analysis_columns, raw_feature_spec

    columns = analysis_columns(spec)
    schema = schema_utils.schema_from_feature_spec(raw_feature_spec(spec))
    adapter = ParquetTFXIO(str(train), column_names=columns, schema=schema).TensorAdapterConfig()
    output = tft.TFTransformOutput(str(transform_dir))
    started = time.perf_counter()
    with (
        beam.Pipeline(runner=FnApiRunner()) as pipeline,
        tft_beam.Context(temp_dir=tempfile.mkdtemp()),
    ):
        batches = (
            pipeline
            | beam.io.ReadFromParquetBatched(str(train), columns=columns)
            | beam.FlatMap(_to_tfxio_batches, 10_000)
        )
        transform_fn = pipeline | tft_beam.ReadTransformFn(str(transform_dir))
        # Record-batch output is Beam's fast path (instance dicts are several times slower).
        transformed, _ = ((batches, adapter), transform_fn) | tft_beam.TransformDataset(
            output_record_batches=True
        )
        encoder = RecordBatchToExamplesEncoder(output.transformed_metadata.schema)
        _ = (
            transformed
            | beam.FlatMap(lambda batch_and_extras: encoder.encode(batch_and_extras[0]))
            | beam.io.WriteToTFRecord(str(out / "part"))
        )
    return time.perf_counter() - started


def _read_back(out: Path, transform_dir: Path) -> float:
    import tensorflow as tf
    import tensorflow_transform as tft

    feature_spec = tft.TFTransformOutput(str(transform_dir)).transformed_feature_spec()
    started = time.perf_counter()
    files = sorted(str(p) for p in out.glob("part*"))
    dataset = (
        tf.data.TFRecordDataset(files)
        .batch(16_384)
        .map(lambda x: tf.io.parse_example(x, feature_spec))
    )
    rows = sum(int(next(iter(b.values())).shape[0]) for b in dataset)
    assert rows > 0
    return time.perf_counter() - started


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    measured = provenance.begin()

    import tensorflow_transform as tft

    from skewless.contract.spec import load_spec
    from skewless.data.generate import write_dataset
    from skewless.data.ingest import ingest
    from skewless.model.inputs import transform_split
    from skewless.model.transform import analyze

    spec = load_spec()
    work = Path(tempfile.mkdtemp(prefix="bench-transform-"))
    data = write_dataset(args.rows, 0, work / "raw.parquet", show_progress=False)
    summary = ingest(data, spec, work / "ingest").summary
    train = work / "ingest" / "train.parquet"
    analysis_seconds = analyze(train, spec, work / "tft").seconds

    started = time.perf_counter()
    split = transform_split(
        train, spec, tft.TFTransformOutput(str(work / "tft")), work / "transformed"
    )
    in_process = time.perf_counter() - started
    assert split.rows == summary["rows_train"]

    (work / "materialized").mkdir()
    beam_seconds = _materialize(train, spec, work / "tft", work / "materialized")
    read_seconds = _read_back(work / "materialized", work / "tft")
    rows = summary["rows_train"]
    result = {
        "rows_train": rows,
        "tft_analysis_seconds": round(analysis_seconds, 2),
        "tft_analysis_rows_per_second": round(rows / analysis_seconds),
        "in_process_transform_seconds": round(in_process, 2),
        "in_process_rows_per_second": round(rows / in_process),
        "materialize_beam_seconds": round(beam_seconds, 2),
        "materialize_read_back_seconds": round(read_seconds, 2),
        "materialize_total_rows_per_second": round(rows / (beam_seconds + read_seconds)),
        "speedup_in_process_vs_materialize": round((beam_seconds + read_seconds) / in_process, 1),
    }
    table = "\n".join(f"| {k} | {v} |" for k, v in result.items())
    page = (
        f"# Transform: materialize vs in-process ({rows:,} training rows, one run)\n\n"
        f"| measure | value |\n|---|---|\n{table}\n"
    )
    print(provenance.write("transform", result, page, measured))


if __name__ == "__main__":
    main()
