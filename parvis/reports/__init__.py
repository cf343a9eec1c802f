"""Council reports: roll-up of accounting into aggregates, and the report in every form.

What the administration console calls::

    from parvis import reports
    reports.months(store)                     # ["2026-11", "2026-10", …], newest first
    reports.zones(store, "2026-11")           # zones with figures that month
    report = reports.load_report(store, "2026-11", zone=None,
                                 min_count=config.reports.min_count)
    reports.report_html(report, "fr")         # Markup: the page body (summary, charts, tables)
    reports.report_csv(report, "fr")          # str: serve as text/csv, UTF-8 with BOM
    reports.report_pdf(report, "fr")          # bytes: application/pdf

netctl calls :func:`roll_up` (parvis/reports/rollup.py) on a timer. Nothing
here holds or returns a MAC or IP address (docs/reports.md).
"""

from __future__ import annotations

from datetime import date

from parvis.core.reports import Report, summary
from parvis.reports.charts import data_chart, heatmap_chart, sessions_chart
from parvis.reports.export import report_csv, report_text
from parvis.reports.html import report_html
from parvis.reports.load import load_period, load_report, months, zones
from parvis.reports.rollup import RollupResult, roll_up

__all__ = [
    "Report", "RollupResult", "data_chart", "heatmap_chart", "load_period", "load_report",
    "months", "report_csv", "report_html", "report_pdf", "report_text", "roll_up",
    "sessions_chart", "summary", "zones",
]


def report_pdf(report: Report, lang: str = "fr", produced: date | None = None) -> bytes:
    """The report as an A4 PDF (parvis/reports/pdf.py; fpdf2 is loaded on first use)."""
    from parvis.reports import pdf  # netctl imports this package and never makes a PDF

    return pdf.report_pdf(report, lang, produced)
