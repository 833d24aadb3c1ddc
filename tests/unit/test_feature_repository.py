"""The feature store with Feast's real file offline store and SQLite online store, small data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support import user_values

from skewless.contract.spec import load_spec_text
from skewless.data.ingest import ingest
from skewless.features.materialize import materialize
from skewless.features.offline import point_in_time
from skewless.features.online import OnlineFeatures, PushRefused
from skewless.features.store import (
    FeatureStoreError,
    build_repository,
    entity_views,
)

USER = ["age", "country", "device", "history"]


@pytest.fixture(scope="module")
def repo(ingested, default_spec, tmp_path_factory):
    out = tmp_path_factory.mktemp("fs") / "feature_repo"
    materialize(ingested, default_spec, out)
    return out


def test_views_come_from_the_spec_sides_and_context_is_never_looked_up(default_spec):
    views = {view.side: view for view in entity_views(default_spec)}
    assert (views["user"].key, list(views["user"].features)) == ("user_id", USER)
    assert (views["item"].key, list(views["item"].features)) == (
        "item_id", ["title", "item_tags", "price"]
    )  # fmt: skip
    assert not {"hour", "weekday"} & {f for v in views.values() for f in v.features}


def test_a_training_row_never_sees_a_value_from_its_future(repo, ingested):
    """Each eval row asks for its user's features one microsecond before its own event: it must
    get the user's latest earlier value (or nothing), never its own row's or a later one's."""
    rows = pd.concat([pd.read_parquet(ingested / f"{s}.parquet") for s in ("train", "eval")])
    rows = rows.sort_values("event_timestamp", kind="stable").reset_index(drop=True)
    probe = pd.read_parquet(ingested / "eval.parquet", columns=["user_id", "event_timestamp"])
    probe["event_timestamp"] = (probe["event_timestamp"] - pd.Timedelta(microseconds=1)).astype(
        rows["event_timestamp"].dtype
    )
    found = point_in_time(repo, probe)
    assert len(found) == len(probe)  # no entity row is dropped
    # The answer as of each probe, computed independently of Feast.
    want = pd.merge_asof(
        probe.reset_index().sort_values("event_timestamp"),
        rows[["user_id", "event_timestamp", *USER]],
        on="event_timestamp", by="user_id", allow_exact_matches=True, direction="backward",
    ).set_index("index").sort_index()  # fmt: skip
    earlier = want["age"].notna().to_numpy()
    assert earlier.sum() >= 30 and (~earlier).sum() >= 30  # both cases are exercised
    np.testing.assert_array_equal(found["history"].to_numpy()[earlier], want["history"][earlier])
    np.testing.assert_allclose(found["age"].to_numpy(float)[earlier], want["age"][earlier])
    assert found["age"][~earlier].isna().all()  # no value before the first: null, not the future
    # The test can fail: the row's own (future) history differs from the earlier one often.
    own = pd.read_parquet(ingested / "eval.parquet", columns=["history"])["history"].to_numpy()
    assert (own[earlier] != want["history"][earlier].to_numpy()).mean() > 0.5


def test_online_lookup_answers_each_entitys_latest_value_and_which_ids_are_unknown(repo, ingested):
    rows = pd.concat([pd.read_parquet(ingested / f"{s}.parquet") for s in ("train", "eval")])
    latest = rows.sort_values("event_timestamp", kind="stable").groupby("user_id").last()
    online = OnlineFeatures(repo)
    view = next(v for v in online.views if v.side == "user")
    ids = [*latest.index[:5], "u-never-seen"]
    values, found = online.lookup(view, ids)
    assert found.tolist() == [True] * 5 + [False]
    assert values["history"][:5] == latest["history"].iloc[:5].tolist()
    assert values["age"][5] is None


def test_without_an_event_time_the_step_says_why_it_skips(ingested, tmp_path):
    spec = load_spec_text(
        "features:\n  user_id: {kind: id, side: user, hash_buckets: 64}\n"
        "  age: {kind: numeric, side: user}\n"
        "  item_id: {kind: id, side: item, hash_buckets: 64}\n  clicked: {kind: label}\n"
    )
    summary = materialize(ingested, spec, tmp_path / "repo")
    assert summary["materialized"] == 0
    assert "no 'kind: timestamp' feature" in summary["reason"]
    assert not (tmp_path / "repo").exists()
    with pytest.raises(FeatureStoreError, match="no 'kind: timestamp' feature"):
        entity_views(spec)


