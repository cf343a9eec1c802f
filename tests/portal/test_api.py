"""RFC 8908 Captive Portal API: the requesting client's state, within Android's limits."""

from __future__ import annotations

import json

from flask import Flask
from flask.testing import FlaskClient

from tests.portal.conftest import FakeNetctl, https_client
from tests.portal.helpers import csrf_token


def _check_envelope(response_data: bytes, content_type: str, cache: str) -> dict[str, object]:
    assert content_type == "application/captive+json; charset=utf-8"
    assert cache == "private"
    assert len(response_data) <= 4096
    body = json.loads(response_data.decode("utf-8"))
    assert isinstance(body, dict)
    return body


def test_captive_client(client: FlaskClient) -> None:
    response = client.get("/api/captive", headers={"Accept": "application/captive+json"})
    assert response.status_code == 200
    body = _check_envelope(response.data, response.headers["Content-Type"],
                           response.headers["Cache-Control"])
    assert body == {"captive": True, "user-portal-url": "https://portail.parvis.test:8443/",
                    "venue-info-url": "https://www.plessisville.quebec/"}


def test_authorised_client(client: FlaskClient, netctl: FakeNetctl) -> None:
    client.post("/accepter", data={"csrf_token": csrf_token(client)})
    response = client.get("/api/captive")
    body = _check_envelope(response.data, response.headers["Content-Type"],
                           response.headers["Cache-Control"])
    assert body["captive"] is False
    assert body["can-extend-session"] is False
    assert isinstance(body["seconds-remaining"], int) and 3500 < body["seconds-remaining"] <= 3600
    assert str(body["user-portal-url"]).startswith("https://")


def test_answer_is_for_the_requesting_client_only(app: Flask, netctl: FakeNetctl) -> None:
    online = https_client(app)
    online.post("/accepter", data={"csrf_token": csrf_token(online)})
    other = https_client(app, remote_addr="10.77.2.99")
    assert other.get("/api/captive").get_json(force=True)["captive"] is True


def test_ipv6_requester_gets_no_state(app: Flask) -> None:
    response = https_client(app, remote_addr="fd77::99").get("/api/captive")
    assert response.status_code == 503


def test_plain_http_api_request_is_intercepted(app: Flask) -> None:
    response = app.test_client().get("/api/captive", headers={"Host": "portail.parvis.test"})
    assert response.status_code == 302
