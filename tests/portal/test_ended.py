"""Why a session ended, told to the resident: end records, banners, the quota refusal, the API."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import time
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient

from parvis.core.commands import Command, Result
from parvis.core.config import Config
from parvis.core.sessions import Session
from parvis.store import Store
from portal import create_app
from portal.ended import (
    clock_text,
    date_text,
    duration_text,
    local_time,
    next_midnight,
    parse_ended,
    reconnect_sentence,
    size_text,
)
from tests.portal.conftest import CLIENT_IP, FakeNetctl, https_client
from tests.portal.helpers import accessibility_problems, csrf_token

TORONTO = ZoneInfo("America/Toronto")
# Friday 27 November 2026, 15:00 in Toronto (EST, UTC-5): 20:00 UTC.
NOW = dt.datetime(2026, 11, 27, 15, 0, tzinfo=TORONTO).timestamp()
MIDNIGHT = dt.datetime(2026, 11, 28, 0, 0, tzinfo=TORONTO).timestamp()
HALF_PAST_FIVE = dt.datetime(2026, 11, 27, 17, 30, tzinfo=TORONTO).timestamp()
FR_BUTTON = "Accepter et me connecter"
EN_BUTTON = "Accept and connect"


def _app(config: Config, store: Store, timezone: str | None = "America/Toronto") -> Flask:
    """The portal with the town's zone set and its clock stopped at NOW."""
    zoned = dataclasses.replace(config, gateway=dataclasses.replace(config.gateway,
                                                                    timezone=timezone))
    app = create_app(zoned, store=store, testing=True)
    app.extensions["parvis"].clock = lambda: NOW
    return app


@pytest.fixture
def town(config: Config, store: Store) -> Flask:
    """The portal in Toronto's zone, its clock at NOW."""
    return _app(config, store)


@pytest.fixture
def resident(town: Flask) -> FlaskClient:
    """An HTTPS client from CLIENT_IP on the ``town`` portal."""
    return https_client(town)


def _end(store: Store, reason: str, reconnect_at: float | None = None, **fields: object) -> None:
    """An end record for CLIENT_IP, as netctl writes it."""
    info = {"reason": reason, "ended_at": NOW - 60, "reconnect_at": reconnect_at,
            "plan": "residents", "quota_bytes": 0, "hard_timeout_s": 14400,
            "idle_timeout_s": 1200}
    info.update(fields)
    store.note_ended(CLIENT_IP, info, 12 * 3600)