def test_two_values_of_one_user_at_one_instant_fail_the_check(tmp_path):
    """The check compares the store's point-in-time answer with each row's logged values."""
    spec = load_spec_text(
        "features:\n  event_id: {kind: key}\n  at: {kind: timestamp}\n"
        "  user_id: {kind: id, side: user, hash_buckets: 64}\n  age: {kind: numeric, side: user}\n"
        "  item_id: {kind: id, side: item, hash_buckets: 64}\n  clicked: {kind: label}\n"
    )
    n = 400
    at = pd.Timestamp("2026-02-01", tz="UTC") + pd.to_timedelta(np.arange(n) // 2, unit="min")
    raw = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "at": at,  # rows 2k and 2k+1 share an instant and a user, with different ages
            "user_id": [f"u{i // 2}" for i in range(n)],
            "age": [20.0 + i % 2 for i in range(n)],
            "item_id": ["i1"] * n,
            "clicked": [i % 2 for i in range(n)],
        }
    )
    raw.to_parquet(tmp_path / "raw.parquet")
    folder = ingest(tmp_path / "raw.parquet", spec, tmp_path / "ingested").out_dir
    with pytest.raises(FeatureStoreError, match=r"different 'age' than the row logged"):
        materialize(folder, spec, tmp_path / "repo")


def test_identical_entity_rows_each_get_the_answer(repo, ingested):
    """Feast answers an entity row once however often it is asked (a server logs the same user
    at the same instant for every row of a request); every copy gets the answer here."""
    rows = pd.read_parquet(ingested / "eval.parquet").head(4)
    asked = pd.concat([rows[["event_timestamp", "user_id", "item_id"]]] * 3, ignore_index=True)
    found = point_in_time(repo, asked)
    assert len(found) == 12
    for name in ("history", "title", "price"):
        np.testing.assert_array_equal(found[name].to_numpy(), np.tile(rows[name].to_numpy(), 3))


def test_a_new_run_keeps_pushed_values_in_the_offline_store(repo, ingested, default_spec, tmp_path):
    """The offline tables are append-only: materializing again from the splits must not drop a
    value that arrived by push (serving saw it; the next training run's join must see it too)."""
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    online = OnlineFeatures(copy)
    view = next(v for v in online.views if v.side == "user")
    at = pd.Timestamp("2027-01-01T00:00:00Z")
    online.push(view, user_values("2027-01-01T00:00:00Z"))
    # An older value than the one the online store holds is refused (it would reach the offline
    # record only: skew), named by row.
    with pytest.raises(PushRefused, match=r"df.event_timestamp\[0\]: 2026-12-31.* is older"):
        online.push(view, user_values("2026-12-31T00:00:00Z", history="old"))
    materialize(ingested, default_spec, copy)  # the next run
    probe = pd.DataFrame({"user_id": ["u000001"], "event_timestamp": [at + pd.Timedelta(1, "s")]})
    assert point_in_time(copy, probe)["history"].tolist() == ["tools"]
    values, found = OnlineFeatures(copy).lookup(view, ["u000001"])
    assert found.tolist() == [True] and values["history"] == ["tools"]


_TINY = (
    "features:\n  event_id: {kind: key}\n  at: {kind: timestamp}\n"
    "  user_id: {kind: id, side: user, hash_buckets: 64}\n  age: {kind: numeric, side: user}\n"
    "  item_id: {kind: id, side: item, hash_buckets: 64}\n  price: {kind: numeric, side: item}\n"
    "  clicked: {kind: label}\n"
)


