"""Login, logout and the role checks every other view goes through.

The browser's cookie is Flask's signed session; it holds a random session id
whose record lives in Redis (``Keys.admin_session``) for eight hours from the
login. A login replaces the whole cookie (no fixation), a logout deletes the
record, and a new password or a removed account ends the account's sessions
at their next request.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import secrets
import unicodedata
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, abort, g, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext  # type: ignore[import-untyped]
from werkzeug.wrappers import Response as BaseResponse

from admin.state import current_user, state
from parvis import passwords
from parvis.core.users import SESSION_LIFETIME_S, LoginGate, Role, locked_now, login_gate, may_act
from parvis.core.users import name_problem as account_name_problem

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

MAX_NAME_CHARS = 64
# Where a wrong name's failures are counted when it cannot even be a name.
_INVALID_NAME = "-"

F = TypeVar("F", bound=Callable[..., Any])

LOGIN_ERRORS: dict[str, Any] = {
    "wrong": lazy_gettext("Wrong account name or password."),
    "locked": lazy_gettext("Too many wrong passwords for this account. Try again in "
                           "%(minutes)s minutes."),
    "throttled": lazy_gettext("Too many wrong passwords from this computer. Try again in "
                              "%(minutes)s minutes."),
}


def safe_next(value: str | None) -> str | None:
    """``value`` when it is a path on this console (``/passerelles/gw``), else None.

    No scheme, no host, no ``//`` or ``/\\`` (browsers read both as another
    host), no control or blank characters: never an open redirect.
    """
    if not value or len(value) > 512 or not value.startswith("/"):
        return None
    if value.startswith(("//", "/\\")) or "\\" in value:
        return None
    if any(unicodedata.category(c)[0] in "CZ" for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


def _client_address() -> str:
    """The connection's source address (the console faces browsers, or a tunnel, directly)."""
    try:
        return ipaddress.ip_address(request.remote_addr or "").compressed
    except ValueError:
        return "unknown"


def load_user() -> None:
    """Before each request: ``g.user`` is the logged-in account, or None."""
    g.user = None
    if request.endpoint == "static":
        return
    session_id = session.get("sid")
    if not isinstance(session_id, str):
        return
    st = state()
    info = st.store.admin_session(session_id)
    user = st.store.admin_user(str(info.get("user", ""))) if info is not None else None
    if info is None or user is None or info.get("generation") != user.generation:
        # Expired, logged out, password changed or account removed: start over.
        session.pop("sid", None)
        return
    g.user = user


def login_required(role: Role | None = None) -> Callable[[F], F]:
    """Views for logged-in accounts; ``role=Role.ADMIN`` for those that change anything.

    Not logged in: to the login page (coming back here after it, for a GET).
    Logged in without the role: 403.
    """
    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                target = request.full_path.rstrip("?") if request.method == "GET" else None
                return redirect(url_for("auth.login", next=safe_next(target)), 303)
            if role is Role.ADMIN and not may_act(user.role):
                log.info("admin refused: user=%s role=%s path=%s", user.name, user.role.value,
                         request.path)
                abort(403)
            return view(*args, **kwargs)
        return wrapper  # type: ignore[return-value]
    return decorate


def _minutes(seconds: int) -> int:
    return max(1, -(-seconds // 60))


@bp.route("/connexion", methods=["GET", "POST"])
def login() -> BaseResponse | str | tuple[str, int]:
    """The login form; on success a fresh session, then the page asked for."""
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_user() is not None:
            return redirect(target or url_for("live.dashboard"), 303)
        return render_template("login.html", next=target, error=None, name="")
    st = state()
    lockout_s = st.config.admin.lockout_s
    name = request.form.get("name", "").strip().lower()[:MAX_NAME_CHARS]
    password = request.form.get("password", "")
    address = _client_address()
    counted_as = name if account_name_problem(name) is None else _INVALID_NAME
    account_failures, address_failures = st.store.admin_failures(counted_as, address)
    gate = login_gate(account_failures, address_failures, st.config.admin.lockout_attempts)
    if gate is not LoginGate.OPEN:
        # Not even checked: guessing goes no faster while locked. Counted for the
        # address only, so that someone hammering does not keep an account locked.
        st.store.note_admin_failure(counted_as, address, lockout_s, count_account=False)
        log.info("admin login refused: name=%s address=%s reason=%s", counted_as, address,
                 gate.value)
        kind = "throttled" if gate is LoginGate.ADDRESS_THROTTLED else "locked"
        error = str(LOGIN_ERRORS[kind]) % {"minutes": _minutes(lockout_s)}
        return render_template("login.html", next=target, error=error, name=name), 429
    user = st.store.admin_user(name) if counted_as == name else None
    # A wrong name costs the same argon2 verification as a wrong password.
    hashed = user.password_hash if user is not None else passwords.dummy_hash()
    matches = passwords.verify_password(hashed, password[:1024])
    if user is None or not matches:
        failures, _ = st.store.note_admin_failure(counted_as, address, lockout_s)
        log.info("admin login failed: name=%s address=%s failures=%d%s", counted_as, address,
                 failures,
                 " locked" if locked_now(failures, st.config.admin.lockout_attempts) else "")
        return render_template("login.html", next=target, error=str(LOGIN_ERRORS["wrong"]),
                               name=name), 400
    now = st.clock()
    if passwords.needs_rehash(user.password_hash):
        st.store.set_admin_password(user.name, passwords.hash_password(password), now,
                                    new_generation=False)
    st.store.note_admin_login(user.name, now)
    # A new cookie and a new session id: nothing from before the login survives it.
    old = session.get("sid")
    if isinstance(old, str):
        st.store.drop_admin_session(old)
    session.clear()
    session_id = secrets.token_urlsafe(32)
    st.store.save_admin_session(session_id, {"user": user.name, "generation": user.generation,
                                             "created_at": now, "address": address},
                                SESSION_LIFETIME_S)
    session["sid"] = session_id
    session.permanent = True
    log.info("admin login: user=%s role=%s address=%s", user.name, user.role.value, address)
    return redirect(target or url_for("live.dashboard"), 303)


@bp.post("/deconnexion")
def logout() -> BaseResponse:
    """End this session here and in Redis."""
    session_id = session.get("sid")
    user = current_user()
    if isinstance(session_id, str):
        state().store.drop_admin_session(session_id)
    session.clear()
    if user is not None:
        log.info("admin logout: user=%s", user.name)
    return redirect(url_for("auth.login"), 303)
