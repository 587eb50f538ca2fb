"""A local journal: what the gateway answered, on disk before the client has the answer, until the ledger has it.

The ledger is written off the request path (a background thread, in batches), so a replica killed right after
answering would lose the rows still queued. The journal closes that gap: the request path appends each record
(one JSON line, written to the OS before the answer goes out, so it survives the process being SIGKILLed) to
this replica's own file; when the ledger commits a batch, its ids are crossed off, and once nothing in the file
is uncommitted it is emptied. At start a gateway replays every journal file in the folder that no live process
holds (each replica holds an exclusive `flock` on its own file), writing rows the ledger lacks (each row's unique
`record_id` makes a replay idempotent) and then deleting the file.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("parity.ledger")

ROTATE_ABOVE_BYTES = 4 << 20


class _Segment:
    """One journal file this replica holds locked, and the ids written to it not yet committed."""

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "ab")
        fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.pending: set[str] = set()


class Journal:
    """This replica's journal in `directory` (see the module docstring): a file at a time; past
    `ROTATE_ABOVE_BYTES` a new one is started, and a full one is deleted once everything in it is committed."""

    def __init__(self, directory: str | os.PathLike[str], *, replica: str = "", rotate_above: int = ROTATE_ABOVE_BYTES):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in replica)[:40]
        self._prefix = f"journal-{name or 'gateway'}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._rotate_above = rotate_above
        self._lock = threading.Lock()
        self._serial = 0
        self._current = self._new_segment()
        self._segments: list[_Segment] = [self._current]
        self._where: dict[str, _Segment] = {}
        self.appended = 0

    def _new_segment(self) -> _Segment:
        self._serial += 1
        return _Segment(self.directory / f"{self._prefix}-{self._serial:06d}.jsonl")

    @property
    def path(self) -> Path:
        """The file written now."""
        return self._current.path

    def new_id(self) -> str:
        return uuid.uuid4().hex

    def append(self, record_id: str, payload: dict[str, Any]) -> None:
        """Write one record before the answer goes out (to the OS: a killed process loses nothing written)."""
        item = {"id": record_id, "record": payload}
        try:
            line = orjson.dumps(item, default=_default) + b"\n"
        except TypeError:  # what orjson refuses (an integer beyond 64 bits a client sent): the slower encoder
            line = json.dumps(item, default=_slow_default, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n"
        with self._lock:
            segment = self._current
            segment.file.write(line)
            segment.file.flush()
            segment.pending.add(record_id)
            self._where[record_id] = segment
            self.appended += 1
            if segment.file.tell() > self._rotate_above:
                self._current = self._new_segment()
                self._segments.append(self._current)
                self._retire_done()

    def committed(self, record_ids: list[str]) -> None:
        """The ledger has these rows: cross them off; a full file with nothing uncommitted is deleted."""
        with self._lock:
            for record_id in record_ids:
                segment = self._where.pop(record_id, None)
                if segment is not None:
                    segment.pending.discard(record_id)
            self._retire_done()

    def _retire_done(self) -> None:
        for segment in [s for s in self._segments if s is not self._current and not s.pending]:
            segment.path.unlink(missing_ok=True)
            segment.file.close()
            self._segments.remove(segment)

    @property
    def pending(self) -> int:
        return len(self._where)

    def close(self, *, remove: bool) -> None:
        """Close the files; `remove` those whose records are all in the ledger."""
        with self._lock:
            for segment in self._segments:
                if segment.file.closed:
                    continue
                if remove and not segment.pending:
                    segment.path.unlink(missing_ok=True)
                segment.file.close()

    def abandon(self) -> None:
        """Let go of the files as a killed process would (their locks go, the files stay): for tests."""
        with self._lock:
            for segment in self._segments:
                segment.file.close()


def orphans(directory: str | os.PathLike[str]) -> Iterator[tuple[Path, list[tuple[str, dict[str, Any]]]]]:
    """Each journal file in `directory` that no live process holds, with its records (id, payload). The caller
    deletes a file (`path.unlink()`) once its records are in the ledger; the file stays locked until then."""
    folder = Path(directory)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("journal-*.jsonl")):
        try:
            handle = open(path, "rb")
        except OSError:
            continue
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live replica's journal
            records = []
            for number, line in enumerate(handle.read().splitlines(), 1):
                try:
                    item = orjson.loads(line)
                    records.append((str(item["id"]), item["record"]))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    log.warning("journal %s line %d is damaged (a write cut by the kill); skipped", path, number)
            yield path, records
        finally:
            handle.close()


def _slow_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise TypeError(f"cannot journal {type(value).__name__}")
