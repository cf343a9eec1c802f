"""Fuzz every console route, logged out and logged in as admin and viewer: no 5xx, ever.

The console runs on the test Redis with what its pages show: two accounts, a
gateway with a client online, a code batch, an edited tile and a month of
council figures. Each example draws who is asking, a batch of requests
(``tests/fuzz/web.py``) and netctl's answer to the actions, and checks every
answer. Then: tiles read back from Redis, however malformed, and whatever the
tile form accepts leave the tile pages working; Host headers werkzeug cannot
encode get a 400 page; and with Redis stopped (nothing listens on its socket)
pages are 503, never 500.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import zoneinfo
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from hypothesis import example, given, settings
from hypothesis import strategies as st

from admin import create_app
from parvis.core.commands import Command, Result, Verb
from parvis.core.sessions import Session
from parvis.core.users import SESSION_LIFETIME_S, User
from parvis.reports.rollup import roll_up
from parvis.store import Keys, Store, connect
from tests.admin.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    GATEWAY,
    SECRET,
    VIEWER,
    VIEWER_PASSWORD,
    admin_config,
)
from tests.fuzz.conftest import FUZZ
from tests.fuzz.stored import edited_tiles
from tests.fuzz.web import SPECIAL_HOSTS, TALLY, FuzzRequest, Target, check, request_batches
from tests.portal.conftest import FakeNetctl, RedisServer
from tests.reports.synthetic import gateway_config, make_records, make_sessions

# Examples per test, each a batch of BATCH requests.
BATCH = 4
EXAMPLES = 1_000
REDIS_DOWN_EXAMPLES = 150

ROLES = ("logged out", "admin", "viewer")
# Console sessions the tests keep open (ids as auth.login makes them: 43 URL-safe characters).
SESSION_IDS = {ADMIN: "fuzzAdminSession000000000000000000000000001",
               VIEWER: "fuzzViewerSession00000000000000000000000001"}
STALE_SESSION = "fuzzStaleSession000000000000000000000000001"
TILE_ID = "t-0000000000f1"
MAC = "02:00:00:00:00:10"
BASE_URLS = ("http://127.0.0.1:8090", "http://127.0.0.1:8090", "http://localhost:8090",
             "https://127.0.0.1:8090")
OWN_HOSTS = ("127.0.0.1:8090", "localhost:8090", "[::1]:8090", "127.0.0.1", "localhost")
CLIENTS = ("127.0.0.1", "::1")
FIELDS = ("name", "password", "next", "mac", "duration", "down", "up", "count", "valid_for",
          "uses", "session", "plan", "note", "sheet", "kind", "title_fr", "title_en", "text_fr",
          "text_en", "url_fr", "url_en", "starts_at", "ends_at", "mois", "zone", "lang")
VALUES = (ADMIN, ADMIN_PASSWORD, VIEWER, VIEWER_PASSWORD, MAC, "02:00:00:00:00:99",
          "residents", "event", "default", "/codes", "/passerelles/gw-test", "/\\evil",
          "2026-11", "Centre-ville", "Parc Marie-Victorin", "nowhere", "abc.def",
          "xxxxxxxxxxxxxxxxxxxxxxxx.ZmVybmV0LWtleS1ub3QtcmVhbGx5LWEta2V5LTAwMDA=")
# The console's forms as its pages post them, by route.
_ACTION = "/passerelles/<gateway_id>/"
_TILE_FORM = (("kind", "offer"), ("title_fr", "Offre"), ("title_en", "Offer"),
              ("text_fr", "x"), ("text_en", "y"), ("url_fr", "https://example.org/"),
              ("url_en", ""), ("starts_at", "2026-12-24 08:00"), ("ends_at", "2026-12-25 08:00"))
FORMS = {
    "/connexion": ((("name", ADMIN), ("password", ADMIN_PASSWORD), ("next", "/codes")),
                   (("name", VIEWER), ("password", "wrong password!"))),
    **{_ACTION + action: ((("mac", MAC),), (("mac", "02:00:00:00:00:99"),))
       for action in ("deconnecter", "bloquer", "debloquer")},
    _ACTION + "prolonger": ((("mac", MAC), ("duration", "1h")),),
    _ACTION + "debit": ((("mac", MAC), ("down", "20M"), ("up", "")),),
    "/codes": ((("count", "3"), ("valid_for", "1h"), ("uses", "2"), ("session", "30m"),
                ("plan", "event"), ("note", "fuzz")),),
    "/codes/feuille": ((("sheet", "abc.ZmVybmV0LWtleS1ub3QtcmVhbGx5LWEta2V5LTAwMDA="),),),
    "/contenu/nouveau": (_TILE_FORM,),
    "/contenu/<tile_id>": (_TILE_FORM,),
}
VALID_TILE = json.dumps({"kind": "announcement", "title_fr": "Marché", "title_en": "Market",
                         "text_fr": "Samedi", "text_en": "Saturday", "url_fr": "",
                         "url_en": "", "starts_at": None, "ends_at": None, "created_at": 1.0,
                         "updated_at": 1.0, "by": ADMIN})


def _seed(store: Store, now: float) -> tuple[str, ...]:
    """A client online with its gateway's health, a code batch, a tile, a month of figures."""
    store.save_sessions([Session(
        mac=MAC, ipv4="10.77.2.10", started_at=now - 600, expires_at=now + 3000,
        idle_timeout_s=1200, last_activity_at=now, bytes_down=123_000_000, bytes_up=4_500_000,
        plan="residents", down_bps=10_000_000, up_bps=2_000_000, quota_bytes=2_000_000_000,
        quota_day="2026-11-27")])
    store.publish_health({"cpu_percent": 12.6, "memory_percent": 41.0, "uptime_s": 86400,
                          "memory_total_bytes": 2_000_000_000, "version": "0.1.0",
                          "interfaces": {"br-lan": {"present": True, "bytes_recv": 10**9,
                                                    "bytes_sent": 2 * 10**9, "errors": 0,
                                                    "drops": 1, "rx_bit_s": 5_000_000,
                                                    "tx_bit_s": 20_000_000},
                                         "wan0": {"present": False}}},
                         ttl_s=3600)
    batch, _codes = store.create_code_batch(3, 3600, 1, None, "fuzz", SECRET, now)
    store.save_content_tile(TILE_ID, VALID_TILE)
    zone = zoneinfo.ZoneInfo("America/Toronto")
    sessions = make_sessions(7, dt.date(2026, 11, 2), dt.date(2026, 11, 3), 20, ["gw-a"], zone)
    until = max(session.ended_at for session in sessions) + 60
    reports = Store(store.client, "gw-a")
    reports.append_records(make_records(sessions, "gw-a", until), 86400 * 3650, now=until)
    roll_up(reports, gateway_config("gw-a"), until)
    return (batch.id,)


