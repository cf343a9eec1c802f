"""The report as an HTML fragment for the administration console: summary, figures, charts.

:func:`report_html` returns a ``<section>`` (headings from ``<h2>``) that a
console template embeds as is (it is :class:`markupsafe.Markup`, every text
in it escaped). Charts are inline SVG with a title and a description, each
followed by its figures as a table in a ``<details>``: the text alternative.
Style hooks: classes ``parvis-report*``; the SVGs scale to their container
with ``.parvis-report svg { max-width: 100%; height: auto; }``.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

from parvis.core.reports import (
    WEEKDAYS,
    Report,
    estimate_note,
    format_bytes,
    format_count,
    format_day,
    summary,
)
from parvis.reports.charts import data_chart, heatmap_chart, sessions_chart
from parvis.reports.export import change_lines, figure_lines, report_title
from parvis.reports.words import word

_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,20}$")


def _table(caption: str, header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + f'<th scope="row">{escape(row[0])}</th>'
        + "".join(f"<td>{escape(cell)}</td>" for cell in row[1:]) + "</tr>" for row in rows)
    return (f'<table class="parvis-report-table"><caption>{escape(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _figure(svg: str, caption: str, table: str, lang: str) -> str:
    return (f'<figure class="parvis-report-chart">{svg}'
            f"<figcaption>{escape(caption)}</figcaption>"
            f"<details><summary>{escape(word(lang, 'chart_data_table'))}</summary>{table}"
            f"</details></figure>")


def report_html(report: Report, lang: str = "fr", id_prefix: str = "report") -> Markup:
    """The report's body for a console page, in ``lang`` (``fr`` or ``en``).

    ``id_prefix`` keeps element ids unique when a page shows several reports.
    """
    if not _PREFIX.match(id_prefix):
        raise ValueError(f"id_prefix {id_prefix!r}: expected a letter then letters, digits, -_")
    n = report.min_count
    parts = [f'<section class="parvis-report" lang="{lang}" '
             f'aria-labelledby="{id_prefix}-heading">',
             f'<h2 id="{id_prefix}-heading">{escape(report_title(report, lang))}</h2>',
             f'<p class="parvis-report-summary">{escape(summary(report, lang))}</p>',
             f"<h3>{escape(word(lang, 'key_figures'))}</h3>",
             '<dl class="parvis-report-figures">']
    for label, value in figure_lines(report.totals, report, lang) + change_lines(report, lang):
        parts.append(f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>")
    parts.append("</dl>")
    day_rows = [[format_day(row.day, lang, weekday=True),
                 format_count(row.figures.sessions, lang, n),
                 format_bytes(row.figures.bytes_down, lang),
                 format_bytes(row.figures.bytes_up, lang)] for row in report.days]
    header = [word(lang, "day"), word(lang, "sessions"), word(lang, "data_down"),
              word(lang, "data_up")]
    parts.append(_figure(
        sessions_chart(report, lang, f"{id_prefix}-sessions"), word(lang, "chart_sessions"),
        _table(word(lang, "chart_sessions"), header[:2], [r[:2] for r in day_rows]), lang))
    parts.append(_figure(
        data_chart(report, lang, f"{id_prefix}-data"), word(lang, "chart_data"),
        _table(word(lang, "chart_data"), [header[0], *header[2:]],
               [[r[0], *r[2:]] for r in day_rows]), lang))
    hours = [f"{h}" for h in range(24)]
    heat_rows = [[WEEKDAYS[lang][w], *[format_count(v, lang, n) for v in row]]
                 for w, row in enumerate(report.heatmap)]
    parts.append(_figure(
        heatmap_chart(report, lang, f"{id_prefix}-heatmap"), word(lang, "chart_heatmap"),
        _table(word(lang, "chart_heatmap"), [word(lang, "weekday"), *hours], heat_rows), lang))
    if report.zone is None and report.zones:
        parts.append(f"<h3>{escape(word(lang, 'by_zone'))}</h3>")
        parts.append(_table(word(lang, "by_zone"),
                            [word(lang, "zone"), word(lang, "sessions"), word(lang, "devices"),
                             word(lang, "peak")],
                            [[zone, format_count(f.sessions, lang, n),
                              format_count(f.devices, lang, n),
                              format_count(f.peak_clients, lang, n)]
                             for zone, f in report.zone_totals]))
    parts.append(f"<h3>{escape(word(lang, 'plans'))}</h3>")
    parts.append(_table(word(lang, "plans"), [word(lang, "plan"), word(lang, "sessions")],
                        [[name, format_count(v, lang, n)] for name, v in report.plans]
                        or [[word(lang, "none"), ""]]))
    parts.append(f"<h3>{escape(word(lang, 'codes'))}</h3>")
    parts.append(_table(word(lang, "codes"), [word(lang, "batch"), word(lang, "sessions")],
                        [[name, format_count(v, lang, n)] for name, v in report.code_batches]
                        or [[word(lang, "none"), ""]]))
    parts.append(f'<p class="parvis-report-note">* {escape(estimate_note(lang))}</p>')
    parts.append(f"<h3>{escape(word(lang, 'method'))}</h3>")
    parts.append(f'<p class="parvis-report-note">{escape(word(lang, "method_text", min=n))}</p>')
    parts.append("</section>")
    return Markup("".join(parts))
