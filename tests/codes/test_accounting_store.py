"""Accounting records in a real Redis: each lands once, in order, and leaves after retention."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from netctl.spool import Spool
from parvis.core.accounting import Record, RecordIds, interim_record, start_record, stop_record
from parvis.core.sessions import EndReason, Session
from parvis.store import Store, StoreError, connect

GW = "gw-test"
DAY_MS = 24 * 3600 * 1000
RETENTION_S = 30 * 24 * 3600


def session() -> Session:
    now = time.time()
    return Session(mac="02:50:76:00:00:01", ipv4="10.77.0.10", started_at=now,
                   expires_at=now + 3600, idle_timeout_s=600, last_activity_at=now,
                   ipv6=["fd77::10"], session_id="s-1", plan="standard", via="terms")


def records(count: int, first_ms: int | None = None) -> list[Record]:
    """``count`` interim records, ids one millisecond apart from ``first_ms`` (default: now)."""
    first_ms = int(time.time() * 1000) if first_ms is None else first_ms
    s = session()
    out = []
    for i in range(count):
        s.bytes_down += 1000
        out.append(interim_record(s, GW, f"{first_ms + i}-0", (first_ms + i) / 1000))
    return out


def stream_ids(store: Store) -> list[str]:
    return [entry_id for entry_id, _ in store.client.xrange(store.keys.accounting)]


def test_records_land_in_order_under_their_own_ids(store: Store) -> None:
    batch = records(5)
    assert store.append_records(batch, RETENTION_S) == (5, 0, ())
    assert store.keys.accounting == "parvis:gw:gw-test:accounting"
    assert stream_ids(store) == [r.id for r in batch]
    assert store.accounting_records() == batch
    assert store.accounting_records(batch[1].id, batch[3].id) == batch[1:4]
    assert store.accounting_records(count=2) == batch[:2]
    assert store.append_records([], RETENTION_S) == (0, 0, ())


def test_replaying_a_batch_writes_nothing_twice(store: Store) -> None:
    batch = records(6)
    store.append_records(batch, RETENTION_S)
    assert store.append_records(batch, RETENTION_S) == (0, 6, ())
    assert store.client.xlen(store.keys.accounting) == 6
    assert store.accounting_records() == batch


def test_replaying_a_batch_whose_first_half_landed_writes_the_rest(store: Store) -> None:
    """A lost reply, or a crash between Redis's write and the spool's confirm."""
    batch = records(8)
    store.append_records(batch[:4], RETENTION_S)
    assert store.append_records(batch, RETENTION_S) == (4, 4, ())
    assert store.client.xlen(store.keys.accounting) == 8
    assert store.accounting_records() == batch


def test_a_refused_id_not_in_the_stream_is_reported_stale(store: Store) -> None:
    """Its id was taken by another writer: not a duplicate, and not silently dropped."""
    batch = records(3)
    store.append_records(batch, RETENTION_S)
    other = replace(batch[1], mac="02:50:76:00:00:99")  # same id, another record
    behind = replace(batch[0], id=f"{batch[0].id.split('-')[0]}-5")  # below the top, absent
    result = store.append_records([behind, other], RETENTION_S)
    assert result == (0, 0, (behind, other))
    assert store.accounting_records() == batch


def test_ids_must_increase_within_a_batch(store: Store) -> None:
    batch = records(2)
    with pytest.raises(ValueError, match="must increase"):
        store.append_records([batch[1], batch[0]], RETENTION_S)
    assert store.client.exists(store.keys.accounting) == 0


def test_a_batch_redis_refuses_lands_not_at_all(store: Store) -> None:
    """Out of memory (noeviction): no hole for a replay to mistake for a duplicate."""
    store.append_records(records(1, first_ms=int(time.time() * 1000) - 1000), RETENTION_S)
    batch = records(4)
    store.client.config_set("maxmemory", "1")
    try:
        with pytest.raises(StoreError, match="maxmemory"):
            store.append_records(batch, RETENTION_S)
        assert store.client.xlen(store.keys.accounting) == 1
    finally:
        store.client.config_set("maxmemory", "0")
    assert store.append_records(batch, RETENTION_S) == (4, 0, ())


def test_records_older_than_retention_are_trimmed(store: Store) -> None:
    now_ms = int(time.time() * 1000)
    old = records(3, first_ms=now_ms - 31 * DAY_MS)
    kept = records(2, first_ms=now_ms - 29 * DAY_MS)
    new = records(2, first_ms=now_ms)
    store.append_records(old + kept, RETENTION_S, now=now_ms / 1000 - 10 * DAY_MS / 1000)
    assert store.client.xlen(store.keys.accounting) == 5  # none past retention back then
    assert store.append_records(new, RETENTION_S) == (2, 0, ())
    assert store.accounting_records() == kept + new
    # Replaying the trimmed ones neither resurrects them nor calls them stale.
    assert store.append_records(old, RETENTION_S) == (0, 3, ())
    assert store.trim_records(RETENTION_S, now=now_ms / 1000 + 2 * DAY_MS / 1000) == 2
    assert store.accounting_records() == new
    with pytest.raises(ValueError, match="retention_s"):
        store.append_records(new, 0)


def test_last_record_id_outlives_trimming(store: Store) -> None:
    assert store.last_record_id() is None
    batch = records(3, first_ms=int(time.time() * 1000) - 40 * DAY_MS)
    store.append_records(batch, RETENTION_S)
    assert store.client.xlen(store.keys.accounting) == 0  # all past retention
    assert store.last_record_id() == batch[-1].id


# --- Redis stopped and started again -------------------------------------------------------------


class PrivateRedis:
    """A redis-server of one test, persisting to an append-only file, that can be killed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                client = redis.Redis.from_url(self.url, socket_timeout=1)
                client.ping()
                client.close()
                return
            except (redis.ConnectionError, FileNotFoundError) as error:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start (see {self.directory}/redis.log)") from error
                time.sleep(0.02)

    def kill(self) -> None:
        """Stop it as a crash would (SIGKILL): what it acknowledged is in its AOF."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """Function: a PrivateRedis in ``tmp_path/redis``, started, and killed in teardown."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = PrivateRedis(directory)
    try:
        server.start()
        yield server
    finally:
        server.kill()


