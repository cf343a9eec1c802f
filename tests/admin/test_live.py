"""The live view and the actions: each sends the right command and shows netctl's answer."""

from __future__ import annotations

import time

import pytest
from flask.testing import FlaskClient

import admin.live
from parvis.core.commands import Command, Result, Verb
from parvis.core.sessions import Session
from parvis.core.users import User
from parvis.store import Store
from tests.admin.conftest import GATEWAY, csrf_token, login
from tests.portal.conftest import FakeNetctl

MAC = "02:00:00:00:00:10"
PAGE = f"/passerelles/{GATEWAY}"


@pytest.fixture
def client_online(store: Store) -> Session:
    """One authorised device with a plan, a quota and some traffic; netctl's heartbeat."""
    now = time.time()
    session = Session(mac=MAC, ipv4="10.77.2.10", started_at=now - 600, expires_at=now + 3000,
                      idle_timeout_s=1200, last_activity_at=now, bytes_down=123_000_000,
                      bytes_up=4_500_000, plan="residents", down_bps=10_000_000,
                      up_bps=2_000_000, quota_bytes=2_000_000_000, quota_day="2026-11-27")
    store.save_sessions([session])
    store.publish_health({"cpu_percent": 12.6, "memory_percent": 41.0, "uptime_s": 86400 * 3,
                          "memory_total_bytes": 2_000_000_000,
                          "memory_used_bytes": 820_000_000, "version": "0.1.0",
                          "netctl_uptime_s": 3600, "load_average": [0.1, 0.2, 0.3],
                          "interfaces": {"br-lan": {"present": True, "bytes_recv": 10**9,
                                                    "bytes_sent": 2 * 10**9,
                                                    "rx_bit_s": 5_000_000,
                                                    "tx_bit_s": 20_000_000,
                                                    "errors": 0, "drops": 1},
                                         "wan0": {"present": False}}}, ttl_s=30)
    store.record_seen([("02:00:00:00:00:22", "10.77.2.22", now)])
    return session


def test_dashboard_lists_gateways_with_their_health(as_admin: FlaskClient,
                                                    client_online: Session) -> None:
    html = as_admin.get("/").get_data(as_text=True)
    assert f'href="/passerelles/{GATEWAY}"' in html
    assert "en marche" in html and "13 %" in html and "41 %" in html and "3 j" in html


def test_gateway_page_shows_health_and_clients(as_admin: FlaskClient,
                                               client_online: Session) -> None:
    html = as_admin.get(PAGE).get_data(as_text=True)
    assert "10.77.2.10" in html and MAC in html and "connecté" in html
    assert "residents" in html and "123 Mo" in html and "4,5 Mo" in html
    assert "10 Mbit/s / 2 Mbit/s" in html
    assert "br-lan" in html and "20 Mbit/s" in html and "absente" in html
    assert "aperçu, non connecté" in html and "10.77.2.22" in html
    assert "Déconnecter" in html and "Bloquer cet appareil" in html
    english = as_admin.get(PAGE + "?lang=en").get_data(as_text=True)
    assert "connected" in english and "123 MB" in english


def test_a_gateway_without_heartbeat_says_so(as_admin: FlaskClient) -> None:
    html = as_admin.get(PAGE).get_data(as_text=True)
    assert "netctl ne fonctionne pas sur cette passerelle" in html


def test_unknown_gateway_is_404(as_admin: FlaskClient) -> None:
    assert as_admin.get("/passerelles/other-gw").status_code == 404
    assert as_admin.post("/passerelles/other-gw/deconnecter",
                         data={"csrf_token": csrf_token(as_admin, "/"),
                               "mac": MAC}).status_code == 404


def _post(client: FlaskClient, action: str, **fields: str) -> str:
    answer = client.post(f"{PAGE}/{action}",
                         data={"csrf_token": csrf_token(client, "/"), "mac": MAC, **fields})
    assert answer.status_code == 303 and answer.headers["Location"] == PAGE
    return client.get(PAGE).get_data(as_text=True)


@pytest.mark.parametrize(("action", "fields", "expected"), [
    ("deconnecter", {}, Command(Verb.DEAUTHORIZE, mac=MAC, by="admin:alice")),
    ("bloquer", {}, Command(Verb.BLOCK, mac=MAC, by="admin:alice")),
    ("debloquer", {}, Command(Verb.UNBLOCK, mac=MAC, by="admin:alice")),
    ("prolonger", {"duration": "1h30m"},
     Command(Verb.EXTEND, mac=MAC, extend_s=5400, by="admin:alice")),
    ("debit", {"down": "20M", "up": "5M"},
     Command(Verb.RATE, mac=MAC, down_bps=20_000_000, up_bps=5_000_000, by="admin:alice")),
    ("debit", {"down": "512k", "up": ""},
     Command(Verb.RATE, mac=MAC, down_bps=512_000, by="admin:alice")),
    ("debit", {"down": "", "up": "0"}, Command(Verb.RATE, mac=MAC, up_bps=0, by="admin:alice")),
])
def test_each_action_sends_its_command_and_shows_the_answer(
        as_admin: FlaskClient, netctl: FakeNetctl, action: str, fields: dict[str, str],
        expected: Command) -> None:
    netctl.decide = lambda command: Result(True, f"{command.verb.value} {command.mac} done")
    html = _post(as_admin, action, **fields)
    assert netctl.seen == [expected]
    assert f"Fait : {expected.verb.value} {MAC} done" in html


