"""Fuzzing the REST surface: whatever a client sends, the server answers 4xx or 200, never 5xx.

Hypothesis builds request bodies from arbitrary JSON (nested lists and objects, odd numbers,
unicode including lone surrogates) placed where the V1 and V2 protocols expect rows, columns or
tensors, plus raw bytes; each goes to a real ``skewless serve`` over HTTP. After every example a
valid request must still score, and at the end the server's memory must not have grown past a
bound. ``SKEWLESS_FUZZ_EXAMPLES`` sets the number of examples (default 120).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import example, post, serving

EXAMPLES = int(os.environ.get("SKEWLESS_FUZZ_EXAMPLES", "120"))
EXAMPLE = example()
FIELDS = [*EXAMPLE, "clicked", "nonsense", ""]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["\ud800", "ab\udfffc", "1e400", "NaN", " ", "books||music"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=5), inner, max_size=4),
    ),
    max_leaves=12,
)
rows = st.fixed_dictionaries({}, optional={name: json_values for name in EXAMPLE}) | json_values
v1_bodies = st.one_of(
    st.fixed_dictionaries({"instances": st.lists(rows, max_size=4) | json_values}),
    st.fixed_dictionaries({"inputs": st.dictionaries(st.sampled_from(FIELDS), json_values)}),
    st.dictionaries(st.sampled_from(["instances", "inputs", "x"]), json_values, max_size=3),
    json_values,
)
tensors = st.fixed_dictionaries(
    {
        "name": st.sampled_from(FIELDS),
        "shape": st.lists(st.integers(min_value=-2, max_value=5), max_size=3) | json_values,
        "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BYTES", "BOOL", "UINT8", "XX"]),
        "data": json_values,
    },
    optional={"parameters": json_values},
)
v2_bodies = st.one_of(
    st.fixed_dictionaries({"inputs": st.lists(tensors, max_size=4)}),
    st.fixed_dictionaries({"inputs": json_values}, optional={"id": json_values}),
    json_values,
)


def _send(url: str, raw: bytes) -> int:
    request = urllib.request.Request(url, data=raw, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _encode(body: Any) -> bytes:
    # json.dumps writes a lone surrogate as the escape "\ud800", as a careless client would.
    return json.dumps(body, allow_nan=False).encode()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(trained):
    with serving(trained.model_dir) as addresses:
        yield addresses


@pytest.fixture(scope="module")
def memory(server):
    """The server's resident memory after warm-up, and a check at the module's end."""
    for _ in range(20):
        post(f"{server['http']}/v1/models/ranking:predict", {"instances": [EXAMPLE] * 64})
    before = _rss_kb(server["process"].pid)
    yield before
    after = _rss_kb(server["process"].pid)
    assert after < before + 300_000, f"RSS grew from {before} kB to {after} kB"


def _still_serves(server: dict[str, Any]) -> None:
    status, answer, _ = post(
        f"{server['http']}/v1/models/ranking:predict", {"instances": [EXAMPLE]}
    )
    assert status == 200 and 0 < answer["predictions"][0] < 1


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.mark.parametrize(
    ("path", "bodies"),
    [("/v1/models/ranking:predict", v1_bodies), ("/v2/models/ranking/infer", v2_bodies)],
    ids=["v1", "v2"],
)
def test_json_never_answers_5xx(server, memory, path, bodies):
    @FUZZ
    @given(body=bodies)
    def check(body: Any) -> None:
        status = _send(f"{server['http']}{path}", _encode(body))
        assert status == 200 or 400 <= status < 500, (status, body)
        _still_serves(server)

    check()


@FUZZ
@given(raw=st.binary(max_size=200))
def test_raw_bytes_never_answer_5xx(server, memory, raw):
    for path in ("/v1/models/ranking:predict", "/v2/models/ranking/infer"):
        status = _send(f"{server['http']}{path}", raw)
        assert 400 <= status < 500, (status, raw, path)
    _still_serves(server)
