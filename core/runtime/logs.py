"""Reading a container's json-file log: tail from the end, time windows, follow.

The writer is :class:`pinnace.runtime.watch.JsonLog`. Rotated files are
``json.log.N`` (higher is older). ``--tail`` reads blocks backwards from
the end, so its cost does not grow with the size of the log.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import BinaryIO

from pinnace.errors import InvalidConfig

BLOCK = 65536
FOLLOW_POLL = 0.1
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_DURATIONS = re.compile(f"(?:{_DURATION.pattern})+")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


@dataclass
class Entry:
    """One log line: its stream, its text (with the newline) and its RFC 3339 time."""

    stream: str
    log: str
    time: str


def parse_time(text: str, now: float | None = None) -> str:
    """``--since``/``--until``: RFC 3339 (date, date and time, with or without zone),
    a Unix timestamp, or a duration before now (``10m``, ``1h30m``), as a
    comparable RFC 3339 UTC string."""
    from pinnace.runtime.watch import timestamp

    now = time.time() if now is None else now
    raw = text.strip()
    if _DURATIONS.fullmatch(raw):
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(raw))
        return timestamp(now - seconds)
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return timestamp(float(raw))
    from datetime import datetime

    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidConfig(
            f"invalid time {text!r}: use RFC 3339 (2026-01-02T15:04:05Z), a Unix "
            "timestamp or a duration like 10m") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return timestamp(parsed.timestamp())


def files(path: Path) -> list[Path]:
    """The log and its rotated files, oldest first."""
    rotated = sorted((p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
                     key=lambda p: int(p.suffix[1:]), reverse=True)
    return [*rotated, *([path] if path.exists() else [])]


def _decode(raw: bytes) -> Entry | None:
    try:
        data = json.loads(raw)
        return Entry(data["stream"], data["log"], data["time"])
    except (ValueError, KeyError, TypeError):
        return None  # a torn last line while the writer is mid-write


def _lines_backwards(path: Path, limit: int | None = None) -> Iterator[bytes]:
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END) if limit is None else limit
        rest = b""
        while end > 0:
            start = max(0, end - BLOCK)
            f.seek(start)
            chunk = f.read(end - start) + rest
            end = start
            lines = chunk.split(b"\n")
            rest = lines.pop(0)
            for line in reversed(lines):
                if line:
                    yield line
        if rest:
            yield rest


def read(path: Path, tail: int | None = None, since: str | None = None,
         until: str | None = None, limit: int | None = None) -> list[Entry]:
    """Entries in order, the last ``tail`` of them, within [since, until); of the log
    itself (not its rotated files) only the first ``limit`` bytes when given."""
    def bound(f: Path) -> int | None:
        return limit if f == path else None

    def wanted(e: Entry) -> bool:
        return (since is None or e.time >= since) and (until is None or e.time < until)

    if tail == 0:
        return []
    if tail is not None:
        found: list[Entry] = []
        for f in reversed(files(path)):
            for raw in _lines_backwards(f, bound(f)):
                e = _decode(raw)
                if e is not None and wanted(e):
                    found.append(e)
                    if len(found) >= tail:
                        return found[::-1]
                elif e is not None and since is not None and e.time < since:
                    return found[::-1]
        return found[::-1]
    out = []
    for f in files(path):
        with open(f, "rb") as fh:
            size = bound(f)
            for raw in (fh.read(size).split(b"\n") if size is not None else fh):
                e = _decode(raw)
                if e is not None and wanted(e):
                    out.append(e)
    return out


def follow(path: Path, running: Callable[[], bool], until: str | None = None,
           opened: BinaryIO | None = None, whole: bool = False) -> Iterator[Entry]:
    """Entries appended to the log from now on (from where ``opened``, the log open,
    stands; with ``whole``, all of a log that does not exist yet), across rotations,
    until the container stops (or ``until`` passes)."""
    f = opened
    if f is None and path.exists() and not whole:
        f = open(path, "rb")
        f.seek(0, os.SEEK_END)
    partial = b""
    stopped = False
    try:
        while True:
            if f is None and path.exists():
                f = open(path, "rb")
            data = f.read() if f is not None else b""
            if data:
                partial += data
                *lines, partial = partial.split(b"\n")
                for raw in lines:
                    e = _decode(raw)
                    if e is not None:
                        if until is not None and e.time >= until:
                            return
                        yield e
                continue
            if f is not None and path.exists():
                if os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
                    f.close()  # rotated: the old file is read to its end; go on in the new
                    f = open(path, "rb")
                    continue
                if os.fstat(f.fileno()).st_size < f.tell():
                    f.seek(0)  # truncated in place (max-file=1)
                    continue
            if stopped:
                return
            if not running():
                stopped = True  # one more pass: what was written before it stopped
                continue
            time.sleep(FOLLOW_POLL)
    finally:
        if f is not None:
            f.close()


def read_and_follow(path: Path, running: Callable[[], bool], tail: int | None = None,
                    since: str | None = None, until: str | None = None) -> Iterator[Entry]:
    """:func:`read`'s entries, then :func:`follow`'s until the container stops: the
    history up to where the log stands now, then what comes after, no line lost or
    repeated in between."""
    current = open(path, "rb") if path.exists() else None
    end = current.seek(0, os.SEEK_END) if current is not None else None
    yield from read(path, tail, since, until, end)
    yield from follow(path, running, until, current, whole=current is None)
