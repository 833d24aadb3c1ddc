"""The serving artifact's contract: raw features in; training-time transform and model inside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from skewless.artifacts import SPEC_ASSET
from skewless.contract.spec import load_spec
from skewless.model.inputs import transform_split
from skewless.model.network import build_model
from skewless.model.train import HParams, export_model, fit_model, predict_logits


@pytest.fixture(scope="module")
def exported(tmp_path_factory, ingested: Path, transform_dir: Path, default_spec):
    """A model trained in-process and exported, kept beside its in-memory twin."""
    output = tft.TFTransformOutput(str(transform_dir))
    scratch = tmp_path_factory.mktemp("transformed")
    train = transform_split(ingested / "train.parquet", default_spec, output, scratch / "train")
    evaluation = transform_split(ingested / "eval.parquet", default_spec, output, scratch / "eval")
    hparams = HParams(epochs=1)
    model = build_model(default_spec, output.vocabulary_size_by_name, hparams)
    fit_model(model, train, evaluation, hparams, None)
    path = export_model(model, output, default_spec, tmp_path_factory.mktemp("export") / "m")
    return model, evaluation.read(0), path


def _raw(ingested: Path, spec, rows: int = 64) -> dict[str, np.ndarray]:
    frame = pd.read_parquet(ingested / "eval.parquet").head(rows)
    return {f.name: frame[f.name].to_numpy() for f in spec.model_inputs}


def test_the_model_here_is_keras_3_as_in_the_train_step(exported):
    """conftest keeps TFT's import from turning this process's tf.keras into Keras 2."""
    model, _, _ = exported
    assert type(model).__module__.split(".")[0] == "keras"


def test_signatures_take_named_raw_features(exported, default_spec):
    _, _, path = exported
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"serving_default", "serve_tf_examples"}
    _, inputs = loaded.signatures["serving_default"].structured_input_signature
    assert {name: spec.dtype for name, spec in inputs.items()} == {
        f.name: tf.float32 if f.kind == "numeric" else tf.string for f in default_spec.model_inputs
    }
    assert all(spec.shape.as_list() == [None] for spec in inputs.values())
    assert load_spec(path / SPEC_ASSET).features.keys() == default_spec.features.keys()


def test_served_output_equals_training_time_transform_and_model(exported, ingested, default_spec):
    model, eval_xy, path = exported
    raw = _raw(ingested, default_spec)
    served = tf.saved_model.load(str(path)).signatures["serving_default"](
        **{name: tf.constant(values) for name, values in raw.items()}
    )
    assert set(served) == {"probability", "logit"}
    assert served["probability"].shape == (64,) and served["probability"].dtype == tf.float32
    # Training fed the model from transform_split (batched TFT layer, chunk files); the same rows
    # through the exported graph must give the same logits.
    training_time = predict_logits(model, {k: v[:64] for k, v in eval_xy[0].items()})
    np.testing.assert_allclose(served["logit"].numpy(), training_time, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        served["probability"].numpy(), 1 / (1 + np.exp(-training_time)), rtol=1e-5, atol=1e-6
    )


def test_tf_example_signature_matches_raw_signature(exported, ingested, default_spec):
    _, _, path = exported
    raw = _raw(ingested, default_spec, rows=16)
    examples = []
    for i in range(16):
        feature = {}
        for f in default_spec.model_inputs:
            value = raw[f.name][i]
            feature[f.name] = (
                tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
                if f.kind == "numeric"
                else tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
            )
        examples.append(
            tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
        )
    loaded = tf.saved_model.load(str(path))
    by_example = loaded.signatures["serve_tf_examples"](examples=tf.constant(examples))
    by_raw = loaded.signatures["serving_default"](
        **{name: tf.constant(values) for name, values in raw.items()}
    )
    np.testing.assert_allclose(by_example["probability"], by_raw["probability"], rtol=1e-6)


def test_train_writes_model_logs_and_summary(trained):
    model_dir = Path(trained.model_dir)
    assert (model_dir / "saved_model.pb").is_file()
    assert any((model_dir.parent / "logs").rglob("events.out.tfevents.*"))
    assert trained.epochs_run >= 1 and 0.5 < trained.eval_auc <= 1.0
    assert 0.0 < trained.baseline_eval_auc <= 1.0
    assert trained.rows_train + trained.rows_eval == 3_000


def test_train_scores_the_eval_split_through_the_exported_model(trained, ingested, default_spec):
    from skewless.artifacts import EVAL_SCORES
    from skewless.evaluation.scores import read_scores, score

    written = read_scores(Path(trained.model_dir).parent / EVAL_SCORES, model_dir=trained.model_dir,
                          data=ingested / "eval.parquet")  # fmt: skip
    assert written.dtype == np.float32 and written.shape == (trained.rows_eval,)
    # The very scores evaluation would get by loading the exported model itself.
    scored = score(trained.model_dir, ingested / "eval.parquet", default_spec)
    np.testing.assert_array_equal(written, scored)
    assert trained.timings["score_seconds"] > 0


def test_training_again_gives_the_same_models_though_two_train_at_once(
    trained, tmp_path, ingested, transform_dir, default_spec
):
    """The retrieval stage trains in a thread beside the ranking stage: the same seed still gives
    the same ranker, baseline and item embeddings, bit for bit."""
    from skewless.artifacts import EVAL_SCORES
    from skewless.evaluation.scores import read_scores
    from skewless.model.inputs import TrainingData
    from skewless.model.train import train
    from skewless.retrieval.artifact import EMBEDDINGS_FILE, RETRIEVAL_DIRNAME

    again = train(TrainingData.ingested(ingested, transform_dir, default_spec), tmp_path,
                  HParams(epochs=2))  # fmt: skip
    assert again.retrieval is not None and trained.retrieval is not None
    assert (again.eval_auc, again.baseline_eval_auc, again.retrieval["history"]) == (
        trained.eval_auc, trained.baseline_eval_auc, trained.retrieval["history"]
    )  # fmt: skip

    def scores(result) -> np.ndarray:
        return read_scores(Path(result.model_dir).parent / EVAL_SCORES,
                           model_dir=result.model_dir, data=ingested / "eval.parquet")  # fmt: skip

    def embeddings(result) -> np.ndarray:
        return np.load(Path(result.model_dir) / RETRIEVAL_DIRNAME / EMBEDDINGS_FILE)

    np.testing.assert_array_equal(scores(again), scores(trained))
    np.testing.assert_array_equal(embeddings(again), embeddings(trained))


def test_the_model_keeps_the_network_weights_and_not_the_optimizer(exported):
    """What is saved is the network's weights, value for value: no optimizer slot, nothing else."""
    model, _, path = exported
    reader = tf.train.load_checkpoint(str(path / "variables" / "variables"))
    saved = [
        reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if name.endswith("VARIABLE_VALUE")
    ]
    assert sum(value.size for value in saved) == model.count_params()
    assert len(model.optimizer.variables) > len(saved)  # there was something to leave out
    weights = sorted(w.numpy().tobytes() for w in model.weights)
    assert sorted(value.tobytes() for value in saved) == weights


