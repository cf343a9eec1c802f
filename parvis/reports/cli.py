"""``parvisctl report``: a month's council report as text, CSV or PDF."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from parvis.core.config import Config
from parvis.core.reports import LANGUAGES, month_days
from parvis.reports.export import report_csv, report_text
from parvis.reports.load import load_report, zones
from parvis.store import Store


def _month(text: str) -> str:
    try:
        month_days(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def add_parser(sub: Any) -> None:
    """Add ``report`` to parvisctl's sub-commands."""
    report = sub.add_parser(
        "report", help="the council report of a month: a text summary, or CSV and PDF files")
    report.add_argument("--month", required=True, type=_month, metavar="YYYY-MM",
                        help="the month, e.g. 2026-11")
    report.add_argument("--zone", help="one zone only (default: every zone of the town)")
    report.add_argument("--lang", choices=LANGUAGES, default="fr",
                        help="language of the report (default fr)")
    report.add_argument("--pdf", metavar="FILE", help="write the PDF report (A4) to FILE")
    report.add_argument("--csv", metavar="FILE",
                        help="write one row per day and zone to FILE (UTF-8 CSV)")


def run(store: Store, args: argparse.Namespace, config: Config) -> int:
    """Print or write the report; 0 done, 1 when the zone has no figures that month."""
    if args.zone is not None:
        known = zones(store, args.month)
        if args.zone not in known:
            print(f"parvisctl: no figures for zone {args.zone!r} in {args.month} (zones with "
                  f"figures: {', '.join(known) or 'none'})", file=sys.stderr)
            return 1
    report = load_report(store, args.month, args.zone, config.reports.min_count)
    if args.csv:
        # With a byte order mark: spreadsheets then read the accents as UTF-8.
        with open(args.csv, "w", encoding="utf-8-sig", newline="") as handle:
            handle.write(report_csv(report, args.lang))
        print(f"CSV written to {args.csv}", file=sys.stderr)
    if args.pdf:
        from parvis.reports import report_pdf

        with open(args.pdf, "wb") as handle:
            handle.write(report_pdf(report, args.lang))
        print(f"PDF written to {args.pdf}", file=sys.stderr)
    if not args.csv and not args.pdf:
        print(report_text(report, args.lang), end="")
    if not report.has_data:
        print(f"parvisctl: no figures for {args.month} (is netctl rolling up? see "
              f"docs/reports.md)", file=sys.stderr)
    return 0
