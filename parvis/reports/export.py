"""Report exports without charts: CSV (one row per day and zone) and plain text (parvisctl)."""

from __future__ import annotations

import csv
import io

from parvis.core.reports import (
    Figures,
    Report,
    format_bytes,
    format_change,
    format_count,
    format_duration,
    month_name,
    period_name,
    summary,
    zone_name,
)
from parvis.reports.words import word

CSV_COLUMNS = {
    "fr": ("date", "secteur", "sessions", "appareils_estimation", "duree_moyenne_min",
           "duree_mediane_min", "donnees_recues_mo", "donnees_envoyees_mo",
           "pic_appareils_simultanes", "sessions_avec_code"),
    "en": ("date", "zone", "sessions", "devices_estimate", "avg_length_min",
           "median_length_min", "data_received_mb", "data_sent_mb",
           "peak_concurrent_devices", "sessions_with_code"),
}


def _csv_count(value: int | None, min_count: int) -> str:
    return f"<{min_count}" if value is None else str(value)


def _csv_number(value: float | None, divisor: float) -> str:
    # Withheld derived figures (an average of fewer than min_count sessions) stay empty.
    return "" if value is None else f"{value / divisor:.1f}"


def report_csv(report: Report, lang: str = "fr") -> str:
    """The report as CSV text: a header, then one row per day and zone.

    Counts under the threshold read ``<5``; figures drawn from them (length,
    data) are left empty. Numbers use a decimal point and no thousands
    separator; data in megabytes (10⁶ bytes). Write it as UTF-8 with a byte
    order mark (``encoding="utf-8-sig"``) so spreadsheets read the accents.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS[lang])
    for row in report.rows:
        f = row.figures
        writer.writerow([
            row.day.isoformat(), row.zone or "",
            _csv_count(f.sessions, report.min_count), _csv_count(f.devices, report.min_count),
            _csv_number(f.avg_length_s, 60), _csv_number(f.median_length_s, 60),
            _csv_number(f.bytes_down, 1e6), _csv_number(f.bytes_up, 1e6),
            _csv_count(f.peak_clients, report.min_count),
            _csv_count(f.sessions_via_code, report.min_count)])
    return out.getvalue()


def figure_lines(figures: Figures, report: Report, lang: str) -> list[tuple[str, str]]:
    """(label, value) of the key figures, as every output shows them."""
    n = report.min_count
    lines = [
        (word(lang, "sessions"), format_count(figures.sessions, lang, n)),
        (word(lang, "devices"), format_count(figures.devices, lang, n)),
        (word(lang, "avg_length"), format_duration(figures.avg_length_s, lang)),
        (word(lang, "median_length"), format_duration(figures.median_length_s, lang)),
        (word(lang, "data_down"), format_bytes(figures.bytes_down, lang)),
        (word(lang, "data_up"), format_bytes(figures.bytes_up, lang)),
        (word(lang, "peak"), format_count(figures.peak_clients, lang, n)),
        (word(lang, "via_code"), format_count(figures.sessions_via_code, lang, n)),
    ]
    return lines


def change_lines(report: Report, lang: str) -> list[tuple[str, str]]:
    """(label, value) of the month-over-month changes, if the report has them."""
    change = report.change
    if change is None:
        return []
    month = month_name(change.previous_month, lang)
    return [(word(lang, "change", month=month), format_change(change.sessions_pct, lang)),
            (word(lang, "change_devices", month=month),
             format_change(change.devices_pct, lang))]


def report_title(report: Report, lang: str) -> str:
    """``Wi-Fi public : rapport de novembre 2026`` (and the zone, if one)."""
    period = period_name(report, lang)
    if lang == "fr" and report.month is None:
        joined = f"{word(lang, 'title')} {period}"
    elif lang == "fr":
        joined = f"{word(lang, 'title')} {'d’' if period[0] in 'aeiou' else 'de '}{period}"
    else:
        joined = f"{word(lang, 'title')}, {period}"
    if report.zone is not None:
        joined += f" — {word(lang, 'zone').lower()} {zone_name(report.zone, lang)}"
    return joined


def report_text(report: Report, lang: str = "fr") -> str:
    """The report as plain text: title, summary, key figures, zones (``parvisctl report``)."""
    lines = [report_title(report, lang), "", summary(report, lang), ""]
    figures = figure_lines(report.totals, report, lang) + change_lines(report, lang)
    width = max(len(label) for label, _ in figures)
    lines += [f"{label:<{width}}  {value}" for label, value in figures]
    if report.zone is None and len(report.zones) > 1:
        lines += ["", word(lang, "by_zone")]
        for zone, of_zone in report.zone_totals:
            sessions = format_count(of_zone.sessions, lang, report.min_count)
            devices = format_count(of_zone.devices, lang, report.min_count)
            lines.append(f"  {zone}: {sessions} {word(lang, 'sessions').lower()}, {devices} "
                         f"{'appareils' if lang == 'fr' else 'devices'}")
    return "\n".join(lines) + "\n"
