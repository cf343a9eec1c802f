"""Tiles edited in the console show on the portal's splash page, within their window only."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
import zoneinfo

import pytest
from flask.testing import FlaskClient

import portal
from admin.formats import parse_local
from parvis.core.config import Config
from parvis.store import Keys, Store, connect
from portal.content import load_tiles
from tests.admin.conftest import csrf_token
from tests.portal.conftest import https_client

TORONTO = zoneinfo.ZoneInfo("America/Toronto")


def _local(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, TORONTO).strftime("%Y-%m-%dT%H:%M")


def _tile(**fields: str) -> dict[str, str]:
    tile = {"kind": "announcement", "title_fr": "Collecte des sapins",
            "title_en": "Christmas tree pickup", "text_fr": "Le 8 janvier.",
            "text_en": "On January 8.", "url_fr": "", "url_en": "", "starts_at": "",
            "ends_at": ""}
    tile.update(fields)
    return tile


def _save(client: FlaskClient, path: str = "/contenu/nouveau", **fields: str) -> None:
    answer = client.post(path, data={"csrf_token": csrf_token(client, "/contenu"),
                                     **_tile(**fields)})
    assert answer.status_code == 303, answer.get_data(as_text=True)


def _splash(config: Config, store: Store, lang: str = "fr") -> str:
    page = https_client(portal.create_app(config, store=store, testing=True)).get(
        f"/?lang={lang}")
    assert page.status_code == 200
    return page.get_data(as_text=True)


def test_a_new_tile_shows_on_the_splash_page_at_once(as_admin: FlaskClient, config: Config,
                                                      store: Store) -> None:
    splash = portal.create_app(config, store=store, testing=True)
    resident = https_client(splash)
    assert "Collecte des sapins" not in resident.get("/").get_data(as_text=True)
    _save(as_admin, url_fr="https://www.plessisville.quebec/sapins")
    html = resident.get("/").get_data(as_text=True)
    assert "Collecte des sapins" in html and "Le 8 janvier." in html
    assert 'href="https://www.plessisville.quebec/sapins"' in html
    english = resident.get("/?lang=en").get_data(as_text=True)
    assert "Christmas tree pickup" in english and "On January 8." in english
    listing = as_admin.get("/contenu").get_data(as_text=True)
    assert "Collecte des sapins" in listing and "affichée" in listing


def test_only_within_its_window(as_admin: FlaskClient, config: Config, store: Store) -> None:
    now = time.time()
    _save(as_admin, title_fr="Passé", title_en="Past", starts_at=_local(now - 7200),
          ends_at=_local(now - 3600))
    _save(as_admin, title_fr="Futur", title_en="Future", starts_at=_local(now + 3600))
    _save(as_admin, title_fr="Maintenant", title_en="Now", starts_at=_local(now - 120),
          ends_at=_local(now + 3600))
    html = _splash(config, store)
    assert "Maintenant" in html and "Passé" not in html and "Futur" not in html
    listing = as_admin.get("/contenu").get_data(as_text=True)
    assert "terminée" in listing and "à venir" in listing and "affichée" in listing
    # The window as the portal applies it: start included, end excluded.
    starts = parse_local(_local(now + 3600), TORONTO)
    assert starts is not None
    shown = load_tiles(config.portal.content_dir, dt.date.today(), store=store, now=starts)
    assert "Futur" in [tile.title["fr"] for tile in shown]


def test_markup_is_shown_as_text(as_admin: FlaskClient, config: Config, store: Store) -> None:
    _save(as_admin, title_fr="<script>alert(1)</script>", text_fr="<b>gras</b> & co",
          title_en="<img src=x onerror=alert(1)>")
    html = _splash(config, store)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;gras&lt;/b&gt; &amp; co" in html
    assert "<img src=x" not in _splash(config, store, "en")
    listing = as_admin.get("/contenu").get_data(as_text=True)
    assert "<script>alert(1)" not in listing and "&lt;script&gt;" in listing


def test_edit_and_delete_show_at_the_next_view(as_admin: FlaskClient, config: Config,
                                               store: Store) -> None:
    splash = https_client(portal.create_app(config, store=store, testing=True))
    _save(as_admin)
    assert "Collecte des sapins" in splash.get("/").get_data(as_text=True)
    [tile_id] = store.client.hkeys(Keys.CONTENT_TILES)
    form = as_admin.get(f"/contenu/{tile_id}").get_data(as_text=True)
    assert 'value="Collecte des sapins"' in form
    _save(as_admin, f"/contenu/{tile_id}", title_fr="Collecte reportée")
    html = splash.get("/").get_data(as_text=True)
    assert "Collecte reportée" in html and "Collecte des sapins" not in html
    record = json.loads(store.client.hget(Keys.CONTENT_TILES, tile_id))
    assert record["by"] == "alice" and record["created_at"] <= record["updated_at"]
    answer = as_admin.post(f"/contenu/{tile_id}/supprimer",
                           data={"csrf_token": csrf_token(as_admin, "/contenu")})
    assert answer.status_code == 303
    assert "Collecte reportée" not in splash.get("/").get_data(as_text=True)
    assert as_admin.get(f"/contenu/{tile_id}").status_code == 404


@pytest.mark.parametrize(("fields", "message"), [
    ({"title_en": ""}, "Obligatoire, dans les deux langues."),
    ({"url_fr": "javascript:alert(1)"}, "Une adresse commençant par https://"),
    ({"text_fr": "x" * 501}, "Au plus 500 caractères."),
    ({"kind": "party"}, "Choisissez un type."),
    ({"starts_at": "demain"}, "Une date et une heure"),
    ({"starts_at": "2026-12-24T10:00", "ends_at": "2026-12-24T09:00"},
     "La fin doit venir après le début."),
])
def test_a_bad_tile_is_refused(as_admin: FlaskClient, store: Store, fields: dict[str, str],
                               message: str) -> None:
    answer = as_admin.post("/contenu/nouveau", data={"csrf_token": csrf_token(as_admin, "/contenu"),
                                                     **_tile(**fields)})
    assert answer.status_code == 400
    assert message in answer.get_data(as_text=True)
    assert store.content_version() is None


def test_times_are_the_towns(as_admin: FlaskClient, store: Store) -> None:
    _save(as_admin, starts_at="2026-12-24T08:00", ends_at="2026-12-26T00:00")
    [text] = store.client.hvals(Keys.CONTENT_TILES)
    record = json.loads(text)
    assert record["starts_at"] == dt.datetime(2026, 12, 24, 8, tzinfo=TORONTO).timestamp()
    listing = as_admin.get("/contenu").get_data(as_text=True)
    assert "2026-12-24 08:00" in listing and "2026-12-26 00:00" in listing
    [tile_id] = store.client.hkeys(Keys.CONTENT_TILES)
    form = as_admin.get(f"/contenu/{tile_id}").get_data(as_text=True)
    assert 'value="2026-12-24T08:00"' in form


def test_file_tiles_still_show_without_redis(config: Config, caplog: pytest.LogCaptureFixture,
                                             store: Store) -> None:
    down = Store(connect("unix:///nonexistent/redis.sock", 0.2), "gw-test")
    with caplog.at_level(logging.WARNING, logger="portal.content"):
        tiles = load_tiles(config.portal.content_dir, dt.date(2026, 11, 20), store=down)
    assert tiles == load_tiles(config.portal.content_dir, dt.date(2026, 11, 20))
    assert tiles and "edited tiles not shown" in caplog.text


def test_a_malformed_entry_is_skipped(as_admin: FlaskClient, config: Config, store: Store,
                                      caplog: pytest.LogCaptureFixture) -> None:
    _save(as_admin)
    store.save_content_tile("t-000000000000", '{"kind": "party"}')
    with caplog.at_level(logging.WARNING, logger="portal.content"):
        html = _splash(config, store)
    assert "Collecte des sapins" in html and "edited tile not shown" in caplog.text


def test_the_cache_follows_the_version(as_admin: FlaskClient, config: Config,
                                       store: Store) -> None:
    _save(as_admin)
    first = load_tiles(config.portal.content_dir, dt.date.today(), store=store)
    # Another writer replaces the tile behind the console's back, with a new version.
    [tile_id] = store.client.hkeys(Keys.CONTENT_TILES)
    record = json.loads(store.client.hget(Keys.CONTENT_TILES, tile_id))
    record["title_fr"] = "Changé"
    store.save_content_tile(tile_id, json.dumps(record))
    second = load_tiles(config.portal.content_dir, dt.date.today(), store=store)
    assert [t.title["fr"] for t in first if t.id] == ["Collecte des sapins"]
    assert [t.title["fr"] for t in second if t.id] == ["Changé"]
    # Redis lost everything (a restart without persistence): no stale tiles.
    store.client.flushall()
    assert [t for t in load_tiles(config.portal.content_dir, dt.date.today(), store=store)
            if t.id] == []


def test_announcements_come_first_then_the_files(as_admin: FlaskClient, config: Config,
                                                 store: Store) -> None:
    _save(as_admin, kind="offer", title_fr="Offre", title_en="Offer")
    _save(as_admin, kind="announcement", title_fr="Annonce", title_en="Notice")
    html = _splash(config, store)
    titles = re.findall(r"<h3>([^<]+)</h3>", html)
    assert titles[:2] == ["Annonce", "Offre"]
