"""The report's charts as SVG, drawn by our own code: sessions per day, data per day, heat map.

One SVG serves the console's HTML pages (inline) and the PDF (fpdf2 draws
it as vectors). Each is accessible: ``role="img"``, a ``<title>`` and a
``<desc>`` that says what the chart shows in words, and a ``<title>`` per
bar or cell (a tooltip in browsers). The HTML page adds the figures as a
table beside each chart. Suppressed figures are drawn in grey, never as
their value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from parvis.core.reports import (
    NBSP,
    WEEKDAYS,
    Report,
    format_bytes,
    format_count,
    format_day,
    format_number,
    period_name,
)
from parvis.reports.words import word

WIDTH = 720
HEIGHT = 260
FONT = "Helvetica, Arial, sans-serif"
INK = "#1f2933"  # text and axes: 14:1 on white
GRID = "#d5dbe1"
BAR = "#1f5fa8"  # 6.5:1 on white
BAR_LIGHT = "#7fb0e0"
SUPPRESSED = "#c8ccd0"
# The heat map's scale, light to dark (a single hue: readable in grey print too).
SCALE = ("#eef4fb", "#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c", "#08306b")
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,40}$")
_HOUR = {"fr": f"{NBSP}h", "en": ":00"}


def _attr(value: object) -> str:
    return quoteattr(str(value))


def _svg(chart_id: str, title: str, desc: str, body: list[str],
         width: int = WIDTH, height: int = HEIGHT) -> str:
    if not _ID.match(chart_id):
        raise ValueError(f"chart id {chart_id!r}: expected a letter then letters, digits, - _")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" font-family={_attr(FONT)} '
        f'font-size="11" fill="{INK}">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>'
        + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 11,
          weight: str = "normal") -> str:
    bold = ' font-weight="bold"' if weight == "bold" else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}"'
            f'{bold}>{escape(text)}</text>')


def _rect(x: float, y: float, w: float, h: float, fill: str, tip: str | None = None) -> str:
    inner = f"<title>{escape(tip)}</title>" if tip else ""
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
            f'fill="{fill}">{inner}</rect>')


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round axis values from 0 up to at least ``top`` (steps of 1, 2 or 5 × 10ⁿ)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(math.ceil(top / step - 1e-9) + 1)]


def _short_day(report: Report, index: int, lang: str) -> str:
    day = report.days[index].day
    return str(day.day) if report.month else f"{day.day}/{day.month}"


def _bars(chart_id: str, report: Report, lang: str, title: str, desc: str,
          series: Sequence[tuple[str, str, Sequence[float | None]]],
          label: Sequence[str], unit_text: str) -> str:
    """Stacked bars, one per day; a day with a suppressed value gets a grey stub."""
    left, right, top, bottom = 56, 12, 36, 34
    plot_w, plot_h = WIDTH - left - right, HEIGHT - top - bottom
    totals = [sum(v for _, _, values in series if (v := values[i]) is not None)
              for i in range(len(label))]
    ticks = nice_ticks(max([*totals, report.min_count if unit_text == "" else 0, 1]))
    scale = plot_h / ticks[-1]
    body = []
    for tick in ticks:
        y = top + plot_h - tick * scale
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - right}" y2="{y:.1f}" '
                    f'stroke="{GRID}" stroke-width="1"/>')
        body.append(_text(left - 6, y + 4, format_number(tick, lang, 0 if tick >= 1 or
                                                          tick == 0 else 1), "end", 10))
    if unit_text:
        body.append(_text(left - 6, top - 12, unit_text, "end", 10))
    slot = plot_w / max(1, len(label))
    bar_w = max(2.0, slot * 0.72)
    for i, name in enumerate(label):
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h
        for color, series_name, values in series:
            value = values[i]
            if value is None:
                stub = report.min_count * scale if unit_text == "" else 4.0
                body.append(_rect(x, y - stub, bar_w, stub, SUPPRESSED,
                                  f"{name}: {series_name} {word(lang, 'withheld')}"))
                y -= stub
                continue
            height = value * scale
            shown = format_number(value, lang, 1 if unit_text else 0)
            body.append(_rect(x, y - height, bar_w, height, color,
                              f"{name}: {series_name} {shown}{NBSP if unit_text else ''}"
                              f"{unit_text}"))
            y -= height
        if len(label) <= 16 or i % 2 == 0 or i == len(label) - 1:
            body.append(_text(x + bar_w / 2, top + plot_h + 14, _short_day(report, i, lang),
                              "middle", 9))
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{WIDTH - right}" '
                f'y2="{top + plot_h}" stroke="{INK}" stroke-width="1"/>')
    body.append(_text(left, 16, title, "start", 13, "bold"))
    legend_x = WIDTH - right
    legend = [(SUPPRESSED, word(lang, "legend_suppressed", min=report.min_count))]
    if len(series) > 1:
        legend = [(c, n) for c, n, _ in series] + legend
    for color, text in reversed(legend):
        width = 7 * len(text) + 18
        legend_x -= width
        body.append(_rect(legend_x, 8, 10, 10, color))
        body.append(_text(legend_x + 14, 17, text, "start", 10))
    month = period_name(report, lang)
    body.append(_text(left + plot_w / 2, HEIGHT - 4, month, "middle", 10))
    return _svg(chart_id, f"{title}, {month}", desc, body)


def sessions_chart(report: Report, lang: str = "fr", chart_id: str = "sessions-chart") -> str:
    """Bars: sessions per day of the period (grey: fewer than min_count)."""
    values = [row.figures.sessions for row in report.days]
    labels = [format_day(row.day, lang) for row in report.days]
    title = word(lang, "chart_sessions")
    return _bars(chart_id, report, lang, title, _describe_days(report, values, lang,
                                                               "sessions"),
                 [(BAR, word(lang, "sessions").lower(), values)], labels, "")


def data_chart(report: Report, lang: str = "fr", chart_id: str = "data-chart") -> str:
    """Stacked bars: data received and sent by devices per day, in Go/GB (or Mo/MB)."""
    down = [row.figures.bytes_down for row in report.days]
    up = [row.figures.bytes_up for row in report.days]
    biggest = max([(d or 0) + (u or 0) for d, u in zip(down, up, strict=True)] + [0])
    divisor, unit = ((1e9, "Go" if lang == "fr" else "GB") if biggest >= 1e9
                     else (1e6, "Mo" if lang == "fr" else "MB"))

    def scaled(values: list[int | None]) -> list[float | None]:
        return [None if v is None else v / divisor for v in values]

    labels = [format_day(row.day, lang) for row in report.days]
    title = word(lang, "chart_data")
    shown = [(d or 0) + (u or 0) if d is not None else None for d, u in zip(down, up,
                                                                          strict=True)]
    desc = _describe_days(report, shown, lang, "data")
    return _bars(chart_id, report, lang, title, desc,
                 [(BAR, word(lang, "legend_down"), scaled(down)),
                  (BAR_LIGHT, word(lang, "legend_up"), scaled(up))], labels, unit)


def _describe_days(report: Report, values: Sequence[float | int | None], lang: str,
                   kind: str) -> str:
    """A sentence on the highest and lowest days, and how many are withheld."""
    shown = [(v, row.day) for v, row in zip(values, report.days, strict=True) if v is not None]
    withheld = len(values) - len(shown)
    fr = lang == "fr"
    period = period_name(report, lang)

    def amount(value: float) -> str:
        if kind == "data":
            return format_bytes(int(value), lang)
        return f"{format_number(value, lang)} sessions"

    if not shown:
        text = (f"{period}{NBSP if fr else ''}: aucun jour à {report.min_count} sessions "
                f"ou plus." if fr else
                f"{period}: no day with {report.min_count} sessions or more.")
        return text
    high = max(shown, key=lambda item: (item[0], -item[1].toordinal()))
    low = min(shown, key=lambda item: (item[0], item[1].toordinal()))
    if fr:
        text = (f"{'Sessions' if kind == 'sessions' else 'Données'} par jour, {period}\u00a0: "
                f"de {amount(low[0])} (le {format_day(low[1], lang)}) à {amount(high[0])} "
                f"(le {format_day(high[1], lang)}).")
        if withheld:
            text += (f" {withheld} jour(s) à moins de {report.min_count} sessions, "
                     f"en gris, sans chiffre.")
    else:
        text = (f"{'Sessions' if kind == 'sessions' else 'Data'} per day, {period}: from "
                f"{amount(low[0])} ({format_day(low[1], lang)}) to {amount(high[0])} "
                f"({format_day(high[1], lang)}).")
        if withheld:
            text += (f" {withheld} day(s) with fewer than {report.min_count} sessions, "
                     f"in grey, without a figure.")
    return text


def heatmap_chart(report: Report, lang: str = "fr", chart_id: str = "heatmap-chart") -> str:
    """A grid of sessions started by weekday (rows) and local hour (columns), darker = more."""
    left, top, cell_w, cell_h = 84, 52, 26, 24
    height = top + 7 * cell_h + 44
    values = [v for row in report.heatmap for v in row if v is not None]
    top_value = max(values, default=0)
    body = [_text(8, 16, word(lang, "chart_heatmap"), "start", 13, "bold")]
    for hour in range(0, 24, 3):
        body.append(_text(left + hour * cell_w + cell_w / 2, top - 6,
                          f"{hour}{_HOUR[lang]}", "middle", 10))
    for weekday, row in enumerate(report.heatmap):
        y = top + weekday * cell_h
        body.append(_text(left - 8, y + cell_h / 2 + 4, WEEKDAYS[lang][weekday], "end", 11))
        for hour, value in enumerate(row):
            name = f"{WEEKDAYS[lang][weekday]} {hour}{_HOUR[lang]}"
            if value is None:
                body.append(_rect(left + hour * cell_w + 1, y + 1, cell_w - 2, cell_h - 2,
                                  SUPPRESSED, f"{name}: {word(lang, 'withheld')}"))
                continue
            shade = SCALE[min(len(SCALE) - 1, int(len(SCALE) * value / (top_value + 1)))]
            body.append(_rect(left + hour * cell_w + 1, y + 1, cell_w - 2, cell_h - 2, shade,
                              f"{name}: {format_number(value, lang)} sessions"))
    legend_y = top + 7 * cell_h + 14
    x = float(left)
    body.append(_text(x, legend_y + 10, word(lang, "legend_fewer"), "start", 10))
    x += 42
    for color in SCALE:
        body.append(_rect(x, legend_y, 20, 12, color))
        x += 20
    body.append(_text(x + 6, legend_y + 10, word(lang, "legend_more"), "start", 10))
    x += 60
    body.append(_rect(x, legend_y, 20, 12, SUPPRESSED))
    body.append(_text(x + 26, legend_y + 10,
                      word(lang, "legend_suppressed", min=report.min_count), "start", 10))
    period = period_name(report, lang)
    if values:
        best = max(((v, w, h) for w, row in enumerate(report.heatmap)
                    for h, v in enumerate(row) if v is not None))
        busiest = f"{WEEKDAYS[lang][best[1]]} {best[2]}{_HOUR[lang]}"
        desc = (f"Sessions commencées par jour de la semaine et par heure, {period}. "
                f"Le créneau le plus fréquenté{NBSP}: {busiest} "
                f"({format_count(best[0], lang, report.min_count)} sessions). Les cases "
                f"grises comptent moins de {report.min_count} sessions." if lang == "fr" else
                f"Sessions started by day of the week and hour, {period}. The busiest slot: "
                f"{busiest} ({format_count(best[0], lang, report.min_count)} sessions). Grey "
                f"cells count fewer than {report.min_count} sessions.")
    else:
        desc = (f"Sessions commencées par jour de la semaine et par heure, {period}{NBSP}: "
                f"aucune case à {report.min_count} sessions ou plus." if lang == "fr" else
                f"Sessions started by day of the week and hour, {period}: no cell with "
                f"{report.min_count} sessions or more.")
    return _svg(chart_id, f"{word(lang, 'chart_heatmap')}, {period}", desc, body,
                WIDTH, height)

