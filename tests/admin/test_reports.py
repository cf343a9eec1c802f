"""The council's reports in the console: the page, its CSV and PDF, for viewers too."""

from __future__ import annotations

import zoneinfo
from datetime import date

import pytest
from flask.testing import FlaskClient

from parvis.reports.rollup import roll_up
from parvis.store import Store
from tests.reports.synthetic import gateway_config, make_records, make_sessions

TZ = zoneinfo.ZoneInfo("America/Toronto")


@pytest.fixture
def november(store: Store) -> None:
    """Three days of November 2026 on gw-a (zone Centre-ville), rolled up."""
    sessions = make_sessions(7, date(2026, 11, 2), date(2026, 11, 4), 40, ["gw-a"], TZ)
    until = max(s.ended_at for s in sessions) + 60
    gw = Store(store.client, "gw-a")
    gw.append_records(make_records(sessions, "gw-a", until), 86400 * 3650, now=until)
    assert roll_up(gw, gateway_config("gw-a"), until).records > 0


def test_viewer_reads_the_report(as_viewer: FlaskClient, november: None) -> None:
    page = as_viewer.get("/rapports")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'class="parvis-report"' in html and "<svg" in html
    assert 'value="2026-11" selected' in html and "Centre-ville" in html
    assert " style=" not in html and "<script" not in html
    one_zone = as_viewer.get("/rapports?mois=2026-11&zone=Centre-ville")
    assert one_zone.status_code == 200
    english = as_viewer.get("/rapports?mois=2026-11&lang=en").get_data(as_text=True)
    assert 'lang="en"' in english


def test_csv_and_pdf(as_viewer: FlaskClient, november: None) -> None:
    csv = as_viewer.get("/rapports/csv?mois=2026-11")
    assert csv.status_code == 200 and csv.content_type == "text/csv; charset=utf-8"
    assert csv.headers["Content-Disposition"] == 'attachment; filename="rapport-2026-11.csv"'
    assert csv.get_data(as_text=True).strip()
    pdf = as_viewer.get("/rapports/pdf?mois=2026-11&zone=Centre-ville")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert "rapport-2026-11-Centre-ville.pdf" in pdf.headers["Content-Disposition"]


def test_bad_choices(as_viewer: FlaskClient, november: None) -> None:
    assert as_viewer.get("/rapports?mois=2026-13").status_code == 400
    assert as_viewer.get("/rapports?mois=2026-11&zone=Nowhere").status_code == 404
    assert as_viewer.get("/rapports/csv?mois=../etc").status_code == 400


def test_no_figures_yet(as_viewer: FlaskClient) -> None:
    html = as_viewer.get("/rapports").get_data(as_text=True)
    assert "Aucun chiffre pour l’instant" in html
    assert as_viewer.get("/rapports/pdf").status_code == 404
