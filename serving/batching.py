"""Micro-batching: concurrent requests share one call (validation and the model).

Requests enter an asyncio queue. A single consumer takes the first waiting request plus everything
else already queued, up to ``max_batch_rows`` (a request that would pass them opens the next batch;
a single larger request runs alone); when that batch already holds several requests
(the server is under load) it waits up to ``max_wait_ms`` for more. A batch goes through two
stages: ``prepare`` (validation and building the model's inputs, Python work under the GIL) on the
event loop, and ``predict`` (the model call, which runs in TensorFlow's own threads without the
GIL) in the model thread, which answers each request with its own result or its own error, so one
bad request never fails the others.

Under load the stages overlap. While the model runs one call, the next batch keeps taking requests
until it is full, or until it holds as many rows as that call and nothing more is queued, or until
the model is free. In the first two cases it is prepared while the model still runs and handed to
the model thread behind the running call, so the model starts it the moment that call returns:
not after the event loop has answered that call's requests and read the next ones. At most one
batch waits there; while one does, the next keeps taking requests until it is full or the running
call ends, and is then looked at again against the call that runs next. If a stage fails for a
batch of several, each request is retried alone (those calls queue in the model thread too), so
only the culprit fails. A lone request on an idle server never waits and runs inline, so a
single client pays no batching latency.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

# A batch call answers each request with its values (one per row) or an exception, plus a tag
# saying what answered (e.g. the model version). It takes what ``prepare`` made of the requests.
BatchCall = Callable[[Any], tuple[Sequence[np.ndarray | Exception], str]]
Prepare = Callable[[Sequence[Any]], Any]


def _as_is(requests: Sequence[Any]) -> Any:
    return requests


# Rows per model call under load. Ranking requests carry hundreds of rows, and the signature's
# rows/s keeps growing with the batch (measured: 500 rows 166k/s, 2,000 rows 274k/s), so several
# such requests share a call; one-row requests never come near it. A cap, not a target: a
# request that would pass it waits for the next call. At concurrency 8, 500-row requests ride four
# to a call at 2,048, so two calls take turns: one is prepared while the model runs the other.
# At 4,096 all eight rode one call, and the model waited for Python between calls
# (docs/serving.md, "Throughput").
DEFAULT_BATCH_ROWS = 2048


@dataclasses.dataclass
class _Call:
    """A batch handed to the model thread: the task that answers its requests, and its rows."""

    task: asyncio.Task[None]
    rows: int


@dataclasses.dataclass
class _Pending:
    request: Any
    rows: int
    future: asyncio.Future[tuple[np.ndarray, int, str]]


class MicroBatcher:
    """Runs ``predict`` on batches of concurrently submitted requests."""

    def __init__(
        self,
        predict: BatchCall,
        *,
        prepare: Prepare = _as_is,
        max_batch_rows: int = DEFAULT_BATCH_ROWS,
        max_wait_ms: float = 1.0,
    ) -> None:
        """Creates an idle batcher; the consumer starts on the first submission.

        Args:
            predict: Call on what ``prepare`` made of a batch of requests; returns a result or an
                exception per request, and a tag.
            prepare: The Python stage for a batch of requests (by default the requests as they
                are); it runs on the event loop, under load while ``predict`` still runs the
                previous batch in the model thread.
            max_batch_rows: Most rows in one model call (a single larger request runs alone).
            max_wait_ms: Extra time to wait for more requests when a batch already holds several.
        """
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be at least 1, got {max_batch_rows}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must not be negative, got {max_wait_ms}")
        self.predict = predict
        self.prepare = prepare
        self.max_batch_rows = max_batch_rows
        self.max_wait = max_wait_ms / 1000.0
        self.batches = 0
        self.rows = 0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._consumer: asyncio.Task[None] | None = None
        # One model thread: TensorFlow parallelizes inside a call; two calls would contend. The
        # prepare stage has no thread of its own: it is Python, which would only trade the GIL
        # with the event loop (docs/serving.md, "Throughput").
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._calls: list[_Call] = []  # handed to the model thread, oldest first
        self._held: _Pending | None = None  # taken from the queue, too big to join: goes next

    async def submit(self, request: Any, rows: int) -> tuple[np.ndarray, int, str]:
        """Queues one request of ``rows`` rows; returns its values, its batch's rows and the tag.

        Raises:
            Exception: The exception the batch call gave for this request.
        """
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._consumer = asyncio.get_running_loop().create_task(self._consume())
        future: asyncio.Future[tuple[np.ndarray, int, str]] = (
            asyncio.get_running_loop().create_future()
        )
        await self._queue.put(_Pending(request, rows, future))
        return await future

    def _full(self, rows: int) -> bool:
        """No more requests join: the rows are reached, or the next request would pass them."""
        return rows >= self.max_batch_rows or self._held is not None

    def _add(self, batch: list[_Pending], rows: int, item: _Pending) -> int:
        """Adds ``item`` unless it would pass the rows; then it opens the next batch instead."""
        if item.future.cancelled():  # its client has gone: its rows take no room
            return rows
        if batch and rows + item.rows > self.max_batch_rows:
            self._held = item
            return rows
        batch.append(item)
        return rows + item.rows

    def _in_flight(self) -> list[_Call]:
        """The calls handed to the model thread whose requests are not all answered yet."""
        self._calls = [call for call in self._calls if not call.task.done()]
        return self._calls

    def _take_ready(self, batch: list[_Pending], rows: int) -> int:
        assert self._queue is not None
        while not self._full(rows) and not self._queue.empty():
            rows = self._add(batch, rows, self._queue.get_nowait())
        return rows

    async def _consume(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = self._held or await self._queue.get()
            self._held = None
            if first.future.cancelled():
                continue
            batch = [first]
            rows = self._take_ready(batch, first.rows)
            # While the model is busy, this batch could not start anyway: it keeps taking requests
            # (formed at once, it would be small) until it is full or the model is free, or, when
            # no other batch waits for the model, until it is as big as the running call and no
            # more are queued: then it is prepared and waits in the model thread behind that call.
            while not self._full(rows) and (calls := self._in_flight()):
                if len(calls) == 1 and self._queue.empty() and rows >= calls[0].rows:
                    break
                getter = loop.create_task(self._queue.get())
                await asyncio.wait((getter, calls[0].task), return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()  # the oldest call has ended: look again
                    continue
                rows = self._take_ready(batch, self._add(batch, rows, getter.result()))
            # Wait for more only when the batch already has company (we are under load); a lone
            # request never waits, so a single client pays no batching latency.
            deadline = loop.time() + (self.max_wait if len(batch) > 1 else 0.0)
            while not self._full(rows) and (remaining := deadline - loop.time()) > 0:
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
                rows = self._take_ready(batch, self._add(batch, rows, item))
            try:
                await self._run(batch, loop)
            except Exception as err:  # nothing may end the consumer: later requests would hang
                for item in batch:
                    self._fail(item, err)

    async def _run(self, batch: list[_Pending], loop: asyncio.AbstractEventLoop) -> None:
        live = [item for item in batch if not item.future.cancelled()]
        if not live:
            return
        requests = [item.request for item in live]
        idle = not self._in_flight()
        waiting = self._held is not None or (self._queue is not None and not self._queue.empty())
        if len(live) == 1 and idle and not waiting:
            # A lone request on an idle server: thread hand-offs would only add latency.
            try:
                results, tag = self.predict(self.prepare(requests))
                self._answer(live, results, tag)
            except Exception as err:
                self._fail(live[0], err)
            return
        # Under load this batch is prepared while the model still runs the previous one, then
        # queued behind it in the model thread; the loop goes on to read the next requests.
        try:
            prepared = self.prepare(requests)
        except Exception as err:
            await self._retry_alone(live, err, loop)
            return
        while len(calls := self._in_flight()) > 1:  # at most one waits behind the running call
            await asyncio.wait({calls[0].task})
        called = loop.run_in_executor(self._executor, self.predict, prepared)
        rows = sum(item.rows for item in live)
        self._calls.append(_Call(loop.create_task(self._call(live, called)), rows))

    async def _call(self, live: list[_Pending], called: asyncio.Future[Any]) -> None:
        """Answers the requests of a call handed to the model thread once it returns."""
        try:
            results, tag = await called
        except Exception as err:
            await self._retry_alone(live, err, asyncio.get_running_loop())
            return
        try:
            self._answer(live, results, tag)
        except Exception as err:  # e.g. fewer results than requests: none may wait forever
            for item in live:
                self._fail(item, err)

    async def _retry_alone(
        self, live: list[_Pending], err: Exception, loop: asyncio.AbstractEventLoop
    ) -> None:
        """A stage failed for the whole batch: each request alone, so only the culprit fails."""
        if len(live) == 1:
            self._fail(live[0], err)
            return
        for item in live:
            if item.future.cancelled():  # its client has gone: no work for nobody
                continue
            try:
                prepared = self.prepare([item.request])
                results, tag = await loop.run_in_executor(self._executor, self.predict, prepared)
                self._answer([item], results, tag)
            except Exception as alone:
                self._fail(item, alone)

    @staticmethod
    def _fail(item: _Pending, err: Exception) -> None:
        if not item.future.done():
            item.future.set_exception(err)

    def _answer(self, live: list[_Pending], results: Sequence[Any], tag: str) -> None:
        batch_rows = sum(item.rows for item in live)
        self.batches += 1
        self.rows += batch_rows
        for item, result in zip(live, results, strict=True):
            if item.future.done():
                continue
            if isinstance(result, Exception):
                item.future.set_exception(result)
            else:
                item.future.set_result((result, batch_rows, tag))

    def close(self) -> None:
        """Stops the consumer and the model thread."""
        if self._consumer is not None:
            self._consumer.cancel()
        for call in self._calls:
            call.task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