def test_model_needs_only_core_ops_so_tf_serving_can_load_it(exported):
    """TF Serving links core TensorFlow only: every op the SavedModel uses must be a core op."""
    from tensorflow.core.protobuf import saved_model_pb2

    _, _, path = exported
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops |= {node.op for node in function.node_def}
    core = set(dir(tf.raw_ops))
    assert ops - core == set(), f"ops outside core TensorFlow: {sorted(ops - core)}"
    assert {"HashTableV2", "InitializeTableFromTextFileV2", "StringSplitV2"} & ops
    # Vocabularies travel as SavedModel assets, which TF Serving copies with the model.
    assert any((path / "assets").glob("vocab_*"))
    assert "serving_default" in saved.meta_graphs[0].signature_def


TF_SERVING_LOAD = """
import sys
import pandas as pd, tensorflow as tf
tf.keras.layers  # Keras 3, as in the train step: chosen before TFT's import can pick Keras 2
import tensorflow_transform as tft
from skewless.contract.spec import default_spec_path, load_spec
from skewless.model.hparams import HParams
from skewless.model.network import build_model
from skewless.model.train import export_model

transform_dir, eval_file, out, tests = sys.argv[1:]
sys.path.insert(0, tests)
from support import tf_serving_gap

spec, output = load_spec(default_spec_path()), tft.TFTransformOutput(transform_dir)
model = build_model(spec, output.vocabulary_size_by_name, HParams())
gap = tf_serving_gap(export_model(model, output, spec, out), pd.read_parquet(eval_file).head(16))
print(type(model).__module__.split(".")[0], gap)
"""


def test_a_keras_3_model_loads_as_tf_serving_loads_it(ingested, transform_dir, tmp_path):
    """A process of its own, importing as the train step's does (Keras 3 chosen before TFT's
    import), exports a model and loads it with TF1's loader."""
    import subprocess
    import sys

    from support import step_environment

    env = step_environment()
    run = subprocess.run(
        [sys.executable, "-c", TF_SERVING_LOAD, str(transform_dir),
         str(ingested / "eval.parquet"), str(tmp_path / "m"), str(Path(__file__).parents[1])],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    keras, gap = run.stdout.split()
    assert keras == "keras" and float(gap) < 1e-6
