"""Council reports: a month of 100,000 sessions rolled up, the report page, the PDF; with baselines.

Measures, each beside a baseline taken in the same run on the same Redis:

* rolling up a month of N sessions (start, interim every ``--interim-s``,
  stop; three gateways, two zones; tests/reports/synthetic.py): time, records
  per second, and Python's peak memory (tracemalloc, in a second run over the
  same records); against merely reading the same records with XRANGE (redis-py,
  same chunks, nothing parsed);
* one roll-up pass of a busy gateway, as netctl would run it every
  ``[reports] rollup_interval_s`` (300 s): 5 minutes of a gateway with 10,000
  clients (interim records every 60 s, 2,500 starts and stops); against XRANGE;
* the Redis memory the month's aggregates take (MEMORY USAGE of every
  ``parvis:reports:*`` key), against the raw records they replace;
* the console's report page: loading the month (all zones) from Redis, and
  rendering its HTML with the three SVG charts; against rendering the same
  day rows as a plain HTML table;
* the monthly PDF (French, charts included); against a one-page PDF with one
  line of text (fpdf2's own fixed cost).

Needs ``redis-server`` (started here on a private Unix socket), no root.
``.venv/bin/python -m bench reports [--sessions 100000] [--interim-s 900]``;
figures go to ``artifacts/bench-reports.json``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF
from markupsafe import escape

from bench.figures import table, write
from parvis.core.accounting import Record, RecordIds, RecordType
from parvis.core.reports import format_count
from parvis.reports import load_report, report_html, report_pdf, roll_up
from parvis.store import Store, connect
from tests.reports.synthetic import (
    TOWN_TIMEZONE,
    ZONE_OF,
    SyntheticSession,
    gateway_config,
    make_records,
    make_sessions,
)

TZ = zoneinfo.ZoneInfo(TOWN_TIMEZONE)
MONTH = "2026-11"
RETENTION_S = 400 * 86400
READ_CHUNK = 5000


@contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server of our own on a Unix socket, stopped at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench reports: redis-server is not installed")
    directory = Path(tempfile.mkdtemp(prefix="parvis-bench-redis-"))
    sock = directory / "redis.sock"
    process = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"unix://{sock}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if sock.exists() and connect(url, 0.5).ping():
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit("bench reports: redis-server did not start")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def at(year: int, month: int, day: int, hour: int = 0) -> float:
    return datetime(year, month, day, hour, tzinfo=TZ).timestamp()


def seed_month(client: Any, count: int, interim_s: float) -> tuple[int, list[SyntheticSession]]:
    """About ``count`` sessions in November 2026, written gateway by gateway; records written."""
    days = 30
    per_day = max(1, round(count / (days * (5 + 2 * 1.3) / 7)))
    sessions = make_sessions(2026, date(2026, 11, 1), date(2026, 11, 30), per_day,
                             list(ZONE_OF), TZ, [0.45, 0.2, 0.35])
    until = at(2026, 12, 1, 10)
    written = 0
    for gateway in ZONE_OF:
        records = make_records(sessions, gateway, until, interim_s=interim_s)
        written += Store(client, gateway).append_records(records, RETENTION_S, now=until).written
        del records
    return written, sessions


def xrange_all(client: Any, key: str) -> int:
    """Read a whole stream in READ_CHUNK entries, as the roll-up does, parsing nothing."""
    read, cursor = 0, "0-0"
    while True:
        entries = client.xrange(key, f"({cursor}", "+", count=READ_CHUNK)
        if not entries:
            return read
        read += len(entries)
        cursor = entries[-1][0]


def reset_rollup(client: Any) -> None:
    """Forget every aggregate and cursor (the records stay), to roll up again."""
    keys = list(client.scan_iter(match="parvis:reports:*", count=1000))
    for first in range(0, len(keys), 1000):
        client.delete(*keys[first:first + 1000])


def roll_up_all(client: Any, now: float) -> int:
    return sum(roll_up(Store(client, gw), gateway_config(gw), now).records for gw in ZONE_OF)


def busy_pass(client: Any, clients: int = 10_000) -> tuple[float, float, int, float]:
    """A 5-minute pass of a gateway with ``clients`` devices: roll-up and XRANGE, seconds."""
    gateway = "gw-busy"
    store = Store(client, gateway)
    start = at(2026, 11, 14, 18)
    ids = RecordIds()
    records = []
    for second in range(300):
        now = start + second
        for n in range(second % 60, clients, 60):  # each client's interim once a minute
            kind = RecordType.INTERIM
            if n % 20 == 0:  # one in twenty: 2,500 sessions start or stop in the 5 minutes
                kind = RecordType.STOP if n % 40 == 0 else RecordType.START
            records.append(Record(
                id=ids.next_id(now), type=kind, session_id=f"busy{n}", gateway=gateway,
                mac=f"02:bb:00:00:{n >> 8 & 255:02x}:{n & 255:02x}", ip=f"10.77.{n >> 8}.{n & 255}",
                ipv6=(), plan="residents", via="accept", code_batch="", terms_version="1",
                started_at=now if kind is RecordType.START else now - 1200, at=now,
                duration_s=0 if kind is RecordType.START else 1200, bytes_up=10**6,
                bytes_down=10**7, packets_up=1000, packets_down=8000,
                cause="User-Request" if kind is RecordType.STOP else ""))
    store.append_records(records, RETENTION_S, now=start + 300)
    started = time.perf_counter()
    xrange_all(client, store.keys.accounting)
    read_s = time.perf_counter() - started
    config = gateway_config("gw-a")
    client.config_resetstat()
    started = time.perf_counter()
    result = roll_up(store, config, start + 300)
    roll_s = time.perf_counter() - started
    # Redis runs the read script alone: how long it holds the server per chunk.
    script_ms = float(client.info("commandstats")["cmdstat_eval"]["usec_per_call"]) / 1000
    return roll_s, read_s, result.records, script_ms


def median_time(action: Callable[[], object], rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def plain_table(report: Any) -> str:
    rows = "".join(f"<tr><td>{escape(row.day.isoformat())}</td><td>{escape(row.zone)}</td>"
                   f"<td>{escape(format_count(row.figures.sessions, 'fr', 5))}</td></tr>"
                   for row in report.rows)
    return f"<table>{rows}</table>"


def trivial_pdf() -> bytes:
    pdf = FPDF(format="A4")
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, "Wi-Fi public")
    return bytes(pdf.output())


def aggregates_bytes(client: Any) -> int:
    total = 0
    for key in client.scan_iter(match="parvis:reports:*", count=1000):
        total += int(client.memory_usage(key, samples=0) or 0)
    return total


def run(count: int, interim_s: float) -> dict[str, Any]:
    figures: dict[str, Any] = {"sessions_asked": count, "interim_s": interim_s}
    with redis_server() as url:
        client = connect(url, timeout_s=60)
        print(f"writing a month of about {count} sessions…", file=sys.stderr)
        started = time.perf_counter()
        written, sessions = seed_month(client, count, interim_s)
        figures["seed_s"] = time.perf_counter() - started
        figures["sessions"] = len(sessions)
        figures["records"] = written
        del sessions
        raw = sum(int(client.memory_usage(Store(client, gw).keys.accounting, samples=0) or 0)
                  for gw in ZONE_OF)
        figures["raw_records_bytes"] = raw
        now = at(2026, 12, 1, 10)
        print("reading them with XRANGE (baseline)…", file=sys.stderr)
        started = time.perf_counter()
        read = sum(xrange_all(client, Store(client, gw).keys.accounting) for gw in ZONE_OF)
        figures["xrange_s"] = time.perf_counter() - started
        assert read == written
        print("rolling them up…", file=sys.stderr)
        started = time.perf_counter()
        assert roll_up_all(client, now) == written
        figures["rollup_s"] = time.perf_counter() - started
        figures["rollup_records_per_s"] = written / figures["rollup_s"]
        figures["aggregates_bytes"] = aggregates_bytes(client)
        print("again under tracemalloc (peak memory)…", file=sys.stderr)
        reset_rollup(client)
        tracemalloc.start()
        started = time.perf_counter()
        assert roll_up_all(client, now) == written
        figures["rollup_traced_s"] = time.perf_counter() - started
        figures["rollup_peak_python_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        figures["ru_maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print("one busy pass (10,000 clients, 5 minutes)…", file=sys.stderr)
        roll_s, read_s, records, script_ms = busy_pass(client)
        figures.update(busy_pass_s=roll_s, busy_xrange_s=read_s, busy_records=records,
                       busy_script_ms_per_chunk=script_ms)
        store = Store(client, "gw-a")
        today = date(2026, 12, 15)
        report = load_report(store, MONTH, min_count=5, today=today)
        figures["load_report_s"] = median_time(
            lambda: load_report(store, MONTH, min_count=5, today=today))
        figures["report_html_s"] = median_time(lambda: report_html(report, "fr"))
        figures["report_html_bytes"] = len(str(report_html(report, "fr")).encode())
        figures["plain_table_s"] = median_time(lambda: plain_table(report))
        figures["report_pdf_s"] = median_time(lambda: report_pdf(report, "fr"), 3)
        figures["report_pdf_bytes"] = len(report_pdf(report, "fr"))
        figures["trivial_pdf_s"] = median_time(trivial_pdf)
        client.close()
    return figures


def report_table(f: dict[str, Any]) -> str:
    mib = 2**20
    rows = [
        (f"roll up {f['sessions']:,} sessions ({f['records']:,} records)",
         f"{f['rollup_s']:.1f} s ({f['rollup_records_per_s']:,.0f} records/s)",
         f"XRANGE of the same records: {f['xrange_s']:.1f} s"),
        ("  Python peak memory during it (tracemalloc)",
         f"{f['rollup_peak_python_bytes'] / mib:.1f} MiB",
         f"(the traced run took {f['rollup_traced_s']:.1f} s)"),
        ("one pass at 10,000 clients (5 min of records)",
         f"{f['busy_pass_s'] * 1000:.0f} ms ({f['busy_records']:,} records)",
         f"XRANGE of the same: {f['busy_xrange_s'] * 1000:.0f} ms"),
        ("  Redis busy per chunk of 2,000 (read script)",
         f"{f['busy_script_ms_per_chunk']:.1f} ms", ""),
        ("the month's aggregates in Redis", f"{f['aggregates_bytes'] / mib:.1f} MiB",
         f"the raw records: {f['raw_records_bytes'] / mib:.0f} MiB"),
        ("load the month's report (all zones)", f"{f['load_report_s'] * 1000:.0f} ms", ""),
        ("render the report page (HTML + 3 SVG)",
         f"{f['report_html_s'] * 1000:.1f} ms ({f['report_html_bytes'] / 1024:.0f} KiB)",
         f"plain table of the same rows: {f['plain_table_s'] * 1000:.2f} ms"),
        ("monthly PDF (French, charts)",
         f"{f['report_pdf_s'] * 1000:.0f} ms ({f['report_pdf_bytes'] / 1024:.0f} KiB)",
         f"one-line one-page PDF: {f['trivial_pdf_s'] * 1000:.1f} ms"),
    ]
    return table(("measure", "reports", "baseline (same run)"), rows)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="bench.reports", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--interim-s", type=float, default=900.0, dest="interim_s",
                        help="interim record interval of the synthetic month (default 900; "
                             "netctl's default is 60, which makes ~15x the records)")
    args = parser.parse_args(argv)
    figures = run(args.sessions, args.interim_s)
    print(report_table(figures))
    write("bench-reports", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
