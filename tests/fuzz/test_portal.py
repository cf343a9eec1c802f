"""Fuzz every portal route: no 5xx, no traceback, a readable page for every 4xx.

Three portals share the test Redis: a gateway's own (the usual one), a central
portal (hand-off tokens) and a gateway in remote portal mode. Each example
draws one of them, a batch of requests (``tests/fuzz/web.py``), netctl's
answer, and now and then what Redis holds for the client (an end record, tiles
edited in the console), then checks every answer. The first two tests send the
issue's 20,000 requests. Then: records read back from Redis and the town's
content files, however malformed, leave working pages; Host headers werkzeug
cannot encode get a 400 page; and with Redis stopped (nothing listens on its
socket) pages are 503, never 500.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parvis.core import handoff
from parvis.core.codes import format_code
from parvis.core.commands import Result
from parvis.store import Keys, Store, connect
from portal import create_app
from portal.state import client_ipv4, state
from tests.fuzz.conftest import FUZZ
from tests.fuzz.stored import JSON_VALUES, NOW, edited_tiles, ended_records
from tests.fuzz.web import SPECIAL_HOSTS, TALLY, FuzzRequest, Target, check, request_batches
from tests.portal.conftest import (
    CLIENT_IP,
    HOSTNAME,
    PORTAL_URL,
    FakeNetctl,
    RedisServer,
    make_config,
)

# Examples per test, each a batch of BATCH requests; the first two tests send the
# issue's 20,000 requests between them.
BATCH = 4
GATEWAY_EXAMPLES = 4_000
HANDOFF_EXAMPLES = 1_000
REDIS_DOWN_EXAMPLES = 300
STORED_EXAMPLES = 300

CLIENTS = (CLIENT_IP, "10.77.2.11", "10.77.2.12")
HANDOFF_SECRET = b"fedcba9876543210fedcba9876543210-handoff"
# Hand-off contexts the tests keep in Redis (ids as Store.save_handoff_context makes them).
CONTEXT_OPEN = "fuzz-context-open-0000000001"
CONTEXT_ACCEPTED = "fuzz-context-accepted-000001"
TILE_IDS = ("t-00000000f001", "t-00000000f002")
CONTINUE_URLS = ("https://example.org/page?x=1", "http://portail.parvis.test/", "javascript:x",
                 "http://[::1]:80/", "https://a@b.example/", "http://ex\u00e9.example/",
                 "http://" + "a" * 1100 + ".example/")


def _seed(store: Store) -> tuple[str, ...]:
    """Code batches (good, revoked, expired); returns their codes, grouped and compact."""
    secret = state().secret
    now = time.time()
    _batch, good = store.create_code_batch(2, 86400, 10_000, 3600, "fuzz", secret, now)
    revoked_batch, revoked = store.create_code_batch(1, 86400, 1, None, "fuzz", secret, now)
    store.revoke_code_batch(revoked_batch.id)
    _old, expired = store.create_code_batch(1, 60, 1, None, "fuzz", secret, now - 86400)
    return tuple(format_code(code) for code in good + revoked + expired) + tuple(good)


def _keep_contexts(store: Store) -> Callable[[], None]:
    """Before each batch: the hand-off contexts exist again (accepting spends one), and the
    usual clients may try access codes again (three wrong ones lock a client out)."""
    def prepare() -> None:
        store.client.delete(*(Keys.code_failures("gw-test", client) for client in CLIENTS))
        store.client.set(Keys.handoff_context(CONTEXT_OPEN),
                         f'{{"gw": "gw-test", "ip": "{CLIENT_IP}", "accepted": false}}', ex=3600)
        store.client.set(Keys.handoff_context(CONTEXT_ACCEPTED),
                         f'{{"gw": "gw-test", "ip": "{CLIENT_IP}", "accepted": true}}', ex=3600)
    return prepare


def portal_target(name: str, tmp_path: Path, redis_url: str, store: Store,
                  **portal: object) -> Target:
    """One portal app as a fuzz target, with its codes, tokens and contexts."""
    (tmp_path / "handoff.secret").write_bytes(HANDOFF_SECRET)
    app = create_app(make_config(tmp_path, redis_url, **portal), store=store, testing=True)
    with app.app_context():
        codes = _seed(store)
        signer = state().signer
        tokens = tuple(signer.sign(url, CLIENT_IP) for url in CONTINUE_URLS)
    return Target(
        name=name, app=app,
        base_urls=(PORTAL_URL, PORTAL_URL, PORTAL_URL, f"http://{HOSTNAME}:8080"),
        own_hosts=(f"{HOSTNAME}:8443", HOSTNAME, "wifi.parvis.test", "10.77.0.1", "[fd77::1]"),
        known={"filename": ("parvis.css",)},
        fields=("u", "code", "lang", "h"),
        values=codes + tokens + ("lang=en", "0" * 16),
        forms={"/code": tuple((("code", code), ("u", tokens[0])) for code in codes[:4]),
               "/accepter": ((("u", tokens[0]),), (("u", tokens[2]),), ())},
        sessions=({}, {"handoff": CONTEXT_OPEN}, {"online": CONTEXT_ACCEPTED},
                  {"handoff": "no-such-context-000000000001"}, {"handoff": "short"}),
        clients=CLIENTS, json_prefixes=("/api/",), prepare=_keep_contexts(store),
    )


@pytest.fixture
def portals(tmp_path: Path, redis_server: RedisServer, store: Store) -> dict[str, Target]:
    """The gateway's portal, a central portal and a gateway in remote portal mode."""
    secret_file = str(tmp_path / "handoff.secret")
    return {
        "gateway": portal_target("portal", tmp_path, redis_server.url, store),
        "central": portal_target("portal", tmp_path, redis_server.url, store,
                                 handoff_secret_file=secret_file),
        "remote": portal_target("portal", tmp_path, redis_server.url, store,
                                remote_url="https://central.parvis.test/?from=gw",
                                handoff_secret_file=secret_file),
    }


