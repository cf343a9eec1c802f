"""The plain-HTTP interceptor: every request gets a 302 to the HTTPS splash page."""

from __future__ import annotations

import dataclasses
import ipaddress
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from parvis.core.commands import Command, Verb
from parvis.store import Store
from portal.state import PortalState
from tests.portal.conftest import CLIENT_IP, FakeNetctl, https_client


def _u(location: str) -> str | None:
    values = parse_qs(urlsplit(location).query).get("u")
    return values[0] if values else None


@pytest.mark.parametrize(("host", "path"), [
    ("connectivitycheck.gstatic.com", "/generate_204"),
    ("captive.apple.com", "/hotspot-detect.html"),
    ("www.msftconnecttest.com", "/connecttest.txt"),
    ("www.msftconnecttest.com", "/redirect"),
    ("detectportal.firefox.com", "/canonical.html"),
    ("example.com", "/some/page?x=1&y=2"),
])
def test_every_probe_is_redirected_with_the_signed_original_url(
        app: Flask, http_client: FlaskClient, host: str, path: str) -> None:
    response = http_client.get(path, headers={"Host": host})
    assert response.status_code == 302
    assert response.headers["Cache-Control"] == "no-store"
    location = response.headers["Location"]
    assert location.startswith("https://portail.parvis.test:8443/?u=")
    body = response.get_data(as_text=True)
    assert len(body) < 1024 and "<a href=" in body
    signer = app.extensions["parvis"].signer
    assert signer.unsign(_u(location), CLIENT_IP) == f"http://{host}{path}"
    # Bound to the client that was caught: useless as a link sent to someone else.
    assert signer.unsign(_u(location), "10.77.9.99") is None


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "FOO"])
def test_any_method_is_redirected(http_client: FlaskClient, method: str) -> None:
    response = http_client.open("/x", method=method, headers={"Host": "example.com"})
    assert response.status_code == 302


@pytest.mark.parametrize("host", ["wifi.parvis.test", "10.77.0.1", "10.77.0.1:8080",
                                  "portail.parvis.test", "[fd77::1]"])
def test_poster_name_and_own_address_land_on_the_splash_page(
        http_client: FlaskClient, host: str) -> None:
    response = http_client.get("/", headers={"Host": host})
    assert response.status_code == 302
    assert response.headers["Location"] == "https://portail.parvis.test:8443/"


def test_port_443_is_left_out(app: Flask, http_client: FlaskClient) -> None:
    st: PortalState = app.extensions["parvis"]
    st.config = dataclasses.replace(
        st.config, portal=dataclasses.replace(st.config.portal, https_port=443))
    response = http_client.get("/", headers={"Host": "wifi.parvis.test"})
    assert response.headers["Location"] == "https://portail.parvis.test/"


def test_authorised_client_is_still_redirected(
        app: Flask, http_client: FlaskClient, netctl: FakeNetctl, store: Store) -> None:
    netctl.grant(Command(Verb.AUTHORIZE, ip=ipaddress.IPv4Address(CLIENT_IP)))
    response = http_client.get("/", headers={"Host": "example.com"})
    assert response.status_code == 302
    page = https_client(app).get(response.headers["Location"]).get_data(as_text=True)
    assert "Vous êtes connecté·e" in page


def test_overlong_url_is_not_carried(http_client: FlaskClient) -> None:
    response = http_client.get("/" + "a" * 3000, headers={"Host": "example.com"})
    assert response.status_code == 302
    assert _u(response.headers["Location"]) is None


def test_garbage_host_header_still_redirects(http_client: FlaskClient) -> None:
    response = http_client.get("/", headers={"Host": "[::1"})
    assert response.status_code == 302
