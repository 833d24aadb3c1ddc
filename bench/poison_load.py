"""One request in ten is poisoned; the other nine must all succeed.

Starts ``skewless serve --model M`` (its defaults) and drives it from an asyncio keep-alive client
at a fixed concurrency for a fixed time. Each request is valid, or (one in ten) poisoned in a way
that once failed the requests batched with it: a lone surrogate (``"\\ud800"``), an unknown
field, an out-of-range number, a 100 kB string, malformed JSON. Prints one JSON line: requests of
each kind, valid ones that failed (must be 0), poisoned ones answered 400, and any other status.

Usage: python bench/poison_load.py --model DIR [--seconds 60] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench_serving import HOST, _free_port, _request_bytes, _wait_ready


def _poisons(row: dict) -> list[bytes]:
    def body(instances: object) -> bytes:
        return json.dumps({"instances": instances}).encode()

    return [
        body([{**row, "country": "\ud800"}]),  # JSON text: "\\ud800", a lone surrogate
        body([{**row, "shoe_size": 44}]),
        body([{**row, "age": 7}]),
        body([{**row, "title": "x" * 100_000}]),
        b'{"instances": [',
    ]


async def _client(port: int, valid: bytes, poisons: list[bytes], deadline: float,
                  seed: int, counts: Counter) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection(HOST, port)
    i = seed
    try:
        while time.perf_counter() < deadline:
            i += 1
            poisoned = i % 10 == 0
            body = poisons[i // 10 % len(poisons)] if poisoned else valid
            writer.write(_request_bytes(port, body))
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))  # fmt: skip
            await reader.readexactly(length)
            status = int(head.split(b" ", 2)[1])
            kind = "poisoned" if poisoned else "valid"
            counts[f"{kind} {status}"] += 1
    finally:
        writer.close()


async def _load(port: int, row: dict, seconds: float, concurrency: int) -> Counter:
    valid = json.dumps({"instances": [row]}).encode()
    counts: Counter = Counter()
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(_client(port, valid, _poisons(row), deadline, seed, counts)
                           for seed in range(concurrency)))  # fmt: skip
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="exported model folder")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    from skewless.contract.spec import load_spec
    from skewless.serving.protocol import example_row

    port = _free_port()
    skewless = str(Path(sys.executable).with_name("skewless"))
    with open(Path(args.model).parent / "poison_load_server.log", "wb+") as log:
        server = subprocess.Popen(
            [skewless, "serve", "--model", args.model, "--http-port", str(port),
             "--grpc-port", str(_free_port())],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait_ready(port, server, log)
            counts = asyncio.run(_load(port, example_row(load_spec()), args.seconds,
                                       args.concurrency))  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=60)
    valid = sum(n for key, n in counts.items() if key.startswith("valid"))
    poisoned = sum(n for key, n in counts.items() if key.startswith("poisoned"))
    print(json.dumps({
        "seconds": args.seconds, "concurrency": args.concurrency,
        "valid": valid, "valid_failed": valid - counts["valid 200"],
        "poisoned": poisoned, "poisoned_400": counts["poisoned 400"],
        "statuses": dict(counts),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
