"""The splash page's tiles (announcements, activities, offers) edited in both languages.

Edited tiles live in Redis (``Keys.CONTENT_TILES``); every edit writes a new
content version, and the portal (``portal.content.load_tiles``) shows them at
its next page view, within their display window. Times are typed and shown
in the town's zone. Texts are shown escaped on the portal: markup is text.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext  # type: ignore[import-untyped]
from werkzeug.wrappers import Response as BaseResponse

from admin.auth import login_required
from admin.formats import input_value, parse_local
from admin.state import current_user, state
from parvis.core.users import Role
from portal.content import (
    LANGUAGES,
    TILE_KINDS,
    TILE_TEXT_MAX,
    Tile,
    TilesError,
    load_tiles,
    parse_edited_tile,
)
from portal.ended import read_epoch

log = logging.getLogger(__name__)

bp = Blueprint("content", __name__)

_TILE_ID_RE = re.compile(r"^t-[0-9a-f]{12}$")
TEXT_FIELDS = [f"{key}_{lang}" for key in ("title", "text", "url") for lang in LANGUAGES]
_URL_RE = re.compile(r"^https?://[^\s\\]+$")


def _window_state(tile: Tile, now: float) -> str:
    """``shown``, ``scheduled`` or ``ended``, for the list."""
    if tile.ends_at is not None and now >= tile.ends_at:
        return "ended"
    if tile.starts_at is not None and now < tile.starts_at:
        return "scheduled"
    return "shown"


def _edited() -> dict[str, tuple[Tile, dict[str, Any]]]:
    """Every edited tile by id, with its stored record."""
    _version, raw = state().store.content_snapshot()
    tiles = {}
    for tile_id, text in raw.items():
        try:
            tile, record = parse_edited_tile(tile_id, text), json.loads(text)
        except TilesError as error:
            log.warning("edited tile unreadable: problem=%s", error)
            continue
        # What the list shows of the console's own fields: a malformed one is left out.
        record["created_at"] = read_epoch(record.get("created_at")) or 0.0
        record["updated_at"] = read_epoch(record.get("updated_at"))
        if not isinstance(record.get("by"), str):
            record["by"] = ""
        tiles[tile_id] = (tile, record)
    return tiles


@bp.get("/contenu")
@login_required()
def index() -> str:
    """The edited tiles with their windows, and the file's tiles shown today."""
    st = state()
    now = st.clock()
    edited = sorted(_edited().values(), key=lambda item: (item[0].starts_at or 0,
                                                          item[1].get("created_at", 0)))
    rows = [{"tile": tile, "record": record, "state": _window_state(tile, now)}
            for tile, record in edited]
    files = load_tiles(st.config.portal.content_dir, dt.date.today())
    return render_template("content.html", rows=rows, files=files,
                           content_dir=st.config.portal.content_dir)


def _blank() -> dict[str, str]:
    return {"kind": "announcement", "starts_at": "", "ends_at": "",
            **{name: "" for name in TEXT_FIELDS}}


@bp.get("/contenu/nouveau")
@login_required(Role.ADMIN)
def new() -> str:
    """An empty form."""
    return render_template("content_form.html", form=_blank(), errors={}, tile_id=None,
                           kinds=TILE_KINDS)


@bp.get("/contenu/<tile_id>")
@login_required(Role.ADMIN)
def edit(tile_id: str) -> str:
    """The form for an edited tile."""
    tile, _record = _existing(tile_id)
    zone = state().zone
    form = {"kind": tile.kind, "starts_at": input_value(tile.starts_at, zone),
            "ends_at": input_value(tile.ends_at, zone)}
    for key, per_language in (("title", tile.title), ("text", tile.text), ("url", tile.url)):
        for lang in LANGUAGES:
            form[f"{key}_{lang}"] = per_language[lang]
    return render_template("content_form.html", form=form, errors={}, tile_id=tile_id,
                           kinds=TILE_KINDS)


