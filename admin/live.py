"""The live view: every gateway's health and clients, and the actions on a client.

Actions (admins only) send a command on the gateway's stream, as parvisctl
does, and show netctl's answer on the gateway's page.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext  # type: ignore[import-untyped]
from werkzeug.wrappers import Response as BaseResponse

from admin.auth import login_required
from admin.state import AdminState, current_user, state
from parvis.core.addresses import AddressError, parse_mac
from parvis.core.codes import parse_duration
from parvis.core.commands import MAX_RATE_BPS, MAX_TIMEOUT_S, Command, Verb
from parvis.core.units import parse_rate
from parvis.core.users import Role
from parvis.ctl import HEARTBEAT_STALE_S, client_rows
from parvis.store import Store

log = logging.getLogger(__name__)

bp = Blueprint("live", __name__)

# How long an action waits for netctl's acknowledgement (parvisctl's default).
ACTION_TIMEOUT_S = 5.0
_GATEWAY_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


def gateway_ids(st: AdminState) -> list[str]:
    """Every gateway that published a heartbeat on the town's Redis, and our own."""
    return sorted(set(st.store.gateways()) | {st.config.gateway.id})


def gateway_summary(st: AdminState, gateway_id: str) -> dict[str, Any]:
    """One gateway's heartbeat and health, as the pages show them."""
    store = st.store_for(gateway_id)
    beat = store.heartbeat()
    health = store.health() or {}
    now = st.clock()
    age = None if beat is None else max(0.0, now - float(beat.get("at", 0)))
    memory_total = health.get("memory_total_bytes")
    return {
        "id": gateway_id,
        "running": age is not None and age < HEARTBEAT_STALE_S,
        "heartbeat_age_s": age,
        "version": (beat or {}).get("version"),
        "host": (beat or {}).get("host"),
        "sessions": len(store.sessions()),
        "cpu_percent": health.get("cpu_percent"),
        "memory_percent": health.get("memory_percent"),
        "memory_used_bytes": health.get("memory_used_bytes"),
        "memory_total_bytes": memory_total,
        "load_average": health.get("load_average"),
        "uptime_s": health.get("uptime_s"),
        "netctl_uptime_s": health.get("netctl_uptime_s"),
        "netctl_rss_bytes": health.get("netctl_rss_bytes"),
        "interfaces": health.get("interfaces", {}),
        "at": health.get("at"),
    }


def _gateway_store(st: AdminState, gateway_id: str) -> Store:
    """The store of a known gateway; 404 for any other id."""
    if not _GATEWAY_ID_RE.match(gateway_id) or gateway_id not in gateway_ids(st):
        abort(404)
    return st.store_for(gateway_id)


@bp.get("/")
@login_required()
def dashboard() -> str:
    """Every gateway at a glance."""
    st = state()
    gateways = [gateway_summary(st, gateway_id) for gateway_id in gateway_ids(st)]
    return render_template("dashboard.html", gateways=gateways)


@bp.get("/passerelles/<gateway_id>")
@login_required()
def gateway(gateway_id: str) -> str:
    """One gateway: its health and its clients (with the actions, for admins)."""
    st = state()
    store = _gateway_store(st, gateway_id)
    now = st.clock()
    rows = client_rows(store)
    for row in rows:
        row["left_s"] = (row["expires_at"] - now) if row.get("expires_at") else None
        for key in ("plan", "down_bps", "up_bps", "quota_left", "idle"):
            row.setdefault(key, None)  # only sessions have them
    return render_template("gateway.html", gw=gateway_summary(st, gateway_id), clients=rows,
                           plans=sorted(st.config.plans))


def _target_mac() -> str:
    try:
        return parse_mac(request.form.get("mac", "")[:64])
    except AddressError:
        abort(400)


def _send(gateway_id: str, command: Command) -> BaseResponse:
    """Send ``command`` to the gateway, wait for netctl, and show its answer there."""
    st = state()
    store = _gateway_store(st, gateway_id)
    user = current_user()
    assert user is not None
    result = store.call(command, ACTION_TIMEOUT_S)
    outcome = "timeout" if result is None else ("ok" if result.ok else "refused")
    log.info("admin action: user=%s gateway=%s command=%r result=%s", user.name, gateway_id,
             command.describe(), outcome)
    if result is None:
        flash(gettext("The gateway did not answer within %(seconds)d s. The command stays "
                      "queued and will be applied when netctl runs again.",
                      seconds=int(ACTION_TIMEOUT_S)), "error")
    elif result.ok:
        flash(gettext("Done: %(answer)s", answer=result.message), "ok")
    else:
        flash(gettext("Refused by the gateway: %(answer)s", answer=result.message), "error")
    return redirect(url_for("live.gateway", gateway_id=gateway_id), 303)


def _by() -> str:
    user = current_user()
    assert user is not None
    return f"admin:{user.name}"


def _back(gateway_id: str, message: str) -> BaseResponse:
    flash(message, "error")
    return redirect(url_for("live.gateway", gateway_id=gateway_id), 303)


@bp.post("/passerelles/<gateway_id>/deconnecter")
@login_required(Role.ADMIN)
def kick(gateway_id: str) -> BaseResponse:
    """End a device's session (it goes back to the splash page)."""
    return _send(gateway_id, Command(Verb.DEAUTHORIZE, mac=_target_mac(), by=_by()))


@bp.post("/passerelles/<gateway_id>/bloquer")
@login_required(Role.ADMIN)
def block(gateway_id: str) -> BaseResponse:
    """Block a device: no access at all, not even the splash page; ends its session."""
    return _send(gateway_id, Command(Verb.BLOCK, mac=_target_mac(), by=_by()))


@bp.post("/passerelles/<gateway_id>/debloquer")
@login_required(Role.ADMIN)
def unblock(gateway_id: str) -> BaseResponse:
    """Lift a block made at run time."""
    return _send(gateway_id, Command(Verb.UNBLOCK, mac=_target_mac(), by=_by()))


@bp.post("/passerelles/<gateway_id>/prolonger")
@login_required(Role.ADMIN)
def extend(gateway_id: str) -> BaseResponse:
    """Give a live session more time (``duration``: 30m, 1h, 2d)."""
    mac = _target_mac()
    text = request.form.get("duration", "")[:32]
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = 0
    if not 1 <= seconds <= MAX_TIMEOUT_S:
        return _back(gateway_id, gettext("“%(text)s” is not a duration from 1 minute to 7 "
                                         "days (e.g. 30m, 1h, 2d).", text=text))
    return _send(gateway_id, Command(Verb.EXTEND, mac=mac, extend_s=seconds, by=_by()))


@bp.post("/passerelles/<gateway_id>/debit")
@login_required(Role.ADMIN)
def rate(gateway_id: str) -> BaseResponse:
    """Change a live session's rates (``down``, ``up``: 20M, 512k; 0 = not shaped)."""
    mac = _target_mac()
    rates: dict[str, int | None] = {}
    for field in ("down", "up"):
        text = request.form.get(field, "").strip()[:32]
        if not text:
            rates[field] = None
            continue
        try:
            value = parse_rate(text)
        except ValueError:
            value = -1
        if not 0 <= value <= MAX_RATE_BPS:
            return _back(gateway_id, gettext("“%(text)s” is not a rate (e.g. 20M, 512k; "
                                             "0 = not limited).", text=text))
        rates[field] = value
    if rates["down"] is None and rates["up"] is None:
        return _back(gateway_id, gettext("Give a download rate, an upload rate or both."))
    return _send(gateway_id, Command(Verb.RATE, mac=mac, down_bps=rates["down"],
                                     up_bps=rates["up"], by=_by()))
