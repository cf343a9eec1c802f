"""The Parvis captive portal (Flask): interception, splash pages, the RFC 8908 API.

``create_app`` builds one application per test or gunicorn worker. The
blueprints are ``intercept`` (the plain-HTTP listener), ``splash`` (HTTPS
pages), ``api`` (RFC 8908) and ``errors``; shared objects live in
``app.extensions["parvis"]`` (:class:`portal.state.PortalState`).
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, Response, request
from flask_babel import Babel  # type: ignore[import-untyped]
from flask_wtf.csrf import CSRFProtect  # type: ignore[import-untyped]

from parvis.core.config import DEFAULT_CONFIG_PATH, Config, load_config
from parvis.store import Store, connect
from portal.i18n import LANG_COOKIE, compiled_translations, explicit_language, select_locale
from portal.state import PortalState, check_content_dir, read_secret
from portal.urls import UrlSigner

# Requests carry a few form fields at most: anything bigger is refused with 413.
MAX_CONTENT_LENGTH = 16 * 1024

CONTENT_SECURITY_POLICY = ("default-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def create_app(config: Config | None = None, *, store: Store | None = None,
               testing: bool = False) -> Flask:
    """Build the portal; raise ConfigError when the secret or the content is unusable.

    ``config`` defaults to ``$PARVIS_CONFIG`` or /etc/parvis/parvis.toml;
    ``store`` defaults to one on ``[redis] url`` for ``[gateway] id`` (redis-py
    connects lazily, so building the app never needs Redis).
    """
    if config is None:
        config = load_config(Path(os.environ.get("PARVIS_CONFIG", str(DEFAULT_CONFIG_PATH))))
    secret = read_secret(config, "secret_key_file", config.portal.secret_key_file)
    handoff_file = config.portal.handoff_secret_file
    handoff_secret = (read_secret(config, "handoff_secret_file", handoff_file)
                      if handoff_file is not None else None)
    check_content_dir(config)
    if store is None:
        store = Store(connect(config.redis.url, config.redis.timeout_s), config.gateway.id)

    app = Flask(__name__)
    # Werkzeug would answer //-paths with a redirect built from the Host header
    # (the client's own words): no such redirects here.
    app.url_map.merge_slashes = False
    app.config.update(
        TESTING=testing,
        SECRET_KEY=secret,
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        MAX_FORM_MEMORY_SIZE=MAX_CONTENT_LENGTH,
        SESSION_COOKIE_NAME="parvis_session",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Referrer-Policy: no-referrer means browsers send no Referer, which
        # Flask-WTF's strict HTTPS check would refuse; the token is the proof.
        WTF_CSRF_SSL_STRICT=False,
        WTF_CSRF_TIME_LIMIT=3600,
        BABEL_DEFAULT_LOCALE="fr",
        BABEL_TRANSLATION_DIRECTORIES=str(compiled_translations()),
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.extensions["parvis"] = PortalState(config=config, store=store, secret=secret,
                                           signer=UrlSigner(secret),
                                           handoff_secret=handoff_secret)
    Babel(app, locale_selector=select_locale)

    from portal import api, errors, intercept, metrics, splash

    # Metrics before anything else: their clock starts when the request arrives.
    metrics.install(app, config)
    # The interceptor first: a plain-HTTP POST must get its 302, not a CSRF refusal.
    app.register_blueprint(intercept.bp)
    CSRFProtect(app)
    app.register_blueprint(splash.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(errors.bp)
    app.after_request(_security_headers)
    app.context_processor(_template_globals)
    return app


def _template_globals() -> dict[str, str]:
    """``page_lang``: the page's language, for ``<html lang>`` and the switch link."""
    from portal.splash import current_language

    return {"page_lang": current_language()}


def _security_headers(response: Response) -> Response:
    """Headers every answer carries; the language cookie remembers an explicit choice."""
    headers = response.headers
    if response.mimetype == "text/html":
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers.setdefault("Cache-Control", "no-store")
    chosen = explicit_language()
    if chosen and request.scheme == "https":
        response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 86400, secure=True,
                            httponly=True, samesite="Lax")
    return response