def test_records_spooled_while_redis_is_down_land_once_in_order(
        private_redis: PrivateRedis, tmp_path: Path) -> None:
    store = Store(connect(private_redis.url, timeout_s=0.5), GW)
    spool_path = tmp_path / "spool" / "accounting.jsonl"
    spool = Spool(spool_path, keep_confirmed_s=0)
    ids = RecordIds()
    s = session()

    def sweep(*made: Record) -> None:
        """What netctl does each sweep: spool first, then send what is pending."""
        spool.append(made)
        batch = spool.pending()
        store.append_records(batch, RETENTION_S)
        spool.confirm(batch[-1].id)

    now = time.time()
    first = start_record(s, GW, ids.next_id(now), now)
    sweep(first)

    private_redis.kill()
    s.bytes_down += 5000
    while_down = [interim_record(s, GW, ids.next_id(now + i), now + i) for i in range(1, 4)]
    for record in while_down:
        with pytest.raises(StoreError):
            sweep(record)
    assert [r.id for r in spool.pending()] == [r.id for r in while_down]

    private_redis.start()
    assert store.accounting_records() == [first]  # it survived the crash
    # The pending records land, but the reply is lost and netctl crashes before
    # confirming: the restarted netctl sends them all again.
    assert store.append_records(spool.pending(), RETENTION_S) == (3, 0, ())
    del spool
    spool = Spool(spool_path, keep_confirmed_s=0)
    assert spool.pending() == while_down
    # The restarted netctl's ids go on after the stream's and the spool's, though
    # its clock is now an hour behind.
    ids = RecordIds()
    ids.advance_past(store.last_record_id())
    ids.advance_past(spool.last_id())
    assert store.append_records(spool.pending(), RETENTION_S) == (0, 3, ())
    spool.confirm(while_down[-1].id)
    last = stop_record(s, EndReason.USER_REQUEST, GW, ids.next_id(now - 3600), now + 10)
    sweep(last)

    landed = store.accounting_records()
    assert landed == [first, *while_down, last]
    assert len({r.id for r in landed}) == len(landed)
    assert len(spool) == 0
    store.client.close()
