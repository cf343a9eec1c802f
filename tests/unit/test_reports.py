"""Council reports, pure parts: folding records, suppression, summaries, CSV, SVG, HTML.

Expected figures are computed here from the sessions themselves, by other
means than the code under test (brute force per minute, sorted lists).
"""

from __future__ import annotations

import csv
import io
import math
import random
import re
import statistics
import xml.etree.ElementTree as ET
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta

import pytest

from parvis.core.accounting import Record, RecordType
from parvis.core.reports import (
    NBSP,
    Cell,
    CellData,
    Fold,
    PeriodData,
    Report,
    bucket_width,
    build_report,
    concurrency_steps,
    device_key_ttl_s,
    device_token,
    fold_records,
    format_bytes,
    format_change,
    format_count,
    histogram_median,
    length_bucket,
    summary,
)
from parvis.reports import data_chart, heatmap_chart, report_csv, report_html, sessions_chart
from parvis.reports.export import report_text
from tests.reports.synthetic import make_records, make_sessions

TZ = zoneinfo.ZoneInfo("America/Toronto")
SVG = "{http://www.w3.org/2000/svg}"
MAC = re.compile(r"(?i)\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b")
IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")


def local_date(moment: float) -> date:
    return datetime.fromtimestamp(moment, TZ).date()


def spec_bucket(seconds: int) -> tuple[int, int]:
    """The histogram bucket (lower bound, width) as docs/reports.md states it."""
    if seconds < 7200:
        return seconds - seconds % 60, 60
    if seconds < 8 * 3600:
        return seconds - seconds % 300, 300
    if seconds < 7 * 86400:
        return seconds - seconds % 1800, 1800
    return 7 * 86400, 0


# --- histogram -----------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0, 59, 60, 7199, 7200, 7499, 28799, 28800, 604799,
                                     604800, 10**7])
def test_length_buckets_follow_the_documented_widths(seconds: int) -> None:
    lower, width = spec_bucket(seconds)
    assert length_bucket(seconds) == lower
    assert bucket_width(lower) == width