def _keep(store: Store, accounts: dict[str, User]) -> Callable[[], None]:
    """Before each batch: both console sessions open and the tile there again.

    A request of the batch before may have logged out or deleted the tile.
    """
    def prepare() -> None:
        for name, session_id in SESSION_IDS.items():
            store.save_admin_session(session_id, {
                "user": name, "generation": accounts[name].generation,
                "created_at": time.time(), "address": "127.0.0.1"}, SESSION_LIFETIME_S)
        store.save_content_tile(TILE_ID, VALID_TILE)
    return prepare


def _targets(tmp_path: Path, redis_url: str, store: Store,
             accounts: dict[str, User]) -> dict[str, Target]:
    app = create_app(admin_config(tmp_path, redis_url), store=store, testing=True)
    batch_ids = _seed(store, time.time())
    stale = {"sid": STALE_SESSION}
    sessions = {"logged out": ({}, stale, {"sid": "short"}),
                "admin": ({"sid": SESSION_IDS[ADMIN], "_permanent": True},) * 3 + ({}, stale),
                "viewer": ({"sid": SESSION_IDS[VIEWER], "_permanent": True},) * 3 + ({}, stale)}
    return {role: Target(
        name=f"admin: {role}", app=app, base_urls=BASE_URLS, own_hosts=OWN_HOSTS,
        known={"gateway_id": (GATEWAY,), "tile_id": (TILE_ID,), "batch_id": batch_ids,
               "filename": ("admin.css",)},
        fields=FIELDS, values=VALUES + batch_ids + (TILE_ID,), forms=FORMS,
        sessions=sessions[role],
        clients=CLIENTS, prepare=_keep(store, accounts)) for role in ROLES}


