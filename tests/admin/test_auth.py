"""Login, lockout, sessions, logout, CSRF and the console's headers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

import parvis.passwords
from admin import create_app
from admin.auth import safe_next
from parvis.core.config import Config
from parvis.core.users import User
from parvis.store import Keys, Store, connect
from tests.admin.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    VIEWER,
    admin_config,
    csrf_token,
    login,
)
from tests.portal.conftest import RedisServer


def _session_cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie("parvis_admin")
    return cookie.value if cookie is not None else None


def test_login_then_dashboard(client: FlaskClient, accounts: dict[str, User],
                              store: Store) -> None:
    answer = login(client, ADMIN, ADMIN_PASSWORD)
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Passerelles" in html and "alice (administrateur)" in html
    assert store.admin_user(ADMIN).last_login_at is not None  # type: ignore[union-attr]


def test_pages_need_a_login_and_come_back_after_it(client: FlaskClient,
                                                   accounts: dict[str, User]) -> None:
    answer = client.get("/codes")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/connexion?next=/codes"
    back = login(client, ADMIN, ADMIN_PASSWORD, next_path="/codes")
    assert back.headers["Location"] == "/codes"


@pytest.mark.parametrize("target", [
    "//evil.example/", "/\\evil.example", "https://evil.example/", "http:/evil",
    "javascript:alert(1)", "/ok\r\nLocation: x", "evil", "/\t/evil.example", ""])
def test_next_goes_only_to_local_paths(client: FlaskClient, accounts: dict[str, User],
                                       target: str) -> None:
    assert safe_next(target) is None
    answer = login(client, ADMIN, ADMIN_PASSWORD, next_path=target)
    assert answer.status_code == 303 and answer.headers["Location"] == "/"


def test_safe_next_keeps_local_paths_and_queries() -> None:
    assert safe_next("/passerelles/gw-test") == "/passerelles/gw-test"
    assert safe_next("/rapports?mois=2026-11") == "/rapports?mois=2026-11"


def test_wrong_password_is_refused(client: FlaskClient, accounts: dict[str, User]) -> None:
    answer = login(client, ADMIN, "not the password at all")
    assert answer.status_code == 400
    assert "Nom de compte ou mot de passe erroné." in answer.get_data(as_text=True)
    assert client.get("/").status_code == 303


def test_unknown_name_verifies_the_dummy_hash_and_answers_the_same(
        client: FlaskClient, accounts: dict[str, User],
        monkeypatch: pytest.MonkeyPatch) -> None:
    verified: list[str] = []
    real = parvis.passwords.verify_password

    def spy(password_hash: str, password: str) -> bool:
        verified.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(parvis.passwords, "verify_password", spy)
    unknown = login(client, "nobody", ADMIN_PASSWORD)
    wrong = login(client, ADMIN, "not the password at all")
    assert verified == [parvis.passwords.dummy_hash(), accounts[ADMIN].password_hash]
    assert unknown.status_code == wrong.status_code == 400
    for answer in (unknown, wrong):
        assert "Nom de compte ou mot de passe erroné." in answer.get_data(as_text=True)
    # The same cost: both an argon2 verification of the same parameters.
    assert parvis.passwords.dummy_hash().split("$")[3] == \
        accounts[ADMIN].password_hash.split("$")[3]


def test_lockout_after_wrong_passwords_then_lifted(
        tmp_path: Path, redis_server: RedisServer, store: Store,
        accounts: dict[str, User]) -> None:
    config = admin_config(tmp_path, redis_server.url, lockout_attempts=3, lockout_s=1)
    client = create_app(config, store=store, testing=True).test_client()
    for _ in range(3):
        assert login(client, ADMIN, "wrong wrong wrong").status_code == 400
    locked = login(client, ADMIN, ADMIN_PASSWORD)
    assert locked.status_code == 429
    assert "Trop de mots de passe erronés pour ce compte" in locked.get_data(as_text=True)
    # Another account from the same address is not locked.
    assert login(create_app(config, store=store, testing=True).test_client(), VIEWER,
                 "council staple 2026").status_code == 303
    time.sleep(1.2)
    assert login(client, ADMIN, ADMIN_PASSWORD).status_code == 303


def test_attempts_while_locked_do_not_extend_the_lock(
        client: FlaskClient, accounts: dict[str, User], store: Store) -> None:
    for _ in range(3):
        login(client, ADMIN, "wrong wrong wrong")
    ttl = store.client.ttl(Keys.admin_failures("account", ADMIN))
    time.sleep(1.1)
    assert login(client, ADMIN, ADMIN_PASSWORD).status_code == 429
    assert store.client.ttl(Keys.admin_failures("account", ADMIN)) < ttl


def test_unknown_names_lock_the_same_way(client: FlaskClient,
                                         accounts: dict[str, User]) -> None:
    for _ in range(3):
        assert login(client, "mallory", "wrong wrong wrong").status_code == 400
    assert login(client, "mallory", "wrong wrong wrong").status_code == 429


def test_one_address_is_throttled_across_names(client: FlaskClient,
                                               accounts: dict[str, User]) -> None:
    # lockout_attempts 3: an address gets 4 × 3 wrong passwords, whatever the names.
    for number in range(12):
        assert login(client, f"guess{number}", "wrong wrong wrong").status_code == 400
    answer = login(client, VIEWER, "council staple 2026")
    assert answer.status_code == 429
    assert "depuis cet ordinateur" in answer.get_data(as_text=True)


def test_login_rotates_the_cookie_and_the_old_one_is_worthless(
        admin_app: Flask, client: FlaskClient, accounts: dict[str, User]) -> None:
    csrf_token(client)
    before = _session_cookie(client)
    assert before is not None  # the login form's CSRF token lives in the session
    login(client, ADMIN, ADMIN_PASSWORD)
    after = _session_cookie(client)
    assert after is not None and after != before
    fixated = admin_app.test_client()
    fixated.set_cookie("parvis_admin", before)
    assert fixated.get("/").status_code == 303


def test_session_cookie_flags(client: FlaskClient, accounts: dict[str, User],
                              store: Store) -> None:
    csrf = csrf_token(client)
    answer = client.post("/connexion", data={"csrf_token": csrf, "name": ADMIN,
                                             "password": ADMIN_PASSWORD})
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback: it would never come back
    [key] = store.client.keys("parvis:admin:session:*")
    assert 8 * 3600 - 10 < store.client.ttl(key) <= 8 * 3600
    over_tls = client.application.test_client()
    page = over_tls.get("/connexion", base_url="https://localhost")
    assert "Secure" in page.headers["Set-Cookie"]


def test_logout_ends_the_session_everywhere(admin_app: Flask, client: FlaskClient,
                                            accounts: dict[str, User], store: Store) -> None:
    login(client, ADMIN, ADMIN_PASSWORD)
    copied = _session_cookie(client)
    assert copied is not None
    answer = client.post("/deconnexion", data={"csrf_token": csrf_token(client, "/")})
    assert answer.status_code == 303 and answer.headers["Location"] == "/connexion"
    assert client.get("/").status_code == 303
    assert store.client.keys("parvis:admin:session:*") == []
    replay = admin_app.test_client()
    replay.set_cookie("parvis_admin", copied)
    assert replay.get("/").status_code == 303


def test_a_new_password_or_a_removed_account_ends_sessions(
        client: FlaskClient, accounts: dict[str, User], store: Store) -> None:
    login(client, ADMIN, ADMIN_PASSWORD)
    assert client.get("/").status_code == 200
    assert store.set_admin_password(ADMIN, accounts[ADMIN].password_hash, time.time())
    assert client.get("/").status_code == 303
    login(client, ADMIN, ADMIN_PASSWORD)
    assert client.get("/").status_code == 200
    assert store.remove_admin_user(ADMIN)
    assert client.get("/").status_code == 303


def test_forms_without_a_token_are_refused(client: FlaskClient,
                                           accounts: dict[str, User]) -> None:
    answer = client.post("/connexion", data={"name": ADMIN, "password": ADMIN_PASSWORD})
    assert answer.status_code == 400
    html = answer.get_data(as_text=True)
    assert "Ce formulaire a expiré" in html and "This form has expired" in html
    login(client, ADMIN, ADMIN_PASSWORD)
    forged = client.post("/passerelles/gw-test/deconnecter",
                         data={"mac": "02:00:00:00:00:10", "csrf_token": "forged"})
    assert forged.status_code == 400
    assert client.post("/deconnexion").status_code == 400


def test_headers_and_no_script(as_admin: FlaskClient) -> None:
    page = as_admin.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/", "/codes", "/contenu", "/rapports", "/passerelles/gw-test"):
        html = as_admin.get(path).get_data(as_text=True)
        assert "<script" not in html and " style=" not in html and " on" + "click" not in html


def test_another_host_is_refused(client: FlaskClient) -> None:
    assert client.get("/connexion", headers={"Host": "rebound.example"}).status_code == 400
    assert client.get("/connexion", headers={"Host": "127.0.0.1:8090"}).status_code == 200
    assert client.get("/connexion", headers={"Host": "[::1]:8090"}).status_code == 200


def test_error_pages_in_both_languages_without_details(config: Config, store: Store) -> None:
    admin_app = create_app(config, store=store, testing=True)

    def boom() -> str:
        raise RuntimeError("secret detail")

    admin_app.add_url_rule("/boom", view_func=boom)
    client = admin_app.test_client()
    missing = client.get("/nulle-part")
    assert missing.status_code == 404
    html = missing.get_data(as_text=True)
    assert html.index("Page introuvable") < html.index("Page not found")
    english = client.get("/nulle-part?lang=en").get_data(as_text=True)
    assert english.index("Page not found") < english.index("Page introuvable")
    failed = client.get("/boom")
    assert failed.status_code == 500
    text = failed.get_data(as_text=True)
    assert "secret detail" not in text and "Traceback" not in text
    assert "Une erreur est survenue" in text


def test_redis_down_is_a_503_page(config: Config, admin_app: Flask,
                                  accounts: dict[str, User]) -> None:
    client = admin_app.test_client()
    login(client, ADMIN, ADMIN_PASSWORD)
    cookie = _session_cookie(client)
    assert cookie is not None
    down = Store(connect("unix:///nonexistent/redis.sock", 0.2), "gw-test")
    broken = create_app(config, store=down, testing=True).test_client()
    broken.set_cookie("parvis_admin", cookie)
    answer = broken.get("/")
    assert answer.status_code == 503
    assert "Temporairement indisponible" in answer.get_data(as_text=True)
    assert answer.headers["Retry-After"]