def test_histogram_median_is_within_one_bucket_of_the_exact_median() -> None:
    rng = random.Random(5)
    for size in (1, 2, 3, 10, 101, 5000):
        lengths = [int(min(8 * 3600, rng.lognormvariate(7.3, 1.1))) for _ in range(size)]
        histogram = Counter(length_bucket(n) for n in lengths)
        ordered = sorted(lengths)
        # Between the middle sessions' lengths (one for an odd count), give or take a bucket.
        low, high = ordered[(size - 1) // 2], ordered[size // 2]
        estimate = histogram_median(histogram)
        assert estimate is not None
        assert low - spec_bucket(low)[1] <= estimate <= high + spec_bucket(high)[1], (
            size, low, high, estimate)
        if size % 2:
            assert abs(estimate - statistics.median(lengths)) <= spec_bucket(low)[1]
    assert histogram_median({}) is None


# --- concurrency ---------------------------------------------------------------------------


def brute_force_presence(intervals: list[tuple[float, float]]) -> Counter[tuple[date, int]]:
    """Devices present per (local day, minute of that day), minute by minute."""
    present: Counter[tuple[date, int]] = Counter()
    for start, end in intervals:
        first = math.floor(start / 60)
        last = max(first + 1, math.ceil(end / 60))
        for minute in range(first, last):
            day = local_date(minute * 60)
            midnight = datetime(day.year, day.month, day.day, tzinfo=TZ).timestamp()
            present[day, int((minute * 60 - midnight) // 60)] += 1
    return present


def test_concurrency_steps_sum_to_the_devices_present_each_minute() -> None:
    """Over midnight, over the DST change (1 Nov 2026: a 25-hour day), zero-length sessions."""
    rng = random.Random(7)
    base = datetime(2026, 10, 31, 20, tzinfo=TZ).timestamp()
    intervals = []
    for _ in range(400):
        start = base + rng.uniform(0, 40 * 3600)
        length = rng.choice([0.0, 30.0, 59.9, 60.0, rng.uniform(0, 6 * 3600)])
        intervals.append((start, start + length))
    expected = brute_force_presence(intervals)
    steps: dict[date, Counter[int]] = defaultdict(Counter)
    for start, end in intervals:
        for day, minute, step in concurrency_steps(start, end, TZ):
            steps[day][minute] += step
    for day, by_minute in steps.items():
        level = 0
        midnight = datetime(day.year, day.month, day.day, tzinfo=TZ)
        next_midnight = datetime.combine(day + timedelta(days=1), midnight.timetz())
        for minute in range(int(next_midnight.timestamp() - midnight.timestamp()) // 60):
            level += by_minute.get(minute, 0)
            assert level == expected.get((day, minute), 0), (day, minute)
    assert any(minute >= 1440 for _day, minute in expected)  # the 25-hour day was reached


# --- folding records -----------------------------------------------------------------------


def test_fold_matches_a_computation_from_the_sessions() -> None:
    zone_of = {"gw-a": "Centre-ville", "gw-b": "Parc"}
    sessions = make_sessions(3, date(2026, 10, 30), date(2026, 11, 2), 60, list(zone_of), TZ)
    until = datetime(2026, 11, 2, 16, tzinfo=TZ).timestamp()
    fold = Fold()
    for gateway, zone in zone_of.items():
        fold_records(make_records(sessions, gateway, until, interim_s=300), zone, TZ,
                     lambda _month, mac: f"t-{mac}", fold)
    stopped = [s for s in sessions if s.ended_at <= until]
    started = [s for s in sessions if s.started_at <= until]
    assert fold.stops == len(stopped)
    assert fold.starts == len(started)
    expected: dict[Cell, Counter[str]] = defaultdict(Counter)
    for s in stopped:
        cell = Cell(local_date(s.started_at).isoformat(), s.gateway, zone_of[s.gateway])
        length = int(s.ended_at - s.started_at)
        expected[cell].update({
            "sessions": 1, "duration_s": length, "bytes_down": s.bytes_down,
            "bytes_up": s.bytes_up, f"len:{spec_bucket(length)[0]}": 1,
            f"hour:{datetime.fromtimestamp(s.started_at, TZ).hour:02d}": 1,
            f"plan:{s.plan}": 1, f"via:{s.via}": 1})
        if s.code_batch:
            expected[cell][f"batch:{s.code_batch}"] += 1
    devices: dict[Cell, set[str]] = defaultdict(set)
    for s in started:
        devices[Cell(local_date(s.started_at).isoformat(), s.gateway,
                     zone_of[s.gateway])].add(f"t-{s.mac}")
    for cell in set(expected) | set(fold.cells):
        delta = fold.cells.get(cell)
        assert (+delta.stats if delta else Counter()) == expected.get(cell, Counter()), cell
        assert (delta.devices if delta else set()) == devices.get(cell, set()), cell


def _record(kind: RecordType, number: int, started: float, at: float, mac: str) -> Record:
    return Record(id=f"{int(at * 1000)}-{number}", type=kind, session_id="abc", gateway="gw-a",
                  mac=mac, ip="10.77.2.9", ipv6=(), plan="residents", via="accept",
                  code_batch="", terms_version="1", started_at=started, at=at,
                  duration_s=int(at - started), bytes_up=10, bytes_down=20, packets_up=1,
                  packets_down=1, cause="User-Request" if kind is RecordType.STOP else "")


def test_a_live_session_counts_its_device_but_not_yet_the_session() -> None:
    start = datetime(2026, 11, 5, 10, tzinfo=TZ).timestamp()
    fold = fold_records([_record(RecordType.START, 0, start, start, "02:00:00:00:00:01"),
                         _record(RecordType.INTERIM, 1, start, start + 60, "02:00:00:00:00:01")],
                        "Z", TZ, lambda _m, mac: mac.upper())
    (delta,) = fold.cells.values()
    assert delta.devices == {"02:00:00:00:00:01".upper()} and not delta.stats
    assert not delta.concurrency


def test_devices_after_their_month_key_is_destroyed_are_counted_as_uncounted() -> None:
    start = datetime(2026, 11, 30, 23, tzinfo=TZ).timestamp()
    fold = fold_records([_record(RecordType.STOP, 0, start, start + 7200, "02:aa:00:00:00:01")],
                        "Z", TZ, lambda _m, _mac: None)
    assert fold.devices_uncounted == 1
    day, next_day = (fold.cells[Cell(d, "gw-a", "Z")] for d in ("2026-11-30", "2026-12-01"))
    assert day.stats["sessions"] == 1 and not day.devices
    assert dict(day.concurrency) == {1380: 1} and dict(next_day.concurrency) == {0: 1, 60: -1}


def test_device_tokens_are_keyed_and_hold_no_mac() -> None:
    one = device_token(b"k" * 32, "02:AA:00:00:00:01")
    assert one == device_token(b"k" * 32, "02:aa:00:00:00:01")
    assert one != device_token(b"j" * 32, "02:aa:00:00:00:01")
    assert re.fullmatch(r"[0-9a-f]{32}", one)


def test_device_key_lives_until_two_days_after_the_month() -> None:
    end = datetime(2026, 12, 1, tzinfo=TZ).timestamp()
    assert device_key_ttl_s("2026-11", TZ, end - 10) == 2 * 86400 + 10
    assert device_key_ttl_s("2026-11", TZ, end + 2 * 86400) == 0


# --- building the report -------------------------------------------------------------------


def cell_data(day: str, zone: str, sessions: int, *, gateway: str = "gw-a",
              hour: int = 12, plan: str = "residents", batch: str = "",
              peak: int = 0) -> CellData:
    stats = {"sessions": sessions, "duration_s": 600 * sessions, "bytes_down": 1000 * sessions,
             "bytes_up": 100 * sessions, "len:600": sessions, f"hour:{hour:02d}": sessions,
             f"plan:{plan}": sessions}
    if batch:
        stats[f"batch:{batch}"] = sessions
        stats["via:code"] = sessions
    concurrency = {600: peak, 700: -peak} if peak else {}
    return CellData(Cell(day, gateway, zone), stats, concurrency)


def period(cells: Sequence[CellData], first: date, last: date, zone: str | None = None,
           devices: int = 0) -> PeriodData:
    return PeriodData(first_day=first, last_day=last, zone=zone, cells=cells, devices=devices,
                      devices_by_day={c.cell.day: c.stats["sessions"] for c in cells},
                      devices_by_day_zone={(c.cell.day, c.cell.zone): c.stats["sessions"]
                                           for c in cells},
                      devices_by_zone={c.cell.zone: devices for c in cells})


NOV = (date(2026, 11, 1), date(2026, 11, 30))
OCT = (date(2026, 10, 1), date(2026, 10, 31))


def test_counts_under_min_count_are_suppressed_with_what_they_describe() -> None:
    cells = [cell_data("2026-11-02", "A", 3, peak=3, batch="b-20261102-3fa2", hour=4),
             cell_data("2026-11-03", "A", 40, peak=12, plan="event", hour=12),
             cell_data("2026-11-03", "B", 4, gateway="gw-b", peak=2)]
    report = build_report(period(cells, *NOV, devices=30), min_count=5)
    rows = {(r.day.isoformat(), r.zone): r.figures for r in report.rows}
    small = rows["2026-11-02", "A"]
    assert small.sessions is None and small.devices is None and small.peak_clients is None
    assert small.avg_length_s is None and small.median_length_s is None
    assert small.bytes_down is None and small.bytes_up is None
    assert rows["2026-11-03", "B"].sessions is None
    big = rows["2026-11-03", "A"]
    assert (big.sessions, big.avg_length_s, big.bytes_down, big.peak_clients) == (
        40, 600, 40_000, 12)
    assert rows["2026-11-04", "A"].sessions is None  # a day without sessions: 0 < 5
    days = {r.day.isoformat(): r.figures for r in report.days}
    assert days["2026-11-03"].sessions == 44 and days["2026-11-03"].peak_clients == 14
    assert report.heatmap[0][4] is None  # Monday 2 Nov, 04 h: 3 sessions
    assert report.heatmap[1][12] == 44
    assert dict(report.plans) == {"residents": 7, "event": 40}
    assert dict(report.code_batches) == {"b-20261102-3fa2": None}
    assert report.totals.sessions_via_code is None and report.totals.sessions == 47
    assert report.totals.peak_day == date(2026, 11, 3)
    everything = build_report(period(cells, *NOV, devices=30), min_count=1)
    assert dict(everything.code_batches) == {"b-20261102-3fa2": 3}


def test_month_over_month_change() -> None:
    november = period([cell_data("2026-11-02", "A", 1234)], *NOV, devices=456)
    october = period([cell_data("2026-10-02", "A", 1102)], *OCT, devices=500)
    report = build_report(november, 5, october)
    assert report.change is not None and report.change.previous_month == "2026-10"
    assert report.change.sessions_pct == pytest.approx((1234 - 1102) * 100 / 1102)
    assert report.change.devices_pct == pytest.approx((456 - 500) * 100 / 500)
    assert format_change(report.change.sessions_pct, "fr") == f"+12{NBSP}%"
    assert format_change(report.change.devices_pct, "en") == "-9%"
    tiny = period([cell_data("2026-10-02", "A", 3)], *OCT, devices=3)
    assert build_report(november, 5, tiny).change.sessions_pct is None  # type: ignore[union-attr]
    part = period(november.cells, date(2026, 11, 1), date(2026, 11, 15))
    assert build_report(part, 5, october).change is None  # not a whole month


def test_summary_in_french_and_english() -> None:
    november = period([cell_data("2026-11-14", "Centre-ville", 1234, peak=87)], *NOV,
                      devices=456)
    october = period([cell_data("2026-10-02", "Centre-ville", 1102)], *OCT, devices=400)
    report = build_report(november, 5, october)
    fr = summary(report, "fr").replace(NBSP, " ")
    assert fr.startswith("En novembre 2026, 1 234 sessions ont été ouvertes sur le Wi-Fi "
                         "public (+12 % par rapport à octobre 2026), par environ 456 appareils")
    assert "87 appareils étaient connectés en même temps (le samedi 14 novembre 2026)" in fr
    assert "Estimation" in fr and "MAC aléatoires" in fr
    en = summary(report, "en")
    assert en.startswith("In November 2026, 1,234 sessions were opened on the public Wi-Fi "
                         "(+12% compared with October 2026), by about 456 different devices")
    assert "randomised MAC" in en
    zone = build_report(period(november.cells, *NOV, zone="Centre-ville", devices=456), 5)
    assert f"dans le secteur «{NBSP}Centre-ville{NBSP}»" in summary(zone, "fr")


def test_summary_of_a_suppressed_or_empty_month() -> None:
    few = build_report(period([cell_data("2026-11-02", "A", 3)], *NOV, devices=3), 5)
    text = summary(few, "fr").replace(NBSP, " ")
    assert text.startswith("En novembre 2026, moins de 5 sessions ont été ouvertes")
    assert "3" not in text.replace("2026", "")
    assert "fewer than 5 sessions" in summary(few, "en").replace(NBSP, " ")
    empty = build_report(period([], *NOV), 5)
    assert summary(empty, "fr") == ("En novembre 2026, aucune session n’a été enregistrée sur "
                                    "le Wi-Fi public.")
    part = build_report(period([], date(2026, 11, 1), date(2026, 11, 15)), 5)
    assert summary(part, "en").startswith("From November 1, 2026 to November 15, 2026, no")


def test_formats() -> None:
    assert format_count(None, "fr", 5) == f"<{NBSP}5"
    assert format_count(1234567, "fr", 5) == f"1{NBSP}234{NBSP}567"
    assert format_count(1234567, "en", 5) == "1,234,567"
    assert format_bytes(123_456_789_000, "fr") == f"123,5{NBSP}Go"
    assert format_bytes(999, "en") == f"999{NBSP}B"


# --- outputs -------------------------------------------------------------------------------


@pytest.fixture
def report() -> Report:
    cells = [cell_data(f"2026-11-{d:02d}", zone, n, gateway=gw, hour=h, peak=n // 3,
                       batch="b-20261114-91c0" if d == 14 else "")
             for d in range(1, 31)
             for zone, gw, n, h in (("Centre-ville", "gw-a", 20 + d, 12 + d % 8),
                                    ("Parc Marie-Victorin", "gw-c", d % 7, 18))]
    return build_report(period(cells, *NOV, devices=321), 5)


def test_csv_has_a_header_and_one_row_per_day_and_zone(report: Report) -> None:
    text = report_csv(report, "fr")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["date", "secteur", "sessions"]
    assert len(rows) == 1 + 30 * 2
    assert all(len(row) == len(rows[0]) for row in rows)
    park = [row for row in rows if row[1] == "Parc Marie-Victorin"]
    assert {row[2] for row in park} <= {"<5", "5", "6"}
    assert all(row[4] == "" for row in park if row[2] == "<5")  # no average of 1 to 4
    # The median is read in the 10-minute bucket's middle (docs/reports.md: to the minute).
    assert rows[1] == ["2026-11-01", "Centre-ville", "21", "21", "10.0", "10.5", "0.0", "0.0",
                       "7", "<5"]
    assert not MAC.search(text) and not IPV4.search(text)


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_svg_charts_are_well_formed_and_accessible(report: Report, lang: str) -> None:
    for make, name in ((sessions_chart, "s"), (data_chart, "d"), (heatmap_chart, "h")):
        svg = make(report, lang, f"c-{name}")
        root = ET.fromstring(svg)
        assert root.tag == f"{SVG}svg" and root.get("role") == "img"
        title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
        assert title is not None and desc is not None and title.text and desc.text
        assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
        assert len(root.findall(f".//{SVG}rect")) > 24
        assert not MAC.search(svg) and not IPV4.search(svg)
    heat = ET.fromstring(heatmap_chart(report, lang))
    tips = [t.text or "" for t in heat.iter(f"{SVG}title")]
    withheld = "masqué" if lang == "fr" else "withheld"
    assert any(withheld in tip for tip in tips)  # Parc's evenings: fewer than 5


def test_html_fragment_is_well_formed_and_escaped(report: Report) -> None:
    html = str(report_html(report, "fr", "rpt"))
    root = ET.fromstring(html)
    assert root.tag == "section" and root.get("lang") == "fr"
    assert len(root.findall(f".//{SVG}svg")) == 3
    for figure in root.iter("figure"):
        assert figure.find(f"{SVG}svg") is not None and figure.find("details/table") is not None
    ids = [e.get("id") for e in root.iter() if e.get("id")]
    assert len(ids) == len(set(ids))
    assert "Parc Marie-Victorin" in html


def test_plain_text_report(report: Report) -> None:
    text = report_text(report, "en")
    assert text.startswith("Public Wi-Fi: report, November 2026\n")
    assert "By area" in text and "Parc Marie-Victorin" in text


def test_days_outside_the_period_are_left_out() -> None:
    cells = [cell_data("2026-11-01", "A", 50), cell_data("2026-11-20", "A", 70)]
    first, last = date(2026, 11, 15), date(2026, 11, 30)
    report = build_report(period(cells, first, last), 5)
    assert report.totals.sessions == 70 and report.month is None
    assert len(report.days) == (last - first + timedelta(days=1)).days
