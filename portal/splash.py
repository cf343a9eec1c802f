"""The HTTPS pages: the splash page, accept, access codes, the confirmation, the hand-off.

Views parse the request, call the store, render. The client is always the
connection's source address (or, on a central portal, the address a verified
hand-off token names): never a form field, never X-Forwarded-For.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, session, url_for
from flask_babel import get_locale, lazy_gettext  # type: ignore[import-untyped]
from werkzeug.wrappers import Response as BaseResponse

from parvis.core.codes import normalize_code
from parvis.core.commands import Command, Verb
from parvis.core.handoff import HandoffError, nonce_ttl_s, verify
from parvis.core.sessions import Session, quota_left
from parvis.store import Store
from portal import metrics
from portal.content import ContentError, Terms, load_terms, load_tiles
from portal.ended import (
    Localized,
    banner,
    next_midnight,
    parse_ended,
    read_epoch,
    reconnect_sentence,
    size_text,
    town_zone,
)
from portal.errors import render_error
from portal.i18n import LANGUAGES, explicit_language
from portal.intercept import handoff_location
from portal.state import PortalState, client_ipv4, state
from portal.urls import safe_continue_url

log = logging.getLogger(__name__)

bp = Blueprint("splash", __name__)

CODE_WINDOW_MIN = 10
# A verified hand-off names the client for this long (the resident reads the page).
HANDOFF_CONTEXT_S = 15 * 60
_GATEWAY_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")

CODE_ERRORS: dict[str, Any] = {
    "unknown": lazy_gettext("This access code is not valid. Check it and try again."),
    "expired": lazy_gettext("This access code has expired."),
    "used-up": lazy_gettext("This access code has already been used."),
    "revoked": lazy_gettext("This access code has been cancelled."),
}


@dataclass(frozen=True)
class Client:
    """Who is asking: an IPv4 address (None over IPv6) on one gateway's store."""

    ip: str | None
    store: Store
    gateway_id: str
    via_handoff: bool = False
    context_id: str = ""
    accepted: bool = False  # a hand-off context already used to accept: read-only


def current_client(st: PortalState) -> Client:
    """The requesting client: a live hand-off context, else the connection's address.

    The hand-off context lives in Redis; the cookie holds only its id, so a copy
    of the cookie is worth nothing once the resident has accepted.
    """
    for key in ("handoff", "online"):
        context_id = session.get(key)
        if not isinstance(context_id, str):
            continue
        context = st.store.handoff_context(context_id)
        if (context is not None and isinstance(context.get("gw"), str)
                and isinstance(context.get("ip"), str)):
            return Client(ip=context["ip"], store=st.store_for(context["gw"]),
                          gateway_id=context["gw"], via_handoff=True,
                          context_id=context_id, accepted=bool(context.get("accepted")))
    return Client(ip=client_ipv4(request.remote_addr), store=st.store,
                  gateway_id=st.config.gateway.id)


def current_language() -> str:
    """The page's language code (fr or en)."""
    language = str(get_locale() or "fr")
    return language if language in LANGUAGES else "fr"


def lang_args() -> dict[str, Any]:
    """``lang=…`` to keep in links and form actions when the resident chose explicitly."""
    chosen = explicit_language()
    return {"lang": chosen} if chosen else {}


def _terms(st: PortalState) -> Terms:
    try:
        return load_terms(st.config.portal.content_dir, current_language())
    except ContentError as error:
        # Checked at start; gone since: the resident sees a 503, the admin a log line.
        log.error("content unreadable: problem=%s", error)
        abort(503)


