"""Serving by id over real HTTP: the server reads the features a request leaves out from Feast.

The feature repository is the pipeline's materialize step's (Feast's SQLite online store, built
from the small ingested data); the expected answer is the same server's answer to the full raw
row, built here from the latest clean row of the user and of the item (what the online store
holds).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support import SKEWLESS, post, serving

USER = ("age", "country", "device", "history")
ITEM = ("title", "item_tags", "price")


@pytest.fixture(scope="module")
def feature_repo(ingested, default_spec, tmp_path_factory) -> Path:
    from skewless.features.materialize import materialize

    repo = tmp_path_factory.mktemp("features") / "feature_repo"
    summary = materialize(ingested, default_spec, repo)
    assert summary["materialized"] == 1
    return repo


@pytest.fixture(scope="module")
def server(trained, feature_repo):
    with serving(trained.model_dir, "--feature-store", str(feature_repo)) as addresses:
        yield addresses


def _latest(ingested: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = pd.concat([pd.read_parquet(ingested / f"{s}.parquet") for s in ("train", "eval")])
    rows = rows.sort_values("event_timestamp", kind="stable")
    return rows.groupby("user_id").last(), rows.groupby("item_id").last()


def _full(users: pd.DataFrame, items: pd.DataFrame, user: str, item: str, **context: Any):
    row: dict[str, Any] = {"user_id": user, "item_id": item, **context}
    row.update({name: users.loc[user, name] for name in USER})
    row.update({name: items.loc[item, name] for name in ITEM})
    return {k: _plain(v) for k, v in row.items()}


def test_a_request_with_only_ids_and_context_scores_as_the_full_raw_row(server, ingested):
    users, items = _latest(ingested)
    pairs = list(zip(users.index[:4], items.index[-4:], strict=True))
    context = [{"hour": 8 + i, "weekday": "Tue"} for i in range(4)]
    by_id = [{"user_id": u, "item_id": i, **c} for (u, i), c in zip(pairs, context, strict=True)]
    full = [_full(users, items, u, i, **c) for (u, i), c in zip(pairs, context, strict=True)]
    url = f"{server['http']}/v1/models/ranking:predict"

    status, answer, headers = post(url, {"instances": by_id})
    assert status == 200, answer
    assert sorted(headers["x-skewless-looked-up"].split(",")) == sorted(USER + ITEM)
    status, want, want_headers = post(url, {"instances": full})
    assert status == 200, want
    assert answer["predictions"] == want["predictions"]
    assert want_headers["x-skewless-looked-up"] == ""  # nothing left out, nothing read

    # V2 columns: the same by-id rows give the same probabilities.
    inputs = [
        {"name": name, "shape": [4], "datatype": "FP32" if name == "hour" else "BYTES",
         "data": [row[name] for row in by_id]}
        for name in ("user_id", "item_id", "hour", "weekday")
    ]  # fmt: skip
    status, v2, _ = post(f"{server['http']}/v2/models/ranking/infer", {"inputs": inputs})
    assert status == 200, v2
    assert v2["outputs"][0]["data"] == pytest.approx(want["predictions"], abs=1e-6)


def test_features_the_request_sends_win_over_the_store(server, ingested):
    users, items = _latest(ingested)
    user, item = users.index[0], items.index[0]
    url = f"{server['http']}/v1/models/ranking:predict"
    mine = {"user_id": user, "item_id": item, "hour": 22, "weekday": "Sat", "age": 81.0}
    status, answer, headers = post(url, {"instances": [mine]})
    assert status == 200, answer
    assert "age" not in headers["x-skewless-looked-up"].split(",")
    full = {**_full(users, items, user, item, hour=22, weekday="Sat"), "age": 81.0}
    assert post(url, {"instances": [full]})[1]["predictions"] == answer["predictions"]
    # The store's own age gives another answer, so the sent value was the one used.
    stored = _full(users, items, user, item, hour=22, weekday="Sat")
    assert users.loc[user, "age"] != 81.0
    assert post(url, {"instances": [stored]})[1]["predictions"] != answer["predictions"]


def test_pushing_is_off_unless_the_server_allows_it(server):
    body = {"push_source_name": "user_features_push", "df": {"user_id": ["u1"]}}
    status, answer, _ = post(f"{server['http']}/push", body)
    assert (status, answer["error"]) == (
        403, "pushing features is off: start the server with --allow-push"
    )  # fmt: skip


def test_an_id_the_store_does_not_know_is_a_400_naming_it(server, ingested):
    _, items = _latest(ingested)
    row = {"user_id": "u999999", "item_id": items.index[0], "hour": 1, "weekday": "Mon"}
    status, answer, _ = post(f"{server['http']}/v1/models/ranking:predict", {"instances": [row]})
    assert status == 400
    # history is optional (cold-start users have none), so only the required ones are named.
    assert answer["error"] == (
        "instances[0].user_id: 'u999999' is not in the feature store; "
        "send age, country, device in the request"
    )


def test_recommend_with_only_the_user_id_and_context_answers_as_with_the_full_query(
    server, ingested
):
    users, _ = _latest(ingested)
    user = users.index[1]
    context = {"hour": 20, "weekday": "Fri"}
    full = {"user_id": user, **{name: _plain(users.loc[user, name]) for name in USER}, **context}
    url = f"{server['http']}/v1/models/recommend:predict"
    status, by_id, headers = post(url, {"instances": [{"user_id": user, **context}], "k": 5})
    assert status == 200, by_id
    assert sorted(headers["x-skewless-looked-up"].split(",")) == sorted(USER)
    status, want, _ = post(url, {"instances": [full], "k": 5})
    assert status == 200, want
    assert by_id["predictions"] == want["predictions"]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


@pytest.fixture(scope="module")
def writable(trained, feature_repo, tmp_path_factory):
    """A server on a copy of the repository, logging every row it scores: the tests below push
    to it, read its feature log and, last, break its store (they run in this order)."""
    root = tmp_path_factory.mktemp("writable")
    repo, log = root / "feature_repo", root / "features.jsonl"
    shutil.copytree(feature_repo, repo)
    with serving(trained.model_dir, "--feature-store", str(repo), "--feature-log", str(log),
                 "--feature-log-sample", "1", "--allow-push") as addresses:  # fmt: skip
        yield {**addresses, "repo": repo, "log": log}


def test_skew_report_finds_the_feature_a_client_sent_stale_and_passes_the_rest(writable, ingested):
    users, items = _latest(ingested)
    pairs = list(zip(users.index[:20], items.index[:20], strict=True))
    url = f"{writable['http']}/v1/models/ranking:predict"
    by_id = [{"user_id": u, "item_id": i, "hour": 12, "weekday": "Mon"} for u, i in pairs]
    assert post(url, {"instances": by_id})[0] == 200
    report = _skew_report(writable["log"], writable["repo"])
    assert report.returncode == 0, report.stdout + report.stderr
    assert "20 served rows" in report.stdout and "skewed: none" in report.stdout
    # A client that sends its own stale copy of a feature: served values the store never had.
    stale = [{**row, "country": "JP"} for row in by_id]
    assert post(url, {"instances": stale})[0] == 200
    report = _skew_report(writable["log"], writable["repo"], "--json")
    assert report.returncode == 1, report.stdout + report.stderr
    found = json.loads(report.stdout)
    assert found["rows"] == 40 and found["skewed"] == ["country"]
    share_not_jp = float(np.mean(users.loc[[u for u, _ in pairs], "country"] != "JP"))
    assert found["features"]["country"]["mismatch"] == pytest.approx(share_not_jp / 2, abs=1e-6)
    assert found["features"]["age"]["mismatch"] == 0.0


def test_pushed_values_are_served_at_once_and_land_offline_for_training(writable, ingested):
    from skewless.features.offline import point_in_time

    users, items = _latest(ingested)
    user, item = users.index[2], items.index[2]
    later = (users["event_timestamp"].max() + pd.Timedelta(hours=1)).isoformat()
    pushed = {"age": 64.0, "country": "JP", "device": "tablet", "history": "garden|garden|tools"}
    body = {"push_source_name": "user_features_push",
            "df": {"user_id": [user], "event_timestamp": [later],
                   **{name: [value] for name, value in pushed.items()}}}  # fmt: skip
    status, answer, _ = post(f"{writable['http']}/push", body)
    assert status == 200, answer
    assert answer == {"pushed": 1, "push_source_name": "user_features_push"}
    url = f"{writable['http']}/v1/models/ranking:predict"
    by_id = {"user_id": user, "item_id": item, "hour": 9, "weekday": "Wed"}
    full = {**_full(users, items, user, item, hour=9, weekday="Wed"), **pushed}
    assert post(url, {"instances": [by_id]})[1] == post(url, {"instances": [full]})[1]

    # A bad push is a 400 naming the field.
    bad = {**body, "df": {**body["df"], "age": ["old"]}}
    status, answer, _ = post(f"{writable['http']}/push", bad)
    assert (status, answer["error"]) == (400, "df.age[0]: not a number ('old')")
    missing = {**body, "df": {k: v for k, v in body["df"].items() if k != "history"}}
    status, answer, _ = post(f"{writable['http']}/push", missing)
    assert status == 400 and answer["error"].startswith("df.history: missing")
    # The next training run's point-in-time join sees the pushed values after their time only.
    probe = pd.DataFrame({"user_id": [user, user],
                          "event_timestamp": pd.to_datetime([later, later], utc=True)
                          + pd.to_timedelta([-1, 1], unit="s")})  # fmt: skip
    found = point_in_time(writable["repo"], probe)
    assert found["history"].tolist() == [users.loc[user, "history"], pushed["history"]]


def test_a_store_that_cannot_be_read_is_a_503_with_a_retry_hint(writable, ingested):
    users, items = _latest(ingested)
    row = {"user_id": users.index[0], "item_id": items.index[0], "hour": 1, "weekday": "Mon"}
    url = f"{writable['http']}/v1/models/ranking:predict"
    assert post(url, {"instances": [row]})[0] == 200
    with sqlite3.connect(writable["repo"] / "data" / "online.db") as db:  # the store breaks
        tables = [t for (t,) in db.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            db.execute(f'drop table "{table}"')
    status, answer, headers = post(url, {"instances": [row]})
    assert status == 503, (answer, headers)
    assert headers["retry-after"] == "1"
    assert "feature store" in answer["error"]
    # A request that sends every feature does not need the store and is still answered.
    full = _full(users, items, users.index[0], items.index[0], hour=1, weekday="Mon")
    assert post(url, {"instances": [full]})[0] == 200


def _skew_report(log: Path, repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SKEWLESS, "skew-report", "--feature-log", str(log), "--feature-store", str(repo), *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
