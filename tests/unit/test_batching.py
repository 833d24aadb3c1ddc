"""The micro-batcher: concurrent submissions share calls; each gets its own result or error."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from skewless.serving.batching import MicroBatcher


def _double(calls: list[int]):
    """A batch call: doubles each request's values; a negative value is that request's error."""

    def predict(requests: Sequence[np.ndarray]) -> tuple[list[np.ndarray | Exception], str]:
        calls.append(sum(len(r) for r in requests))
        time.sleep(0.01)  # a call takes time; requests arriving meanwhile must queue
        return [r * 2 if (r >= 0).all() else ValueError(f"bad {r[0]}") for r in requests], "v1"

    return predict


def _first_call_waits(
    calls: list[int],
    busy: threading.Event,
    release: threading.Event,
    later: threading.Event | None = None,
):
    """A batch call that records each call's rows: the first sets ``busy`` and returns only once
    ``release`` is set (the model is busy meanwhile); any later one sets ``later``."""

    def predict(requests: Sequence[np.ndarray]) -> tuple[list[np.ndarray], str]:
        calls.append(len(requests))
        if len(calls) == 1:
            busy.set()
            release.wait(timeout=60)
        elif later is not None:
            later.set()
        return list(requests), "v1"

    return predict


async def _settle() -> None:
    """Lets the consumer see what was submitted before the next request comes."""
    for _ in range(5):
        await asyncio.sleep(0)


async def _one_by_one_once_busy(
    batcher: MicroBatcher, busy: threading.Event, first: int, later: int
) -> list[asyncio.Future[tuple[np.ndarray, int, str]]]:
    """``first`` one-row requests at once, then, once the model is busy, ``later`` more one by
    one (the consumer seeing each before the next comes)."""
    futures = [asyncio.ensure_future(batcher.submit(np.array([0.0]), 1)) for _ in range(first)]
    await asyncio.to_thread(busy.wait, 60)
    for i in range(later):
        futures.append(asyncio.ensure_future(batcher.submit(np.array([float(i)]), 1)))
        await _settle()
    return futures


def test_concurrent_requests_are_batched_and_each_gets_its_own_result():
    calls: list[int] = []
    batcher = MicroBatcher(_double(calls), max_batch_rows=64, max_wait_ms=0)

    async def main() -> list[tuple[np.ndarray, int, str]]:
        return await asyncio.gather(
            *(batcher.submit(np.array([i, i + 100.0]), 2) for i in range(20))
        )

    results = asyncio.run(main())
    for i, (values, _, tag) in enumerate(results):
        np.testing.assert_array_equal(values, [2 * i, 2 * (i + 100)])
        assert tag == "v1"
    assert sum(calls) == 40 and len(calls) < 20  # fewer calls than requests
    assert max(batch for _, batch, _ in results) > 2


def test_a_bad_request_fails_alone_and_its_batch_mates_are_answered():
    calls: list[int] = []
    batcher = MicroBatcher(_double(calls), max_batch_rows=64, max_wait_ms=0)

    async def main() -> list[object]:
        values = [np.array([-1.0 if i % 4 == 0 else float(i)]) for i in range(12)]
        return await asyncio.gather(*(batcher.submit(v, 1) for v in values), return_exceptions=True)

    results = asyncio.run(main())
    for i, result in enumerate(results):
        if i % 4 == 0:
            assert isinstance(result, ValueError) and str(result) == "bad -1.0"
        else:
            assert not isinstance(result, BaseException)
            assert result[0].tolist() == [2.0 * i]
    assert len(calls) < 12  # the bad ones shared calls with good ones


def test_a_lone_request_runs_inline_without_the_worker_thread():
    threads: list[str] = []

    def predict(requests: Sequence[np.ndarray]) -> tuple[list[np.ndarray], str]:
        threads.append(threading.current_thread().name)
        return list(requests), "v1"

    batcher = MicroBatcher(predict)
    values, rows, tag = asyncio.run(batcher.submit(np.array([1.0]), 1))
    assert values.tolist() == [1.0] and rows == 1 and tag == "v1"
    assert threads == [threading.main_thread().name]


def test_max_batch_rows_caps_a_call():
    calls: list[int] = []
    batcher = MicroBatcher(_double(calls), max_batch_rows=4, max_wait_ms=0)

    async def main() -> None:
        await asyncio.gather(*(batcher.submit(np.array([1.0]), 1) for _ in range(12)))

    asyncio.run(main())
    assert sum(calls) == 12 and max(calls) <= 4


def test_a_request_that_would_pass_max_batch_rows_waits_for_the_next_call():
    calls: list[int] = []
    batcher = MicroBatcher(_double(calls), max_batch_rows=4, max_wait_ms=5)
    sizes = [3, 3, 1, 5, 3, 1]

    async def main() -> list[tuple[np.ndarray, int, str]]:
        return await asyncio.gather(
            *(batcher.submit(np.full(n, float(i)), n) for i, n in enumerate(sizes))
        )

    results = asyncio.run(main())
    for i, (values, _, _) in enumerate(results):
        np.testing.assert_array_equal(values, np.full(sizes[i], 2.0 * i))
    # Queued at once, in order: [3], [3, 1], [5] alone (larger than a call), [3, 1].
    assert calls == [3, 4, 5, 4]


def test_a_request_held_for_the_next_batch_while_the_model_is_busy_takes_no_room_once_gone():
    busy, release = threading.Event(), threading.Event()
    calls: list[list[int]] = []

    def predict(requests: Sequence[np.ndarray]) -> tuple[list[np.ndarray], str]:
        calls.append([len(r) for r in requests])
        if len(calls) == 1:
            busy.set()
            release.wait(timeout=60)  # the model is busy until every later request has come
        return list(requests), "v1"

    batcher = MicroBatcher(predict, max_batch_rows=4, max_wait_ms=0)

    async def main() -> list[int]:
        # Four at once (a lone request would run inline, on the loop, and block it).
        first = [asyncio.ensure_future(batcher.submit(np.zeros(1), 1)) for _ in range(4)]
        await asyncio.to_thread(busy.wait, 60)
        # A full call waits in the model thread behind the first; the consumer is free.
        waiting = []
        for n in (3, 1):
            waiting.append(asyncio.ensure_future(batcher.submit(np.zeros(n), n)))
            await _settle()
        fits = asyncio.ensure_future(batcher.submit(np.zeros(3), 3))
        await _settle()
        held = asyncio.ensure_future(batcher.submit(np.zeros(3), 3))  # 3 + 3 would pass 4
        await _settle()  # fits' call waits until the first call ends: at most one queues behind it
        held.cancel()  # its client leaves while it waits for the next batch
        later = [asyncio.ensure_future(batcher.submit(np.zeros(n), n)) for n in (1, 3)]
        await _settle()
        release.set()
        answered = await asyncio.gather(*first, *waiting, fits, *later)
        assert held.cancelled()
        return [len(values) for values, _, _ in answered]

    assert asyncio.run(main()) == [1, 1, 1, 1, 3, 1, 3, 1, 3]
    # The held request opened no batch of its own, nor took room in the next one.
    assert calls == [[1, 1, 1, 1], [3, 1], [3], [1, 3]]


def test_a_call_that_fails_for_a_batch_is_retried_per_request_so_only_the_culprit_fails():
    calls: list[int] = []

    def predict(requests: Sequence[np.ndarray]) -> tuple[list[np.ndarray], str]:
        calls.append(len(requests))
        time.sleep(0.005)
        if any((r == 13).any() for r in requests):
            raise RuntimeError("model broke on 13")
        return list(requests), "v1"

    batcher = MicroBatcher(predict, max_wait_ms=0)

    async def main() -> list[object]:
        return await asyncio.gather(
            *(batcher.submit(np.array([float(i)]), 1) for i in range(10, 16)),
            return_exceptions=True,
        )

    results = asyncio.run(main())
    failed = [i for i, r in zip(range(10, 16), results, strict=True) if isinstance(r, Exception)]
    assert failed == [13]
    assert str(results[3]) == "model broke on 13"
    assert max(calls) > 1  # they did share a call before the retry


def test_the_next_batch_is_prepared_while_the_model_runs_the_previous_one():
    second_prepared = threading.Event()
    prepared: list[float] = []
    overlapped: list[bool] = []

    def prepare(requests: Sequence[np.ndarray]) -> list[np.ndarray]:
        prepared.append(float(requests[0][0]))
        if len(prepared) == 2:
            second_prepared.set()
        return [r * 10 for r in requests]

    def predict(requests: list[np.ndarray]) -> tuple[list[np.ndarray], str]:
        if not overlapped:  # the first call returns only once the second batch is prepared
            overlapped.append(second_prepared.wait(timeout=60))
        return requests, "v1"

    batcher = MicroBatcher(predict, prepare=prepare, max_batch_rows=1, max_wait_ms=0)

    async def main() -> list[tuple[np.ndarray, int, str]]:
        return await asyncio.gather(*(batcher.submit(np.array([float(i)]), 1) for i in range(3)))

    results = asyncio.run(main())
    assert overlapped == [True]
    assert [values.tolist() for values, _, _ in results] == [[0.0], [10.0], [20.0]]
    assert prepared == [0.0, 1.0, 2.0]


def test_while_the_model_is_busy_the_next_batch_keeps_filling():
    busy, release = threading.Event(), threading.Event()
    calls: list[int] = []
    predict = _first_call_waits(calls, busy, release)  # until every later request has come
    batcher = MicroBatcher(predict, max_batch_rows=64, max_wait_ms=0)

    async def main() -> None:
        submitted = await _one_by_one_once_busy(batcher, busy, first=4, later=3)
        release.set()
        await asyncio.gather(*submitted)

    asyncio.run(main())
    # Smaller than the running call, the next batch waited for the model and took all three.
    assert calls == [4, 3]


def test_a_batch_as_big_as_the_running_call_waits_in_the_model_thread_behind_it():
    busy, release, second = threading.Event(), threading.Event(), threading.Event()
    calls: list[int] = []
    predict = _first_call_waits(calls, busy, release, later=second)  # until the next has formed
    batcher = MicroBatcher(predict, max_batch_rows=64, max_wait_ms=0)

    async def main() -> bool:
        submitted = await _one_by_one_once_busy(batcher, busy, first=2, later=3)
        release.set()
        # The event loop is blocked here, so only the model thread itself can start the second
        # call: it was handed over, prepared, while the first ran.
        handed = second.wait(timeout=60)
        await asyncio.gather(*submitted)
        return handed

    assert asyncio.run(main())
    # Two rows, as many as the running call's, with nothing more queued: it went to the model
    # thread; the third request formed the call after it.
    assert calls == [2, 2, 1]


def test_a_batch_whose_preparation_fails_is_retried_per_request():
    def prepare(requests: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        if any((r == 13).any() for r in requests):
            raise RuntimeError("cannot prepare 13")
        return requests

    batcher = MicroBatcher(lambda r: (list(r), "v1"), prepare=prepare, max_wait_ms=0)

    async def main() -> list[object]:
        return await asyncio.gather(
            *(batcher.submit(np.array([float(i)]), 1) for i in range(10, 16)),
            return_exceptions=True,
        )

    results = asyncio.run(main())
    assert [str(r) for r in results if isinstance(r, Exception)] == ["cannot prepare 13"]
    assert [r[0].tolist() for r in results if not isinstance(r, Exception)] == [
        [10.0],
        [11.0],
        [12.0],
        [14.0],
        [15.0],
    ]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_batch_rows must be at least 1"):
        MicroBatcher(lambda r: (list(r), ""), max_batch_rows=0)
    with pytest.raises(ValueError, match="max_wait_ms must not be negative"):
        MicroBatcher(lambda r: (list(r), ""), max_wait_ms=-1)


def test_canary_assignment_is_sticky_per_unit_and_monotone_in_the_share():
    import random
    from pathlib import Path

    from skewless.serving.routing import LoadedVersion, Routing

    def loaded(version: str) -> LoadedVersion:
        return LoadedVersion(version, Path(version), None, None, None)  # type: ignore[arg-type]

    units = [f"u{i:05d}" for i in range(5000)]

    def on_candidate(percent: int) -> set[str]:
        routing = Routing(loaded("1"), loaded("2"), percent, "ranking")
        return {u for u in units if routing.pick(u)[0] == "candidate"}

    ten, twenty = on_candidate(10), on_candidate(20)
    assert 0.08 < len(ten) / len(units) < 0.12 and 0.18 < len(twenty) / len(units) < 0.22
    assert ten < twenty  # raising the share only moves units to the candidate
    routing = Routing(loaded("1"), loaded("2"), 50, "ranking")
    for unit in units[:200]:  # the same unit, the same version, every time
        assert len({routing.pick(unit)[1].version for _ in range(5)}) == 1
    # A new candidate version is a new experiment: units are drawn afresh.
    assert on_candidate(50) != {
        u
        for u in units
        if Routing(loaded("1"), loaded("3"), 50, "ranking").pick(u)[0] == "candidate"
    }
    # Without a unit, each request is drawn at random.
    random.seed(0)
    assert {routing.pick(None)[0] for _ in range(200)} == {"production", "candidate"}


def test_a_call_that_answers_too_few_results_fails_its_requests_and_the_batcher_goes_on():
    """A predict that breaks the batch contract (fewer results than requests) fails that batch's
    requests; the consumer lives on and later requests are answered."""
    broken = threading.Event()
    broken.set()

    def predict(requests: Sequence[np.ndarray]) -> tuple[list[np.ndarray], str]:
        time.sleep(0.01)
        if broken.is_set() and len(requests) > 1:
            return [requests[0] * 2], "v1"  # one result for several requests
        return [r * 2 for r in requests], "v1"

    batcher = MicroBatcher(predict, max_batch_rows=64, max_wait_ms=5)

    async def main() -> tuple[list[object], list[object]]:
        first = await asyncio.gather(
            *(batcher.submit(np.array([float(i)]), 1) for i in range(8)), return_exceptions=True
        )
        broken.clear()
        later = await asyncio.gather(
            *(batcher.submit(np.array([float(i)]), 1) for i in range(8)), return_exceptions=True
        )
        return first, later

    first, later = asyncio.run(asyncio.wait_for(main(), 60))
    assert any(isinstance(r, ValueError) for r in first)  # zip(strict=True) refused the batch
    assert [r[0].tolist() for r in later] == [[2.0 * i] for i in range(8)]  # type: ignore[index]


def test_a_request_whose_client_left_is_not_retried_alone():
    """When a batch fails and is retried request by request, a cancelled request is skipped."""
    prepared: list[list[float]] = []
    started, release = threading.Event(), threading.Event()

    def prepare(requests: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        prepared.append([float(r[0]) for r in requests])
        if len(requests) > 1:
            raise ValueError("the batch fails")
        return requests

    def predict(requests: Sequence[np.ndarray]) -> tuple[list[np.ndarray], str]:
        if not started.is_set():  # the first retry: until the test has cancelled a later one
            started.set()
            release.wait(60)
        return [r * 2 for r in requests], "v1"

    batcher = MicroBatcher(predict, max_batch_rows=64, max_wait_ms=0, prepare=prepare)

    async def main() -> list[object]:
        tasks = [asyncio.create_task(batcher.submit(np.array([float(i)]), 1)) for i in range(4)]
        await asyncio.to_thread(started.wait, 60)
        tasks[2].cancel()
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(asyncio.wait_for(main(), 60))
    assert prepared[0] == [0.0, 1.0, 2.0, 3.0]
    assert isinstance(results[2], asyncio.CancelledError)
    assert prepared[1:] == [[0.0], [1.0], [3.0]]  # the one whose client left: not prepared again
    assert [r[0].tolist() for i, r in enumerate(results) if i != 2] == [[0.0], [2.0], [6.0]]  # type: ignore[index]


def test_a_retry_alone_that_answers_too_few_results_fails_and_the_batcher_goes_on():
    """The same broken contract on the retry path (preparing the batch failed): each request
    fails, and the consumer answers the next ones."""
    broken = threading.Event()
    broken.set()

    def prepare(requests: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        if broken.is_set() and len(requests) > 1:
            raise ValueError("the batch fails")
        return requests

    def predict(requests: Sequence[np.ndarray]) -> tuple[list[np.ndarray], str]:
        return ([] if broken.is_set() else [r * 2 for r in requests]), "v1"

    batcher = MicroBatcher(predict, max_batch_rows=64, max_wait_ms=0, prepare=prepare)

    async def main() -> tuple[list[object], object]:
        first = await asyncio.gather(
            *(batcher.submit(np.array([float(i)]), 1) for i in range(4)), return_exceptions=True
        )
        broken.clear()
        return first, await batcher.submit(np.array([5.0]), 1)

    first, later = asyncio.run(asyncio.wait_for(main(), 60))
    assert all(isinstance(r, ValueError) for r in first)
    assert later[0].tolist() == [10.0]  # type: ignore[index]


def test_a_lone_request_never_runs_beside_a_retry_in_the_model_thread():
    """One model call at a time, also while a failed batch's requests are retried one by one
    behind a batch that was handed over while the failing call ran."""
    a_busy, a_release = threading.Event(), threading.Event()
    retry_busy, retry_release = threading.Event(), threading.Event()
    active: list[int] = []
    most: list[int] = []
    seen: list[list[float]] = []

    def predict(requests: Sequence[np.ndarray]) -> tuple[list[np.ndarray], str]:
        active.append(1)
        most.append(len(active))
        values = [float(r[0]) for r in requests]
        seen.append(values)
        try:
            if values == [13.0, 1.0]:  # call A: busy until the next batch waits behind it
                a_busy.set()
                a_release.wait(timeout=60)
            if values == [13.0]:  # A's first retry: busy until a lone request has come
                retry_busy.set()
                retry_release.wait(timeout=60)
            if 13.0 in values:
                raise RuntimeError("model broke on 13")
            return list(requests), "v1"
        finally:
            active.pop()

    batcher = MicroBatcher(predict, max_batch_rows=64, max_wait_ms=0)

    async def main() -> list[object]:
        a = [asyncio.ensure_future(batcher.submit(np.array([v]), 1)) for v in (13.0, 1.0)]
        await asyncio.to_thread(a_busy.wait, 60)
        b = []
        for v in (2.0, 3.0):  # as big as A: handed to the model thread behind it
            b.append(asyncio.ensure_future(batcher.submit(np.array([v]), 1)))
            await _settle()
        a_release.set()
        await asyncio.to_thread(retry_busy.wait, 60)  # B has run; A's retry of 13 runs now
        lone = asyncio.ensure_future(batcher.submit(np.array([7.0]), 1))
        await _settle()
        retry_release.set()
        return await asyncio.gather(*a, *b, lone, return_exceptions=True)

    results = asyncio.run(asyncio.wait_for(main(), 60))
    assert str(results[0]) == "model broke on 13"
    assert [r[0].tolist() for r in results[1:]] == [[1.0], [2.0], [3.0], [7.0]]  # type: ignore[index]
    assert seen[:3] == [[13.0, 1.0], [2.0, 3.0], [13.0]]
    assert max(most) == 1  # never two model calls at once