def _remaining(session_obj: Session | None, now: float) -> dict[str, int] | None:
    if session_obj is None:
        return None
    seconds = max(0, int(session_obj.expires_at - now))
    return {"hours": seconds // 3600, "minutes": (seconds % 3600) // 60}


def _data_left(session_obj: Session | None) -> str | None:
    """Today's data left for a session with a daily quota, worded (``1,5 Go``), else None."""
    left = quota_left(session_obj) if session_obj is not None else None
    return None if left is None else size_text(left, current_language())


def _ended(st: PortalState, client: Client, live: Session | None) -> dict[str, Any] | None:
    """The banner saying why this client's last session ended, while it has none."""
    if live is not None or client.ip is None:
        return None
    ended = parse_ended(client.store.ended_for_ip(client.ip))
    if ended is None:
        return None
    return banner(ended, st.clock(), town_zone(st.config.gateway.timezone))


def _render_splash(st: PortalState, client: Client, *, code_error: str | None = None,
                   status: int = 200) -> Response:
    now = st.clock()
    live = client.store.session_for_ip(client.ip) if client.ip else None
    token = request.values.get("u", "")
    continue_url = safe_continue_url(st.signer.unsign(token, client.ip), st.own_hosts)
    language = current_language()
    tiles = [{"kind": tile.kind, "title": tile.title[language], "text": tile.text[language],
              "url": tile.url[language]}
             for tile in load_tiles(st.config.portal.content_dir, dt.date.today(),
                                    store=st.store, now=now)]
    html = render_template(
        "splash.html", terms=_terms(st), tiles=tiles, online=live is not None,
        remaining=_remaining(live, now), data_left=_data_left(live),
        ended=_ended(st, client, live), continue_url=continue_url,
        u=token if continue_url else "", code_error=code_error,
        lang_args=lang_args(), switch=_switch_url(token if continue_url else ""),
    )
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _switch_url(token: str, endpoint: str = "splash.index") -> str:
    """The other language's URL for this page, keeping the signed original URL."""
    other = "en" if current_language() == "fr" else "fr"
    args: dict[str, Any] = {"lang": other}
    if token:
        args["u"] = token
    return url_for(endpoint, **args)


@bp.get("/")
def index() -> BaseResponse:
    """The splash page (or, on a gateway in remote portal mode, the way to the central one)."""
    st = state()
    client = current_client(st)
    if st.config.portal.remote_url and client.ip and not client.via_handoff:
        location = handoff_location(st, client.ip,
                                    st.signer.unsign(request.args.get("u", ""), client.ip))
        if location:
            response = redirect(location, 302)
            response.headers["Cache-Control"] = "no-store"
            return response
    return _render_splash(st, client)


def _form_client(st: PortalState) -> Client | BaseResponse:
    """The client posting a form, or the page telling an IPv6-only client to use IPv4."""
    client = current_client(st)
    if client.ip is None:
        return render_error(400, "ipv4_only")
    return client


@bp.post("/accepter")
def accept() -> BaseResponse:
    """Accept the terms: authorise this client, then 303 to the confirmation page."""
    st = state()
    client = _form_client(st)
    if not isinstance(client, Client):
        return client
    version = _terms(st).version
    return _authorize(st, client, via="accept", terms_version=version)


@bp.post("/code")
def code() -> BaseResponse:
    """Redeem an access code; wrong guesses are counted and throttled per client."""
    st = state()
    client = _form_client(st)
    if not isinstance(client, Client):
        return client
    assert client.ip is not None
    codes = client.store
    if codes.code_failures(client.ip) >= st.config.portal.code_attempts:
        return render_error(429, "too_many_codes", minutes=CODE_WINDOW_MIN)
    ended = parse_ended(codes.ended_for_ip(client.ip))
    now = st.clock()
    if ended is not None and ended.waiting(now) and codes.session_for_ip(client.ip) is None:
        # The page offered no code form (netctl would refuse): keep the code unspent.
        log.info("code refused: ip=%s gateway=%s reason=waiting reconnect_at=%s",
                 client.ip, client.gateway_id, ended.reconnect_at)
        page = _render_splash(st, client, status=429)
        page.headers["Retry-After"] = str(max(1, math.ceil((ended.reconnect_at or now) - now)))
        return page
    text = request.form.get("code", "")[:64]
    normal = normalize_code(text)
    # The portal's secret keys the stored code hashes (parvisctl reads the same file).
    redemption = codes.redeem_code(normal, st.secret, st.clock()) if normal else None
    if redemption is None or not redemption.ok:
        failures = codes.note_code_failure(client.ip)
        reason = redemption.reason if redemption is not None else "unknown"
        log.info("code refused: ip=%s gateway=%s reason=%s failures=%d",
                 client.ip, client.gateway_id, reason, failures)
        message = CODE_ERRORS.get(reason, CODE_ERRORS["unknown"])
        return _render_splash(st, client, code_error=str(message), status=400)
    return _authorize(st, client, via="code", terms_version=_terms(st).version,
                      code_batch=redemption.batch, timeout_s=redemption.session_s,
                      plan=redemption.plan)


def _authorize(st: PortalState, client: Client, *, via: str, terms_version: str,
               code_batch: str = "", timeout_s: int | None = None,
               plan: str = "") -> BaseResponse:
    """Send authorize and wait for netctl's acknowledgement; only then a fresh session.

    ``plan`` is a code batch's plan; "" lets netctl apply the default plan.
    """
    assert client.ip is not None
    if client.accepted:
        # Already accepted through this hand-off: nothing more to send.
        return redirect(url_for("splash.welcome", **lang_args()), 303)
    command = Command(Verb.AUTHORIZE, ip=ipaddress.IPv4Address(client.ip), by="portal",
                      terms_version=terms_version,
                      via="handoff" if client.via_handoff and via == "accept" else via,
                      code_batch=code_batch, timeout_s=timeout_s, plan=plan)
    result = client.store.call(command, timeout_s=st.config.portal.ack_timeout_s)
    metrics.authorize_answered(command.via, result)
    if result is None:
        log.warning("authorize not acknowledged: ip=%s gateway=%s timeout_s=%s",
                    client.ip, client.gateway_id, st.config.portal.ack_timeout_s)
        return render_error(503, "unavailable", retry=True)
    if not result.ok:
        log.info("authorize refused: ip=%s gateway=%s reason=%s",
                 client.ip, client.gateway_id, result.message)
        if result.message.startswith("quota:"):
            return _quota_refused(st, client, result.data)
        if "blocked" in result.message:
            return render_error(403, "blocked")
        if result.message.startswith("expired"):
            return render_error(503, "unavailable", retry=True)
        return render_error(409, "refused")
    log.info("accepted: ip=%s gateway=%s via=%s terms_version=%s lang=%s code_batch=%s "
             "plan=%s", client.ip, client.gateway_id, command.via, terms_version,
             current_language(), code_batch or "-", plan or "-")
    token = request.form.get("u", "")
    # A fresh session: nothing from before acceptance (CSRF token, hand-off) survives it.
    session.clear()
    if client.via_handoff:
        # The accepting context is spent; a read-only one shows the confirmation.
        st.store.drop_handoff_context(client.context_id)
        session["online"] = st.store.save_handoff_context(
            client.gateway_id, client.ip, HANDOFF_CONTEXT_S, accepted=True)
    args: dict[str, Any] = dict(lang_args())
    if st.signer.unsign(token, client.ip):
        args["u"] = token
    response = redirect(url_for("splash.welcome", **args), 303)
    response.headers["Cache-Control"] = "no-store"
    return response


def _quota_refused(st: PortalState, client: Client,
                   data: Mapping[str, Any] | None) -> Response:
    """netctl refused: this device has used today's data. A 429 saying when it may return.

    The time is netctl's (``reconnect_at`` in the result's data), else the end
    record's, else the next local midnight (when daily quotas start over).
    """
    assert client.ip is not None
    now = st.clock()
    zone = town_zone(st.config.gateway.timezone)
    reconnect_at = read_epoch(data.get("reconnect_at")) if isinstance(data, Mapping) else None
    if reconnect_at is None or reconnect_at <= now:
        ended = parse_ended(client.store.ended_for_ip(client.ip))
        reconnect_at = ended.reconnect_at if ended is not None and ended.waiting(now) else None
    if reconnect_at is None:
        reconnect_at = next_midnight(now, zone)
    when = reconnect_at
    page = render_error(429, "quota",
                        reconnect=Localized(lambda: reconnect_sentence(when, now, zone)))
    page.headers["Retry-After"] = str(max(1, math.ceil(reconnect_at - now)))
    return page


@bp.get("/bienvenue")
def welcome() -> Response:
    """The confirmation page: online, time remaining, and where the resident was going."""
    st = state()
    client = current_client(st)
    live = client.store.session_for_ip(client.ip) if client.ip else None
    token = request.args.get("u", "")
    continue_url = safe_continue_url(st.signer.unsign(token, client.ip), st.own_hosts)
    html = render_template("welcome.html", online=live is not None,
                           remaining=_remaining(live, st.clock()), data_left=_data_left(live),
                           ended=_ended(st, client, live), continue_url=continue_url,
                           switch=_switch_url(token if continue_url else "", "splash.welcome"))
    response = Response(html, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/handoff")
def handoff() -> BaseResponse:
    """Central portal: accept a gateway's signed, expiring, single-use hand-off token."""
    st = state()
    if st.handoff_secret is None:
        abort(404)
    token = request.args.get("h", "")
    now = st.clock()
    try:
        params = verify(token, st.handoff_secret, now)
    except HandoffError as error:
        log.info("hand-off refused: reason=%s", error.reason)
        return render_error(400, "handoff")
    gateway_id = params.get("gateway", "")
    ip = params.get("ip", "")
    nonce = params.get("nonce", "")
    try:
        valid_ip = isinstance(ipaddress.ip_address(ip), ipaddress.IPv4Address)
    except ValueError:
        valid_ip = False
    if not (_GATEWAY_ID_RE.match(gateway_id) and valid_ip and nonce):
        log.info("hand-off refused: reason=incomplete parameters")
        return render_error(400, "handoff")
    try:
        fresh = st.store.claim_nonce(nonce, nonce_ttl_s(params, now))
    except ValueError:
        fresh = False
    if not fresh:
        log.info("hand-off refused: reason=replayed gateway=%s", gateway_id)
        return render_error(400, "handoff")
    session.clear()
    session["handoff"] = st.store.save_handoff_context(gateway_id, ip, HANDOFF_CONTEXT_S)
    args: dict[str, Any] = dict(lang_args())
    url = params.get("url", "")
    if url:
        args["u"] = st.signer.sign(url, ip)
    response = redirect(url_for("splash.index", **args), 303)
    response.headers["Cache-Control"] = "no-store"
    return response
