"""Accounting records on disk until Redis has them, so that each lands exactly once.

Why exactly once:

1. A record gets its id once, when it is made (parvis.core.accounting.RecordIds:
   strictly increasing, across restarts too, because netctl first advances
   past the stream's last id and this spool's :meth:`Spool.last_id`), and is
   appended here and fsynced before any attempt to send it. Nothing is lost
   while Redis is down: it waits here.
2. Records are sent oldest first, in id order, in transactions that land whole
   or not at all (Store.append_records), and leave this file only after Redis
   acknowledged them.
3. Redis refuses an entry id not above its stream's top. After a crash or a
   lost reply, what was sent is sent again: the prefix that had landed is
   refused (the store checks each refused id is in the stream with the same
   fields, and counts it as a duplicate), the rest is above the top and lands.

It holds as long as netctl is the stream's only writer (one netctl per
gateway id). Redis fsyncs its append-only file once a second, so a power cut
can cost it the last second of acknowledged writes: confirmed records stay
here ``keep_confirmed_s`` longer, and are sent again (harmlessly) after a
restart.

Records hold MAC and IP addresses (personal data): the directory is made
0700 and the file 0600.

Use in a sweep (``ids`` advanced past ``store.last_record_id()`` and
``spool.last_id()`` at start)::

    spool.append(new_records)      # on disk before any send, and before the
                                   # session change they record is saved
    batch = spool.pending(limit=1000)
    if batch:
        result = store.append_records(batch, retention_s)  # StoreError: sent next sweep
        # result.stale (ids taken by another writer): log, re-append under new ids
        spool.confirm(batch[-1].id)
    spool.tidy()
"""

from __future__ import annotations

import collections
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from pathlib import Path

from parvis.core.accounting import Record, compare_ids, parse_id

log = logging.getLogger(__name__)

# Dropped records are rewritten away once they take this much room (and half
# the file) or once nothing else is left: not at every sweep.
COMPACT_BYTES = 64 * 1024


class SpoolError(Exception):
    """The spool file could not be read or written; says which file and what failed."""


class _Line(Enum):
    RECORD = "record"
    # Carries only the last id ever spooled, so that ids keep increasing after a
    # restart even when Redis is unreachable then and the spool is empty.
    MARK = "mark"
    GARBLED = "garbled"
    REPEAT = "repeat"  # a record whose id does not go above the ids before it


