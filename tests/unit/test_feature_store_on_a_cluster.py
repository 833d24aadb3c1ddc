"""The feature store as a cluster runs it: the repository in the object store, Redis online.

Feast's real Redis online store talks to a real Redis server (tests/redis_server.py); the
repository goes through pyarrow's S3 client to the S3 server standing in for KFP's SeaweedFS
(tests/object_store.py). The same small data as the local tests.
"""

from __future__ import annotations

import pandas as pd
import pytest
from redis_server import redis_server
from support import user_values

from skewless.features.location import readable
from skewless.features.materialize import materialize
from skewless.features.offline import point_in_time
from skewless.features.online import OnlineFeatures, PushRefused
from skewless.features.store import (
    FeatureStoreError,
    StoreUnavailable,
    redis_connection,
)

REMOTE = "minio://mlpipeline/skewless/feature_repo"


def test_a_repository_in_the_object_store_serves_from_redis_what_sqlite_serves_locally(
    minio, ingested, default_spec, tmp_path
):
    local = tmp_path / "local_repo"
    materialize(ingested, default_spec, local)
    with redis_server() as redis:
        summary = materialize(ingested, default_spec, REMOTE, online_store=redis.url)
        assert summary["repository"] == REMOTE and summary["online_store"] == redis.url
        assert max(summary["point_in_time_mismatch"].values()) == 0.0
        keys = {o["Key"] for o in minio.client.list_objects_v2(Bucket="mlpipeline")["Contents"]}
        stored = {k.removeprefix("skewless/feature_repo/") for k in keys if "feature_repo" in k}
        assert {
            "feature_store.yaml",
            "views.json",
            "spec.yaml",
            "data/registry.db",
            "data/user_features.parquet",
            "data/item_features.parquet",
        } <= stored
        assert "data/online.db" not in stored  # online values live in Redis only
        config = minio.client.get_object(
            Bucket="mlpipeline", Key="skewless/feature_repo/feature_store.yaml"
        )["Body"].read().decode()  # fmt: skip
        assert f'connection_string: "127.0.0.1:{redis.port},db=0"' in config

        served, reference = OnlineFeatures(REMOTE), OnlineFeatures(local)
        rows = pd.read_parquet(ingested / "eval.parquet", columns=["user_id", "item_id"])
        for side, key in (("user", "user_id"), ("item", "item_id")):
            ids = [*rows[key].unique()[:200], f"{side}-never-seen"]
            view = next(v for v in served.views if v.side == side)
            values, found = served.lookup(view, ids)
            want_values, want_found = reference.lookup(view, ids)
            assert found.tolist() == want_found.tolist() and found[:-1].all() and not found[-1]
            assert values == want_values

        # A push through one server reaches Redis at once, and the object store's record...
        user = next(v for v in served.views if v.side == "user")
        at = pd.Timestamp("2027-01-01T00:00:00Z")
        served.push(user, user_values("2027-01-01T00:00:00Z"))
        values, _ = OnlineFeatures(REMOTE).lookup(user, ["u000001"])  # another replica
        assert values["history"] == ["tools"] and values["age"] == [70.0]
        # Redis keeps an entity's newest value; an older push is refused, not half-stored.
        with pytest.raises(PushRefused, match="is older than the value the online store holds"):
            served.push(user, user_values("2026-12-31T00:00:00Z", history="old"))
        keys = [
            o["Key"]
            for o in minio.client.list_objects_v2(
                Bucket="mlpipeline", Prefix="skewless/feature_repo/pushed/user_features/"
            )["Contents"]
        ]
        assert len(keys) == 1  # fmt: skip
        # ...so a point-in-time join on a copy, and the next run's tables, both see it.
        later = at + pd.Timedelta(1, "s")
        probe = pd.DataFrame({"user_id": ["u000001"], "event_timestamp": [later]})
        copy = readable(REMOTE, tmp_path / "copy")
        assert point_in_time(copy, probe)["history"].tolist() == ["tools"]
        materialize(ingested, default_spec, REMOTE, online_store=redis.url)
        again = readable(REMOTE, tmp_path / "again")
        assert point_in_time(again, probe)["history"].tolist() == ["tools"]
        assert OnlineFeatures(REMOTE).lookup(user, ["u000001"])[0]["history"] == ["tools"]

        # A pushed object that is not a table is one clear error for a report, not a traceback.
        broken = "skewless/feature_repo/pushed/user_features/9-x.parquet"
        minio.client.put_object(Bucket="mlpipeline", Key=broken, Body=b"not parquet")
        with pytest.raises(FeatureStoreError, match="a pushed file cannot be read"):
            readable(REMOTE, tmp_path / "broken")
        minio.client.delete_object(Bucket="mlpipeline", Key=broken)

        redis.stop()  # an outage is an error the server turns into a 503, never an answer
        with pytest.raises(StoreUnavailable, match="cannot be read"):
            served.lookup(user, ["u000001"])


def test_a_repository_in_the_object_store_needs_an_online_store_every_pod_reaches(
    minio, ingested, default_spec
):
    with pytest.raises(FeatureStoreError, match="needs an online store every pod reaches"):
        materialize(ingested, default_spec, REMOTE)
    with pytest.raises(FeatureStoreError, match="not a feature repository"):
        OnlineFeatures("minio://mlpipeline/nothing/here")


@pytest.mark.parametrize(
    "text", ["localhost:6379", "redis://:6379", "redis://host", "redis://host:99999",
             "redis://host:6379/x", "redis://host:6379,password=p", "rediss://host:6379"],
)  # fmt: skip
def test_an_online_store_address_is_redis_host_port_or_a_clear_error(text):
    with pytest.raises(FeatureStoreError, match=r"expected redis://HOST:PORT\[/DB\]"):
        redis_connection(text)


def test_an_online_store_address_becomes_feasts_connection_string():
    assert redis_connection("") is None
    assert redis_connection("redis://feast-redis.kubeflow.svc.cluster.local:6379") == (
        "feast-redis.kubeflow.svc.cluster.local:6379,db=0"
    )
    assert redis_connection("redis://10.0.0.7:6380/2") == "10.0.0.7:6380,db=2"
