"""The monthly report as a PDF (fpdf2): A4, French by default, with the charts and the summary.

Fonts: the PDF core font Helvetica in the Windows-1252 encoding, which every
PDF reader has: it holds French's é è à ç œ, the apostrophe ’, « », the
no-break space and the euro sign, so no font file is needed. The charts are
the same SVG the console shows, drawn as vectors.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from datetime import date

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from parvis.core.reports import (
    Report,
    check_lang,
    estimate_note,
    format_count,
    format_day,
    summary,
)
from parvis.reports.charts import data_chart, heatmap_chart, sessions_chart
from parvis.reports.export import change_lines, figure_lines, report_title
from parvis.reports.words import word

_SVG = "{http://www.w3.org/2000/svg}"
_INK = (31, 41, 51)
_GREY = (95, 105, 115)


def _for_pdf(svg: str) -> bytes:
    """The SVG without <title>/<desc> (fpdf2 draws no text alternative; they are for HTML)."""
    ET.register_namespace("", _SVG[1:-1])
    root = ET.fromstring(svg)
    for parent in root.iter():
        for child in list(parent):
            if child.tag in (f"{_SVG}title", f"{_SVG}desc"):
                parent.remove(child)
    return bytes(ET.tostring(root, encoding="utf-8"))


class _ReportPDF(FPDF):
    def __init__(self, lang: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.report_lang = lang
        # Windows-1252 rather than Latin-1: it adds ’ “ ” – — … € œ to the core fonts.
        self.core_fonts_encoding = "windows-1252"
        self.set_margins(18, 16, 18)
        self.set_auto_page_break(auto=True, margin=18)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=8)
        self.set_text_color(*_GREY)
        self.cell(0, 5, word(self.report_lang, "footer", page=self.page_no(), nb="{nb}"),
                  align="C")


def _heading(pdf: FPDF, text: str, size: int = 13) -> None:
    pdf.set_font("Helvetica", "B", size)
    pdf.set_text_color(*_INK)
    pdf.multi_cell(0, size * 0.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1.5)


def _paragraph(pdf: FPDF, text: str, size: float = 10.5) -> None:
    pdf.set_font("Helvetica", size=size)
    pdf.set_text_color(*_INK)
    pdf.multi_cell(0, size * 0.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)


def _pairs(pdf: FPDF, pairs: list[tuple[str, str]]) -> None:
    pdf.set_text_color(*_INK)
    for label, value in pairs:
        pdf.set_font("Helvetica", size=10)
        pdf.cell(120, 6, label, border="B")
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(0, 6, value, border="B", align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)


def _chart(pdf: FPDF, svg: str, height_ratio: float) -> None:
    width = pdf.epw
    if pdf.get_y() + width * height_ratio > pdf.page_break_trigger:
        pdf.add_page()
    pdf.image(io.BytesIO(_for_pdf(svg)), x=pdf.l_margin, y=pdf.get_y(), w=width)
    pdf.set_y(pdf.get_y() + width * height_ratio + 3)


def report_pdf(report: Report, lang: str = "fr", produced: date | None = None) -> bytes:
    """The report as a PDF document (bytes), in ``lang`` (``fr`` or ``en``)."""
    check_lang(lang)
    n = report.min_count
    pdf = _ReportPDF(lang)
    title = report_title(report, lang)
    pdf.set_title(title)
    pdf.set_lang("fr-CA" if lang == "fr" else "en-CA")
    pdf.set_creator("Parvis")
    pdf.add_page()
    _heading(pdf, title, 16)
    pdf.set_font("Helvetica", size=9)
    pdf.set_text_color(*_GREY)
    scope = (word(lang, "all_zones") if report.zone is None
             else f"{word(lang, 'zone')} {report.zone}")
    made = word(lang, "generated", date=format_day(produced or date.today(), lang))
    pdf.cell(0, 5, f"{scope}. {made}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    _paragraph(pdf, summary(report, lang))
    _heading(pdf, word(lang, "key_figures"), 12)
    _pairs(pdf, figure_lines(report.totals, report, lang) + change_lines(report, lang))
    _chart(pdf, sessions_chart(report, lang), 260 / 720)
    _chart(pdf, data_chart(report, lang), 260 / 720)
    heat = heatmap_chart(report, lang)
    _chart(pdf, heat, float(ET.fromstring(heat).get("height", "264")) / 720)
    if report.zone is None and len(report.zones) > 1:
        _heading(pdf, word(lang, "by_zone"), 12)
        _pairs(pdf, [(zone, f"{format_count(f.sessions, lang, n)} "
                            f"{word(lang, 'sessions').lower()}")
                     for zone, f in report.zone_totals])
    _heading(pdf, word(lang, "plans"), 12)
    _pairs(pdf, [(name, format_count(v, lang, n)) for name, v in report.plans]
           or [(word(lang, "none"), "")])
    _heading(pdf, word(lang, "codes"), 12)
    _pairs(pdf, [(name, format_count(v, lang, n)) for name, v in report.code_batches]
           or [(word(lang, "none"), "")])
    _heading(pdf, word(lang, "method"), 12)
    _paragraph(pdf, word(lang, "method_text", min=n), 9)
    _paragraph(pdf, "* " + estimate_note(lang), 9)
    return bytes(pdf.output())