@pytest.fixture
def host_zone() -> Iterator[str]:
    """The process's local zone set to America/Vancouver (TZ), restored afterwards."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "America/Vancouver"
    time.tzset()
    try:
        yield "America/Vancouver"
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


# --- the record in Redis -------------------------------------------------------------------


def test_end_record_round_trip_with_its_expiry(store: Store) -> None:
    _end(store, "Idle-Timeout")
    key = store.keys.ended(CLIENT_IP)
    assert key == f"parvis:gw:gw-test:ended:{CLIENT_IP}"
    assert 12 * 3600 - 5 <= store.client.ttl(key) <= 12 * 3600
    info = store.ended_for_ip(CLIENT_IP)
    assert info is not None and info["reason"] == "Idle-Timeout"
    assert store.ended_for_ip("10.77.2.99") is None
    store.forget_ended(CLIENT_IP)
    assert store.ended_for_ip(CLIENT_IP) is None


def test_end_record_goes_into_a_pipeline(store: Store) -> None:
    pipe = store.pipeline()
    store.note_ended(CLIENT_IP, {"reason": "Admin-Reset"}, 60, pipe=pipe)
    assert store.ended_for_ip(CLIENT_IP) is None  # nothing before EXEC
    store.execute(pipe)
    assert store.ended_for_ip(CLIENT_IP) == {"reason": "Admin-Reset"}
    with pytest.raises(ValueError):
        store.note_ended(CLIENT_IP, {"reason": "Admin-Reset"}, 0)


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"', "null", "", "[" * 100_000])
def test_unreadable_end_record_is_none(store: Store, raw: str) -> None:
    store.client.set(store.keys.ended(CLIENT_IP), raw)
    assert store.ended_for_ip(CLIENT_IP) is None


def test_parse_is_tolerant_of_odd_fields() -> None:
    assert parse_ended(None) is None
    assert parse_ended({"reason": ""}) is None
    assert parse_ended({"reason": 3}) is None
    ended = parse_ended({"reason": "Quota-Exceeded", "ended_at": "yesterday",
                         "reconnect_at": float("nan"), "quota_bytes": -5, "plan": 7,
                         "hard_timeout_s": True, "idle_timeout_s": 1.5})
    assert ended is not None
    assert (ended.reconnect_at, ended.quota_bytes, ended.plan, ended.hard_timeout_s,
            ended.idle_timeout_s, ended.ended_at) == (None, 0, "", 0, 0, 0.0)
    for absurd in (1e300, float("inf"), -1):
        parsed = parse_ended({"reason": "Admin-Reset", "reconnect_at": absurd})
        assert parsed is not None and parsed.reconnect_at is None
    waiting = parse_ended({"reason": "Quota-Exceeded", "reconnect_at": MIDNIGHT})
    assert waiting is not None and waiting.waiting(NOW) and not waiting.waiting(MIDNIGHT)


# --- wording helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(("hour", "minute", "fr", "en"), [
    (14, 30, "14 h 30", "2:30 p.m."), (9, 5, "9 h 05", "9:05 a.m."), (0, 0, "0 h", "12:00 a.m."),
    (12, 0, "12 h", "12:00 p.m."), (23, 59, "23 h 59", "11:59 p.m."),
])
def test_clock_text(hour: int, minute: int, fr: str, en: str) -> None:
    moment = dt.datetime(2026, 11, 27, hour, minute)
    assert (clock_text(moment, "fr"), clock_text(moment, "en")) == (fr, en)


@pytest.mark.parametrize(("seconds", "fr", "en"), [
    (14400, "4 h", "4 h"), (5400, "1 h 30", "1 h 30 min"), (1200, "20 min", "20 min"),
    (20, "1 min", "1 min"), (7 * 86400, "168 h", "168 h"), (3900, "1 h 05", "1 h 5 min"),
])
def test_duration_text(seconds: int, fr: str, en: str) -> None:
    assert (duration_text(seconds, "fr"), duration_text(seconds, "en")) == (fr, en)


@pytest.mark.parametrize(("count", "fr", "en"), [
    (2 * 10**9, "2 Go", "2 GB"), (1_500_000_000, "1,5 Go", "1.5 GB"),
    (500 * 10**6, "500 Mo", "500 MB"), (999, "999 o", "999 B"), (0, "0 o", "0 B"),
    (1_049_000, "1 Mo", "1 MB"),
])
def test_size_text(count: int, fr: str, en: str) -> None:
    assert (size_text(count, "fr"), size_text(count, "en")) == (fr, en)


def test_date_text() -> None:
    assert date_text(dt.datetime(2026, 12, 1), "fr") == "1er décembre"
    assert date_text(dt.datetime(2026, 8, 15), "fr") == "15 août"
    assert date_text(dt.datetime(2026, 12, 1), "en") == "December 1"


def test_next_midnight_is_the_towns_across_a_dst_change() -> None:
    assert next_midnight(NOW, TORONTO) == MIDNIGHT
    # 1 November 2026: Toronto leaves daylight time at 2:00; that day lasts 25 hours.
    before = dt.datetime(2026, 10, 31, 22, 0, tzinfo=TORONTO).timestamp()
    assert next_midnight(before, TORONTO) == dt.datetime(2026, 11, 1, 4, 0,
                                                         tzinfo=dt.UTC).timestamp()
    during = dt.datetime(2026, 11, 1, 12, 0, tzinfo=TORONTO).timestamp()
    after = next_midnight(during, TORONTO)
    assert after == dt.datetime(2026, 11, 2, 5, 0, tzinfo=dt.UTC).timestamp()
    assert after - next_midnight(before, TORONTO) == 25 * 3600
    # Tokyo's midnight is another moment.
    assert next_midnight(NOW, ZoneInfo("Asia/Tokyo")) == dt.datetime(
        2026, 11, 28, 15, 0, tzinfo=dt.UTC).timestamp()


def test_next_midnight_in_the_hosts_zone(host_zone: str) -> None:
    midnight = next_midnight(NOW, None)
    assert midnight == dt.datetime(2026, 11, 28, 0, 0, tzinfo=ZoneInfo(host_zone)).timestamp()
    assert local_time(midnight, None).hour == 0


@pytest.mark.parametrize(("when", "fr", "en"), [
    (None, "Vous pouvez vous reconnecter maintenant.", "You can reconnect now."),
    (NOW - 1, "Vous pouvez vous reconnecter maintenant.", "You can reconnect now."),
    (HALF_PAST_FIVE, "Vous pourrez vous reconnecter à 17 h 30.",
     "You can reconnect at 5:30 p.m."),
    (MIDNIGHT, "Vous pourrez vous reconnecter à minuit.", "You can reconnect at midnight."),
    (MIDNIGHT + 9 * 3600 + 15 * 60, "Vous pourrez vous reconnecter demain à 9 h 15.",
     "You can reconnect tomorrow at 9:15 a.m."),
    (MIDNIGHT + 3 * 86400 + 8 * 3600, "Vous pourrez vous reconnecter le 1er décembre à 8 h.",
     "You can reconnect on December 1 at 8:00 a.m."),
])
def test_reconnect_sentence(town: Flask, when: float | None, fr: str, en: str) -> None:
    for language, expected in (("fr", fr), ("en", en)):
        with town.test_request_context(f"/?lang={language}"):
            assert reconnect_sentence(when, NOW, TORONTO) == expected


# --- the banner on the splash page ------------------------------------------------------------

REASONS = [
    ("Session-Timeout", {},
     ("Durée maximale atteinte", "Votre session de 4 h est terminée."),
     ("Time limit reached", "Your 4 h session has ended.")),
    ("Session-Timeout", {"hard_timeout_s": 0},
     ("Durée maximale atteinte", "Votre session a atteint sa durée maximale."),
     ("Time limit reached", "Your session has reached its time limit.")),
    ("Idle-Timeout", {},
     ("Session terminée pour inactivité",
      "Votre session a pris fin après 20 min d’inactivité."),
     ("Session ended after inactivity", "Your session ended after 20 min without activity.")),
    ("Quota-Exceeded", {"quota_bytes": 2 * 10**9},
     ("Limite quotidienne de données atteinte",
      "Cet appareil a utilisé les 2 Go de données auxquels il a droit aujourd’hui."),
     ("Daily data limit reached", "This device has used its 2 GB of data for today.")),
    ("Admin-Reset", {},
     ("Session terminée", "Votre session a été interrompue par l’administration du réseau."),
     ("Session ended", "Your session was ended by the network administrator.")),
    ("Lost-Carrier", {},
     ("Appareil déconnecté",
      "Votre session a pris fin parce que votre appareil a quitté le réseau Wi-Fi."),
     ("Device disconnected", "Your session ended because your device left the Wi-Fi network.")),
    ("User-Request", {},
     ("Session terminée",
      "Votre session a pris fin lorsque votre appareil s’est déconnecté du Wi-Fi."),
     ("Session ended", "Your session ended when your device disconnected from the Wi-Fi.")),
    ("Port-Error", {},
     ("Session terminée", "Votre session est terminée."),
     ("Session ended", "Your session has ended.")),
]


@pytest.mark.parametrize(("reason", "fields", "fr", "en"), REASONS)
def test_banner_says_why_in_both_languages(
        resident: FlaskClient, store: Store, reason: str, fields: dict[str, int],
        fr: tuple[str, str], en: tuple[str, str]) -> None:
    _end(store, reason, **fields)
    for language, (title, text), now_text, button in (
            ("fr", fr, "Vous pouvez vous reconnecter maintenant.", FR_BUTTON),
            ("en", en, "You can reconnect now.", EN_BUTTON)):
        page = resident.get(f"/?lang={language}").get_data(as_text=True)
        assert '<section class="card notice" role="status" aria-labelledby="ended-title">' in page
        assert f'<h2 id="ended-title">{title}</h2>' in page
        assert f"<p>{text}</p>" in page and now_text in page
        assert button in page and 'name="code"' in page  # free to reconnect: both offered
        assert accessibility_problems(page) == []


def test_over_quota_offers_no_button_and_says_when(resident: FlaskClient, store: Store) -> None:
    _end(store, "Quota-Exceeded", MIDNIGHT, quota_bytes=2 * 10**9)
    page = resident.get("/").get_data(as_text=True)
    assert "Limite quotidienne de données atteinte" in page
    assert "Vous pourrez vous reconnecter à minuit." in page
    assert FR_BUTTON not in page and 'name="code"' not in page and "/accepter" not in page
    assert accessibility_problems(page) == []
    page = resident.get("/?lang=en").get_data(as_text=True)
    assert "You can reconnect at midnight." in page and EN_BUTTON not in page
    assert "Terms of use" in page  # the rest of the page is still there


@pytest.mark.parametrize(("timezone", "fr", "en"), [
    ("America/Toronto", "à 17 h 30.", "at 5:30 p.m."),
    ("Asia/Tokyo", "à 7 h 30.", "at 7:30 a.m."),  # already 28 November there
    ("UTC", "à 22 h 30.", "at 10:30 p.m."),
])
def test_reconnect_time_is_shown_in_the_configured_zone(
        config: Config, store: Store, timezone: str, fr: str, en: str) -> None:
    _end(store, "Quota-Exceeded", HALF_PAST_FIVE)
    resident = https_client(_app(config, store, timezone))
    assert f"Vous pourrez vous reconnecter {fr}" in resident.get("/").get_data(as_text=True)
    assert f"You can reconnect {en}" in resident.get("/?lang=en").get_data(as_text=True)


def test_reconnect_time_in_the_hosts_zone_without_a_timezone(
        config: Config, store: Store, host_zone: str) -> None:
    _end(store, "Quota-Exceeded", HALF_PAST_FIVE)  # 14:30 in Vancouver
    resident = https_client(_app(config, store, None))
    assert "Vous pourrez vous reconnecter à 14 h 30." in resident.get("/").get_data(as_text=True)


def test_a_waiting_time_that_has_passed_offers_the_button_again(
        town: Flask, resident: FlaskClient, store: Store) -> None:
    _end(store, "Quota-Exceeded", MIDNIGHT)
    town.extensions["parvis"].clock = lambda: MIDNIGHT + 1
    page = resident.get("/").get_data(as_text=True)
    assert "Vous pouvez vous reconnecter maintenant." in page and FR_BUTTON in page


def test_no_banner_while_a_session_is_live(
        resident: FlaskClient, store: Store, netctl: FakeNetctl) -> None:
    _end(store, "Idle-Timeout")
    resident.post("/accepter", data={"csrf_token": csrf_token(resident)})
    page = resident.get("/").get_data(as_text=True)
    assert "Vous êtes connecté·e" in page and "ended-title" not in page
    assert "ended-title" not in resident.get("/bienvenue").get_data(as_text=True)


def test_banner_is_only_for_the_address_it_names(town: Flask, store: Store) -> None:
    _end(store, "Admin-Reset")
    page = https_client(town, remote_addr="10.77.2.99").get("/").get_data(as_text=True)
    assert "ended-title" not in page and FR_BUTTON in page


def test_welcome_page_says_the_session_ended(resident: FlaskClient, store: Store) -> None:
    _end(store, "Lost-Carrier")
    page = resident.get("/bienvenue").get_data(as_text=True)
    assert "<h1>Vous n’êtes plus connecté·e</h1>" in page and "Appareil déconnecté" in page
    assert "Presque terminé" not in page and accessibility_problems(page) == []
    page = resident.get("/bienvenue?lang=en").get_data(as_text=True)
    assert "<h1>You are no longer online</h1>" in page and "Device disconnected" in page


# --- netctl refuses a device over its quota ------------------------------------------------------


@pytest.mark.parametrize("data", [{"reconnect_at": MIDNIGHT}, None, {"reconnect_at": "soon"},
                                  {"reconnect_at": NOW - 5}])
def test_quota_refusal_is_a_429_saying_when(
        resident: FlaskClient, netctl: FakeNetctl, data: Any) -> None:
    """netctl's time, or else the next local midnight: never a 503 "try again"."""
    netctl.decide = lambda command: Result(False, "quota: 02:00:00:00:00:10 used 2 GB today",
                                           data)
    response = resident.post("/accepter", data={"csrf_token": csrf_token(resident)})
    page = response.get_data(as_text=True)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == str(math.ceil(MIDNIGHT - NOW))
    assert "<h1>Limite quotidienne de données atteinte</h1>" in page
    assert "Vous pourrez vous reconnecter à minuit." in page
    assert "Daily data limit reached" in page and "You can reconnect at midnight." in page
    assert "Réessayer" not in page and accessibility_problems(page) == []


