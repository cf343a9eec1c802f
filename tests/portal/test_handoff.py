"""Remote portal mode: a gateway hands clients to a central portal with signed tokens."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from parvis.core.handoff import sign, verify
from parvis.store import Store
from portal import create_app
from tests.portal.conftest import CLIENT_IP, FakeNetctl, RedisServer, https_client, make_config

SECRET = b"h" * 40


@pytest.fixture
def handoff_secret(tmp_path: Path) -> Path:
    path = tmp_path / "handoff.secret"
    path.write_bytes(SECRET)
    return path


@pytest.fixture
def gateway_app(tmp_path: Path, redis_server: RedisServer, store: Store,
                handoff_secret: Path) -> Flask:
    """A gateway's portal in remote mode."""
    config = make_config(tmp_path, redis_server.url, remote_url="https://central.test/handoff",
                         handoff_secret_file=str(handoff_secret))
    return create_app(config, store=store, testing=True)


@pytest.fixture
def central(tmp_path: Path, redis_server: RedisServer, store: Store,
            handoff_secret: Path) -> FlaskClient:
    """The central portal: it verifies hand-offs; clients reach it through NAT (another IP)."""
    config = make_config(tmp_path, redis_server.url, handoff_secret_file=str(handoff_secret))
    app = create_app(config, store=Store(store.client, "central"), testing=True)
    return https_client(app, remote_addr="198.51.100.7")


def _token(ip: str = CLIENT_IP, now: float | None = None, ttl_s: int = 120) -> str:
    return sign({"gateway": "gw-test", "ip": ip, "url": "http://example.com/"}, SECRET,
                now if now is not None else time.time(), ttl_s=ttl_s)


def test_gateway_interceptor_sends_a_signed_token(gateway_app: Flask) -> None:
    client = gateway_app.test_client()
    response = client.get("/generate_204", headers={"Host": "connectivitycheck.gstatic.com"},
                          environ_base={"REMOTE_ADDR": CLIENT_IP})
    assert response.status_code == 302 and response.headers["Cache-Control"] == "no-store"
    location = response.headers["Location"]
    assert location.startswith("https://central.test/handoff?h=")
    params = verify(parse_qs(urlsplit(location).query)["h"][0], SECRET, time.time())
    assert params["gateway"] == "gw-test" and params["ip"] == CLIENT_IP
    assert params["url"] == "http://connectivitycheck.gstatic.com/generate_204"
    assert "mac" not in params


def test_gateway_ipv6_client_goes_to_the_local_splash(gateway_app: Flask) -> None:
    response = gateway_app.test_client().get("/", headers={"Host": "example.com"},
                                             environ_base={"REMOTE_ADDR": "fd77::5"})
    assert response.headers["Location"].startswith("https://portail.parvis.test:8443/")


def test_central_accept_authorises_on_the_named_gateway(
        central: FlaskClient, netctl: FakeNetctl) -> None:
    response = central.get(f"/handoff?h={_token()}")
    assert response.status_code == 303 and response.headers["Location"].startswith("/?u=")
    page = central.get(response.headers["Location"]).get_data(as_text=True)
    assert "Accepter et me connecter" in page
    u = parse_qs(urlsplit(central_location := response.headers["Location"]).query)["u"][0]
    assert f'name="u" value="{u}"' in page and central_location
    response = central.post("/accepter", data={"csrf_token": _csrf(page), "u": u})
    assert response.status_code == 303
    command = netctl.seen[-1]  # read from gw-test's stream, not the central one's
    assert str(command.ip) == CLIENT_IP and command.via == "handoff"
    welcome = central.get(response.headers["Location"]).get_data(as_text=True)
    assert "Vous êtes connecté·e" in welcome and 'href="http://example.com/"' in welcome


def _csrf(page: str) -> str:
    import re

    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def test_tampered_token_is_refused(central: FlaskClient) -> None:
    token = _token()
    payload, _, signature = token.partition(".")
    forged = sign({"gateway": "gw-test", "ip": "10.77.2.66", "url": ""}, b"x" * 40, time.time())
    for bad in (payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + signature,
                forged, "garbage", "", "a." * 3000):
        response = central.get(f"/handoff?h={bad}")
        page = response.get_data(as_text=True)
        assert response.status_code == 400
        assert "Ce lien n’est plus valide" in page and "This link is no longer valid" in page


def test_expired_token_is_refused(central: FlaskClient) -> None:
    old = _token(now=time.time() - 200, ttl_s=120)
    assert central.get(f"/handoff?h={old}").status_code == 400


def test_replayed_token_is_refused(central: FlaskClient) -> None:
    token = _token()
    assert central.get(f"/handoff?h={token}").status_code == 303
    response = central.get(f"/handoff?h={token}&lang=en")
    assert response.status_code == 400
    assert '<html lang="en">' in response.get_data(as_text=True)


def test_token_without_client_address_is_refused(central: FlaskClient) -> None:
    token = sign({"gateway": "gw-test", "ip": "fd77::5"}, SECRET, time.time())
    assert central.get(f"/handoff?h={token}").status_code == 400


def test_handoff_disabled_without_secret(client: FlaskClient) -> None:
    assert client.get(f"/handoff?h={_token()}").status_code == 404


def test_a_copied_cookie_cannot_accept_again(
        central: FlaskClient, netctl: FakeNetctl, store: Store) -> None:
    response = central.get(f"/handoff?h={_token()}")
    page = central.get(response.headers["Location"]).get_data(as_text=True)
    # Somebody copies the browser's cookie before the resident accepts.
    cookie = central.get_cookie("parvis_session", domain="portail.parvis.test")
    assert cookie is not None
    copied = cookie.value
    # The cookie names the hand-off, it does not carry it: no address inside.
    assert CLIENT_IP not in copied
    assert central.post("/accepter", data={"csrf_token": _csrf(page)}).status_code == 303
    sent = len(netctl.seen)
    # The copy, replayed from elsewhere, no longer names a hand-off that may accept.
    thief = https_client(central.application, remote_addr="203.0.113.99")
    thief.set_cookie("parvis_session", copied, domain="portail.parvis.test")
    replay_page = thief.get("/").get_data(as_text=True)
    token = _csrf(replay_page)
    thief.post("/accepter", data={"csrf_token": token})
    assert len(netctl.seen) == sent, "the copied cookie authorised the client again"
    assert not [k for k in store.client.scan_iter("parvis:handoff:context:*")
                if store.client.get(k) and '"accepted": false' in store.client.get(k)]


def test_central_portal_says_why_the_gateways_session_ended(
        central: FlaskClient, store: Store) -> None:
    """The end record is read on the gateway the hand-off names, for the address it names."""
    store.note_ended(CLIENT_IP, {"reason": "Idle-Timeout", "idle_timeout_s": 1200,
                                 "reconnect_at": None}, 600)
    response = central.get(f"/handoff?h={_token()}")
    page = central.get(response.headers["Location"]).get_data(as_text=True)
    assert "Votre session a pris fin après 20 min d’inactivité." in page
    assert "Accepter et me connecter" in page

