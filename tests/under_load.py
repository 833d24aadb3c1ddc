"""The serving tests on a fully loaded machine, three times in a row: ``make test-loaded``.

A test that passes on an idle machine and fails on a busy one depends on timing, and users' CI
machines are busy. This starts one busy-loop process per core (as ``stress-ng --cpu N`` would),
runs the serving test files in one pytest process next to them, ``--runs`` times in a row, and
exits 1 unless every run passed. Not part of ``make test``: it takes tens of minutes.
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
    "tests/e2e/test_fuzz_http.py",
    "tests/unit/test_batching.py",
    "tests/unit/test_v1_fast_path.py",
    "tests/unit/test_request_validation.py",
]


def _burn() -> None:
    while True:
        pass


def main(argv: list[str] | None = None) -> int:
    """Runs the serving tests ``--runs`` times beside the burners; 0 when every run passed."""
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
    results = []
    try:
        for run in range(1, args.runs + 1):
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *SERVING_TESTS],
                cwd=REPO,
                check=False,
            )
            seconds = time.monotonic() - started
            results.append(done.returncode)
            verdict = "passed" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
            print(f"run {run}/{args.runs} under load: {verdict} in {seconds:.0f} s", flush=True)
    finally:
        for burner in burners:
            burner.terminate()
            burner.join()
    passed = sum(code == 0 for code in results)
    print(f"{passed} of {args.runs} runs passed next to {len(burners)} CPU burners")
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
