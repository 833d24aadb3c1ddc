"""The experiment logs: exposures (one line per answered request) and outcomes (feedback).

Both are JSON-lines files that are only ever appended to. A log rotates by size: when the file a
writer holds passes ``max_bytes``, the writer renames it to ``NAME.<nanoseconds>`` and starts a new
``NAME``; nothing is deleted, and readers read the rotated segments and the live file together
(:func:`read_records`), so a report covers every line ever written, across restarts.

Several server worker processes append to the same file. Each line is one ``write`` system call
on a descriptor opened with ``O_APPEND`` (no user-space buffer that could split it), so lines from
several processes never interleave. Rotation takes an exclusive ``flock`` on ``NAME.lock`` and
renames only if the path still names the file the writer holds; a writer whose file another
process rotated sees it past the limit on its next write and reopens the path (that one line
lands at the end of the rotated segment, where readers still find it).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXPOSURE_LOG = "requests.jsonl"  # beside a registry; `skewless serve --registry` writes it there
FEEDBACK_LOG = "feedback.jsonl"  # beside the exposure log
DEFAULT_LOG_MAX_MB = 256.0


class LogError(RuntimeError):
    """A log cannot be read; the message names the file and line."""


class AppendLog:
    """An append-only JSON-lines file, rotated by size, safe to share between processes."""

    def __init__(self, path: str | Path, *, max_bytes: int = int(DEFAULT_LOG_MAX_MB * 2**20)):
        """Opens (creating) ``path`` for appending.

        Args:
            path: The live file; rotated segments are written beside it.
            max_bytes: Size past which the file is rotated.
        """
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # the server's batcher threads and event loop share a writer
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def write(self, record: dict[str, Any]) -> None:
        """Appends one record as one line (ASCII JSON: nothing a reader cannot decode)."""
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("ascii")
        with self._lock:
            os.write(self._fd, line)
            if os.fstat(self._fd).st_size >= self.max_bytes:
                self._rotate()

    def write_many(self, records: list[dict[str, Any]]) -> None:
        """Appends several records."""
        for record in records:
            self.write(record)

    def _rotate(self) -> None:
        with (self.path.parent / f"{self.path.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            held = os.fstat(self._fd)
            try:
                current = self.path.stat()
                same = (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino)
            except FileNotFoundError:
                same = False
            if same:
                # Nanoseconds, zero-padded: names sort in time order and never collide (renames
                # happen under the lock; an existing name is never overwritten).
                while True:
                    target = self.path.with_name(f"{self.path.name}.{time.time_ns():020d}")
                    if not target.exists():
                        break
                os.rename(self.path, target)
            os.close(self._fd)
            self._fd = self._open()

    def close(self) -> None:
        """Closes the file."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> AppendLog:
        """The log, closed when the block ends."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Closes the log."""
        self.close()


def segments(path: str | Path) -> list[Path]:
    """The rotated segments of a log, oldest first, then the live file (those that exist)."""
    live = Path(path)
    rotated = sorted(
        p for p in live.parent.glob(f"{live.name}.*") if p.name[len(live.name) + 1 :].isdigit()
    )
    return [*rotated, *([live] if live.is_file() else [])]


