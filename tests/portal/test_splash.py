"""The HTTPS pages: splash, accept, confirmation, errors, in French and English."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from parvis.core.commands import Command, Result
from parvis.core.config import Config
from parvis.store import Store, connect
from portal import create_app
from portal.content import load_terms
from tests.portal.conftest import (
    CLIENT_IP,
    FakeNetctl,
    RedisServer,
    https_client,
    make_config,
)
from tests.portal.helpers import accessibility_problems, csrf_token

FR_BUTTON = "Accepter et me connecter"
EN_BUTTON = "Accept and connect"


def _signed(app: Flask, url: str, client: str = CLIENT_IP) -> str:
    return str(app.extensions["parvis"].signer.sign(url, client))


def test_splash_is_french_by_default(client: FlaskClient) -> None:
    response = client.get("/")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<html lang="fr">' in page and FR_BUTTON in page
    assert "utilisation du Wi-Fi public</h3>" in page  # the town's terms, rendered
    assert 'hreflang="en"' in page


@pytest.mark.parametrize("header", ["en", "en-CA,en;q=0.9", "de;q=1, en;q=0.5"])
def test_splash_follows_accept_language(client: FlaskClient, header: str) -> None:
    page = client.get("/", headers={"Accept-Language": header}).get_data(as_text=True)
    assert '<html lang="en">' in page and EN_BUTTON in page
    assert "Terms of use of the public Wi-Fi" in page


@pytest.mark.parametrize("header", ["de", "fr-CA,en;q=0.5", "", "en;q=0", "fr_CA"])
def test_splash_falls_back_to_french(client: FlaskClient, header: str) -> None:
    page = client.get("/", headers={"Accept-Language": header}).get_data(as_text=True)
    assert '<html lang="fr">' in page


def test_explicit_choice_wins_and_is_remembered(app: Flask, client: FlaskClient) -> None:
    token = _signed(app, "http://example.com/")
    page = client.get(f"/?lang=en&u={token}",
                      headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert '<html lang="en">' in page
    # The switch back keeps the state (the signed original URL).
    switch = re.search(r'<a href="([^"]+)" lang="fr" hreflang="fr">Français</a>', page)
    assert switch and f"u={token}" in switch.group(1).replace("&amp;", "&")
    # The cookie remembers the choice.
    assert '<html lang="en">' in client.get("/").get_data(as_text=True)
    assert '<html lang="fr">' in client.get("/?lang=fr").get_data(as_text=True)


def test_security_headers_on_every_html_response(app: Flask, client: FlaskClient) -> None:
    for path in ("/", "/bienvenue", "/nope", "/?lang=en"):
        response = client.get(path)
        assert response.mimetype == "text/html"
        assert response.headers["Content-Security-Policy"] == (
            "default-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert client.post("/accepter").headers["Content-Security-Policy"]


def test_page_weight_under_50_kb(client: FlaskClient) -> None:
    for lang in ("fr", "en"):
        page = client.get(f"/?lang={lang}").data
        with client.get("/static/parvis.css") as response:
            css = response.data
        assert len(page) + len(css) < 50 * 1024
        # No third-party asset: every src/href to a resource is local.
        assert not re.search(rb'(src|href)="(https?:)?//[^"]*\.(css|js|woff2?|png|svg)', page)
        assert b"<script" not in page


def test_accept_authorises_then_303_to_a_fresh_session(
        app: Flask, client: FlaskClient, netctl: FakeNetctl, store: Store, config: Config,
        caplog: pytest.LogCaptureFixture) -> None:
    token = _signed(app, "http://example.com/news")
    token_before = csrf_token(client, f"/?u={token}")
    with caplog.at_level(logging.INFO, logger="portal.splash"):
        response = client.post("/accepter", data={"csrf_token": token_before, "u": token})
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/bienvenue?u=")
    command = netctl.seen[-1]
    assert command.verb.value == "authorize" and str(command.ip) == CLIENT_IP
    assert command.via == "accept" and command.by == "portal"
    assert command.terms_version == load_terms(config.portal.content_dir, "fr").version
    assert command.mac is None  # netctl finds the MAC itself, never from the portal
    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("accepted:")]
    assert line and f"ip={CLIENT_IP}" in line[0] and "via=accept" in line[0]
    # The session was renewed: the old CSRF token no longer works.
    welcome = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Vous êtes connecté·e" in welcome
    assert 'href="http://example.com/news"' in welcome
    assert client.post("/accepter", data={"csrf_token": token_before}).status_code == 400


def test_english_accept_records_the_english_terms_version(
        client: FlaskClient, netctl: FakeNetctl, config: Config) -> None:
    token = csrf_token(client, "/?lang=en")
    response = client.post("/accepter?lang=en", data={"csrf_token": token})
    assert response.status_code == 303 and "lang=en" in response.headers["Location"]
    assert netctl.seen[-1].terms_version == load_terms(config.portal.content_dir, "en").version
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "You are online" in page and '<html lang="en">' in page


def test_tampered_original_url_gives_no_continue_link(
        app: Flask, client: FlaskClient, netctl: FakeNetctl) -> None:
    token = _signed(app, "http://example.com/")
    tampered = token[:-3] + ("xyz" if not token.endswith("xyz") else "abc")
    page = client.post("/accepter", data={"csrf_token": csrf_token(client), "u": tampered},
                       follow_redirects=True).get_data(as_text=True)
    assert "Vous êtes connecté·e" in page and "example.com" not in page


@pytest.mark.parametrize("url", ["//evil.test", "https:evil.test", "javascript:alert(1)",
                                 "http://portail.parvis.test/", "%2F%2Fevil.test",
                                 "http:\\\\evil.test", "http://evil.test\\@x.test/"])
def test_open_redirects_refused_on_the_welcome_page(
        app: Flask, client: FlaskClient, netctl: FakeNetctl, url: str) -> None:
    page = client.get(f"/bienvenue?u={_signed(app, url)}").get_data(as_text=True)
    assert "evil" not in page and "javascript" not in page and "Continuer" not in page
    page = client.get(f"/?u={_signed(app, url)}").get_data(as_text=True)
    assert "evil" not in page and "javascript" not in page


def test_csrf_refusal_is_a_bilingual_400(client: FlaskClient, netctl: FakeNetctl) -> None:
    for data in ({}, {"csrf_token": "forged"}):
        response = client.post("/accepter", data=data)
        page = response.get_data(as_text=True)
        assert response.status_code == 400
        assert "Cette page a expiré" in page and "This page has expired" in page
        assert '<section class="other" lang="en">' in page
    assert netctl.seen == []


def test_netctl_refusal_blocked_is_403(client: FlaskClient, netctl: FakeNetctl) -> None:
    netctl.decide = lambda command: Result(False, "device 02:00:00:00:00:10 is blocked")
    response = client.post("/accepter", data={"csrf_token": csrf_token(client)})
    page = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "Cet appareil ne peut pas se connecter" in page and "This device cannot connect" in page


def test_netctl_refusal_other_is_409(client: FlaskClient, netctl: FakeNetctl) -> None:
    netctl.decide = lambda command: Result(False, "no device answers at 10.77.2.10 on br-lan")
    response = client.post("/accepter?lang=en", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 409
    assert "The connection was refused" in response.get_data(as_text=True)


def test_no_acknowledgement_in_time_is_a_503_with_retry(
        client: FlaskClient, store: Store) -> None:
    store.ensure_group()  # a stream nobody reads: netctl is down
    token = csrf_token(client)
    started = time.monotonic()
    response = client.post("/accepter", data={"csrf_token": token, "u": "abc"})
    assert time.monotonic() - started < 2
    page = response.get_data(as_text=True)
    assert response.status_code == 503
    assert "Le Wi-Fi est momentanément indisponible" in page
    assert "The Wi-Fi is briefly unavailable" in page
    assert '<form method="post" action="/accepter">' in page
    assert 'name="csrf_token"' in page and 'name="u" value="abc"' in page
    assert "Traceback" not in page


def test_redis_stopped_is_a_503_never_a_traceback(tmp_path: Path) -> None:
    config = make_config(tmp_path, f"unix://{tmp_path}/dead.sock")
    app = create_app(config, store=Store(connect(config.redis.url, 0.5), "gw-test"),
                     testing=True)
    client = https_client(app)
    for path in ("/", "/bienvenue", "/?lang=en"):
        response = client.get(path)
        assert response.status_code == 503
        assert "Réessayer" in response.get_data(as_text=True) or "Try again" in response.get_data(
            as_text=True)
    api = client.get("/api/captive")
    assert api.status_code == 503 and api.is_json


def test_redis_stopped_mid_flight(redis_server: RedisServer, tmp_path: Path) -> None:
    """A Redis that goes away after start: the accept path answers 503 too."""
    import subprocess

    sock = tmp_path / "short.sock"
    process = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(sock),
                                "--save", "", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        config = make_config(tmp_path, f"unix://{sock}")
        app = create_app(config, store=Store(connect(config.redis.url, 0.5), "gw-test"),
                         testing=True)
        client = https_client(app)
        token = csrf_token(client)
    finally:
        process.terminate()
        process.wait(10)
    response = client.post("/accepter", data={"csrf_token": token})
    assert response.status_code == 503


def test_ipv6_client_is_asked_to_use_ipv4(app: Flask, netctl: FakeNetctl) -> None:
    client = https_client(app, remote_addr="fd77::1234")
    response = client.post("/accepter", data={"csrf_token": csrf_token(client)})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Veuillez vous connecter en IPv4" in page and "Please connect over IPv4" in page
    assert netctl.seen == []


def test_ipv4_mapped_address_is_unwrapped(app: Flask, netctl: FakeNetctl) -> None:
    client = https_client(app, remote_addr=f"::ffff:{CLIENT_IP}")
    assert client.post("/accepter", data={"csrf_token": csrf_token(client)}).status_code == 303
    assert str(netctl.seen[-1].ip) == CLIENT_IP


def test_forwarded_headers_and_form_fields_are_not_trusted(
        client: FlaskClient, netctl: FakeNetctl) -> None:
    client.post("/accepter", data={"csrf_token": csrf_token(client), "ip": "10.77.9.9"},
                headers={"X-Forwarded-For": "10.77.8.8", "X-Real-IP": "10.77.7.7"})
    assert [str(c.ip) for c in netctl.seen] == [CLIENT_IP]


@pytest.mark.parametrize(("method", "path", "status", "fr", "en"), [
    ("GET", "/nope", 404, "Page introuvable", "Page not found"),
    ("GET", "/accepter", 405, "Non permis", "Not allowed"),
    ("DELETE", "/", 405, "Non permis", "Not allowed"),
    ("FOO", "/", 405, "Non permis", "Not allowed"),
])
def test_error_pages_in_both_languages(client: FlaskClient, method: str, path: str,
                                       status: int, fr: str, en: str) -> None:
    for lang, first in (("fr", fr), ("en", en)):
        response = client.open(f"{path}?lang={lang}", method=method)
        page = response.get_data(as_text=True)
        assert response.status_code == status
        assert fr in page and en in page
        assert page.index(first) < page.index(en if first == fr else fr)
        assert f'<html lang="{lang}">' in page


def test_oversized_body_is_413(client: FlaskClient) -> None:
    response = client.post("/accepter", data={"csrf_token": "x", "u": "a" * 100_000})
    assert response.status_code == 413
    assert "Trop de données" in response.get_data(as_text=True)


def test_malformed_form_data_is_a_4xx(client: FlaskClient) -> None:
    response = client.post("/accepter", data=b"\xff\xfe%%%=&&==",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    response = client.post("/accepter", data=b"--x\r\nbroken",
                           content_type="multipart/form-data; boundary=x")
    assert response.status_code == 400


def test_unexpected_error_is_a_plain_500(app: Flask, client: FlaskClient,
                                         caplog: pytest.LogCaptureFixture) -> None:
    def broken(ip: str) -> None:
        raise RuntimeError("secret detail")

    app.extensions["parvis"].store.session_for_ip = broken
    with caplog.at_level(logging.ERROR):
        response = client.get("/")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "secret detail" not in page and "Traceback" not in page
    assert "Un problème est survenu" in page
    assert "unexpected error" in caplog.text


@pytest.mark.parametrize("path", ["/", "/?lang=en", "/bienvenue", "/bienvenue?lang=en",
                                  "/nope", "/nope?lang=en"])
def test_every_page_passes_the_accessibility_check(client: FlaskClient, path: str) -> None:
    assert accessibility_problems(client.get(path).get_data(as_text=True)) == []


def test_error_and_online_pages_pass_the_accessibility_check(
        client: FlaskClient, netctl: FakeNetctl) -> None:
    assert accessibility_problems(client.post("/accepter").get_data(as_text=True)) == []
    client.post("/accepter", data={"csrf_token": csrf_token(client)})
    assert accessibility_problems(client.get("/").get_data(as_text=True)) == []


def test_online_splash_shows_time_remaining(client: FlaskClient, netctl: FakeNetctl) -> None:
    client.post("/accepter", data={"csrf_token": csrf_token(client)})
    page = client.get("/").get_data(as_text=True)
    assert "Vous êtes connecté·e" in page and "Temps restant : 0 h 59 min" in page
    assert FR_BUTTON not in page


def test_tiles_are_shown_and_a_broken_file_hides_them(
        client: FlaskClient, config: Config, caplog: pytest.LogCaptureFixture) -> None:
    tiles = config.portal.content_dir / "tiles.toml"
    tiles.write_text("[[tile]]\nkind = 'offer'\ntitle_fr = 'Café offert'\n"
                     "title_en = 'Free coffee'\nurl_fr = 'https://ex.test/fr'\n")
    assert "Café offert" in client.get("/").get_data(as_text=True)
    assert "Free coffee" in client.get("/?lang=en").get_data(as_text=True)
    tiles.write_text("[[tile]]\nkind = 'nope'\n")
    with caplog.at_level(logging.WARNING):
        response = client.get("/")
    assert response.status_code == 200 and "Café" not in response.get_data(as_text=True)
    assert "tiles not shown" in caplog.text


def test_terms_edits_show_without_restart(client: FlaskClient, config: Config) -> None:
    (config.portal.content_dir / "terms.fr.md").write_text("# Nouvelles conditions\n")
    assert "Nouvelles conditions" in client.get("/").get_data(as_text=True)


def test_session_cookie_is_secure(client: FlaskClient) -> None:
    response = client.get("/")
    cookies = response.headers.getlist("Set-Cookie")
    assert cookies and all("Secure" in c and "HttpOnly" in c for c in cookies)


def test_command_is_valid_for_netctl(client: FlaskClient, netctl: FakeNetctl) -> None:
    client.post("/accepter", data={"csrf_token": csrf_token(client)})
    command = netctl.seen[-1]
    assert isinstance(command, Command) and len(command.terms_version) == 12
