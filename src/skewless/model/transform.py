"""TensorFlow Transform preprocessing generated from the feature spec, analyzed on Apache Beam.

The ``preprocessing_fn`` maps raw columns to model inputs:

* numeric: ``zscore`` (float), ``log`` (log1p then z-score, float), ``bucketize`` (quantile id);
* categorical and id: vocabulary (with OOV buckets) or hashing, one id per row;
* tags and text: a padded sequence of ids of length ``max_tags`` / ``max_tokens``;
* crosses: a padded sequence of hashed ids, one per combination of the crossed values.

Every id is shifted by one so that 0 means padding; :func:`id_space` gives the embedding size.
Analysis (vocabularies, means, quantiles) is a full pass over the training split on Beam; the
resulting transform graph is written to an output folder and later attached to the exported model,
so serving applies exactly the transform that training saw.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import tensorflow as tf

from skewless.contract.kinds import kind_of, tokens_tf
from skewless.contract.spec import Cross, Feature, FeatureSpec
from skewless.model import BeamOptionsError

TYPE_CHECK_FLAG = "--pipeline_type_check"
"""Keeps Beam's construction-time type check on in the transform step (ours: Beam has only
``--no_pipeline_type_check``, and the step turns the check off by default)."""


def beam_pipeline_args(beam_args: Sequence[str]) -> list[str]:
    """The options the transform step gives Beam: the user's, with the type check off unless
    :data:`TYPE_CHECK_FLAG` asks for it.

    Beam's construction-time type check re-checks TFT's own transforms' hints each run (a sixth
    of building the pipeline, ~0.5 s) and finds nothing on code that does not change. Beam has
    only the flag that turns it off, so the one that keeps it on is ours, and Beam never sees it
    (it would drop it as unknown).
    """
    if TYPE_CHECK_FLAG in beam_args:
        return [arg for arg in beam_args if arg != TYPE_CHECK_FLAG]
    return ["--no_pipeline_type_check", *beam_args]


def raw_feature_spec(spec: FeatureSpec, *, with_label: bool = True) -> dict[str, Any]:
    """The ``tf.io`` parsing spec of raw model inputs (and the label): one scalar per column."""
    out: dict[str, Any] = {}
    for feature in spec.model_inputs:
        out[feature.name] = tf.io.FixedLenFeature([], kind_of(feature).tf_dtype(feature))
    if with_label:
        out[spec.label.name] = tf.io.FixedLenFeature([], tf.int64)
    return out


def raw_signature(spec: FeatureSpec, names: list[str] | None = None) -> dict[str, tf.TensorSpec]:
    """A serving signature's inputs: one named ``[batch]`` tensor per raw model input (``names``
    picks some, as a retrieval tower's signature takes one side)."""
    parsed = raw_feature_spec(spec, with_label=False)
    return {
        name: tf.TensorSpec([None], parsed[name].dtype, name=name)
        for name in (parsed if names is None else names)
    }


def analysis_columns(spec: FeatureSpec) -> list[str]:
    """Raw columns the transform reads (model inputs and the label)."""
    return [*(f.name for f in spec.model_inputs), spec.label.name]


def _string_values(feature: Feature, raw: tf.Tensor) -> tf.RaggedTensor:
    """The values a cross combines, as ragged strings (one per row for single-valued features)."""
    if feature.kind == "tags":
        return tokens_tf(feature, raw)
    if feature.kind == "numeric":
        import tensorflow_transform as tft

        raw = tf.strings.as_string(tft.bucketize(raw, feature.num_buckets or 10))
    return tf.RaggedTensor.from_tensor(tf.expand_dims(raw, 1))


def _pad(ids: tf.RaggedTensor, length: int) -> tf.Tensor:
    return (ids + 1).to_tensor(default_value=0, shape=[None, length])