def test_quota_refusal_uses_the_end_record_when_netctl_gives_no_time(
        resident: FlaskClient, store: Store, netctl: FakeNetctl) -> None:
    token = csrf_token(resident)  # the page has no form once the record is there
    _end(store, "Quota-Exceeded", HALF_PAST_FIVE)
    netctl.decide = lambda command: Result(False, "quota: used")
    response = resident.post("/accepter?lang=en", data={"csrf_token": token})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == str(math.ceil(HALF_PAST_FIVE - NOW))
    page = response.get_data(as_text=True)
    assert "You can reconnect at 5:30 p.m." in page
    assert "Vous pourrez vous reconnecter à 17 h 30." in page  # French beneath


def test_a_code_is_not_spent_while_the_device_must_wait(
        town: Flask, resident: FlaskClient, store: Store, netctl: FakeNetctl) -> None:
    secret = town.extensions["parvis"].secret
    batch, codes = store.create_code_batch(1, 3600, 1, None, "", secret, time.time())
    token = csrf_token(resident)  # a page loaded before the session ended
    _end(store, "Quota-Exceeded", MIDNIGHT)
    response = resident.post("/code", data={"csrf_token": token, "code": codes[0]})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == str(math.ceil(MIDNIGHT - NOW))
    assert "Vous pourrez vous reconnecter à minuit." in response.get_data(as_text=True)
    assert netctl.seen == []
    assert store.list_code_batches()[0].redemptions == 0
    assert store.code_failures(CLIENT_IP) == 0