# netctl's answers to authorize ("expired", the command waited too long, is a 503 by design).
DECISIONS = ("grant", "grant", "grant", "quota", "blocked", "refused", "expired")


@st.composite
def _netctl_answer(draw: st.DrawFn) -> tuple[str, Result | None]:
    decision = draw(st.sampled_from(DECISIONS))
    if decision == "grant":
        return decision, None  # FakeNetctl.grant: a session, then ok
    if decision == "quota":
        data = draw(st.one_of(
            st.none(),
            st.fixed_dictionaries({"reconnect_at": st.one_of(
                st.floats(NOW - 100, NOW + 3 * 86400), JSON_VALUES)}),
            st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3)))
        return decision, Result(False, "quota: daily data limit reached", data)
    message = {"blocked": "device 02:00:00:00:00:10 is blocked", "refused": "no such client",
               "expired": "expired: sent 40 s ago"}[decision]
    return decision, Result(False, message)


@st.composite
def _handoff_tokens(draw: st.DrawFn) -> str | None:
    """``h``: none, garbage, or a genuine token (fresh, so its nonce is unused) with odd params."""
    kind = draw(st.sampled_from(["none", "none", "garbage", "genuine", "genuine", "tampered"]))
    if kind == "none":
        return None
    if kind == "garbage":
        return draw(st.text(max_size=80))
    params = {
        "gateway": draw(st.sampled_from(["gw-test", "gw-other", "GW", "", "gw-test\n"])),
        "ip": draw(st.sampled_from([CLIENT_IP, "10.77.2.11", "fd77::5", "127.0.0.1", "",
                                    "255.255.255.255", "::ffff:10.77.2.10", "x"])),
    }
    if draw(st.booleans()):
        params["url"] = draw(st.one_of(st.sampled_from(CONTINUE_URLS), st.text(max_size=30)))
    params.update(draw(st.dictionaries(st.text(max_size=6).filter(
        lambda key: key not in handoff.RESERVED), st.text(max_size=10), max_size=2)))
    try:
        token = handoff.sign(params, HANDOFF_SECRET, time.time())
    except ValueError:
        return "too-long"
    if kind == "tampered":
        where = draw(st.integers(0, len(token) - 1))
        token = token[:where] + ("A" if token[where] != "A" else "B") + token[where + 1:]
    return token


