"""The feature spec: the shipped spec loads, and every kind of mistake names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from skewless.contract.spec import SpecError, load_spec, load_spec_text, parse_spec

MINIMAL = """
features:
  age: {kind: numeric, min: 0, max: 120}
  country: {kind: categorical, allowed_values: [US, GB]}
  clicked: {kind: label}
"""


def test_default_spec_describes_the_default_data(default_spec):
    assert default_spec.label.name == "clicked"
    assert default_spec.key is not None and default_spec.key.name == "event_id"
    assert default_spec.oracle is not None and default_spec.oracle.name == "true_click_prob"
    assert {f.name for f in default_spec.slices} == {"country", "device"}
    assert [c.name for c in default_spec.crosses] == ["history_x_item_tags", "device_x_hour"]
    assert default_spec.cross_length(default_spec.crosses[0]) == 8 * 4
    assert default_spec.features["history"].required is False
    assert len(default_spec.source_sha256) == 64


def test_minimal_spec_defaults():
    spec = load_spec_text(MINIMAL)
    age = spec.features["age"]
    assert age.transform == "zscore" and age.required and age.min_value == 0.0
    assert spec.features["country"].encoding == "vocabulary"
    assert spec.eval_percent == 20
    assert spec.key is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("features:\n  a: {kind: label}\n  a: {kind: numeric}\n", "duplicate key 'a' at line 3"),
        ("features:\n  a: {kind: number}\n  y: {kind: label}\n", "features.a.kind: unknown kind"),
        (
            "features:\n  a: {kind: numeric, buckets: 3}\n  y: {kind: label}\n",
            "features.a: unknown option(s) ['buckets']",
        ),
        ("features:\n  a: {kind: numeric}\n", "exactly one feature of kind 'label'"),
        (
            "features:\n  a: {kind: numeric}\n  y: {kind: label}\n  z: {kind: label}\n",
            "exactly one feature of kind 'label', found ['y', 'z']",
        ),
        (
            "features:\n  a: {kind: numeric, min: 5, max: 1}\n  y: {kind: label}\n",
            "features.a: min (5.0) is greater than max (1.0)",
        ),
        (
            "features:\n  a: {kind: numeric, min: .nan}\n  y: {kind: label}\n",
            "features.a.min must be a finite number",
        ),
        (
            "features:\n  a: {kind: numeric, transform: log, min: -1}\n  y: {kind: label}\n",
            "transform 'log' needs min >= 0",
        ),
        (
            "features:\n  a: {kind: id}\n  y: {kind: label}\n",
            "features.a.hash_buckets is required with encoding: hash",
        ),
        (
            "features:\n  a: {kind: numeric, required: false}\n  y: {kind: label}\n",
            "features.a.default: an optional numeric column needs a numeric default",
        ),
        (
            "features:\n  a: {kind: numeric, required: true, default: 1}\n  y: {kind: label}\n",
            "features.a.default only applies to optional features",
        ),
        (
            "features:\n  a: {kind: numeric}\n  y: {kind: label, required: false}\n",
            "features.y.required: a label feature cannot be optional",
        ),
        (
            "features:\n  a: {kind: categorical, allowed_values: [x, x]}\n  y: {kind: label}\n",
            "features.a.allowed_values has duplicates",
        ),
        (
            "features:\n  a: {kind: tags, delimiter: '||'}\n  y: {kind: label}\n",
            "features.a.delimiter must be a single character",
        ),
        ("features:\n  y: {kind: label}\n  k: {kind: key}\n", "spec has no model input"),
        (
            "features:\n  a: {kind: categorical}\n  y: {kind: label}\n"
            "crosses:\n  - features: [a, b]\n    hash_buckets: 10\n",
            "crosses[0].features: unknown feature 'b'",
        ),
        (
            "features:\n  a: {kind: numeric}\n  b: {kind: categorical}\n  y: {kind: label}\n"
            "crosses:\n  - {features: [a, b], hash_buckets: 10}\n",
            "'a' cannot be crossed",
        ),
        (
            "features:\n  a: {kind: categorical}\n  b: {kind: categorical}\n  y: {kind: label}\n"
            "crosses:\n  - {features: [a, b]}\n",
            "crosses[0].hash_buckets must be an integer >= 2",
        ),
        (
            "features:\n  a: {kind: numeric}\n  y: {kind: label}\neval_percent: 0\n",
            "eval_percent must be an integer from 1 to 99",
        ),
        (
            "features:\n  a: {kind: numeric}\n  y: {kind: label}\nextra: 1\n",
            "unknown top-level key(s) ['extra']",
        ),
        ("features:\n  1bad: {kind: numeric}\n  y: {kind: label}\n", "must be a valid identifier"),
        (
            "features:\n  a: {kind: numeric}\n  t: {kind: timestamp}\n  u: {kind: timestamp}\n"
            "  y: {kind: label}\n",
            "at most one feature of kind 'timestamp', found ['t', 'u']",
        ),
        (
            "features:\n  a: {kind: numeric}\n  t: {kind: timestamp, required: false}\n"
            "  y: {kind: label}\n",
            "features.t.required: a timestamp feature cannot be optional",
        ),
        ("features: [a, b]\n", "'features' must be a non-empty mapping"),
        ("features: {a: [\n", "is not valid YAML"),
    ],
)
def test_spec_errors_name_the_field(text, message):
    with pytest.raises(SpecError) as raised:
        load_spec_text(text)
    assert message in str(raised.value)


def test_non_mapping_document_is_refused():
    with pytest.raises(SpecError, match="spec must be a mapping"):
        parse_spec(["features"])


def test_missing_spec_file_names_the_path(tmp_path: Path):
    with pytest.raises(SpecError, match=r"cannot read spec file .*nope\.yaml"):
        load_spec(tmp_path / "nope.yaml")


def test_auto_batch_size_gives_small_data_enough_steps_and_keeps_the_tuned_size_at_scale():
    from skewless.model.hparams import HParams
    from skewless.model.train import auto_batch_size

    assert HParams().batch_size == 0  # the default is "auto"
    assert auto_batch_size(12_000) == 128  # ~94 steps per epoch, not 12
    assert auto_batch_size(50_000) == 512
    assert auto_batch_size(320_000) == 1024  # the default data's training split
    assert auto_batch_size(10) == 128
    with pytest.raises(ValueError, match="batch_size must be 0"):
        HParams(batch_size=-1)