class Spool:
    """A journal of accounting records that Redis has not (durably) got yet.

    Cheap when empty: the number of pending records is kept in memory, and
    :meth:`pending` reads nothing when it is zero. One writer: netctl.
    """

    def __init__(self, path: Path, keep_confirmed_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.keep_confirmed_s = keep_confirmed_s
        self._clock = clock
        self._tmp = path.with_name(path.name + ".tmp")
        self._reset()
        try:
            self._make_directory()
            self._tmp.unlink(missing_ok=True)  # left by a crash during a rewrite
            self._load()
        except OSError as error:
            raise SpoolError(f"opening spool {path}: {error}") from error

    def _reset(self) -> None:
        self._size = 0       # bytes in the file
        self._head = 0       # bytes of the mark line it starts with, if any
        self._start = 0      # offset of the first line not yet confirmed
        self._keep_from = 0  # offset of the first line still needed
        self._count = 0      # records not yet confirmed
        self._last_id: str | None = None       # highest id in the file, marks included
        self._confirmed_id: str | None = None  # highest id confirmed
        # (when, end offset) of each confirmation, kept for keep_confirmed_s.
        self._kept: collections.deque[tuple[float, int]] = collections.deque()

    def __len__(self) -> int:
        """Records not yet confirmed."""
        return self._count

    def last_id(self) -> str | None:
        """The highest id ever spooled here (remembered when the records are gone), or None."""
        return self._last_id

    # --- writing ---------------------------------------------------------------------------

    def append(self, records: Iterable[Record]) -> None:
        """Add records at the end, on disk (fsynced) when this returns.

        Their ids must increase and be above :meth:`last_id` (ValueError
        otherwise). On failure (SpoolError) the file is cut back to what it was.
        """
        records = list(records)
        if not records:
            return
        previous = self._last_id
        for record in records:
            if previous is not None and compare_ids(record.id, previous) <= 0:
                raise ValueError(f"record id {record.id} is not above {previous} in {self.path}")
            previous = record.id
        data = b"".join(record.to_json().encode() + b"\n" for record in records)
        created = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise SpoolError(f"opening {self.path}: {error}") from error
        try:
            _write_all(fd, data)
            os.fsync(fd)
            if created:
                _fsync_directory(self.path.parent)
        except OSError as error:
            self._undo_append(fd)
            raise SpoolError(f"appending {len(records)} records to {self.path}: {error}") \
                from error
        finally:
            os.close(fd)
        self._size += len(data)
        self._count += len(records)
        self._last_id = records[-1].id

    def _undo_append(self, fd: int) -> None:
        """Cut a failed append off the file (no half line left for the next append)."""
        try:
            os.ftruncate(fd, self._size)
            return
        except OSError as error:
            log.error("spool %s: cannot cut a failed append off: %s", self.path, error)
        try:
            self._reset()
            self._load()  # whatever is there now, torn line cut if it can be
        except OSError as error:
            log.error("spool %s: cannot read it again: %s", self.path, error)

    def pending(self, limit: int | None = None) -> list[Record]:
        """The records not yet confirmed, oldest first (at most ``limit`` of them)."""
        if self._count == 0:
            return []
        out: list[Record] = []
        for _end, record in self._records(self._start):
            if record is not None:
                out.append(record)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def confirm(self, up_to_id: str) -> int:
        """Mark every record up to ``up_to_id`` as in Redis; return how many that was.

        They are dropped ``keep_confirmed_s`` later (by this call or a later
        :meth:`tidy`), and the file is rewritten atomically when enough is dropped.
        """
        parse_id(up_to_id)
        confirmed = 0
        if self._count:
            for end, record in self._records(self._start):
                if record is not None and compare_ids(record.id, up_to_id) > 0:
                    break
                self._start = end
                if record is not None:
                    confirmed += 1
                    self._confirmed_id = record.id
            self._count -= confirmed
            if self._count == 0:
                self._start = self._size  # past trailing garbled lines too
            self._kept.append((self._clock(), self._start))
        self.tidy()
        return confirmed

    def tidy(self) -> None:
        """Drop what was confirmed ``keep_confirmed_s`` ago or more (cheap when nothing is)."""
        deadline = self._clock() - self.keep_confirmed_s
        while self._kept and self._kept[0][0] <= deadline:
            self._keep_from = max(self._keep_from, self._kept.popleft()[1])
        dropped = self._keep_from - self._head
        if dropped <= 0:
            return
        if self._keep_from >= self._size or (
                dropped >= COMPACT_BYTES and 2 * self._keep_from >= self._size):
            self._rewrite(self._keep_from)

    def clear(self) -> None:
        """Drop every record now, confirmed or not (the last id is remembered)."""
        self._count = 0
        self._start = self._keep_from = self._size
        self._confirmed_id = self._last_id
        self._kept.clear()
        if self._size > self._head:
            self._rewrite(self._size)

    # --- reading -----------------------------------------------------------------------------

    def _records(self, offset: int) -> Iterator[tuple[int, Record | None]]:
        """Each whole line from ``offset``: its end offset, and its record if it is one
        that goes above the last confirmed id and the ids before it."""
        try:
            with open(self.path, "rb") as file:
                file.seek(offset)
                for end, kind, record, _ in _classify(file, offset, self._confirmed_id):
                    yield end, record if kind is _Line.RECORD else None
        except OSError as error:
            raise SpoolError(f"reading {self.path}: {error}") from error

    def _load(self) -> None:
        """Read the file once at start: count its records, find its last id, cut a torn line."""
        if not self.path.exists():
            return
        repeats = 0
        with open(self.path, "r+b") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(0)
            for number, (end, kind, _record, line_id) in enumerate(_classify(file, 0, None), 1):
                self._size = end
                if kind is _Line.RECORD:
                    self._count += 1
                elif kind is _Line.MARK and number == 1:
                    # Everything up to the mark was confirmed and dropped before.
                    self._head = self._start = self._keep_from = end
                    self._confirmed_id = line_id
                elif kind is _Line.GARBLED:
                    log.error("spool %s: line %d is not a record; skipping it",
                              self.path, number)
                elif kind is _Line.REPEAT:
                    repeats += 1
                    log.debug("spool %s: line %d repeats id %s or goes back; skipping it",
                              self.path, number, line_id)
                if line_id is not None and kind is not _Line.REPEAT and (
                        self._last_id is None or compare_ids(line_id, self._last_id) > 0):
                    self._last_id = line_id
            if self._size < size:
                log.warning("spool %s: cutting a torn last line of %d bytes (a crash while "
                            "appending: its append never returned)", self.path, size - self._size)
                file.truncate(self._size)
                os.fsync(file.fileno())
        if repeats:
            # Records sent and kept a few seconds for safety, then a restart: harmless.
            log.info("spool %s: skipped %d lines repeating earlier ids", self.path, repeats)
        if self._count:
            log.info("spool %s: %d accounting records to send", self.path, self._count)

    # --- files -------------------------------------------------------------------------------

    def _make_directory(self) -> None:
        directory = self.path.parent
        if directory.is_dir():
            mode = stat.S_IMODE(directory.stat().st_mode)
            if mode & 0o077:
                log.warning("spool directory %s is mode %o: others may read accounting "
                            "records (personal data); 0700 is expected", directory, mode)
            return
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)  # whatever the umask
        _fsync_directory(directory.parent)

    def _rewrite(self, drop_to: int) -> None:
        """Replace the file by a mark of the last id and its lines from ``drop_to`` on.

        Written to a temporary file, fsynced, then renamed over the spool: a crash
        leaves the old file or the new one. The directory is not fsynced: if the
        rename is lost, the old file's confirmed records are sent again, as duplicates.
        """
        head = b'{"mark":"%s"}\n' % self._last_id.encode() if self._last_id else b""
        try:
            with open(self.path, "rb") as old:
                old.seek(drop_to)
                rest = old.read(self._size - drop_to)
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                _write_all(fd, head + rest)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._tmp, self.path)
        except OSError as error:
            raise SpoolError(f"rewriting {self.path}: {error}") from error
        shift = len(head) - drop_to
        self._size += shift
        self._head = self._keep_from = len(head)
        self._start = max(self._start + shift, self._head)
        self._kept = collections.deque((at, max(end + shift, self._head))
                                       for at, end in self._kept)