def test_a_refusal_is_shown(as_admin: FlaskClient, netctl: FakeNetctl) -> None:
    netctl.decide = lambda command: Result(False, f"no session for {command.mac}")
    html = _post(as_admin, "deconnecter")
    assert f"Refusé par la passerelle : no session for {MAC}" in html


def test_a_silent_gateway_is_reported(as_admin: FlaskClient,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin.live, "ACTION_TIMEOUT_S", 0.2)
    html = _post(as_admin, "bloquer")
    assert "La commande reste en file d’attente" in html


@pytest.mark.parametrize(("action", "fields", "message"), [
    ("prolonger", {"duration": "soon"}, "« soon » n’est pas une durée"),
    ("prolonger", {"duration": "8d"}, "« 8d » n’est pas une durée"),
    ("debit", {"down": "fast", "up": ""}, "« fast » n’est pas un débit"),
    ("debit", {"down": "", "up": ""}, "Indiquez un débit descendant"),
])
def test_bad_values_send_nothing(as_admin: FlaskClient, netctl: FakeNetctl, action: str,
                                 fields: dict[str, str], message: str) -> None:
    html = _post(as_admin, action, **fields)
    assert message in html
    time.sleep(0.2)
    assert netctl.seen == []


def test_a_malformed_mac_is_a_400(as_admin: FlaskClient, netctl: FakeNetctl) -> None:
    answer = as_admin.post(f"{PAGE}/bloquer", data={"csrf_token": csrf_token(as_admin, "/"),
                                                    "mac": "not-a-mac"})
    assert answer.status_code == 400
    assert netctl.seen == []


def test_viewer_reads_everything_and_changes_nothing(
        client: FlaskClient, accounts: dict[str, User], client_online: Session,
        netctl: FakeNetctl) -> None:
    login(client, "victor", "council staple 2026")
    for path in ("/", PAGE, "/codes", "/contenu", "/rapports"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        html = answer.get_data(as_text=True)
        assert "Déconnecter" not in html and "Créer les codes" not in html
        assert "Ajouter une tuile" not in html
    token = csrf_token(client, "/")
    for path, fields in ((f"{PAGE}/deconnecter", {"mac": MAC}), (f"{PAGE}/bloquer", {"mac": MAC}),
                         (f"{PAGE}/debloquer", {"mac": MAC}),
                         (f"{PAGE}/prolonger", {"mac": MAC, "duration": "1h"}),
                         (f"{PAGE}/debit", {"mac": MAC, "down": "1M"}),
                         ("/codes", {"count": "1", "valid_for": "1h", "uses": "1"}),
                         ("/codes/b-20261127-abcd/revoquer", {}), ("/codes/feuille", {}),
                         ("/contenu/nouveau", {"kind": "offer"}),
                         ("/contenu/t-0123456789ab", {}),
                         ("/contenu/t-0123456789ab/supprimer", {})):
        answer = client.post(path, data={"csrf_token": token, **fields})
        assert answer.status_code == 403, path
        assert "Non permis pour votre compte" in answer.get_data(as_text=True)
    assert client.get("/contenu/nouveau").status_code == 403
    time.sleep(0.2)
    assert netctl.seen == []


def test_pages_pass_the_basic_accessibility_checks(as_admin: FlaskClient,
                                                   client_online: Session) -> None:
    from tests.portal.helpers import accessibility_problems

    for path in ("/", PAGE, "/codes", "/contenu", "/contenu/nouveau", "/rapports",
                 "/nulle-part", "/?lang=en"):
        html = as_admin.get(path).get_data(as_text=True)
        assert accessibility_problems(html) == [], path
    created = as_admin.post("/codes", data={"csrf_token": csrf_token(as_admin, "/codes"),
                                            "count": "2", "valid_for": "1h", "uses": "1"})
    assert accessibility_problems(created.get_data(as_text=True)) == []
    as_admin.post("/deconnexion", data={"csrf_token": csrf_token(as_admin, "/")})
    assert accessibility_problems(as_admin.get("/connexion").get_data(as_text=True)) == []
