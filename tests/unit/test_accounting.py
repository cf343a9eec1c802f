"""Accounting records, their ids and the on-disk spool: no Redis, no root."""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

import netctl.spool as spool_module
from netctl.spool import COMPACT_BYTES, Spool
from parvis.core.accounting import (
    Record,
    RecordIds,
    RecordType,
    compare_ids,
    interim_due,
    interim_record,
    parse_id,
    schedule_next_interim,
    start_record,
    stop_record,
)
from parvis.core.sessions import EndReason, Session

GW = "gw-test"
T0 = 1_764_270_000.0


def session(**overrides: object) -> Session:
    values: dict[str, object] = dict(
        mac="02:50:76:00:00:01", ipv4="10.77.0.10", started_at=T0, expires_at=T0 + 3600,
        idle_timeout_s=600, last_activity_at=T0, ipv6=["fd77::10", "fd77::a:10"],
        bytes_up=1500, bytes_down=90_000, packets_up=12, packets_down=70,
        authorized_by="portal", terms_version="2026-01", via="terms", code_batch="",
        session_id="s-1", plan="standard")
    values.update(overrides)
    return Session(**values)  # type: ignore[arg-type]


def records(count: int, first_ms: int = 1_764_270_000_000) -> list[Record]:
    """``count`` interim records of one session, ids one millisecond apart."""
    s = session()
    return [interim_record(s, GW, f"{first_ms + i}-0", T0 + i) for i in range(count)]


# --- record ids ----------------------------------------------------------------------------------


def test_ids_increase_through_bursts_and_a_clock_going_back() -> None:
    ids = RecordIds()
    clock = [T0, T0, T0, T0 + 0.0005, T0 + 0.002, T0 - 10.0, T0 - 10.0, T0 + 0.002, T0 + 5]
    issued = [ids.next_id(now) for now in clock]
    assert issued[:5] == ["1764270000000-0", "1764270000000-1", "1764270000000-2",
                          "1764270000000-3", "1764270000002-0"]
    # The clock went back 10 s: the milliseconds stay, the sequence counts on.
    assert issued[5:8] == ["1764270000002-1", "1764270000002-2", "1764270000002-3"]
    assert issued[8] == "1764270005000-0"
    assert all(compare_ids(a, b) < 0 for a, b in zip(issued, issued[1:], strict=False))
    assert ids.last == issued[-1]


def test_advance_past_continues_after_the_stream_and_the_spool() -> None:
    ids = RecordIds(after="1764270009000-4")  # e.g. the stream's last id
    ids.advance_past("1764270009000-7")       # the spool's, higher
    ids.advance_past("1764270001000-0")       # lower: no effect
    ids.advance_past(None)                    # no stream yet
    assert ids.next_id(T0) == "1764270009000-8"  # the clock is behind both
    assert ids.next_id(T0 + 10) == "1764270010000-0"
    assert RecordIds().last is None and RecordIds().next_id(0.0) == "0-1"  # never 0-0


def test_compare_ids_sorts_numerically_like_redis() -> None:
    assert compare_ids("9-0", "10-0") == -1
    assert compare_ids("10-2", "10-10") == -1
    assert compare_ids("10-2", "10-2") == 0
    assert compare_ids("11-0", "10-99") == 1
    for bad in ("", "12", "12-", "-1-2", "1-2-3", "a-1", "0-0", f"{2**64}-0", " 1-2"):
        with pytest.raises(ValueError):
            parse_id(bad)


# --- records -------------------------------------------------------------------------------------


def test_records_round_trip_as_stream_fields_and_json() -> None:
    record = stop_record(session(), EndReason.QUOTA_EXCEEDED, GW, "1764270000123-4", T0 + 99.5)
    fields = record.to_fields()
    assert all(isinstance(v, str) for v in fields.values()) and "id" not in fields
    assert fields["ipv6"] == "fd77::10 fd77::a:10" and fields["cause"] == "Quota-Exceeded"
    assert Record.from_fields(record.id, fields) == record
    line = record.to_json()
    assert "\n" not in line and json.loads(line)["id"] == record.id
    assert Record.from_json(line) == record
    assert Record.from_json(line.encode()) == record
    # A field a newer writer added is ignored; a missing or garbled one is an error.
    assert Record.from_fields(record.id, {**fields, "nas_port": "3"}) == record
    with pytest.raises(ValueError, match="bytes_up"):
        Record.from_fields(record.id, {k: v for k, v in fields.items() if k != "bytes_up"})
    with pytest.raises(ValueError, match="type"):
        Record.from_fields(record.id, {**fields, "type": "update"})
    with pytest.raises(ValueError, match="packets_down"):
        Record.from_fields(record.id, {**fields, "packets_down": "-1"})
    with pytest.raises(ValueError):
        Record.from_json('{"id": "1-0", "type": 3}')
    with pytest.raises(ValueError):
        replace(record, id="nope")