def _transform_cross(spec: FeatureSpec, cross: Cross, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
    parts = [
        _string_values(spec.features[name], inputs[name]).to_sparse() for name in cross.features
    ]
    crossed = tf.sparse.cross_hashed(parts, num_buckets=cross.hash_buckets)
    return _pad(tf.RaggedTensor.from_sparse(crossed), spec.cross_length(cross))


def make_preprocessing_fn(spec: FeatureSpec) -> Callable[[dict[str, tf.Tensor]], dict[str, Any]]:
    """Builds the TFT ``preprocessing_fn`` for ``spec``.

    Returns:
        A function from raw batched tensors (each of shape ``[batch]``) to transformed tensors
        keyed by feature or cross name, plus the label when it is among the inputs.
    """

    def preprocessing_fn(inputs: dict[str, tf.Tensor]) -> dict[str, Any]:
        outputs: dict[str, Any] = {
            f.name: kind_of(f).transform(f, inputs[f.name]) for f in spec.model_inputs
        }
        for cross in spec.crosses:
            outputs[cross.name] = _transform_cross(spec, cross, inputs)
        label = spec.label.name
        if label in inputs:
            outputs[label] = tf.cast(inputs[label], tf.int64)
        return outputs

    return preprocessing_fn


def id_space(spec: FeatureSpec, name: str, vocabulary_size: Callable[[str], int]) -> int:
    """Embedding table size for an id output: the largest id plus one (0 is padding).

    Args:
        spec: The feature spec.
        name: A feature or cross name whose transformed output is ids.
        vocabulary_size: Looks up a TFT vocabulary's size by file name (after analysis).
    """
    cross = next((c for c in spec.crosses if c.name == name), None)
    if cross is not None:
        return cross.hash_buckets + 1
    feature = spec.features[name]
    if feature.kind == "numeric":
        return (feature.num_buckets or 10) + 1
    if feature.uses_vocabulary:
        return vocabulary_size(feature.vocab_filename) + feature.oov_buckets + 1
    return (feature.hash_buckets or 1) + 1


class SavedTransform(tf.Module):
    """The transform graph inside an exported model; its serving signatures call it.

    It keeps what TFT's Keras layer (``transform_features_layer()``) keeps for a SavedModel, the
    loaded transform graph with its tables and vocabulary files, and calls the layer, but it does
    not track the layer, so the layer is not saved. A ``tf_keras`` layer in a SavedModel is traced
    once more for Keras's own metadata, which nothing reads: on the taxi sample that was half of
    the export's time.
    """

    def __init__(self, tft_output: Any) -> None:
        super().__init__()
        layer = tft_output.transform_features_layer()
        # The dict TFT's layer tracks for the same purpose (the loader's state, the loaded graph
        # in it): a private name of TFT's, so tests/unit/test_exported_model.py reloads a model.
        self.graph = layer._saved_model_loader_tracked_dict
        self._layer_call = layer.__call__  # a bound method: not a trackable, so not saved

    def __call__(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The transformed features of raw ``features`` (named ``[batch]`` tensors)."""
        return self._layer_call(features)


def _to_tfxio_batches(table: pa.Table, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Wraps each flat Parquet column as a one-element list column, the layout TFXIO expects."""
    for batch in table.to_batches(max_chunksize=batch_rows):
        offsets = pa.array(range(batch.num_rows + 1), type=pa.int64())
        columns = []
        for column in batch.columns:
            values = column.cast(pa.large_binary()) if pa.types.is_string(column.type) else column
            columns.append(pa.LargeListArray.from_arrays(offsets, values))
        yield pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _default_runner(beam_args: Sequence[str]) -> Any:
    """The in-process FnApiRunner unless the user names a runner.

    Beam's DirectRunner would first try the Prism runner, which downloads a binary at run time;
    FnApiRunner is the engine it falls back to anyway, so naming it skips a doomed download.
    """
    if any(arg.startswith("--runner") for arg in beam_args):
        return None
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    return FnApiRunner()


@dataclasses.dataclass(frozen=True)
class TransformResult:
    """Where TFT wrote the transform graph (``transform_fn/``, ``transformed_metadata/``), and
    how long the analysis took."""

    seconds: float
    out_dir: str


def analyze(
    train_data: str | Path,
    spec: FeatureSpec,
    out_dir: str | Path,
    *,
    beam_args: Sequence[str] = (),
    batch_rows: int = 10_000,
) -> TransformResult:
    """Runs TFT analysis over the clean training split and writes the transform graph.

    Args:
        train_data: Clean training rows (Parquet written by ingestion); a glob is allowed.
        spec: The feature spec.
        out_dir: Output folder: ``transform_fn/`` and ``transformed_metadata/`` (TFT's layout,
            readable with ``tft.TFTransformOutput``).
        beam_args: Beam pipeline options, e.g. ``["--runner=FlinkRunner", ...]``, plus
            ``--pipeline_type_check`` to keep Beam's construction-time type check (off by
            default: it re-checks TFT's own code each run); the default is
            the local DirectRunner.
        batch_rows: Rows per record batch fed to TensorFlow.

    Returns:
        The output folder and the analysis' seconds.

    Raises:
        BeamOptionsError: Beam refuses ``beam_args`` (a runner's required option missing, say).
    """
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.tfxio.parquet_tfxio import ParquetTFXIO

    started = time.perf_counter()
    columns = analysis_columns(spec)
    schema = schema_utils.schema_from_feature_spec(raw_feature_spec(spec))
    adapter_config = ParquetTFXIO(
        str(train_data), column_names=columns, schema=schema
    ).TensorAdapterConfig()
    beam_args = beam_pipeline_args(beam_args)
    try:  # Beam validates the options as it builds the pipeline, each problem on a line
        options = PipelineOptions(beam_args)
        pipeline = beam.Pipeline(runner=_default_runner(beam_args), options=options)
    except ValueError as err:
        problems = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise BeamOptionsError("Beam refused its options: " + " ".join(problems)) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="tft-", dir=out) as temp_dir,
        pipeline,
        tft_beam.Context(temp_dir=temp_dir),
    ):
        batches = (
            pipeline
            | "ReadParquet" >> beam.io.ReadFromParquetBatched(str(train_data), columns=columns)
            | "ToRecordBatches" >> beam.FlatMap(_to_tfxio_batches, batch_rows)
        )
        transform_fn = (batches, adapter_config) | "Analyze" >> tft_beam.AnalyzeDataset(
            make_preprocessing_fn(spec)
        )
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(str(out))
    return TransformResult(seconds=round(time.perf_counter() - started, 3), out_dir=str(out))
