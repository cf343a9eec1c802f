"""The roll-up against a real Redis: two months of synthetic accounting, every figure checked.

The module's fixture writes October and November 2026 (some 35,000
sessions on three gateways in two zones, America/Toronto, so 1 November has
25 hours) through Store.append_records in four instalments, as netctl would
over time, and rolls each up: in chunks, twice, with a limit per call, and
once with a second roll-up committing in the middle of the first. The tests
then compare every aggregate with what they compute from the sessions
themselves (not from the records, and not with the roll-up's code).
"""

from __future__ import annotations

import bisect
import math
import shutil
import subprocess
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from parvis.core.accounting import Record
from parvis.core.reports import (
    NBSP,
    Fold,
    device_key_ttl_s,
    device_token,
    fold_records,
    month_days,
)
from parvis.ctl import main as parvisctl
from parvis.reports import load_report, months, report_pdf, roll_up, zones
from parvis.reports.rollup import RollupResult
from parvis.store import Keys, Store, connect
from tests.reports.synthetic import (
    TOWN_TIMEZONE,
    ZONE_OF,
    SyntheticSession,
    gateway_config,
    make_records,
    make_sessions,
)

TZ = zoneinfo.ZoneInfo(TOWN_TIMEZONE)
RETENTION_S = 90 * 86400
PDF_TOOLS = shutil.which("pdftotext") is not None and shutil.which("pdftoppm") is not None


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
       ) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=TZ).timestamp()


# Four instalments, as records reach Redis over time; each is rolled up at its end.
UNTIL = (at(2026, 11, 1, 10), at(2026, 11, 20, 12), at(2026, 11, 25), at(2026, 12, 1, 10))


# --- the test's own computation ------------------------------------------------------------


def local_day(moment: float) -> str:
    return datetime.fromtimestamp(moment, TZ).date().isoformat()


def spec_bucket(seconds: int) -> int:
    """The histogram bucket's lower bound, as docs/reports.md states it."""
    for limit, width in ((7200, 60), (8 * 3600, 300), (7 * 86400, 1800)):
        if seconds < limit:
            return seconds - seconds % width
    return 7 * 86400


@dataclass
class Expected:
    """Every aggregate, computed from the sessions as they happened, up to ``until``."""

    cells: dict[tuple[str, str, str], Counter[str]] = field(default_factory=dict)
    devices: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (day, zone)
    present: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # day, zone, minute
    lengths: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (day, zone)