def _fuzz_portals(portals: dict[str, Target], netctl: FakeNetctl, store: Store, examples: int,
                  handoff_tokens: bool) -> None:
    @settings(FUZZ, max_examples=examples)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        target = portals[data.draw(st.sampled_from(sorted(portals)), label="portal")]
        batch = data.draw(request_batches(target, BATCH), label="requests")
        if handoff_tokens:
            token = data.draw(_handoff_tokens(), label="h")
            given_h = urlencode({"h": token}) if token is not None else ""
            query = "&".join(part for part in (batch[0].query, given_h) if part)
            batch[0] = dataclasses.replace(batch[0], method="GET", raw_path="/handoff",
                                           query=query)
        decision, result = data.draw(_netctl_answer(), label="netctl")
        netctl.decide = (lambda _command: result) if result is not None else None
        ipv4 = client_ipv4(batch[0].remote_addr)
        ip = ipv4 or CLIENT_IP
        ended = tiles = None
        if data.draw(st.integers(0, 3), label="seed Redis") == 0:
            ended = data.draw(st.one_of(st.none(), ended_records()), label="ended record")
            tiles = data.draw(st.lists(edited_tiles(), max_size=len(TILE_IDS)), label="tiles")
        target.prepare()
        try:
            if ended is not None:
                store.client.set(store.keys.ended(ip), ended, ex=600)
            for tile_id, body in zip(TILE_IDS, tiles or [], strict=False):
                store.save_content_tile(tile_id, body)
            for request in batch:
                # 503 by design: netctl's "expired" refusal, and the RFC 8908 API over IPv6.
                expected_503 = decision == "expired" or (
                    ipv4 is None and request.path_info.lstrip("/") == "api/captive")
                target.allowed_5xx = frozenset({503}) if expected_503 else frozenset()
                check(target, request)
        finally:
            if ended is not None:
                store.client.delete(store.keys.ended(ip))
            for tile_id in TILE_IDS[:len(tiles or [])]:
                store.delete_content_tile(tile_id)

    run()


def test_every_portal_route_answers_below_500(portals: dict[str, Target], netctl: FakeNetctl,
                                              store: Store) -> None:
    before = TALLY["portal"]
    _fuzz_portals(portals, netctl, store, GATEWAY_EXAMPLES, handoff_tokens=False)
    assert TALLY["portal"] - before >= GATEWAY_EXAMPLES * BATCH
    # The fuzz went past the forms' checks: accepts and codes reached netctl.
    assert {command.via for command in netctl.seen} >= {"accept", "code"}


def test_handoff_tokens_never_cause_a_500(portals: dict[str, Target], netctl: FakeNetctl,
                                          store: Store) -> None:
    before = TALLY["portal"]
    _fuzz_portals(portals, netctl, store, HANDOFF_EXAMPLES, handoff_tokens=True)
    assert TALLY["portal"] - before >= HANDOFF_EXAMPLES * BATCH
    assert "handoff" in {command.via for command in netctl.seen}


def _page(target: Target, method: str, path: str, form: dict[str, str] | None = None
          ) -> FuzzRequest:
    """A request as the resident's browser sends it: its session cookie, the form's token."""
    cookie = f"{target.cookie_name}={target.session_cookies[0]}"
    body = urlencode({"csrf_token": target.csrf_valid, **form}).encode() if form else b""
    headers = (("Cookie", cookie),) + (
        (("Content-Type", "application/x-www-form-urlencoded"),) if form else ())
    return FuzzRequest(base_url=PORTAL_URL, method=method, raw_path=path, query="",
                       host=f"{HOSTNAME}:8443", remote_addr=CLIENT_IP, headers=headers,
                       body=body, content_length=None, input_terminated=False)


_TILE = {"kind": "offer", "title_fr": "Offre", "title_en": "Offer"}


def test_stored_records_never_break_a_page(portals: dict[str, Target], netctl: FakeNetctl,
                                           store: Store) -> None:
    """End records, tiles and netctl's quota data as the pages read them: odd fields left out."""
    target = portals["gateway"]
    pages = [_page(target, "GET", "/"), _page(target, "GET", "/bienvenue"),
             _page(target, "POST", "/code", {"code": "AAAA-BBBB-CCCC-DDDD"}),
             _page(target, "POST", "/accepter", {})]

    @settings(FUZZ, max_examples=STORED_EXAMPLES)
    @given(ended=ended_records(), tiles=st.lists(edited_tiles(), min_size=1, max_size=2),
           reconnect_at=JSON_VALUES)
    @example(ended=json.dumps({"reason": "Quota-Exceeded", "quota_bytes": 10**400}),
             tiles=[json.dumps(_TILE)], reconnect_at=10**400)
    @example(ended=json.dumps({"reason": "Session-Timeout", "hard_timeout_s": 10**400}),
             tiles=[json.dumps({**_TILE, "starts_at": 10**400})], reconnect_at=None)
    @example(ended=json.dumps({"reason": "Idle-Timeout", "idle_timeout_s": 10**400,
                               "ended_at": 10**400, "reconnect_at": 10**400}),
             tiles=[json.dumps({**_TILE, "created_at": 10**400})], reconnect_at=-1)
    def run(ended: str, tiles: list[str], reconnect_at: object) -> None:
        store.client.delete(store.keys.sessions, store.keys.sessions_by_ip,
                            Keys.code_failures("gw-test", CLIENT_IP))
        store.client.set(store.keys.ended(CLIENT_IP), ended, ex=600)
        for tile_id, body in zip(TILE_IDS, tiles, strict=False):
            store.save_content_tile(tile_id, body)
        netctl.decide = lambda _command: Result(False, "quota: daily data limit reached",
                                                {"reconnect_at": reconnect_at})
        for request in pages:
            check(target, request)

    run()