# --- RFC 8908 and the pages: data left ------------------------------------------------------


def _grant_with_quota(store: Store, quota_bytes: int, used: int) -> Result:
    session = Session(mac="02:00:00:00:00:10", ipv4=CLIENT_IP, started_at=NOW,
                      expires_at=time.time() + 3600, idle_timeout_s=1200, last_activity_at=NOW,
                      plan="residents", quota_bytes=quota_bytes, quota_day="2026-11-27",
                      quota_used_before=200_000_000, bytes_up=used // 4,
                      bytes_down=used - used // 4)
    store.save_sessions([session])
    return Result(True, "authorized")


def test_api_bytes_remaining_from_the_sessions_quota(
        client: FlaskClient, store: Store, netctl: FakeNetctl) -> None:
    netctl.decide = lambda command: _grant_with_quota(netctl.store, 2 * 10**9, 300_000_000)
    client.post("/accepter", data={"csrf_token": csrf_token(client)})
    response = client.get("/api/captive")
    body = json.loads(response.data)
    assert body["captive"] is False and body["bytes-remaining"] == 1_500_000_000
    assert isinstance(body["seconds-remaining"], int) and len(response.data) <= 4096
    page = client.get("/").get_data(as_text=True)
    assert "Données restantes aujourd’hui : 1,5 Go" in page
    page = client.get("/bienvenue?lang=en").get_data(as_text=True)
    assert "Data left today: 1.5 GB" in page


def test_api_bytes_remaining_is_never_negative(
        client: FlaskClient, store: Store, netctl: FakeNetctl) -> None:
    netctl.decide = lambda command: _grant_with_quota(netctl.store, 100_000_000, 900_000_000)
    client.post("/accepter", data={"csrf_token": csrf_token(client)})
    assert json.loads(client.get("/api/captive").data)["bytes-remaining"] == 0


def test_api_without_quota_has_no_bytes_remaining(
        client: FlaskClient, netctl: FakeNetctl) -> None:
    client.post("/accepter", data={"csrf_token": csrf_token(client)})
    body = json.loads(client.get("/api/captive").data)
    assert "bytes-remaining" not in body and body["captive"] is False
    assert "Données restantes" not in client.get("/").get_data(as_text=True)


def test_accept_sends_no_plan(client: FlaskClient, netctl: FakeNetctl) -> None:
    client.post("/accepter", data={"csrf_token": csrf_token(client)})
    command = netctl.seen[-1]
    assert isinstance(command, Command) and command.plan == ""
    assert '"plan"' not in command.to_json()
