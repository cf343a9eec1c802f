"""The roll-up's edges against a real Redis: empty streams, bad entries, lost records, keys."""

from __future__ import annotations

import dataclasses
import zoneinfo
from datetime import date, datetime

from parvis.core.accounting import Record, RecordType
from parvis.reports import load_report, roll_up
from parvis.store import Keys, Store
from tests.reports.synthetic import TOWN_TIMEZONE, gateway_config

TZ = zoneinfo.ZoneInfo(TOWN_TIMEZONE)
RETENTION_S = 90 * 86400


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=TZ).timestamp()


def session_records(gateway: str, mac: str, start: float, length_s: float,
                    number: int) -> list[Record]:
    def record(kind: RecordType, moment: float) -> Record:
        return Record(id=f"{int(moment * 1000)}-{number}", type=kind, session_id=f"s{number}",
                      gateway=gateway, mac=mac, ip="10.77.2.9", ipv6=(), plan="residents",
                      via="accept", code_batch="", terms_version="1", started_at=start,
                      at=moment, duration_s=int(moment - start), bytes_up=5, bytes_down=50,
                      packets_up=1, packets_down=1,
                      cause="User-Request" if kind is RecordType.STOP else "")
    return [record(RecordType.START, start), record(RecordType.STOP, start + length_s)]


def test_an_empty_stream_rolls_up_nothing(store: Store) -> None:
    result = roll_up(store, gateway_config("gw-a"), at(2026, 11, 5))
    assert (result.records, result.cursor, result.complete) == (0, None, True)
    assert store.report_months() == []


def test_an_entry_that_is_not_a_record_is_passed_over(store: Store) -> None:
    gw = Store(store.client, "gw-a")
    gw.append_records(session_records("gw-a", "02:00:00:00:00:01", at(2026, 11, 5, 9), 600, 1),
                      RETENTION_S, now=at(2026, 11, 5, 10))
    store.client.xadd(gw.keys.accounting, {"type": "stop", "junk": "1"},
                      id=f"{int(at(2026, 11, 5, 10) * 1000)}-0")
    # Records whose figures no session has: a start in year 3000, a total Redis cannot add.
    odd = session_records("gw-a", "02:00:00:00:00:02", at(2026, 11, 5, 10), 60, 2)
    gw.append_records([dataclasses.replace(odd[0], started_at=32503680000.0),
                       dataclasses.replace(odd[1], bytes_down=2**64 - 1)], RETENTION_S,
                      now=at(2026, 11, 5, 10, 5))
    result = roll_up(gw, gateway_config("gw-a"), at(2026, 11, 5, 11))
    assert (result.records, result.sessions, result.malformed) == (5, 1, 3)
    assert gw.report_cursor() == odd[1].id


def test_records_trimmed_before_their_roll_up_are_reported(store: Store) -> None:
    gw = Store(store.client, "gw-a")
    gw.append_records(session_records("gw-a", "02:00:00:00:00:01", at(2026, 11, 5, 9), 600, 1),
                      RETENTION_S, now=at(2026, 11, 5, 10))
    gw.trim_records(86400, now=at(2026, 11, 7))
    assert roll_up(gw, gateway_config("gw-a"), at(2026, 11, 7)).records_lost == 2
    assert roll_up(gw, gateway_config("gw-a"), at(2026, 11, 7)).records_lost == 0  # said once
    gw.append_records(session_records("gw-a", "02:00:00:00:00:01", at(2026, 11, 7, 9), 600, 2),
                      RETENTION_S, now=at(2026, 11, 7, 10))
    assert roll_up(gw, gateway_config("gw-a"), at(2026, 11, 7, 11)).records == 2
    gw.trim_records(86400, now=at(2026, 11, 9))  # read before they went: nothing more lost
    assert roll_up(gw, gateway_config("gw-a"), at(2026, 11, 9)).records_lost == 0


def test_gateways_share_the_month_key_and_it_expires_by_itself(store: Store) -> None:
    """The same device on two gateways of one zone, one day: one device (one key for all)."""
    now = at(2026, 11, 5, 12)
    for number, gateway in enumerate(("gw-a", "gw-b"), start=1):
        gw = Store(store.client, gateway)
        gw.append_records(session_records(gateway, "02:00:00:00:00:01", at(2026, 11, 5, 9),
                                          600, number), RETENTION_S, now=now)
        roll_up(gw, gateway_config(gateway), now)
    report = load_report(store, "2026-11", min_count=1, today=date(2026, 12, 15))
    assert (report.totals.sessions, report.totals.devices) == (2, 1)
    ttl = store.client.ttl(Keys.report_device_key("2026-11"))
    assert at(2026, 12, 3) - now - 5 <= ttl <= at(2026, 12, 3) - now