_TOML_PIECES = (b"[[tile]]\n", b'kind = "offer"\n', b'title_fr = "March\xc3\xa9"\n',
                b'title_en = "Market"\n', b"start = 2026-01-01\n", b"end = 1979-13-01\n",
                b'url_fr = "javascript:x"\n', b"x = [", b"\xe9", b"\x00", b"[tile]\n",
                b"title_fr = 1" + b"0" * 5000 + b"\n", b"tile = " + b"[" * 3000)


def test_content_files_never_break_the_splash_page(tmp_path: Path, redis_server: RedisServer,
                                                   store: Store) -> None:
    """What the town edits in content_dir, however broken, leaves a working splash page."""
    target = portal_target("portal", tmp_path, redis_server.url, store)
    content = tmp_path / "content"
    page = _page(target, "GET", "/")

    @settings(FUZZ, max_examples=150)
    @given(tiles=st.one_of(st.binary(max_size=100), st.lists(
               st.sampled_from(_TOML_PIECES), max_size=8).map(b"".join)),
           terms=st.one_of(st.just(None), st.binary(max_size=100)))
    @example(tiles=b'[[tile]]\nkind = "offer"\ntitle_fr = "March\xe9"\ntitle_en = "Market"\n',
             terms=None)  # saved as Latin-1 by a text editor
    @example(tiles=b"tile = " + b"[" * 3000, terms=b"\xff\xfe# Conditions\n")
    def run(tiles: bytes, terms: bytes | None) -> None:
        (content / "tiles.toml").write_bytes(tiles)
        if terms is not None:
            (content / "terms.fr.md").write_bytes(terms)
        response = check(target, page)
        assert response.status_code == 200

    run()


def test_any_host_header_gets_a_page(portals: dict[str, Target]) -> None:
    """Hosts werkzeug cannot IDNA-encode (a label over 63 characters) get a 400 page, not a 500."""
    target = portals["gateway"]

    @settings(FUZZ, max_examples=100)
    @given(host=st.one_of(st.sampled_from(SPECIAL_HOSTS), st.text(max_size=80)),
           path=st.sampled_from(["/", "/bienvenue", "/api/captive", "/nowhere"]))
    @example(host="a" * 64, path="/")
    @example(host="a..b:8443", path="/bienvenue")
    def run(host: str, path: str) -> None:
        check(target, dataclasses.replace(_page(target, "GET", path), host=host))

    run()


def test_portal_without_redis_answers_503_never_500(tmp_path: Path,
                                                    redis_server: RedisServer) -> None:
    """Redis stopped (nothing listens on its socket): pages are 503, the API a JSON 503."""
    gone = Store(connect(f"unix://{tmp_path / 'stopped.sock'}", 0.2), "gw-test")
    app = create_app(make_config(tmp_path, redis_server.url), store=gone, testing=True)
    target = Target(
        name="portal, Redis stopped", app=app,
        base_urls=(PORTAL_URL, PORTAL_URL, f"http://{HOSTNAME}:8080"),
        own_hosts=(f"{HOSTNAME}:8443", HOSTNAME), known={"filename": ("parvis.css",)},
        fields=("u", "code", "lang"), values=(),
        forms={"/code": ((("code", "ABCD-EFGH-JKMN-PQRS"),),)},
        sessions=({}, {"handoff": CONTEXT_OPEN}),
        clients=CLIENTS, json_prefixes=("/api/",), allowed_5xx=frozenset({503}))
    statuses: set[int] = set()

    @settings(FUZZ, max_examples=REDIS_DOWN_EXAMPLES)
    @given(batch=request_batches(target, BATCH))
    def run(batch: list[FuzzRequest]) -> None:
        for request in batch:
            statuses.add(check(target, request).status_code)

    run()
    assert 503 in statuses
