"""The access-code path with the real codes module and Store: redeem, explain, throttle."""

from __future__ import annotations

import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from parvis.store import Store
from tests.portal.conftest import CLIENT_IP, FakeNetctl, https_client
from tests.portal.helpers import accessibility_problems, csrf_token


def _batch(app: Flask, store: Store, uses: int = 1, valid_for_s: int = 3600) -> list[str]:
    secret = app.extensions["parvis"].secret
    _batch_info, codes = store.create_code_batch(2, valid_for_s, uses, 7200, "fête", secret,
                                                 time.time())
    return codes


def test_code_form_is_labelled(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert '<label for="code">Code d’accès</label>' in page
    assert accessibility_problems(page) == []


def test_good_code_authorises_with_its_batch_and_length(
        app: Flask, client: FlaskClient, store: Store, netctl: FakeNetctl) -> None:
    code = _batch(app, store)[0]
    typed = f" {code[:4].lower()}-{code[4:]} "
    response = client.post("/code", data={"csrf_token": csrf_token(client), "code": typed})
    assert response.status_code == 303
    command = netctl.seen[-1]
    assert (command.via, command.timeout_s) == ("code", 7200)
    assert command.code_batch.startswith("b-") and str(command.ip) == CLIENT_IP
    # Single use: the second try is refused, in the resident's language.
    other = https_client(app, remote_addr="10.77.2.11")
    again = other.post("/code?lang=en", data={"csrf_token": csrf_token(other), "code": code})
    assert again.status_code == 400 and "already been used" in again.get_data(as_text=True)


@pytest.mark.parametrize(("code", "fr", "en"), [
    ("KTMJ-TKEW-R7NA-W3PN", "n’est pas valide", "is not valid"),
    ("nope", "n’est pas valide", "is not valid"),
    ("", "n’est pas valide", "is not valid"),
])
def test_wrong_codes_are_explained_in_the_residents_language(
        client: FlaskClient, netctl: FakeNetctl, code: str, fr: str, en: str) -> None:
    response = client.post("/code", data={"csrf_token": csrf_token(client), "code": code})
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and fr in page and 'role="alert"' in page
    assert accessibility_problems(page) == []
    response = client.post("/code?lang=en", data={"csrf_token": csrf_token(client),
                                                  "code": code})
    assert en in response.get_data(as_text=True)
    assert netctl.seen == []


def test_revoked_and_expired_codes(app: Flask, client: FlaskClient, store: Store,
                                   netctl: FakeNetctl) -> None:
    secret = app.extensions["parvis"].secret
    batch, codes = store.create_code_batch(1, 60, 1, None, "", secret, time.time())
    store.revoke_code_batch(batch.id)
    page = client.post("/code", data={"csrf_token": csrf_token(client), "code": codes[0]})
    assert "a été annulé" in page.get_data(as_text=True)
    _b, old = store.create_code_batch(1, 60, 1, None, "", secret, time.time() - 120)
    page = client.post("/code", data={"csrf_token": csrf_token(client), "code": old[0]})
    assert "est expiré" in page.get_data(as_text=True)


def test_guessing_is_throttled(app: Flask, client: FlaskClient, store: Store,
                               netctl: FakeNetctl) -> None:
    good = _batch(app, store)[0]
    for _ in range(3):  # code_attempts = 3 in the test config
        client.post("/code", data={"csrf_token": csrf_token(client), "code": "guess"})
    assert store.code_failures(CLIENT_IP) == 3
    response = client.post("/code", data={"csrf_token": csrf_token(client), "code": good})
    page = response.get_data(as_text=True)
    assert response.status_code == 429
    assert "réessayer dans 10 minutes" in page and "try again in 10 minutes" in page
    assert netctl.seen == []


def test_a_codes_plan_goes_into_the_authorize_command(
        app: Flask, client: FlaskClient, store: Store, netctl: FakeNetctl) -> None:
    secret = app.extensions["parvis"].secret
    batch, codes = store.create_code_batch(1, 3600, 1, None, "", secret, time.time(),
                                           plan="event")
    response = client.post("/code", data={"csrf_token": csrf_token(client), "code": codes[0]})
    assert response.status_code == 303
    command = netctl.seen[-1]
    assert (command.via, command.code_batch, command.plan) == ("code", batch.id, "event")
    assert command.timeout_s is None  # the plan's own length applies
    assert '"plan":"event"' in command.to_json()
    assert store.session_for_ip(CLIENT_IP) is not None


def test_a_code_without_plan_sends_none(
        app: Flask, client: FlaskClient, store: Store, netctl: FakeNetctl) -> None:
    code = _batch(app, store)[0]
    client.post("/code", data={"csrf_token": csrf_token(client), "code": code})
    assert netctl.seen[-1].plan == ""
