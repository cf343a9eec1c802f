"""Error pages: every 4xx and 503 in the resident's language, with the other one beneath.

No traceback ever reaches a resident. Redis failures anywhere become the
friendly 503 page with a retry button; anything unexpected is logged and
answered with a plain 500 page.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from flask import Blueprint, Response, current_app, render_template, request
from flask.globals import request_ctx
from flask_babel import force_locale, get_locale, lazy_gettext  # type: ignore[import-untyped]
from flask_wtf.csrf import CSRFError  # type: ignore[import-untyped]
from werkzeug.exceptions import HTTPException

from parvis.store import StoreError
from portal.i18n import LANGUAGES

log = logging.getLogger(__name__)

bp = Blueprint("errors", __name__)

# Form fields a retry may carry back (anything else is dropped, never reflected).
RETRY_FIELDS = ("u", "code", "lang")

# kind -> (title, explanation); %(minutes)s is filled for "too_many_codes", %(reconnect)s
# (a sentence saying when, portal.ended.reconnect_sentence) for "quota".
MESSAGES: dict[str, tuple[Any, Any]] = {
    "bad_request": (lazy_gettext("This request could not be understood"),
                    lazy_gettext("Please go back to the Wi-Fi page and try again.")),
    "csrf": (lazy_gettext("This page has expired"),
             lazy_gettext("For your safety the form could not be accepted. "
                          "Please reload the Wi-Fi page and try again.")),
    "ipv4_only": (lazy_gettext("Please connect over IPv4"),
                  lazy_gettext("This device reached the portal over IPv6. The portal needs "
                               "its IPv4 address to let it online: open the Wi-Fi page again "
                               "by its name, or turn off IPv6 for this network and retry.")),
    "handoff": (lazy_gettext("This link is no longer valid"),
                lazy_gettext("The link from the Wi-Fi access point is invalid, expired or "
                             "already used. Open any web page to get a fresh one.")),
    "blocked": (lazy_gettext("This device cannot connect"),
                lazy_gettext("This device is not allowed on the network. If you think this is "
                             "a mistake, please contact the city.")),
    "forbidden": (lazy_gettext("Access refused"),
                  lazy_gettext("You are not allowed to do this.")),
    "not_found": (lazy_gettext("Page not found"),
                  lazy_gettext("This page does not exist. The Wi-Fi page is one tap away.")),
    "method": (lazy_gettext("Not allowed"),
               lazy_gettext("This page cannot be used this way.")),
    "refused": (lazy_gettext("The connection was refused"),
                lazy_gettext("The Wi-Fi access point could not let this device online. "
                             "Please make sure you are connected to the city's Wi-Fi "
                             "and try again.")),
    "too_large": (lazy_gettext("Too much data"),
                  lazy_gettext("The form sent more data than the portal accepts.")),
    "too_many_codes": (lazy_gettext("Too many attempts"),
                       lazy_gettext("Too many wrong access codes from this device. "
                                    "Please try again in %(minutes)s minutes.")),
    "quota": (lazy_gettext("Daily data limit reached"),
              lazy_gettext("This device has used all of its data for today. %(reconnect)s")),
    "unavailable": (lazy_gettext("The Wi-Fi is briefly unavailable"),
                    lazy_gettext("The network did not answer in time. Your request was not "
                                 "lost: please try again in a moment.")),
    "internal": (lazy_gettext("Something went wrong"),
                 lazy_gettext("The portal met an unexpected problem. Please try again.")),
}

_KIND_BY_STATUS = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method",
                   409: "refused", 413: "too_large", 429: "too_many_codes",
                   503: "unavailable"}


def _retry() -> dict[str, Any] | None:
    """What the retry button re-sends: same method, same URL, the known fields only."""
    if request.method == "POST":
        try:
            fields = {k: v for k, v in request.form.items() if k in RETRY_FIELDS}
        except HTTPException:  # an unreadable body: retry without it
            fields = {}
        return {"method": "post", "action": request.full_path.rstrip("?"), "fields": fields}
    fields = {k: v for k, v in request.args.items() if k in RETRY_FIELDS}
    return {"method": "get", "action": request.path, "fields": fields}


def ensure_url_adapter() -> None:
    """Give the request a URL adapter if it has none, so an error page can build its links.

    werkzeug makes none when it cannot IDNA-encode the Host header (a label over
    63 characters, an empty label): the request is answered 400 (BadHost), but
    ``url_for`` in the page would then fail. The links built are relative.
    """
    if request_ctx.url_adapter is None:
        request_ctx.url_adapter = current_app.url_map.bind(
            "localhost", script_name=request.script_root or "/", url_scheme=request.scheme)


def render_error(status: int, kind: str, *, retry: bool = False, **params: Any) -> Response:
    """The error page for ``kind`` in the current language, followed by the other language."""
    if request.path.startswith("/api/"):
        body = json.dumps({"error": kind}, separators=(",", ":"))
        response = Response(body, status=status, mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response
    title, text = MESSAGES.get(kind, MESSAGES["internal"])
    current = str(get_locale() or "fr")
    current = current if current in LANGUAGES else "fr"
    versions = []
    for language in [current] + [lang for lang in LANGUAGES if lang != current]:
        with force_locale(language):
            versions.append({"lang": language, "title": str(title),
                             "text": str(text) % params if params else str(text)})
    ensure_url_adapter()
    html = render_template("error.html", status=status, versions=versions,
                           retry=_retry() if retry else None)
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    if status == 503:
        response.headers["Retry-After"] = "2"
    return response


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException) -> Response | HTTPException:
    """Bad input of any kind: a page in both languages, never a traceback."""
    if error.code is None or error.code < 400:
        return error
    if isinstance(error, CSRFError):
        return render_error(400, "csrf")
    status = error.code if error.code in _KIND_BY_STATUS else 400
    kind = _KIND_BY_STATUS[status]
    params = {"minutes": 10} if kind == "too_many_codes" else {}
    return render_error(status, kind, retry=status == 503, **params)


@bp.app_errorhandler(StoreError)
@bp.app_errorhandler(redis.RedisError)
def store_error(error: Exception) -> Response:
    """Redis down or too slow: the friendly 503 with a retry button."""
    log.warning("store unavailable: path=%s problem=%s", request.path, error)
    return render_error(503, "unavailable", retry=True)


@bp.app_errorhandler(Exception)
def unexpected_error(error: Exception) -> Response:
    """A bug: logged with its traceback, answered with a plain page without details."""
    log.exception("unexpected error: path=%s", request.path)
    try:
        return render_error(500, "internal")
    except Exception:  # the page itself failed: plain text, still no details
        log.exception("error page failed")
        return Response("500 — Erreur / Error\n", status=500, mimetype="text/plain")