@st.composite
def _netctl_answers(draw: st.DrawFn) -> Result:
    ok = draw(st.booleans())
    message = draw(st.sampled_from(["done", "no session for 02:00:00:00:00:10",
                                    "<b>markup</b>", "", "é" * 300]))
    return Result(ok, message)


def test_every_console_route_answers_below_500(tmp_path: Path, redis_server: RedisServer,
                                               store: Store, netctl: FakeNetctl,
                                               accounts: dict[str, User]) -> None:
    targets = _targets(tmp_path, redis_server.url, store, accounts)
    before = sum(TALLY[target.name] for target in targets.values())

    def changes() -> tuple[int, int, str | None]:
        """What only an administrator may change: commands sent, code batches, tiles."""
        return (len(netctl.seen), store.client.zcard(Keys.CODE_BATCHES),
                store.content_version())

    @settings(FUZZ, max_examples=EXAMPLES)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        role = data.draw(st.sampled_from(ROLES), label="role")
        target = targets[role]
        batch = data.draw(request_batches(target, BATCH), label="requests")
        answer = data.draw(_netctl_answers(), label="netctl")

        def decide(_command: Command) -> Result:
            return answer

        netctl.decide = decide
        target.prepare()
        unchanged = changes()
        for request in batch:
            check(target, request)
        if role != "admin":  # a viewer or a stranger changes nothing, whatever they send
            assert changes() == unchanged, (role, [request.describe() for request in batch])

    run()
    assert sum(TALLY[target.name] for target in targets.values()) - before >= EXAMPLES * BATCH
    # The fuzz went past the forms' checks: the administrator's actions reached netctl.
    assert {command.verb for command in netctl.seen} >= {Verb.BLOCK, Verb.DEAUTHORIZE}


def test_stored_tiles_never_break_the_console(tmp_path: Path, redis_server: RedisServer,
                                              store: Store, accounts: dict[str, User]) -> None:
    """Tiles in Redis as the console reads them back: a malformed one is left out, no 500."""
    targets = _targets(tmp_path, redis_server.url, store, accounts)
    target, admin = targets["viewer"], targets["admin"]
    page = FuzzRequest(base_url=BASE_URLS[0], method="GET", raw_path="/contenu", query="",
                       host=OWN_HOSTS[0], remote_addr=CLIENTS[0],
                       headers=(("Cookie", f"{target.cookie_name}={target.session_cookies[0]}"),),
                       body=b"", content_length=None, input_terminated=False)
    edit = dataclasses.replace(page, raw_path=f"/contenu/{TILE_ID}", headers=(
        ("Cookie", f"{admin.cookie_name}={admin.session_cookies[0]}"),))

    @settings(FUZZ, max_examples=300)
    @given(tile=edited_tiles())
    @example(tile=json.dumps({"kind": "offer", "title_fr": "a", "title_en": "b",
                              "starts_at": 10**400}))
    @example(tile=json.dumps({"kind": "offer", "title_fr": "a", "title_en": "b",
                              "created_at": 10**400}))
    @example(tile=json.dumps({"kind": "offer", "title_fr": "a", "title_en": "b",
                              "starts_at": 253402318740.0, "updated_at": "yesterday"}))
    def run(tile: str) -> None:
        target.prepare()
        store.save_content_tile(TILE_ID, tile)
        check(target, page)
        check(admin, edit)

    run()


_TIME_TEXTS = ("", "2026-12-24 08:00", "2026-12-24T08:00", "9999-12-31 23:59",
               "0001-01-01 00:00", "1969-12-31 23:59", "2100-01-01 00:00", "2026-03-08 02:30",
               "2026-11-01 01:30", "2026-02-30 10:00", "24:00", "2026-12-24 08:00+01:00")