def test_builders_carry_the_cumulative_totals_and_the_cause() -> None:
    s = session(bytes_up=0, bytes_down=0, packets_up=0, packets_down=0, ipv6=[])
    start = start_record(s, GW, "1-0", T0)
    assert (start.type, start.duration_s, start.bytes_up, start.cause) == (
        RecordType.START, 0, 0, "")
    assert (start.session_id, start.gateway, start.mac, start.ip, start.ipv6) == (
        "s-1", GW, "02:50:76:00:00:01", "10.77.0.10", ())
    assert (start.plan, start.via, start.terms_version) == ("standard", "terms", "2026-01")
    s.bytes_up, s.bytes_down, s.packets_up, s.packets_down = 10, 20, 1, 2
    s.ipv6 = ["fd77::10"]
    interim = interim_record(s, GW, "2-0", T0 + 60.9)
    assert (interim.type, interim.duration_s, interim.at) == (RecordType.INTERIM, 60, T0 + 60.9)
    assert (interim.bytes_up, interim.bytes_down, interim.packets_up, interim.packets_down) == (
        10, 20, 1, 2)
    assert interim.ipv6 == ("fd77::10",) and interim.cause == ""
    s.bytes_down += 1000  # totals are cumulative, as RADIUS interims are
    stop = stop_record(s, EndReason.IDLE_TIMEOUT, GW, "3-0", T0 + 120)
    assert (stop.type, stop.cause, stop.bytes_down, stop.duration_s) == (
        RecordType.STOP, "Idle-Timeout", 1020, 120)


def test_interims_keep_their_cadence_and_restart_after_a_gap() -> None:
    s = session(next_interim_at=0.0)
    assert interim_due(s, T0, 60)             # never scheduled: due now
    assert not interim_due(s, T0, 0)          # interval 0: no interims
    schedule_next_interim(s, T0, 60)
    assert s.next_interim_at == T0 + 60
    assert not interim_due(s, T0 + 59.9, 60) and interim_due(s, T0 + 60, 60)
    schedule_next_interim(s, T0 + 61.5, 60)   # a sweep 1.5 s late keeps the cadence
    assert s.next_interim_at == T0 + 120
    schedule_next_interim(s, T0 + 1000, 60)   # netctl was stopped: from now, no burst
    assert s.next_interim_at == T0 + 1060


# --- spool ---------------------------------------------------------------------------------------


@pytest.fixture
def spool_path(tmp_path: Path) -> Path:
    """Function: where a spool lives, in a directory that does not exist yet."""
    return tmp_path / "var" / "spool" / "accounting.jsonl"


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_spool_append_pending_confirm_clear(spool_path: Path) -> None:
    spool = Spool(spool_path, keep_confirmed_s=0)
    assert len(spool) == 0 and spool.pending() == [] and spool.last_id() is None
    batch = records(5)
    spool.append(batch[:3])
    spool.append(batch[3:])
    assert len(spool) == 5 and spool.pending() == batch
    assert spool.pending(limit=2) == batch[:2]
    assert spool.last_id() == batch[-1].id
    assert spool.confirm(batch[1].id) == 2
    assert len(spool) == 3 and spool.pending() == batch[2:]
    assert spool.confirm(batch[1].id) == 0  # again: nothing more
    spool.append(records(1, first_ms=1_764_270_001_000))
    spool.clear()
    assert len(spool) == 0 and spool.pending() == []
    # Only the last id is left on disk: ids keep increasing after a restart.
    assert lines(spool_path) == ['{"mark":"1764270001000-0"}']
    assert Spool(spool_path).last_id() == "1764270001000-0"


def test_spool_drops_everything_once_all_is_confirmed(spool_path: Path) -> None:
    spool = Spool(spool_path, keep_confirmed_s=0)
    batch = records(3)
    spool.append(batch)
    assert spool.confirm(batch[-1].id) == 3
    assert lines(spool_path) == [f'{{"mark":"{batch[-1].id}"}}']
    spool.append(records(2, first_ms=1_764_270_001_000))
    reopened = Spool(spool_path)
    assert len(reopened) == 2 and reopened.last_id() == "1764270001001-0"


