"""Access codes in the console: a batch as parvisctl makes it, its one-time PDF, revoking."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from parvis.core.codes import normalize_code
from parvis.store import Store
from tests.admin.conftest import SECRET, csrf_token


def _create(client: FlaskClient, **fields: str) -> tuple[str, list[str], str]:
    form = {"count": "3", "valid_for": "4h", "uses": "2", "session": "1h30m", "plan": "event",
            "note": "Atelier de la bibliothèque"}
    form.update(fields)
    answer = client.post("/codes", data={"csrf_token": csrf_token(client, "/codes"), **form})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    html = answer.get_data(as_text=True)
    codes = re.findall(r'<li class="mono">([0-9A-Z-]{19})</li>', html)
    sheet = re.search(r'name="sheet" value="([^"]+)"', html)
    batch = re.search(r"Lot (b-\d{8}-[0-9a-f]{4}) :", html)
    assert sheet and batch, html
    return batch.group(1), codes, sheet.group(1)


def test_a_batch_is_made_as_parvisctl_makes_it(as_admin: FlaskClient, store: Store) -> None:
    batch_id, codes, _sheet = _create(as_admin)
    assert len(codes) == 3
    # The portal's secret keys the stored hashes: the portal recognises the codes.
    redemption = store.redeem_code(codes[0], SECRET, time.time())
    assert redemption.ok and redemption.batch == batch_id
    assert redemption.session_s == 5400 and redemption.plan == "event"
    [batch] = store.list_code_batches()
    assert (batch.count, batch.uses, batch.note) == (3, 2, "Atelier de la bibliothèque")
    listing = as_admin.get("/codes").get_data(as_text=True)
    assert batch_id in listing and "Atelier de la bibliothèque" in listing and "actif" in listing


def test_no_code_is_kept_in_clear_in_redis(as_admin: FlaskClient, store: Store) -> None:
    _batch_id, codes, _sheet = _create(as_admin)
    compact = [normalize_code(code) for code in codes]
    dump = []
    for key in store.client.keys("*"):
        kind = store.client.type(key)
        if kind == "string":
            dump.append(store.client.get(key))
        elif kind == "hash":
            dump.extend(f"{k}={v}" for k, v in store.client.hgetall(key).items())
        elif kind == "zset":
            dump.extend(store.client.zrange(key, 0, -1))
        elif kind == "set":
            dump.extend(store.client.smembers(key))
        dump.append(key)
    text = "\n".join(dump)
    for code, short in zip(codes, compact, strict=True):
        assert code not in text and short is not None and short not in text


def test_the_printable_sheet_downloads_once(as_admin: FlaskClient, tmp_path: Path) -> None:
    batch_id, codes, sheet = _create(as_admin)
    token = csrf_token(as_admin, "/codes")
    pdf = as_admin.post("/codes/feuille", data={"csrf_token": token, "sheet": sheet})
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF")
    assert pdf.headers["Content-Disposition"] == f'attachment; filename="codes-{batch_id}.pdf"'
    assert pdf.headers["Cache-Control"] == "no-store"
    if shutil.which("pdftotext"):
        path = tmp_path / "sheet.pdf"
        path.write_bytes(pdf.data)
        text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                              text=True, check=True, timeout=30).stdout
        for code in codes:
            assert code in text
        assert "Valide jusqu'au" in text and "Valid until" in text
        assert "Forfait / Plan : event" in text and "1 h 30" in text
        assert "wifi.parvis.test" in text and batch_id in text
    again = as_admin.post("/codes/feuille", data={"csrf_token": token, "sheet": sheet})
    assert again.status_code == 303 and again.headers["Location"] == "/codes"
    assert "n’est plus disponible" in as_admin.get("/codes").get_data(as_text=True)


@pytest.mark.parametrize("sheet", ["", "nope", "abc.def", "x" * 300])
def test_a_bad_sheet_token_gets_nothing(as_admin: FlaskClient, sheet: str) -> None:
    answer = as_admin.post("/codes/feuille", data={"csrf_token": csrf_token(as_admin, "/codes"),
                                                   "sheet": sheet})
    assert answer.status_code == 303


def test_a_tampered_key_destroys_the_sheet(as_admin: FlaskClient, store: Store) -> None:
    _batch_id, _codes, sheet = _create(as_admin)
    sheet_id, _, key = sheet.partition(".")
    token = csrf_token(as_admin, "/codes")
    wrong = "A" + key[1:] if key[0] != "A" else "B" + key[1:]
    assert as_admin.post("/codes/feuille", data={"csrf_token": token,
                                                 "sheet": f"{sheet_id}.{wrong}"}).status_code == 303
    assert as_admin.post("/codes/feuille",
                         data={"csrf_token": token, "sheet": sheet}).status_code == 303


def test_the_sheet_expires(as_admin: FlaskClient, store: Store) -> None:
    _batch_id, _codes, sheet = _create(as_admin)
    [key] = store.client.keys("parvis:admin:codesheet:*")
    assert 0 < store.client.ttl(key) <= 600


@pytest.mark.parametrize(("fields", "message"), [
    ({"count": "0"}, "Un nombre entier de 1 à 10000."),
    ({"count": "10001"}, "Un nombre entier de 1 à 10000."),
    ({"valid_for": "forever"}, "Une durée de 1 minute à 90 jours"),
    ({"uses": "x"}, "Un nombre entier de 1 à 10000."),
    ({"session": "8d"}, "Une durée de 1 minute à 7 jours"),
    ({"plan": "gold"}, "Ce forfait n’existe pas dans la configuration."),
    ({"note": "a\tb"}, "Au plus 200 caractères, sur une ligne."),
])
def test_a_bad_form_makes_nothing(as_admin: FlaskClient, store: Store, fields: dict[str, str],
                                  message: str) -> None:
    form = {"count": "3", "valid_for": "4h", "uses": "1", "session": "", "plan": "",
            "note": ""}
    form.update(fields)
    answer = as_admin.post("/codes", data={"csrf_token": csrf_token(as_admin, "/codes"), **form})
    assert answer.status_code == 400
    assert message in answer.get_data(as_text=True)
    assert store.list_code_batches() == []


def test_default_plan_and_session(as_admin: FlaskClient, store: Store) -> None:
    _batch_id, codes, _sheet = _create(as_admin, plan="", session="", uses="1", count="1")
    redemption = store.redeem_code(codes[0], SECRET, time.time())
    assert redemption.ok and redemption.plan == "" and redemption.session_s is None


def test_revoke(as_admin: FlaskClient, store: Store) -> None:
    batch_id, codes, _sheet = _create(as_admin)
    answer = as_admin.post(f"/codes/{batch_id}/revoquer",
                           data={"csrf_token": csrf_token(as_admin, "/codes")})
    assert answer.status_code == 303
    listing = as_admin.get("/codes").get_data(as_text=True)
    assert f"Lot {batch_id} révoqué" in listing
    assert store.redeem_code(codes[0], SECRET, time.time()).reason == "revoked"
    missing = as_admin.post("/codes/b-20200101-0000/revoquer",
                            data={"csrf_token": csrf_token(as_admin, "/codes")})
    assert missing.status_code == 303
    assert "Il n’y a pas de lot b-20200101-0000." in as_admin.get("/codes").get_data(as_text=True)
