"""The Parvis administration console (Flask): live view, actions, codes, content, reports.

``create_app`` builds one application per test or gunicorn worker. Blueprints:
``auth`` (login, logout), ``live`` (gateways, clients, actions), ``codes``,
``content`` (the splash page's tiles), ``reports`` and ``errors``; shared
objects live in ``app.extensions["parvis_admin"]`` (:class:`admin.state.AdminState`).
It listens on a management address only (``admin/main.py`` refuses a LAN one).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, request, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_babel import Babel, get_locale  # type: ignore[import-untyped]
from flask_wtf.csrf import CSRFProtect  # type: ignore[import-untyped]

from admin import formats
from admin.state import AdminState, current_user, state
from parvis.core.config import DEFAULT_CONFIG_PATH, Config, load_config
from parvis.core.users import SESSION_LIFETIME_S, may_act
from parvis.store import Store, connect
from portal.i18n import LANG_COOKIE, compiled_translations, explicit_language, select_locale
from portal.state import read_secret

TRANSLATIONS_DIR = Path(__file__).parent / "translations"
# Forms carry a few fields (a batch's note, a tile's texts): anything bigger is a 413.
MAX_CONTENT_LENGTH = 64 * 1024
SESSION_COOKIE = "parvis_admin"

# No script at all, styles from our own sheet only.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; "
                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, ``Secure`` exactly when the request came over TLS.

    The console is normally served over plain HTTP on loopback or a management
    address (docs/admin.md); a ``Secure`` cookie would then never come back.
    """

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(request.is_secure)


def create_app(config: Config | None = None, store: Store | None = None,
               clock: Callable[[], float] = time.time, *, testing: bool = False) -> Flask:
    """Build the console; raise ConfigError when the portal's secret is unusable.

    ``config`` defaults to ``$PARVIS_CONFIG`` or /etc/parvis/parvis.toml;
    ``store`` to one on ``[redis] url`` for ``[gateway] id`` (redis-py connects
    lazily: building the app never needs Redis). ``clock`` gives epoch seconds.
    """
    if config is None:
        config = load_config(Path(os.environ.get("PARVIS_CONFIG", str(DEFAULT_CONFIG_PATH))))
    # The portal's secret: access codes are stored under hashes keyed with it, and
    # the console's cookie key is derived from it (a key of its own, never the portal's).
    secret = read_secret(config, "secret_key_file", config.portal.secret_key_file)
    if store is None:
        store = Store(connect(config.redis.url, config.redis.timeout_s), config.gateway.id)

    app = Flask(__name__)
    app.url_map.merge_slashes = False
    app.session_interface = _SessionInterface()
    app.config.update(
        TESTING=testing,
        SECRET_KEY=hmac.new(secret, b"parvis-admin-cookie-v1", hashlib.sha256).digest(),
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        MAX_FORM_MEMORY_SIZE=MAX_CONTENT_LENGTH,
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME_S,
        # Referrer-Policy: no-referrer means browsers send no Referer, which
        # Flask-WTF's HTTPS check would refuse; the token is the proof.
        WTF_CSRF_SSL_STRICT=False,
        WTF_CSRF_TIME_LIMIT=SESSION_LIFETIME_S,
        BABEL_DEFAULT_LOCALE="fr",
        BABEL_TRANSLATION_DIRECTORIES=str(compiled_translations(TRANSLATIONS_DIR)),
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.extensions["parvis_admin"] = AdminState(config=config, store=store, clock=clock)
    Babel(app, locale_selector=select_locale)
    CSRFProtect(app)

    from admin import auth, codes, content, errors, live, reports

    app.register_blueprint(auth.bp)
    app.register_blueprint(live.bp)
    app.register_blueprint(codes.bp)
    app.register_blueprint(content.bp)
    app.register_blueprint(reports.bp)
    app.register_blueprint(errors.bp)
    app.before_request(_check_host)
    app.before_request(auth.load_user)
    app.after_request(_security_headers)
    app.context_processor(_template_globals)
    _add_filters(app)
    return app


def trusted_hosts(config: Config) -> list[str]:
    """The Host values the console answers: its own address, and loopback names (tunnels)."""
    address = config.admin.address
    hosts = [str(address), "localhost", "127.0.0.1", "[::1]"]
    if isinstance(address, ipaddress.IPv6Address):
        hosts.append(f"[{address}]")
    return list(dict.fromkeys(hosts))


def host_name(host: str) -> str:
    """The name or address of a Host header, without its port (``[::1]`` keeps brackets)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.partition(":")[0]


def _check_host() -> None:
    """Refuse (400) any Host but ours.

    DNS rebinding: a page elsewhere could point its own name at this address and
    script requests to it (werkzeug's TRUSTED_HOSTS cannot match IPv6 addresses).
    """
    if host_name(request.host) not in trusted_hosts(state().config):
        abort(400)


def page_language() -> str:
    """The page's language (fr or en)."""
    language = str(get_locale() or "fr")
    return language if language in ("fr", "en") else "fr"


def _switch_url() -> str | None:
    """This page in the other language (GET pages only: a POST's answer is not re-sent)."""
    if request.method != "GET" or request.endpoint is None or request.endpoint == "static":
        return None
    other = "en" if page_language() == "fr" else "fr"
    try:
        return url_for(request.endpoint, **(request.view_args or {}), lang=other)
    except Exception:  # an error page for a URL that matched nothing
        return None


def _template_globals() -> dict[str, Any]:
    user = current_user()
    return {"page_lang": page_language(), "user": user,
            "can_act": user is not None and may_act(user.role), "switch": _switch_url()}


def _add_filters(app: Flask) -> None:
    def zone() -> Any:
        return state().zone

    app.add_template_filter(lambda epoch: formats.timestamp_text(epoch, zone()), "when")
    app.add_template_filter(lambda epoch: formats.input_value(epoch, zone()), "input_time")
    app.add_template_filter(lambda s: formats.duration_text(s, page_language()), "duration")
    app.add_template_filter(lambda n: formats.bytes_text(n, page_language()), "size")
    app.add_template_filter(lambda bps: formats.rate_text(bps, page_language()), "rate")


def _security_headers(response: Response) -> Response:
    """Headers every answer carries; the language cookie remembers an explicit choice."""
    headers = response.headers
    if response.mimetype == "text/html":
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    # Everything here is live state or personal data: never kept by a browser or proxy.
    if request.endpoint != "static":
        headers["Cache-Control"] = "no-store"
    chosen = explicit_language()
    if chosen:
        response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 86400, secure=request.is_secure,
                            httponly=True, samesite="Strict")
    return response