def expected_figures(sessions: list[SyntheticSession], until: float) -> Expected:
    out = Expected()
    cells: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    devices: dict[tuple[str, str], set[str]] = defaultdict(set)
    lengths: dict[tuple[str, str], list[int]] = defaultdict(list)
    midnights = [at(2026, 9, 30) + 0.0]
    day = date(2026, 9, 30)
    while day < date(2026, 12, 10):
        day += timedelta(days=1)
        midnights.append(at(day.year, day.month, day.day))
    for s in sessions:
        zone = ZONE_OF[s.gateway]
        if s.started_at <= until:
            devices[local_day(s.started_at), zone].add(s.mac)
        if s.ended_at > until:
            continue
        day_name = local_day(s.started_at)
        length = int(s.ended_at - s.started_at)
        counters = cells[day_name, s.gateway, zone]
        counters.update({"sessions": 1, "duration_s": length, "bytes_down": s.bytes_down,
                         "bytes_up": s.bytes_up, f"len:{spec_bucket(length)}": 1,
                         f"hour:{datetime.fromtimestamp(s.started_at, TZ).hour:02d}": 1,
                         f"plan:{s.plan}": 1, f"via:{s.via}": 1})
        if s.code_batch:
            counters[f"batch:{s.code_batch}"] += 1
        lengths[day_name, zone].append(length)
        # Present in every minute the session overlaps (at least the one it started in).
        first = math.floor(s.started_at / 60)
        for minute in range(first, max(first + 1, math.ceil(s.ended_at / 60))):
            index = bisect.bisect_right(midnights, minute * 60) - 1
            minute_of_day = int((minute * 60 - midnights[index]) // 60)
            out.present[local_day(midnights[index] + 3600), zone, minute_of_day] += 1
    out.cells, out.devices, out.lengths = dict(cells), dict(devices), dict(lengths)
    return out


def peaks(expected: Expected, zone: str | None = None) -> dict[str, int]:
    """The most devices present in one minute, per day (one zone, or all zones together)."""
    per_minute: Counter[tuple[str, int]] = Counter()
    for (day, z, minute), count in expected.present.items():
        if zone is None or z == zone:
            per_minute[day, minute] += count
    out: dict[str, int] = {}
    for (day, _minute), count in per_minute.items():
        out[day] = max(out.get(day, 0), count)
    return out


# --- the seeded Redis ----------------------------------------------------------------------


@dataclass
class Seeded:
    url: str
    sessions: list[SyntheticSession]
    records: dict[str, list[Record]]
    results: list[list[RollupResult]]  # per instalment, every roll-up made
    rerun_unchanged: bool
    interfering: RollupResult
    step_after_interference: int
    phase_one_mismatches: list[str]
    live_at_phase_one: int

    def store(self, gateway: str = "gw-a") -> Store:
        return Store(connect(self.url), gateway)


def report_keys(client: Any) -> dict[str, Any]:
    """Every aggregate key and its content (HLLs as raw bytes)."""
    dump: dict[str, Any] = {}
    for key in sorted(client.scan_iter(match="parvis:reports:*", count=1000)):
        kind = client.type(key)
        dump[key] = (client.hgetall(key) if kind == "hash" else
                     sorted(client.smembers(key)) if kind == "set" else client.get(key))
    return dump


def cell_mismatches(store: Store, expected: Expected) -> list[str]:
    problems = []
    actual: dict[tuple[str, str, str], Counter[str]] = {}
    for month in ("2026-10", "2026-11", "2026-12"):
        for data in store.report_cell_data(store.report_cells(month), concurrency=False):
            counters = +Counter(dict(data.stats))
            if counters:
                actual[data.cell.day, data.cell.gateway, data.cell.zone] = counters
    for key in sorted(set(actual) | set(expected.cells)):
        if actual.get(key) != expected.cells.get(key):
            diff = {name: (actual.get(key, Counter())[name], expected.cells.get(key,
                                                                                Counter())[name])
                    for name in set(actual.get(key, {})) | set(expected.cells.get(key, {}))
                    if actual.get(key, Counter())[name] != expected.cells.get(key,
                                                                              Counter())[name]}
            problems.append(f"{key}: (rolled up, expected) {diff}")
    return problems


def interfered_step(store: Store, redis_url: str, now: float) -> tuple[RollupResult, int]:
    """One rollup_step of 1,000 records during whose fold another roll-up commits 2,000.

    Returns the other roll-up's result and the records the step then rolled up
    (its first attempt must fail at EXEC, WATCH having seen the cursor move).
    """
    other = Store(connect(redis_url), store.keys.gateway_id)
    key = store.device_key("2026-11", device_key_ttl_s("2026-11", TZ, now))
    assert key is not None
    done: list[RollupResult] = []

    def fold(batch: list[Record]) -> Fold:
        if not done:
            done.append(roll_up(other, gateway_config(store.keys.gateway_id), now, chunk=2000,
                                max_records=2000))
        return fold_records(batch, "Centre-ville", TZ, lambda _m, mac: device_token(key, mac))

    read = store.rollup_step(1000, fold).read
    return done[0], read


@pytest.fixture(scope="module")
def seeded(redis_url: str) -> Iterator[Seeded]:
    """Module: Oct and Nov 2026 written in four instalments, each rolled up as netctl would."""
    client = connect(redis_url, timeout_s=30)
    client.flushall()
    sessions = (make_sessions(21, date(2026, 10, 1), date(2026, 10, 31), 250, list(ZONE_OF),
                              TZ, [0.45, 0.2, 0.35])
                + make_sessions(22, date(2026, 11, 1), date(2026, 11, 30), 800, list(ZONE_OF),
                                TZ, [0.45, 0.2, 0.35]))
    records = {gw: make_records(sessions, gw, UNTIL[-1], interim_s=1200) for gw in ZONE_OF}
    stores = {gw: Store(client, gw) for gw in ZONE_OF}
    # Fixed device keys (roll_up makes them with SET NX, so it takes these): the
    # HyperLogLog estimates, hence their errors, are the same at every run.
    for month, key in (("2026-10", "0a" * 32), ("2026-11", "0b" * 32)):
        client.set(Keys.report_device_key(month), key, ex=7 * 86400)
    results: list[list[RollupResult]] = []
    done = 0.0
    rerun_unchanged = False
    interfering: RollupResult | None = None
    step_read = 0
    phase_one: list[str] = []
    for phase, until in enumerate(UNTIL):
        for gw, store in stores.items():
            store.append_records([r for r in records[gw] if done < r.at <= until], RETENTION_S,
                                 now=until)
        done = until
        made: list[RollupResult] = []
        if phase == 3:
            # gw-b: while its roll-up folds a chunk, another one commits 2,000 records.
            interfering, step_read = interfered_step(stores["gw-b"], redis_url, until)
            # gw-a: at most 7,000 records per call, as a busy gateway would be paced.
            while True:
                made.append(roll_up(stores["gw-a"], gateway_config("gw-a"), until, chunk=2500,
                                    max_records=7000))
                if made[-1].complete:
                    break
        for gw, store in stores.items():
            made.append(roll_up(store, gateway_config(gw), until, chunk=2500))
        results.append(made)
        if phase == 1:
            phase_one = cell_mismatches(stores["gw-a"], expected_figures(sessions, until))
            before = report_keys(client)
            again = [roll_up(store, gateway_config(gw), until) for gw, store in stores.items()]
            rerun_unchanged = (report_keys(client) == before
                               and all(r.records == 0 for r in again))
    assert interfering is not None
    yield Seeded(url=redis_url, sessions=sessions, records=records, results=results,
                 rerun_unchanged=rerun_unchanged, interfering=interfering,
                 step_after_interference=step_read, phase_one_mismatches=phase_one,
                 live_at_phase_one=sum(1 for s in sessions
                                       if s.started_at <= UNTIL[1] < s.ended_at))
    client.close()


@pytest.fixture(scope="module")
def expected(seeded: Seeded) -> Expected:
    return expected_figures(seeded.sessions, UNTIL[-1])


# --- the tests -----------------------------------------------------------------------------


def test_every_record_is_rolled_up_once(seeded: Seeded) -> None:
    total = sum(len(r) for r in seeded.records.values())
    assert total > 100_000
    read = sum(r.records for made in seeded.results for r in made)
    read += seeded.interfering.records + seeded.step_after_interference
    assert read == total
    assert seeded.results[1][0].chunks > 5  # phase 1, gw-a: many MULTI/EXECs
    assert seeded.rerun_unchanged  # a second run read nothing and changed nothing
    assert seeded.interfering.records == 2000 and seeded.step_after_interference == 1000
    paced = [r for r in seeded.results[3] if r.records and not r.complete]
    assert paced and all(r.records == 7000 for r in paced)
    store = seeded.store()
    for gw, store_records in seeded.records.items():
        assert Store(store.client, gw).report_cursor() == store_records[-1].id
    assert not any(r.malformed or r.records_lost for made in seeded.results for r in made)


def test_every_cell_matches_the_sessions(seeded: Seeded, expected: Expected) -> None:
    assert len(seeded.sessions) > 30_000
    assert cell_mismatches(seeded.store(), expected) == []


def test_sessions_live_at_a_roll_up_count_when_their_stop_arrives(seeded: Seeded) -> None:
    assert seeded.live_at_phase_one > 10
    assert seeded.phase_one_mismatches == []


def test_october_key_destroyed_in_november_and_its_counts_still_readable(
        seeded: Seeded, expected: Expected) -> None:
    destroyed = [m for made in seeded.results for r in made for m in r.keys_destroyed]
    assert destroyed == ["2026-10"]
    store = seeded.store()
    assert store.device_key_months() == ["2026-11"]
    report = load_report(store, "2026-10", min_count=1, today=date(2026, 12, 15))
    truth = len({mac for (day, _z), macs in expected.devices.items() if day[:7] == "2026-10"
                 for mac in macs})
    assert report.totals.devices is not None
    assert abs(report.totals.devices - truth) <= 0.02 * truth


def test_november_report_matches(seeded: Seeded, expected: Expected) -> None:
    report = load_report(seeded.store(), "2026-11", min_count=1, today=date(2026, 12, 15))
    assert report.month == "2026-11" and report.zones == ("Centre-ville", "Parc Marie-Victorin")
    nov = {key: c for key, c in expected.cells.items() if key[0][:7] == "2026-11"}
    total: Counter[str] = sum(nov.values(), Counter())
    t = report.totals
    assert t.sessions == total["sessions"]
    assert t.avg_length_s == pytest.approx(total["duration_s"] / total["sessions"])
    assert (t.bytes_down, t.bytes_up) == (total["bytes_down"], total["bytes_up"])
    assert t.sessions_via_code == total["via:code"]
    every = sorted(n for (day, _z), lengths in expected.lengths.items() if day[:7] == "2026-11"
                   for n in lengths)
    median = every[len(every) // 2]
    assert t.median_length_s is not None and abs(t.median_length_s - median) <= 60
    assert dict(report.plans) == {"residents": total["plan:residents"],
                                  "event": total["plan:event"]}
    assert dict(report.code_batches) == {k[6:]: v for k, v in total.items()
                                         if k.startswith("batch:")}
    heat: Counter[tuple[int, int]] = Counter()
    for (day, _gw, _z), counters in nov.items():
        for name, value in counters.items():
            if name.startswith("hour:"):
                heat[date.fromisoformat(day).weekday(), int(name[5:])] += value
    assert [[v or 0 for v in row] for row in report.heatmap] == [
        [heat[w, h] for h in range(24)] for w in range(7)]
    town_peaks = peaks(expected)
    for row in report.days:
        day = row.day.isoformat()
        sessions = sum(c["sessions"] for k, c in nov.items() if k[0] == day)
        assert row.figures.sessions == sessions, day
        assert row.figures.peak_clients == town_peaks.get(day, 0), day
    zone_peaks = {zone: peaks(expected, zone) for zone in report.zones}
    for row in report.rows:
        assert row.zone is not None
        day = row.day.isoformat()
        assert row.figures.peak_clients == zone_peaks[row.zone].get(day, 0), (day, row.zone)
    best = max(v for d, v in town_peaks.items() if d[:7] == "2026-11")
    assert t.peak_clients == best
    assert t.peak_day is not None and town_peaks[t.peak_day.isoformat()] == best


def test_unique_devices_within_two_percent(seeded: Seeded, expected: Expected) -> None:
    report = load_report(seeded.store(), "2026-11", min_count=1, today=date(2026, 12, 15))
    nov = {key: macs for key, macs in expected.devices.items() if key[0][:7] == "2026-11"}
    truth = len(set().union(*nov.values()))
    assert truth > 10_000
    errors = [abs((report.totals.devices or 0) - truth) / truth]
    for zone, figures in report.zone_totals:
        exact = len(set().union(*(m for (_d, z), m in nov.items() if z == zone)))
        errors.append(abs((figures.devices or 0) - exact) / exact)
    for row in report.rows:
        assert row.zone is not None
        exact = len(nov.get((row.day.isoformat(), row.zone), set()))
        errors.append(abs((row.figures.devices or 0) - exact) / exact)
    for row in report.days:
        day = row.day.isoformat()
        exact = len(set().union(*(m for (d, _z), m in nov.items() if d == day)))
        errors.append(abs((row.figures.devices or 0) - exact) / exact)
    assert max(errors) <= 0.02, sorted(errors)[-5:]


def test_month_over_month_and_one_zone(seeded: Seeded, expected: Expected) -> None:
    store = seeded.store()
    report = load_report(store, "2026-11", min_count=5, today=date(2026, 12, 15))

    def sessions(month: str, zone: str | None = None) -> int:
        return sum(c["sessions"] for (d, _g, z), c in expected.cells.items()
                   if d[:7] == month and zone in (None, z))

    assert report.change is not None and report.change.previous_month == "2026-10"
    assert report.change.sessions_pct == pytest.approx(
        (sessions("2026-11") - sessions("2026-10")) * 100 / sessions("2026-10"))
    park = load_report(store, "2026-11", "Parc Marie-Victorin", 5, today=date(2026, 12, 15))
    assert park.zones == ("Parc Marie-Victorin",)
    assert park.totals.sessions == sessions("2026-11", "Parc Marie-Victorin")
    assert park.change is not None and park.change.sessions_pct == pytest.approx(
        (sessions("2026-11", "Parc Marie-Victorin") - sessions("2026-10", "Parc Marie-Victorin"))
        * 100 / sessions("2026-10", "Parc Marie-Victorin"))
    assert months(store) == ["2026-12", "2026-11", "2026-10"]  # a session ran into December
    assert zones(store, "2026-11") == ["Centre-ville", "Parc Marie-Victorin"]
    running = load_report(store, "2026-11", today=date(2026, 11, 20))
    assert running.last_day == date(2026, 11, 20) and running.change is None
    first, last = month_days("2026-11")
    assert (load_report(store, "2026-11", first_day=first, last_day=last,
                        today=date(2027, 1, 1)).totals == report.totals)


def test_small_figures_are_suppressed_in_the_real_report(seeded: Seeded,
                                                         expected: Expected) -> None:
    # 400: most of Centre-ville's days are above it, most of the park's below.
    report = load_report(seeded.store(), "2026-11", min_count=400, today=date(2026, 12, 15))
    withheld = shown = 0
    for row in report.rows:
        sessions = sum(c["sessions"] for (d, _g, z), c in expected.cells.items()
                       if d == row.day.isoformat() and z == row.zone)
        peak = peaks(expected, row.zone).get(row.day.isoformat(), 0)
        if sessions < 400:
            assert row.figures.sessions is None and row.figures.bytes_down is None
            assert row.figures.avg_length_s is None and row.figures.median_length_s is None
            withheld += 1
        else:
            assert row.figures.sessions == sessions
            shown += 1
        assert row.figures.peak_clients == (peak if peak >= 400 else None)
    assert withheld >= 20 and shown >= 20
    assert all(v is None or v >= 400 for row in report.heatmap for v in row)
    assert any(v is None for row in report.heatmap for v in row)


@pytest.mark.skipif(not PDF_TOOLS, reason="poppler-utils (pdftotext, pdftoppm) not installed")
def test_pdf_renders_the_figures_in_french(seeded: Seeded, expected: Expected,
                                           tmp_path: Path) -> None:
    from PIL import Image

    report = load_report(seeded.store(), "2026-11", min_count=5, today=date(2026, 12, 15))
    pdf = tmp_path / "rapport.pdf"
    pdf.write_bytes(report_pdf(report, "fr", produced=date(2026, 12, 2)))
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout.replace(NBSP, " ")
    flat = " ".join(text.split())
    sessions = sum(c["sessions"] for (d, _g, _z), c in expected.cells.items()
                   if d[:7] == "2026-11")
    assert "rapport de novembre 2026" in flat
    assert f"{sessions:,}".replace(",", " ") in flat
    assert "par rapport à octobre 2026" in flat
    assert "d’appareils" in flat and "« " not in flat  # no zone: the whole town
    assert "Parc Marie-Victorin" in flat and "Sessions par jour" in flat
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(pdf),
                    str(tmp_path / "page")], check=True)
    (page,) = tmp_path.glob("page*.png")
    with Image.open(page) as image:
        grey = image.convert("L")
        assert grey.size == (414, 585)  # A4 at 50 dpi
        ink = sum(count for level, count in enumerate(grey.histogram()) if level < 200)
    assert ink > 0.03 * 414 * 585  # text, table rules and the bars
    # One zone: « » around its name, and the typographic apostrophe, as French wants them.
    park = load_report(seeded.store(), "2026-11", "Parc Marie-Victorin", 5,
                       today=date(2026, 12, 15))
    pdf.write_bytes(report_pdf(park, "fr", produced=date(2026, 12, 2)))
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout.replace(NBSP, " ")
    assert "secteur « Parc Marie-Victorin »" in " ".join(text.split())
    assert "Durée moyenne d’une session" in text and "Produit le 2 décembre 2026" in text


def test_parvisctl_report(seeded: Seeded, config_file: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    # October: a month over whatever the machine's date (November's end is today's).
    args = ["--config", str(config_file), "report", "--month", "2026-10"]
    assert parvisctl(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("Wi-Fi public\u00a0: rapport d’octobre 2026\n")
    assert "Parc Marie-Victorin" in out
    assert parvisctl([*args, "--lang", "en", "--zone", "Centre-ville"]) == 0
    assert "In October 2026" in capsys.readouterr().out
    assert parvisctl([*args, "--zone", "Nowhere"]) == 1
    assert "zones with figures: Centre-ville, Parc Marie-Victorin" in capsys.readouterr().err
    csv_file, pdf_file = tmp_path / "r.csv", tmp_path / "r.pdf"
    assert parvisctl([*args, "--csv", str(csv_file), "--pdf", str(pdf_file)]) == 0
    assert capsys.readouterr().out == ""
    raw = csv_file.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfdate,secteur,sessions")
    assert len(raw.decode("utf-8-sig").splitlines()) == 1 + 31 * 2
    assert pdf_file.read_bytes().startswith(b"%PDF-")
    with pytest.raises(SystemExit):
        parvisctl([*args[:-1], "2026-13"])
