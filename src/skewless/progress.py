"""A minimal progress bar on stderr: redrawn in place on a terminal, a line per 10% elsewhere;
and :func:`timed`, a phase's wall seconds."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator


@contextlib.contextmanager
def timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Records the block's wall seconds in ``timings[key]`` (when it ends without raising)."""
    started = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - started


class Progress:
    """Counts work done toward a known total and reports it on stderr."""

    def __init__(self, label: str, total: int, *, enabled: bool = True) -> None:
        """Starts the clock.

        Args:
            label: Shown before the bar.
            total: Units of work expected.
            enabled: When false nothing is printed.
        """
        self.label = label
        self.total = max(total, 1)
        self.done = 0
        self.enabled = enabled
        self.started = time.perf_counter()
        self._tty = sys.stderr.isatty()
        self._last_decile = -1

    def advance(self, amount: int) -> None:
        """Records ``amount`` more units done and redraws."""
        self.done += amount
        if not self.enabled:
            return
        fraction = min(self.done / self.total, 1.0)
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self._tty:
            bar = "#" * int(30 * fraction)
            sys.stderr.write(
                f"\r{self.label} [{bar:<30}] {self.done:,}/{self.total:,} ({rate:,.0f}/s)"
            )
            sys.stderr.flush()
        elif int(fraction * 10) > self._last_decile:
            self._last_decile = int(fraction * 10)
            sys.stderr.write(f"{self.label}: {self.done:,}/{self.total:,} ({rate:,.0f}/s)\n")

    def close(self) -> None:
        """Ends the bar's line on a terminal."""
        if self.enabled and self._tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
