"""Access codes: create a batch (and its printable sheet), list batches, revoke one.

A batch is made exactly as ``parvisctl codes create`` makes it (the same
limits, the portal's secret read from ``[portal] secret_key_file``, the same
store call). Codes exist in clear only at creation: the answer that creates
them shows them once, and the printable sheet is kept for
:data:`SHEET_TTL_S` encrypted in Redis under a key that only that answer
carries, and deleted by its first download.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import asdict
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext  # type: ignore[import-untyped]
from werkzeug.wrappers import Response as BaseResponse

from admin.auth import login_required
from admin.pdf import code_sheet
from admin.state import current_user, state
from parvis.core import codes as access_codes
from parvis.core.codes import CodeBatch, format_code, parse_duration
from parvis.core.users import Role

log = logging.getLogger(__name__)

bp = Blueprint("codes", __name__)

# How long the printable sheet of a new batch can be downloaded (once).
SHEET_TTL_S = 10 * 60
DEFAULTS = {"count": "10", "valid_for": "4h", "uses": "1", "session": "", "plan": "", "note": ""}


@bp.get("/codes")
@login_required()
def index() -> Any:
    """The batches, and (for admins) the form that makes a new one."""
    return _page(DEFAULTS, errors={})


def _page(form: dict[str, str], errors: dict[str, str], status: int = 200) -> Any:
    st = state()
    batches = sorted(st.store.list_code_batches(), key=lambda b: b.created_at, reverse=True)
    now = st.clock()
    html = render_template("codes.html", batches=batches, now=now, form=form, errors=errors,
                           plans=sorted(st.config.plans),
                           default_plan=st.config.session.default_plan)
    return (html, status) if status != 200 else html


def _whole(text: str, low: int, high: int) -> int | None:
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if low <= value <= high else None


def _duration(text: str, low: int, high: int) -> int | None:
    try:
        value = parse_duration(text)
    except ValueError:
        return None
    return value if low <= value <= high else None


@bp.post("/codes")
@login_required(Role.ADMIN)
def create() -> Any:
    """Make a batch; show its codes this once, with the button for the printable sheet."""
    st = state()
    form = {key: request.form.get(key, default)[:200] for key, default in DEFAULTS.items()}
    errors: dict[str, str] = {}
    count = _whole(form["count"], 1, access_codes.MAX_CODES_PER_BATCH)
    if count is None:
        errors["count"] = gettext("A whole number from 1 to %(max)d.",
                                  max=access_codes.MAX_CODES_PER_BATCH)
    valid_for = _duration(form["valid_for"], access_codes.MIN_VALID_FOR_S,
                          access_codes.MAX_VALID_FOR_S)
    if valid_for is None:
        errors["valid_for"] = gettext("A duration from 1 minute to 90 days (e.g. 4h, 2d, "
                                      "1h30m).")
    uses = _whole(form["uses"], 1, access_codes.MAX_USES)
    if uses is None:
        errors["uses"] = gettext("A whole number from 1 to %(max)d.", max=access_codes.MAX_USES)
    session_s = None
    if form["session"].strip():
        session_s = _duration(form["session"], access_codes.MIN_SESSION_S,
                              access_codes.MAX_SESSION_S)
        if session_s is None:
            errors["session"] = gettext("A duration from 1 minute to 7 days, or nothing for "
                                        "the plan's.")
    plan = form["plan"]
    if plan and plan not in st.config.plans:
        # A plan netctl does not know would fail every redemption (parvisctl refuses it too).
        errors["plan"] = gettext("Not a plan of this configuration.")
    note = form["note"].strip()
    if len(note) > access_codes.MAX_NOTE_CHARS or not note.isprintable():
        errors["note"] = gettext("At most %(max)d characters, on one line.",
                                 max=access_codes.MAX_NOTE_CHARS)
    if errors:
        return _page(form, errors, status=400)
    assert count is not None and valid_for is not None and uses is not None
    try:
        # Read now, as parvisctl does: the very secret the portal hashes typed codes with.
        key = access_codes.load_secret(st.config.portal.secret_key_file)
    except ValueError as error:
        log.error("codes not created: [portal] secret_key_file unusable: %s", error)
        abort(503)
    batch, codes = st.store.create_code_batch(count, valid_for, uses, session_s, note, key,
                                              st.clock(), plan=plan)
    user = current_user()
    assert user is not None
    log.info("admin codes created: user=%s batch=%s count=%d plan=%s", user.name, batch.id,
             len(codes), plan or "-")
    sheet = _seal_sheet(batch, codes)
    return render_template("codes_created.html", batch=batch,
                           codes=[format_code(code) for code in codes], sheet=sheet,
                           sheet_minutes=SHEET_TTL_S // 60,
                           plan=plan or st.config.session.default_plan)


def _seal_sheet(batch: CodeBatch, codes: list[str]) -> str:
    """Keep the sheet encrypted in Redis; return the token (id.key) only this answer holds."""
    sheet_id = secrets.token_urlsafe(18)
    key = Fernet.generate_key()
    body = json.dumps({"batch": asdict(batch), "codes": codes}, separators=(",", ":"))
    state().store.save_code_sheet(sheet_id, Fernet(key).encrypt(body.encode()).decode(),
                                  SHEET_TTL_S)
    return f"{sheet_id}.{key.decode()}"


@bp.post("/codes/feuille")
@login_required(Role.ADMIN)
def sheet() -> BaseResponse:
    """The printable PDF of a batch just made: once, within SHEET_TTL_S."""
    sheet_id, _, key = request.form.get("sheet", "")[:200].partition(".")
    sealed = state().store.take_code_sheet(sheet_id)
    body: dict[str, Any] | None = None
    if sealed is not None:
        try:
            body = json.loads(Fernet(key.encode()).decrypt(sealed.encode(), ttl=SHEET_TTL_S))
        except (InvalidToken, ValueError):
            body = None
    if body is None:
        flash(gettext("That sheet is no longer available: it can be downloaded once, within "
                      "%(minutes)d minutes. The codes still work; revoke the batch and make "
                      "another if they are lost.", minutes=SHEET_TTL_S // 60), "error")
        return redirect(url_for("codes.index"), 303)
    batch = CodeBatch(**body["batch"])
    st = state()
    pdf = code_sheet(batch, [format_code(code) for code in body["codes"]],
                     plan=batch.plan or st.config.session.default_plan, zone=st.zone,
                     portal_name=st.config.portal.poster_hostname)
    response = Response(pdf, mimetype="application/pdf")
    response.headers["Content-Disposition"] = f'attachment; filename="codes-{batch.id}.pdf"'
    return response


@bp.post("/codes/<batch_id>/revoquer")
@login_required(Role.ADMIN)
def revoke(batch_id: str) -> BaseResponse:
    """Refuse every code of a batch from now on."""
    user = current_user()
    assert user is not None
    if state().store.revoke_code_batch(batch_id):
        log.info("admin codes revoked: user=%s batch=%s", user.name, batch_id)
        flash(gettext("Batch %(batch)s revoked: its codes are refused from now on.",
                      batch=batch_id), "ok")
    else:
        flash(gettext("There is no batch %(batch)s.", batch=batch_id[:40]), "error")
    return redirect(url_for("codes.index"), 303)
