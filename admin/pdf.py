"""The printable sheet of a new code batch (fpdf2): ten cut-out cards per Letter page.

Each card carries one code, its validity, plan, uses and how to use it, in
French then English. Pure: bytes in memory, nothing written to disk.
"""

from __future__ import annotations

import datetime as dt

from fpdf import FPDF

from admin.formats import duration_text, timestamp_text
from parvis.core.codes import CodeBatch

COLUMNS, ROWS = 2, 5
MARGIN_MM = 10.0
FOOTER_MM = 8.0
# The PDF core fonts know Latin-1 only: typographic marks become their plain forms.
_PLAIN = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-",
                        "…": "...", "\u00a0": " ", "\u202f": " "})


def _plain(text: str) -> str:
    """``text`` in Latin-1 (what the core fonts can draw); anything else becomes ``?``."""
    return text.translate(_PLAIN).encode("latin-1", "replace").decode("latin-1")


def code_sheet(batch: CodeBatch, codes: list[str], *, plan: str, zone: dt.tzinfo | None,
               town: str = "", portal_name: str = "") -> bytes:
    """The PDF (bytes) of ``codes`` (formatted or compact) of ``batch``."""
    pdf = FPDF(orientation="P", unit="mm", format="Letter")
    pdf.set_auto_page_break(False)
    pdf.set_title(_plain(f"Codes d'accès Wi-Fi / Wi-Fi access codes - {batch.id}"))
    pdf.set_creator("Parvis")
    until = timestamp_text(batch.valid_until, zone)
    session_fr = (duration_text(batch.session_s, "fr") if batch.session_s
                  else "selon le forfait")
    session_en = (duration_text(batch.session_s, "en") if batch.session_s
                  else "the plan's")
    uses = batch.uses
    width = (pdf.w - 2 * MARGIN_MM) / COLUMNS
    height = (pdf.h - 2 * MARGIN_MM - FOOTER_MM) / ROWS
    per_page = COLUMNS * ROWS
    pages = max(1, -(-len(codes) // per_page))
    for index, code in enumerate(codes):
        slot = index % per_page
        if slot == 0:
            pdf.add_page()
            pdf.set_font("helvetica", size=8)
            pdf.set_text_color(90, 90, 90)
            pdf.set_xy(MARGIN_MM, pdf.h - MARGIN_MM - FOOTER_MM + 2)
            pdf.cell(pdf.w - 2 * MARGIN_MM, 4, _plain(
                f"Lot / Batch {batch.id} - {len(codes)} codes - page {index // per_page + 1}"
                f"/{pages}" + (f" - {batch.note}" if batch.note else "")))
        x = MARGIN_MM + (slot % COLUMNS) * width
        y = MARGIN_MM + (slot // COLUMNS) * height
        pdf.set_draw_color(150, 150, 150)
        pdf.set_dash_pattern(dash=2, gap=1.5)
        pdf.rect(x, y, width, height)
        pdf.set_dash_pattern()
        pdf.set_text_color(0, 0, 0)
        inner = width - 8
        pdf.set_xy(x + 4, y + 4)
        pdf.set_font("helvetica", style="B", size=10)
        title = "Wi-Fi public gratuit / Free public Wi-Fi" + (f" - {town}" if town else "")
        pdf.cell(inner, 5, _plain(title))
        pdf.set_xy(x + 4, y + 11)
        pdf.set_font("courier", style="B", size=17)
        pdf.cell(inner, 9, _plain(code), align="C")
        pdf.set_font("helvetica", size=8.5)
        lines = [
            f"Valide jusqu'au {until} / Valid until {until}",
            f"Forfait / Plan : {plan}  -  Session : {session_fr} / {session_en}",
            f"Utilisations / Uses : {uses}",
            "Joignez le Wi-Fi, ouvrez une page Web et entrez ce code.",
            "Join the Wi-Fi, open any web page and type this code.",
        ]
        if portal_name:
            lines.append(f"http://{portal_name}/")
        # cell(), not multi_cell(): lines short enough for a card, and ten times faster
        # (a 10,000-code batch is 1,000 pages).
        for number, line in enumerate(lines):
            pdf.set_xy(x + 4, y + 22 + 4 * number)
            pdf.cell(inner, 4, _plain(line))
    return bytes(pdf.output())
