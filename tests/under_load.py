"""The serving tests on a fully loaded machine, three times in a row: ``make test-loaded``.

A test that passes on an idle machine and fails on a busy one depends on timing, and users' CI
machines are busy. This starts one busy-loop process per core (as ``stress-ng --cpu N`` would)
and, next to them, one pytest session that runs the serving test files ``--runs`` times in a row
(each file given that many times, ``--keep-duplicates``: the model is trained once, which on a
loaded machine alone takes minutes, and every test and server start happens ``--runs`` times).
Exits 1 unless every test passed every time. Not part of ``make test``: it takes tens of minutes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVING_TESTS = [
    "tests/e2e/test_serving.py",
    "tests/e2e/test_serving_hardening.py",
    "tests/unit/test_batching.py",
]


def _burn() -> None:
    while True:
        pass


def main(argv: list[str] | None = None) -> int:
    """Runs the serving tests ``--runs`` times beside the burners; 0 when all passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs in a row (3)")
    parser.add_argument(
        "--burners", type=int, default=os.cpu_count() or 2, help="busy processes (one per core)"
    )
    args = parser.parse_args(argv)
    burners = [
        multiprocessing.Process(target=_burn, name="cpu-burner", daemon=True)
        for _ in range(args.burners)
    ]
    for burner in burners:
        burner.start()
    print(f"{len(burners)} CPU burners running; {len(SERVING_TESTS)} test files", flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rf",
             "--keep-duplicates", *SERVING_TESTS * args.runs],
            cwd=REPO,
            check=False,
        )  # fmt: skip
    finally:
        for burner in burners:
            burner.terminate()
            burner.join()
    verdict = "passed" if done.returncode == 0 else f"FAILED (pytest exit {done.returncode})"
    print(
        f"the serving tests {args.runs} times in a row next to {len(burners)} CPU burners: "
        f"{verdict} in {time.monotonic() - started:.0f} s"
    )
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
