"""The council's reports in the console (admins and viewers): page, CSV and PDF.

The reports themselves (aggregation, suppression of small counts, charts,
exports) are ``parvis.reports``'s; these views pick the month and the zone,
load the report (``parvis.reports.load.load_report``) and show
``parvis.reports.html.report_html(report, lang)`` (an escaped HTML fragment
with inline SVG charts, no script and no inline style: the console's CSP
holds), or send ``report_csv`` / ``report_pdf``. Without that package the
page says that reports are not available.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import re
import zoneinfo
from typing import Any

from flask import Blueprint, Response, abort, render_template, request
from markupsafe import Markup

from admin import page_language
from admin.auth import login_required
from admin.state import state

log = logging.getLogger(__name__)

bp = Blueprint("reports", __name__)

_MONTH_RE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")


def _reports_api() -> dict[str, Any] | None:
    """The reports package's functions, or None while it is not there."""
    try:
        html = importlib.import_module("parvis.reports.html")
        load = importlib.import_module("parvis.reports.load")
        export = importlib.import_module("parvis.reports.export")
        pdf = importlib.import_module("parvis.reports.pdf")
        return {"report_html": html.report_html, "load_report": load.load_report,
                "months": load.months, "zones": load.zones, "report_csv": export.report_csv,
                "report_pdf": pdf.report_pdf}
    except (ImportError, AttributeError) as error:
        log.warning("reports not available: %s", error)
        return None


def _choice(api: dict[str, Any]) -> tuple[list[str], str, list[str], str | None]:
    """The months kept, the month asked for (default: the latest), its zones, the zone."""
    st = state()
    months: list[str] = list(api["months"](st.store))
    month = request.args.get("mois", "")
    if month and not _MONTH_RE.match(month):
        abort(400)
    month = month or (months[0] if months else "")
    zones: list[str] = list(api["zones"](st.store, month)) if month else []
    zone = request.args.get("zone", "") or None
    if zone is not None and zone not in zones:
        abort(404)
    return months, month, zones, zone


def _report(api: dict[str, Any], month: str, zone: str | None) -> Any:
    st = state()
    # "Today" in the town's time zone: a running month ends there, not at UTC's date.
    zone_info = (zoneinfo.ZoneInfo(st.config.gateway.timezone) if st.config.gateway.timezone
                 else None)
    now = dt.datetime.fromtimestamp(st.clock(), tz=dt.UTC)
    today = (now.astimezone(zone_info) if zone_info else now.astimezone()).date()
    return api["load_report"](st.store, month, zone, st.config.reports.min_count, today=today)


@bp.get("/rapports")
@login_required()
def index() -> str:
    """The report on one month (the latest by default), for the town or one zone."""
    api = _reports_api()
    if api is None:
        return render_template("reports.html", available=False, months=[], zones=[],
                               month=None, zone=None, body=None)
    months, month, zones, zone = _choice(api)
    body = None
    if month:
        # An escaped fragment (markupsafe.Markup) made by parvis.reports.html.
        body = Markup(str(api["report_html"](_report(api, month, zone), page_language())))
    return render_template("reports.html", available=True, months=months, zones=zones,
                           month=month, zone=zone, body=body)


def _download(kind: str) -> Response:
    api = _reports_api()
    if api is None:
        abort(404)
    _months, month, _zones, zone = _choice(api)
    if not month:
        abort(404)
    report = _report(api, month, zone)
    lang = page_language()
    name = f"rapport-{month}" + (f"-{re.sub(r'[^A-Za-z0-9_-]', '_', zone)}" if zone else "")
    if kind == "csv":
        # With a byte order mark: spreadsheet programs then read the accents right.
        response = Response(api["report_csv"](report, lang).encode("utf-8-sig"),
                            content_type="text/csv; charset=utf-8")
    else:
        response = Response(bytes(api["report_pdf"](report, lang)),
                            mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.{kind}"'
    return response


@bp.get("/rapports/csv")
@login_required()
def csv() -> Response:
    """The report's figures as CSV (counts under the threshold shown as such)."""
    return _download("csv")


@bp.get("/rapports/pdf")
@login_required()
def pdf() -> Response:
    """The report as a PDF for the council."""
    return _download("pdf")