def _classify(lines: Iterable[bytes], offset: int, previous: str | None
              ) -> Iterator[tuple[int, _Line, Record | None, str | None]]:
    """Each whole line: its end offset, its kind, its record and its id (if it has one).

    ``previous`` is the id the first record must go above; a torn last line (no
    newline: a crash while appending) ends the iteration.
    """
    for line in lines:
        if not line.endswith(b"\n"):
            return
        offset += len(line)
        mark = _mark(line)
        if mark is not None:
            previous = mark if previous is None or compare_ids(mark, previous) > 0 else previous
            yield offset, _Line.MARK, None, mark
            continue
        try:
            record = Record.from_json(line)
        except (ValueError, TypeError):
            yield offset, _Line.GARBLED, None, None
            continue
        if previous is not None and compare_ids(record.id, previous) <= 0:
            yield offset, _Line.REPEAT, None, record.id
            continue
        previous = record.id
        yield offset, _Line.RECORD, record, record.id


def _mark(line: bytes) -> str | None:
    """The id of a mark line, or None if it is not one."""
    prefix, suffix = b'{"mark":"', b'"}\n'
    if not (line.startswith(prefix) and line.endswith(suffix)):
        return None
    try:
        mark = line[len(prefix):-len(suffix)].decode()
        parse_id(mark)
    except ValueError:
        return None
    return mark


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_directory(directory: Path) -> None:
    """Make a new entry of ``directory`` (a file created in it) survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