def _tiny_split(path, rows: list[tuple[str, int, float | None]]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    at = [pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(minutes=m) for _, m, _ in rows]
    pq.write_table(pa.table({
        "event_id": [f"e{i}" for i in range(len(rows))],
        "at": pa.array(at, pa.timestamp("us", tz="UTC")),
        "user_id": [u for u, _, _ in rows], "age": pa.array([a for *_, a in rows], pa.float64()),
        "item_id": ["i1"] * len(rows), "price": pa.array([p for *_, p in rows], pa.float64()),
        "clicked": [0] * len(rows),
    }), path)  # fmt: skip
    return path


@pytest.mark.parametrize("pushed", [False, True])
def test_a_rebuild_compresses_with_what_the_repository_holds(tmp_path, pushed):
    """A row of the new data that repeats its previous new row still overrides what the table or
    a push holds between them (the compression runs over every source together)."""
    spec = load_spec_text(_TINY)
    repo = tmp_path / "repo"
    first = [("u1", 1, 30.0), ("u1", 7, 40.0)] if not pushed else [("u1", 1, 30.0)]
    build_repository(spec, [_tiny_split(tmp_path / "1.parquet", first)], repo)
    online = OnlineFeatures(repo)
    user = next(v for v in online.views if v.side == "user")
    if pushed:  # between the new data's two rows
        at = pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(minutes=5)
        online.push(user, pd.DataFrame({"user_id": ["u1"], "at": [at], "age": [99.0]}))
    second = [("u1", 1, 30.0), ("u1", 7, 30.0)]
    build_repository(spec, [_tiny_split(tmp_path / "2.parquet", second)], repo)
    at8 = pd.DataFrame({"at": [pd.Timestamp("2026-01-01 00:08", tz="UTC")], "user_id": ["u1"]})
    assert point_in_time(repo, at8)["age"].tolist() == [30.0]
    assert OnlineFeatures(repo).lookup(user, ["u1"])[0]["age"] == [30.0]


def test_a_view_whose_latest_values_are_all_null_is_written_online(tmp_path):
    """Feast's write_to_online_store skips an all-null frame; the stale value must not stay."""
    spec = load_spec_text(_TINY)
    repo = tmp_path / "repo"
    build_repository(spec, [_tiny_split(tmp_path / "1.parquet", [("u1", 1, 5.0)])], repo)
    build_repository(spec, [_tiny_split(tmp_path / "2.parquet", [("u1", 9, None)])], repo)
    online = OnlineFeatures(repo)
    item = next(v for v in online.views if v.side == "item")
    assert online.lookup(item, ["i1"])[0]["price"] == [None]


def test_a_folder_without_the_stored_spec_is_named_not_a_repository_or_a_model(tmp_path):
    from skewless.features.store import FeatureStoreError, read_spec
    from skewless.serving.loading import model_spec

    with pytest.raises(FeatureStoreError, match="missing; the repository was not written by"):
        read_spec(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"has no .*; was it exported by skewless"):
        model_spec(tmp_path)


def test_pushed_files_fold_in_by_the_rule_a_run_builds_by(tmp_path):
    """A repository copied from an object store folds its pushed files in: at one instant the
    newest push wins, then older pushes, then the table (as ``changes`` orders them for a run)."""
    from skewless.features.pushed import include_pushed
    from skewless.features.store import PUSHED_DIR, read_views

    spec = load_spec_text(_TINY)
    repo = tmp_path / "repo"
    build_repository(spec, [_tiny_split(tmp_path / "1.parquet", [("u1", 1, 30.0)])], repo)
    user = next(v for v in read_views(repo)[0] if v.side == "user")
    folder = repo / PUSHED_DIR / user.name
    folder.mkdir(parents=True)
    minute = [pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(minutes=m) for m in range(4)]
    pushes = [(1, 50.0), (3, 60.0), (3, 70.0)]  # oldest first, as their file names sort
    for index, (m, age) in enumerate(pushes):
        frame = pd.DataFrame({"user_id": ["u1"], "at": [minute[m]], "age": [age]})
        frame.to_parquet(folder / f"{index}.parquet")
    include_pushed(repo)
    probe = pd.DataFrame({"at": minute[1:4], "user_id": ["u1"] * 3})
    assert point_in_time(repo, probe)["age"].tolist() == [50.0, 50.0, 70.0]


def _instrumented_feast_functions() -> list[str]:
    """Every function of the loaded Feast modules typeguard instrumented (its code keeps a
    ``TypeCheckMemo``), module functions and methods alike."""
    import inspect
    import sys

    found = []
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "feast" or name.startswith("feast.")):
            continue
        for value in list(vars(module).values()):
            if getattr(value, "__module__", None) != name:
                continue
            functions = list(vars(value).values()) if inspect.isclass(value) else [value]
            found += [
                f"{name}.{f.__qualname__}"
                for f in functions
                if inspect.isfunction(f) and "TypeCheckMemo" in f.__code__.co_names
            ]
    return found


def test_feast_used_through_the_store_is_not_instrumented_by_typeguard(repo, ingested):
    import typeguard

    checked = typeguard.typechecked
    online = OnlineFeatures(repo)  # opens the store: Feast and the stores its config names
    view = next(v for v in online.views if v.side == "user")
    assert online.lookup(view, ["u-never-seen"])[1].tolist() == [False]
    point_in_time(repo, pd.read_parquet(ingested / "eval.parquet").head(20))
    assert typeguard.typechecked is checked  # put back after each block
    assert _instrumented_feast_functions() == []


def test_only_what_is_first_imported_inside_the_block_is_left_unchecked(tmp_path, monkeypatch):
    import importlib
    import sys

    import typeguard

    from skewless.features.unchecked import unchecked

    source = "from typeguard import typechecked\n\n@typechecked\ndef twice(n: int) -> int:\n"
    for name in ("inside", "outside"):
        (tmp_path / f"{name}_block.py").write_text(source + "    return 2 * n\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with unchecked(), unchecked():  # nested blocks put the decorator back in order
            inside = importlib.import_module("inside_block")
        outside = importlib.import_module("outside_block")
        assert inside.twice("ab") == "abab"  # not checked: what Feast's functions are here
        with pytest.raises(typeguard.TypeCheckError, match='argument "n"'):
            outside.twice("ab")
    finally:
        for name in ("inside_block", "outside_block"):
            sys.modules.pop(name, None)
