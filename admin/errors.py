"""Error pages: every 4xx and 5xx in the page's language, with the other one beneath.

No traceback ever reaches a browser. Redis failures anywhere become a 503
page; anything unexpected is logged with its traceback and answered with a
plain 500 page.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, render_template, request
from flask_babel import force_locale, get_locale, lazy_gettext  # type: ignore[import-untyped]
from flask_wtf.csrf import CSRFError  # type: ignore[import-untyped]
from werkzeug.exceptions import HTTPException

from parvis.store import StoreError
from portal.errors import ensure_url_adapter

log = logging.getLogger(__name__)

bp = Blueprint("errors", __name__)

LANGUAGES = ("fr", "en")

MESSAGES: dict[str, tuple[Any, Any]] = {
    "bad_request": (lazy_gettext("This request could not be understood"),
                    lazy_gettext("Go back to the previous page and try again.")),
    "csrf": (lazy_gettext("This form has expired"),
             lazy_gettext("For your safety the form could not be accepted (it was too old, "
                          "or came from another page). Reload the page and try again.")),
    "forbidden": (lazy_gettext("Not allowed for your account"),
                  lazy_gettext("Your account can read the console but not change anything. "
                               "Ask an administrator.")),
    "not_found": (lazy_gettext("Page not found"),
                  lazy_gettext("This page does not exist, or what it showed is gone.")),
    "method": (lazy_gettext("Not allowed"),
               lazy_gettext("This page cannot be used this way.")),
    "too_large": (lazy_gettext("Too much data"),
                  lazy_gettext("The form sent more data than the console accepts.")),
    "too_many": (lazy_gettext("Too many requests"),
                 lazy_gettext("Please wait a moment and try again.")),
    "unavailable": (lazy_gettext("Temporarily unavailable"),
                    lazy_gettext("Redis (the town's shared store) did not answer in time, or "
                                 "a file the console needs is unreadable. Try again in a "
                                 "moment; if it lasts, check the services on the gateway.")),
    "internal": (lazy_gettext("Something went wrong"),
                 lazy_gettext("The console met an unexpected problem. It has been logged.")),
}

_KIND_BY_STATUS = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method",
                   413: "too_large", 429: "too_many", 503: "unavailable"}


def render_error(status: int, kind: str) -> Response:
    """The error page for ``kind`` in the current language, followed by the other language."""
    title, text = MESSAGES.get(kind, MESSAGES["internal"])
    current = str(get_locale() or "fr")
    current = current if current in LANGUAGES else "fr"
    versions = []
    for language in [current] + [lang for lang in LANGUAGES if lang != current]:
        with force_locale(language):
            versions.append({"lang": language, "title": str(title), "text": str(text)})
    ensure_url_adapter()  # the Host may have been too malformed for werkzeug to make one
    html = render_template("error.html", status=status, versions=versions)
    response = Response(html, status=status, mimetype="text/html")
    if status == 503:
        response.headers["Retry-After"] = "5"
    return response


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException) -> Response | HTTPException:
    """Bad input of any kind: a page in both languages, never a traceback."""
    if error.code is None or error.code < 400:
        return error
    if isinstance(error, CSRFError):
        log.info("admin form refused: path=%s reason=%s", request.path, error.description)
        return render_error(400, "csrf")
    status = error.code if error.code in _KIND_BY_STATUS else 400
    return render_error(status, _KIND_BY_STATUS[status])


@bp.app_errorhandler(StoreError)
def store_error(error: Exception) -> Response:
    """Redis down or too slow: a 503 page."""
    log.warning("store unavailable: path=%s problem=%s", request.path, error)
    return render_error(503, "unavailable")


@bp.app_errorhandler(Exception)
def unexpected_error(error: Exception) -> Response:
    """A bug: logged with its traceback, answered with a plain page without details."""
    log.exception("unexpected error: path=%s", request.path)
    try:
        return render_error(500, "internal")
    except Exception:  # the page itself failed: plain text, still no details
        log.exception("error page failed")
        return Response("500 — Erreur / Error\n", status=500, mimetype="text/plain")