def test_tile_form_never_breaks_the_tile_pages(tmp_path: Path, redis_server: RedisServer,
                                               store: Store, accounts: dict[str, User]) -> None:
    """Whatever the tile form accepts, the list, its edit page and the splash page still work."""
    admin = _targets(tmp_path, redis_server.url, store, accounts)["admin"]
    cookie = ("Cookie", f"{admin.cookie_name}={admin.session_cookies[0]}")
    get = FuzzRequest(base_url=BASE_URLS[0], method="GET", raw_path="/contenu", query="",
                      host=OWN_HOSTS[0], remote_addr=CLIENTS[0], headers=(cookie,), body=b"",
                      content_length=None, input_terminated=False)
    texts = st.one_of(st.text(min_size=1, max_size=30),
                      st.sampled_from(["", " ", "https://example.org/x", "http://a b",
                                       "A" * 501, "<b>x</b>"]))
    times = st.one_of(
        st.sampled_from(_TIME_TEXTS), st.text(max_size=20),
        st.datetimes(dt.datetime(1960, 1, 1), dt.datetime(2150, 1, 1)).map(
            lambda moment: moment.strftime("%Y-%m-%d %H:%M")))

    @settings(FUZZ, max_examples=150)
    @given(kind=st.sampled_from(["announcement", "activity", "offer", "", "other"]),
           starts_at=times, ends_at=st.one_of(st.just(""), times), title_fr=texts,
           title_en=texts, url_fr=st.one_of(st.just(""), texts))
    @example(kind="offer", starts_at="9999-12-31 23:59", ends_at="", title_fr="a",
             title_en="b", url_fr="")
    def run(kind: str, starts_at: str, ends_at: str, title_fr: str, title_en: str,
            url_fr: str) -> None:
        admin.prepare()
        store.client.delete("parvis:content:tiles")
        form = {"csrf_token": admin.csrf_valid, "kind": kind, "starts_at": starts_at,
                "ends_at": ends_at, "title_fr": title_fr, "title_en": title_en,
                "url_fr": url_fr}
        check(admin, dataclasses.replace(
            get, method="POST", raw_path="/contenu/nouveau", body=urlencode(form).encode(),
            headers=(cookie, ("Content-Type", "application/x-www-form-urlencoded"))))
        check(admin, get)
        for tile_id in store.client.hkeys("parvis:content:tiles"):
            check(admin, dataclasses.replace(get, raw_path=f"/contenu/{tile_id}"))

    run()


def test_any_host_header_gets_a_page(tmp_path: Path, redis_server: RedisServer,
                                     store: Store, accounts: dict[str, User]) -> None:
    """Hosts werkzeug cannot IDNA-encode (a label over 63 characters) get a 400 page, not a 500."""
    target = _targets(tmp_path, redis_server.url, store, accounts)["admin"]
    cookie = ("Cookie", f"{target.cookie_name}={target.session_cookies[0]}")
    page = FuzzRequest(base_url=BASE_URLS[0], method="GET", raw_path="/", query="",
                       host=OWN_HOSTS[0], remote_addr=CLIENTS[0], headers=(cookie,), body=b"",
                       content_length=None, input_terminated=False)

    @settings(FUZZ, max_examples=100)
    @given(host=st.one_of(st.sampled_from(SPECIAL_HOSTS), st.text(max_size=80)),
           path=st.sampled_from(["/", "/connexion", "/codes", "/nowhere"]))
    @example(host="a" * 64, path="/connexion")
    @example(host="a..b:8090", path="/")
    def run(host: str, path: str) -> None:
        target.prepare()
        check(target, dataclasses.replace(page, host=host, raw_path=path))

    run()


def test_console_without_redis_answers_503_never_500(tmp_path: Path,
                                                     redis_server: RedisServer) -> None:
    """Redis stopped (nothing listens on its socket): every page that needs it is a 503."""
    gone = Store(connect(f"unix://{tmp_path / 'stopped.sock'}", 0.2), GATEWAY)
    app = create_app(admin_config(tmp_path, redis_server.url), store=gone, testing=True)
    target = Target(
        name="admin: Redis stopped", app=app, base_urls=BASE_URLS, own_hosts=OWN_HOSTS,
        known={"gateway_id": (GATEWAY,), "tile_id": (TILE_ID,), "filename": ("admin.css",)},
        fields=FIELDS, values=VALUES, forms=FORMS,
        sessions=({"sid": SESSION_IDS[ADMIN], "_permanent": True}, {}),
        clients=CLIENTS, allowed_5xx=frozenset({503}))
    statuses: set[int] = set()

    @settings(FUZZ, max_examples=REDIS_DOWN_EXAMPLES)
    @given(batch=request_batches(target, BATCH))
    def run(batch: list[FuzzRequest]) -> None:
        for request in batch:
            statuses.add(check(target, request).status_code)

    run()
    assert 503 in statuses
