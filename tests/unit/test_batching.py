"""The micro-batcher: concurrent submissions share calls, each gets exactly its own rows."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from skewless.serving.batching import MicroBatcher


def _double(calls: list[int]):
    def predict(columns: dict[str, np.ndarray]) -> np.ndarray:
        calls.append(len(columns["x"]))
        time.sleep(0.01)  # a model call takes time; requests arriving meanwhile must queue
        return columns["x"] * 2, "v1"

    return predict


def test_concurrent_requests_are_batched_and_sliced_back():
    calls: list[int] = []
    batcher = MicroBatcher(_double(calls), max_batch_rows=64, max_wait_ms=0)

    async def main() -> list[tuple[np.ndarray, int, str]]:
        return await asyncio.gather(
            *(batcher.submit({"x": np.array([i, i + 100.0])}) for i in range(20))
        )

    results = asyncio.run(main())
    for i, (values, _, tag) in enumerate(results):
        np.testing.assert_array_equal(values, [2 * i, 2 * (i + 100)])
        assert tag == "v1"
    assert sum(calls) == 40 and len(calls) < 20  # fewer calls than requests
    assert max(batch for _, batch, _ in results) > 2


def test_a_lone_request_runs_inline_without_the_model_thread():
    threads: list[str] = []

    def predict(columns: dict[str, np.ndarray]) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return columns["x"], "v1"

    batcher = MicroBatcher(predict)
    values, rows, tag = asyncio.run(batcher.submit({"x": np.array([1.0])}))
    assert values.tolist() == [1.0] and rows == 1 and tag == "v1"
    assert threads == [threading.main_thread().name]


def test_max_batch_rows_caps_a_call():
    calls: list[int] = []
    batcher = MicroBatcher(_double(calls), max_batch_rows=4, max_wait_ms=0)

    async def main() -> None:
        await asyncio.gather(*(batcher.submit({"x": np.array([1.0])}) for _ in range(12)))

    asyncio.run(main())
    assert sum(calls) == 12 and max(calls) <= 4


def test_a_failing_call_fails_every_request_in_its_batch():
    def predict(columns: dict[str, np.ndarray]) -> np.ndarray:
        time.sleep(0.005)
        raise RuntimeError("model broke")

    batcher = MicroBatcher(predict)

    async def main() -> list[object]:
        return await asyncio.gather(
            *(batcher.submit({"x": np.array([1.0])}) for _ in range(5)), return_exceptions=True
        )

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and str(r) == "model broke" for r in results)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_batch_rows must be at least 1"):
        MicroBatcher(lambda c: (c["x"], ""), max_batch_rows=0)
    with pytest.raises(ValueError, match="max_wait_ms must not be negative"):
        MicroBatcher(lambda c: (c["x"], ""), max_wait_ms=-1)