def read_records(path: str | Path, *, what: str = "a log record") -> Iterator[dict[str, Any]]:
    """Every record of a log (rotated segments first), each a JSON object.

    Raises:
        LogError: No segment exists, or a line is not a JSON object (named by file and line).
    """
    files = segments(path)
    if not files:
        raise LogError(f"no log at {path}")
    for file in files:
        # Bytes that are not UTF-8 fail their line, with its number, as any malformed line does.
        with file.open(errors="replace", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    if "\ufffd" in line:
                        raise ValueError("not UTF-8 text")
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("not a JSON object")
                except ValueError as err:
                    raise LogError(f"{file}:{number}: not {what} ({err})") from None
                yield record


class FeedbackError(ValueError):
    """A feedback body breaks the format; the message names the record and field."""


MAX_FEEDBACK_RECORDS = 10_000  # in one call
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def feedback_path(exposure_log: str | Path) -> Path:
    """Where a server writes the outcomes that join its exposure log: ``feedback.jsonl`` beside
    the default ``requests.jsonl``, else ``<name>.feedback.jsonl``."""
    path = Path(exposure_log)
    if path.name == EXPOSURE_LOG:
        return path.with_name(FEEDBACK_LOG)
    return path.with_name(f"{path.stem}.feedback.jsonl")


def _text(value: Any, where: str, limit: int) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise FeedbackError(f"{where}: expected a string, got {type(value).__name__}")
    text = str(value)
    if not text.strip() or len(text) > limit:
        raise FeedbackError(f"{where}: expected 1 to {limit} characters, got {len(text)}")
    if not text.isprintable():
        raise FeedbackError(f"{where}: must be printable text")
    return text


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FeedbackError(f"{where}: expected a number, got {type(value).__name__}")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise FeedbackError(f"{where}: expected a finite number")
    return number


def parse_feedback(body: bytes, *, model: str, received: float) -> list[dict[str, Any]]:
    """The outcome records of one ``POST /v1/feedback`` body, checked as a whole.

    The body is a JSON list of objects, one object, or JSON lines (one object per line). Each
    object names what it is about, by ``request_id`` (the ``x-request-id`` the prediction
    answered with) or by ``unit`` and ``item``; its ``outcome`` (a name such as ``click``); and
    optionally ``value`` (a number, default 1) and ``time`` (when it happened, Unix seconds;
    default: when it was received). A bad record refuses the whole body, so a client can fix it
    and send it again without duplicating the good ones.

    Raises:
        FeedbackError: The body or a record breaks the format (named by index and field).
    """
    import orjson

    text = body.strip()
    if not text:
        raise FeedbackError("feedback body is empty: send a JSON list of outcome records")
    try:
        parsed = orjson.loads(text)
        items = parsed if isinstance(parsed, list) else [parsed]
    except orjson.JSONDecodeError as err:
        if b"\n" not in text:
            raise FeedbackError(f"feedback body is not JSON: {err}") from None
        items = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append(orjson.loads(line))
                except orjson.JSONDecodeError as line_err:
                    raise FeedbackError(
                        f"feedback line {number} is not JSON (send a list or JSON lines): "
                        f"{line_err}"
                    ) from None
    if not items:
        raise FeedbackError("feedback body has no records")
    if len(items) > MAX_FEEDBACK_RECORDS:
        raise FeedbackError(
            f"feedback body has {len(items)} records; send at most {MAX_FEEDBACK_RECORDS} per call"
        )
    records = []
    for index, item in enumerate(items):
        where = f"feedback[{index}]"
        if not isinstance(item, dict):
            raise FeedbackError(f"{where}: expected an object, got {type(item).__name__}")
        unknown = set(item) - {"request_id", "unit", "item", "outcome", "value", "time"}
        if unknown:
            raise FeedbackError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        record: dict[str, Any] = {"received": received, "model": model}
        if item.get("request_id") is not None:
            record["request_id"] = _text(item["request_id"], f"{where}.request_id", 128)
        elif item.get("unit") is not None and item.get("item") is not None:
            record["unit"] = _text(item["unit"], f"{where}.unit", 200)
            record["item"] = _text(item["item"], f"{where}.item", 200)
        else:
            raise FeedbackError(f"{where}: name a request_id, or a unit and an item")
        if "outcome" not in item:
            raise FeedbackError(f"{where}: outcome is missing (a name such as 'click')")
        outcome = _text(item["outcome"], f"{where}.outcome", 64)
        if not set(outcome) <= _NAME_CHARS:
            raise FeedbackError(f"{where}.outcome: use letters, digits, '_', '.' or '-'")
        record["outcome"] = outcome
        record["value"] = _number(item.get("value", 1), f"{where}.value")
        record["time"] = _number(item["time"], f"{where}.time") if "time" in item else received
        records.append(record)
    return records
