"""Private by construction: once a month is over and the raw records are gone, nothing is left.

A month of accounting (three gateways, IPv4 and IPv6 addresses, MACs) is
rolled up; the device key outlives the month by its grace only; the raw
records are trimmed as retention does. Then every Redis key and value, the
CSV, the PDF's text, the SVG charts, the HTML page and the text summary are
searched for MAC, IPv4 and IPv6 addresses: none may be found.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import zoneinfo
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from parvis.core.accounting import Record, RecordType
from parvis.reports import (
    heatmap_chart,
    load_report,
    report_csv,
    report_html,
    report_pdf,
    report_text,
    roll_up,
    sessions_chart,
)
from parvis.reports.charts import data_chart
from parvis.store import Keys, Store
from tests.reports.synthetic import ZONE_OF, gateway_config, make_records, make_sessions

TZ = zoneinfo.ZoneInfo("America/Toronto")
MAC = re.compile(rb"(?i)(?<![0-9a-f:])[0-9a-f]{2}(?:[:-][0-9a-f]{2}){5}(?![0-9a-f:])")
IPV4 = re.compile(rb"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6_CANDIDATE = re.compile(rb"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
       ) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=TZ).timestamp()


def addresses(data: bytes, binary: bool = False) -> list[str]:
    """MAC, IPv4 and IPv6 addresses written out in ``data``.

    For binary values (HyperLogLog registers) an IPv6 address must show at
    least four colons: random bytes form short ones like ``a::`` by chance.
    """
    found = [m.decode() for m in MAC.findall(data)]
    found += [m.decode() for m in IPV4.findall(data)
              if all(int(part) < 256 for part in m.split(b"."))]
    for candidate in IPV6_CANDIDATE.findall(data):
        text = candidate.decode().strip(":.")
        if text.count(":") < (4 if binary else 2):
            continue
        for piece in {candidate.decode(), text}:
            try:
                ipaddress.IPv6Address(piece)
            except ValueError:
                continue
            found.append(piece)
            break
    return found


def scan_redis(url: str) -> dict[str, list[str]]:
    """Every key and every value of the server, with the addresses found in each."""
    # Bytes, not decoded: values are taken as they are.
    client: Any = redis.Redis.from_url(url)
    hits: dict[str, list[str]] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        values: list[bytes] = [key]
        if kind == "string":
            values.append(client.get(key) or b"")
        elif kind == "hash":
            values += [item for pair in client.hgetall(key).items() for item in pair]
        elif kind in ("set", "zset", "list"):
            values += (list(client.smembers(key)) if kind == "set" else
                       client.zrange(key, 0, -1) if kind == "zset" else client.lrange(key, 0, -1))
        elif kind == "stream":
            for entry_id, fields in client.xrange(key):
                values += [entry_id, *(item for pair in fields.items() for item in pair)]
        else:
            raise AssertionError(f"{key!r}: a {kind} the scan does not read")
        found = [a for value in values for a in addresses(value, value.startswith(b"HYLL"))]
        if found:
            hits[key.decode()] = found
    client.close()
    return hits


def test_the_scanner_finds_what_it_looks_for() -> None:
    text = b"x 02:aa:00:00:00:01 10.77.2.9 2001:db8:77:1:abcd:ef01:2345:1 fd77::5 y"
    assert addresses(text) == ["02:aa:00:00:00:01", "10.77.2.9",
                               "2001:db8:77:1:abcd:ef01:2345:1", "fd77::5"]
    assert addresses(b"2026-11-01 12:30 v2.8.9 parvis:reports:day:2026-11-01:gw-a:Centre") == []


def test_nothing_personal_is_left_once_the_month_is_over(store: Store, redis_url: str,
                                                         tmp_path: Path) -> None:
    client = store.client
    stores = {gw: Store(client, gw) for gw in ZONE_OF}
    sessions = make_sessions(31, date(2026, 11, 1), date(2026, 11, 30), 120, list(ZONE_OF), TZ)
    month_over = at(2026, 12, 1, 10)
    total = 0
    for gw, gw_store in stores.items():
        records = make_records(sessions, gw, month_over, interim_s=900)
        total += gw_store.append_records(records, 90 * 86400, now=month_over).written
        roll_up(gw_store, gateway_config(gw), month_over)
    assert scan_redis(redis_url)  # the raw records hold addresses: the scan sees them
    assert store.device_key_months() == ["2026-11"]  # in its grace: late stops still count

    # Past the grace (2 days after the month's last local midnight): the key goes.
    past = at(2026, 12, 3, 0, 0, 1)
    results = [roll_up(gw_store, gateway_config(gw), past) for gw, gw_store in stores.items()]
    assert results[0].keys_destroyed == ("2026-11",)
    assert not client.exists(Keys.report_device_key("2026-11"))
    # A November session's stop arriving even later is counted, but not its device, and
    # the key is not made again.
    late_start = at(2026, 11, 30, 23)
    stores["gw-a"].append_records([Record(
        id=f"{int(past * 1000) + 5000}-0", type=RecordType.STOP, session_id="late",
        gateway="gw-a", mac="02:aa:bb:cc:dd:ee", ip="10.77.3.3", ipv6=(), plan="residents",
        via="accept", code_batch="", terms_version="1", started_at=late_start, at=past + 5,
        duration_s=int(past + 5 - late_start), bytes_up=1, bytes_down=2, packets_up=1,
        packets_down=1, cause="Lost-Carrier")], 90 * 86400, now=past + 5)
    late = roll_up(stores["gw-a"], gateway_config("gw-a"), past + 10)
    assert (late.sessions, late.devices_uncounted) == (1, 1)
    assert store.device_key_months() == []
    report = load_report(store, "2026-11", min_count=5, today=date(2026, 12, 10))
    assert report.totals.devices is not None and report.totals.devices > 1000  # still readable
    assert report.totals.sessions == sum(1 for s in sessions if s.ended_at <= month_over) + 1

    # Retention: the raw records of November are trimmed at the start of January.
    trimmed = sum(gw_store.trim_records(30 * 86400, now=at(2027, 1, 5))
                  for gw_store in stores.values())
    assert trimmed == total + 1
    assert scan_redis(redis_url) == {}

    outputs = {
        "csv": report_csv(report, "fr").encode(), "csv-en": report_csv(report, "en").encode(),
        "html": str(report_html(report, "fr")).encode(),
        "text": report_text(report, "en").encode(),
        "svg": (sessions_chart(report) + data_chart(report) + heatmap_chart(report)).encode(),
    }
    pdf = tmp_path / "rapport.pdf"
    pdf.write_bytes(report_pdf(report, "fr"))
    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils not installed: the PDF's text is not checked")
    outputs["pdf"] = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True,
                                    check=True).stdout
    assert b"novembre 2026" in outputs["pdf"]
    assert {name: addresses(data) for name, data in outputs.items() if addresses(data)} == {}