def _existing(tile_id: str) -> tuple[Tile, dict[str, Any]]:
    if not _TILE_ID_RE.match(tile_id):
        abort(404)
    found = _edited().get(tile_id)
    if found is None:
        abort(404)
    return found


def _validate(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The record to store and the problems by field (translated)."""
    errors: dict[str, str] = {}
    record: dict[str, Any] = {}
    if form["kind"] not in TILE_KINDS:
        errors["kind"] = gettext("Choose a kind.")
    record["kind"] = form["kind"]
    for name in TEXT_FIELDS:
        value = form[name].strip()
        if name.startswith("text_"):
            value = value.replace("\r\n", "\n")
        if len(value) > TILE_TEXT_MAX:
            errors[name] = gettext("At most %(max)d characters.", max=TILE_TEXT_MAX)
        elif name.startswith("title_") and not value:
            errors[name] = gettext("Required, in both languages.")
        elif name.startswith("url_") and value and not _URL_RE.match(value):
            errors[name] = gettext("An address starting with https:// (or http://).")
        record[name] = value
    zone = state().zone
    for name in ("starts_at", "ends_at"):
        try:
            record[name] = parse_local(form[name], zone)
        except ValueError:
            errors[name] = gettext("A date and time, e.g. 2026-12-24 08:00.")
            continue
        if record[name] is not None and read_epoch(record[name]) is None:
            # Before 1970 or after 2099: the portal would not show it, the list could not.
            errors[name] = gettext("A date and time, e.g. 2026-12-24 08:00.")
    starts, ends = record.get("starts_at"), record.get("ends_at")
    if "ends_at" not in errors and starts is not None and ends is not None and ends <= starts:
        errors["ends_at"] = gettext("The end must come after the start.")
    return record, errors


def _form() -> dict[str, str]:
    return {name: request.form.get(name, "")[:TILE_TEXT_MAX + 100]
            for name in ["kind", "starts_at", "ends_at", *TEXT_FIELDS]}


@bp.post("/contenu/nouveau")
@login_required(Role.ADMIN)
def create() -> Any:
    """Add a tile; it shows on the splash page within its window."""
    return _save(None)


@bp.post("/contenu/<tile_id>")
@login_required(Role.ADMIN)
def update(tile_id: str) -> Any:
    """Replace a tile's texts and window."""
    _existing(tile_id)
    return _save(tile_id)


def _save(tile_id: str | None) -> Any:
    st = state()
    form = _form()
    record, errors = _validate(form)
    if errors:
        return render_template("content_form.html", form=form, errors=errors, tile_id=tile_id,
                               kinds=TILE_KINDS), 400
    user = current_user()
    assert user is not None
    now = st.clock()
    if tile_id is None:
        tile_id = f"t-{secrets.token_hex(6)}"
        record["created_at"] = now
    else:
        record["created_at"] = _existing(tile_id)[1].get("created_at", now)
    record.update(updated_at=now, by=user.name)
    body = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    parse_edited_tile(tile_id, body)  # what the portal will read: must parse
    st.store.save_content_tile(tile_id, body)
    log.info("admin content saved: user=%s tile=%s kind=%s", user.name, tile_id, record["kind"])
    flash(gettext("Saved. The splash page shows it within its display window."), "ok")
    return redirect(url_for("content.index"), 303)


@bp.post("/contenu/<tile_id>/supprimer")
@login_required(Role.ADMIN)
def delete(tile_id: str) -> BaseResponse:
    """Remove a tile from the splash page."""
    if not _TILE_ID_RE.match(tile_id):
        abort(404)
    user = current_user()
    assert user is not None
    if state().store.delete_content_tile(tile_id):
        log.info("admin content deleted: user=%s tile=%s", user.name, tile_id)
        flash(gettext("Deleted."), "ok")
    else:
        flash(gettext("That tile no longer exists."), "error")
    return redirect(url_for("content.index"), 303)