def test_spool_refuses_ids_that_do_not_increase(spool_path: Path) -> None:
    spool = Spool(spool_path)
    batch = records(3)
    spool.append(batch[1:2])
    with pytest.raises(ValueError, match="not above"):
        spool.append(batch[:1])
    with pytest.raises(ValueError, match="not above"):
        spool.append([batch[2], batch[2]])
    assert spool.pending() == batch[1:2]


def test_a_new_spool_on_the_same_file_has_the_pending_records(spool_path: Path) -> None:
    """What a netctl restarted after a crash finds."""
    spool = Spool(spool_path, keep_confirmed_s=0)
    batch = records(4)
    spool.append(batch)
    spool.confirm(batch[0].id)
    # Confirmed records may still be on disk: they would be sent again, as duplicates.
    again = Spool(spool_path)
    assert again.pending()[-3:] == batch[1:] and again.last_id() == batch[-1].id


def test_a_torn_last_line_is_cut_and_appending_goes_on(
        spool_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(spool_path)
    batch = records(3)
    spool.append(batch[:2])
    torn = batch[2].to_json()
    with open(spool_path, "a") as file:  # a crash half way through an append
        file.write(torn[: len(torn) // 2])
    with caplog.at_level(logging.WARNING, logger="netctl.spool"):
        reopened = Spool(spool_path)
    assert "torn last line" in caplog.text
    assert reopened.pending() == batch[:2] and reopened.last_id() == batch[1].id
    reopened.append(batch[2:])  # the half line is gone: no glued line
    assert Spool(spool_path).pending() == batch
    assert len(lines(spool_path)) == 3


def test_repeated_and_garbled_lines_are_skipped(
        spool_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    batch = records(3)
    spool_path.parent.mkdir(parents=True, mode=0o700)
    spool_path.write_text("\n".join([batch[0].to_json(), batch[0].to_json(), "{not json",
                                     batch[1].to_json(), batch[2].to_json()]) + "\n")
    with caplog.at_level(logging.INFO, logger="netctl.spool"):
        spool = Spool(spool_path, keep_confirmed_s=0)
    # One summary line for repeats (a restart soon after a replay leaves many), not one each.
    assert "skipped 1 lines repeating earlier ids" in caplog.text
    assert "line 3 is not a record" in caplog.text
    assert len(spool) == 3 and spool.pending() == batch
    assert spool.confirm(batch[1].id) == 2 and spool.pending() == batch[2:]


def test_spool_directory_is_private(spool_path: Path) -> None:
    old = os.umask(0o022)
    try:
        spool = Spool(spool_path)
        spool.append(records(1))
    finally:
        os.umask(old)
    assert stat.S_IMODE(spool_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(spool_path.stat().st_mode) == 0o600


def test_an_empty_spool_reads_no_file(spool_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(spool_path, keep_confirmed_s=0)
    batch = records(2)
    spool.append(batch)
    spool.confirm(batch[-1].id)

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("the spool file was opened")

    monkeypatch.setattr(spool_module, "open", no_open, raising=False)
    for _sweep in range(3):
        assert spool.pending() == []
        spool.tidy()


def test_confirmed_records_stay_a_while_for_redis_to_fsync(spool_path: Path) -> None:
    """A power cut may cost Redis its last second: the spool still has that second."""
    now = [100.0]
    spool = Spool(spool_path, keep_confirmed_s=5, clock=lambda: now[0])
    batch = records(3)
    spool.append(batch)
    spool.confirm(batch[-1].id)
    assert spool.pending() == [] and len(lines(spool_path)) == 3
    assert Spool(spool_path).pending() == batch  # a crash now: all sent again
    now[0] += 4.9
    spool.tidy()
    assert len(lines(spool_path)) == 3
    now[0] += 0.1
    spool.tidy()
    assert lines(spool_path) == [f'{{"mark":"{batch[-1].id}"}}']


def test_a_long_spool_is_compacted_as_it_drains(spool_path: Path) -> None:
    """After a long outage, confirming batch by batch does not rewrite the file each time."""
    spool = Spool(spool_path, keep_confirmed_s=0)
    batch = records(1000)
    spool.append(batch)
    full = spool_path.stat().st_size
    assert full > 4 * COMPACT_BYTES
    inode = spool_path.stat().st_ino
    sent: list[Record] = []
    rewrites = 0
    while len(spool):
        chunk = spool.pending(limit=100)
        sent += chunk
        spool.confirm(chunk[-1].id)
        if spool_path.stat().st_ino != inode:
            rewrites += 1
            inode = spool_path.stat().st_ino
            assert spool_path.stat().st_size <= full // 2 + 100
    assert sent == batch
    assert 2 <= rewrites <= 5
    assert lines(spool_path) == [f'{{"mark":"{batch[-1].id}"}}']
