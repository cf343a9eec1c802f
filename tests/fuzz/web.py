"""Generated HTTP requests for a Flask app, sent through its test client, and the checks.

A :class:`Target` describes one application (its routes come from its own
``url_map``, so a new view is fuzzed without touching this file) and what a
request to it may carry: the form fields its views read, the valid values of
its URL arguments, valid session cookies and a valid CSRF token.

:func:`request_batches` draws a few requests that share their headers,
cookies, body, query and source address and differ in method and path (one
example, several requests: hypothesis spends most of its time drawing, and a
shared part costs its draws once). Every field is one draw from a pool — the
app's own values, values that break parsers, and garbage made once from a
fixed seed — or, now and then, free text from hypothesis itself. :func:`check`
builds the WSGI environ as a server would (``PATH_INFO`` percent-decoded bytes
as latin-1, ``QUERY_STRING`` raw), sends it and asserts the answer is sound
(:func:`problems`). :data:`TALLY` counts what was sent, by target name.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlencode

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from flask.testing import FlaskClient
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer
from werkzeug.test import TestResponse

# Requests sent over the whole run, by target name ("portal", "admin"), and their statuses.
TALLY: Counter[str] = Counter()
STATUSES: Counter[tuple[str, int]] = Counter()

METHODS = ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS")
# What must never reach a browser (a debugger page or a printed traceback).
TRACEBACK_MARKERS = (b"Traceback (most recent call last)", b'File "/', b"Werkzeug Debugger",
                     b"jinja2.exceptions", b"werkzeug.exceptions")
_ARGUMENT_RE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
CSRF_FIELD = "csrf_token"
CSRF_SALT = "wtf-csrf-token"  # Flask-WTF's, for a token the app accepts


# --- pools: garbage made once, from a fixed seed (the same on every run) -------------------

_RNG = random.Random(6)
# Separators, escapes, controls, markup, non-ASCII, direction marks, combining characters.
_NASTY = "/\\.%?#&=;:@+ \t\x00\x01\x1b\x7f'\"<>[]{}|^`~é€😀\u202e\ufeff\u0300\u2028"
_UNICODE = (string.ascii_letters + string.digits + string.punctuation + _NASTY
            + "".join(chr(c) for c in range(0xA0, 0x250)) + "ßﬁİı𝔘😀👍🏽\u200b\u200d中文العربية")
_LATIN1_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x100) if c != 0x7F)
_SEGMENT_ALPHABET = string.ascii_letters + string.digits + "-_" + _NASTY


def _made(alphabet: str, count: int, longest: int) -> tuple[str, ...]:
    return tuple("".join(_RNG.choice(alphabet) for _ in range(_RNG.randint(0, longest)))
                 for _ in range(count))


SPECIAL_VALUES = (
    "", " ", "0", "1", "-1", "1e999", "NaN", "inf", "9" * 40, "0x10", "fr", "en", "xx",
    "../../etc/passwd", "%00", "\x00", "<script>alert(1)</script>", "'\"", "\u202e",
    "https://example.org/a?b=c", "javascript:alert(1)", "//evil.example", "http://[::1]/",
    "10.77.2.10", "::1", "fd77::10", "02:00:00:00:00:10", "ff:ff:ff:ff:ff:ff",
    "02-00-00-00-00-11", "020000000012", "30m", "1h", "7d", "8d", "0s", "1h30m", "20M",
    "512k", "0", "999999999999T", "-5", "3.5", "2026-01", "2026-13", "2026-01\n", "0000-00",
    "2026-12-24 08:00", "2026-12-24T08:00", "9999-12-31 23:59", "0001-01-01 00:00",
    "2026-02-30 25:61", "announcement", "activity", "offer", "bogus", "t-0123456789ab",
    "ABCD-EFGH-JKMN", "abcd efgh", "😀" * 3, "A" * 600, "\r\n", "a\nb", "%ff%fe",
)
GARBAGE = _made(_UNICODE, 120, 40) + _made(string.printable, 40, 60)
HEADER_GARBAGE = _made(_LATIN1_PRINTABLE + "\t", 80, 50) + ("", " ", "A" * 9000, "é", "\t")
SEGMENTS = _made(_SEGMENT_ALPHABET, 60, 24) + (
    "..", ".", "%2e%2e", "%2f", "a" * 3000, "%ff%fe", "%00", "%c0%af", "con", "\\", "~", "")
QUERY_GARBAGE = _made(string.printable + "é%&=;", 40, 60) + (
    "%", "%zz", "&&&", "=", "a=%ff%fe", "u=" + "A" * 5000, "lang=fr&lang=en", "lang[]=fr",
    "?", "&=&=", "lang=en;lang=fr", "+%20+")
BINARY = tuple(_RNG.randbytes(_RNG.randint(0, 200)) for _ in range(30)) + (
    b"", b"\x00" * 50, b"\xff\xfe", b"{", b"--b0undary--", b"a=1&a=2&a=3")
_TAGS = ("fr", "en", "fr-CA", "en-US", "de", "*", "x", "", "fr_CA", "en-", "-", "zz-ZZ-zz",
         "é", "FR", "i-klingon")
_QUALITIES = ("", ";q=0", ";q=0.5", ";q=1", ";q=-1", ";q=abc", ";q=1e999", ";q=", ";q=0.001",
              ";x=y", ";q=nan")
ACCEPT_LANGUAGES = tuple(
    ",".join(_RNG.choice(_TAGS) + _RNG.choice(_QUALITIES) for _ in range(_RNG.randint(0, n)))
    for n in (1, 2, 3, 5, 40) for _ in range(12)) + HEADER_GARBAGE[:20]
_HEADER_NAMES = ("Accept", "User-Agent", "Referer", "Origin", "X-Forwarded-For",
                 "X-Forwarded-Proto", "X-Forwarded-Host", "X-Real-IP", "Forwarded",
                 "If-Modified-Since", "If-None-Match", "If-Range", "Range", "Authorization",
                 "Expect", "Transfer-Encoding", "Connection", "X-CSRFToken", "X-CSRF-Token",
                 "Accept-Encoding", "Cache-Control", "X-Requested-With", "Content-Encoding",
                 "X-Http-Method-Override", "Upgrade", "A" * 300, "X-É")
HEADER_SPECIALS = {
    "Range": ("bytes=0-10", "bytes=-5", "bytes=5-1", "bytes=0-99999999999999999999999",
              "bytes=0-1,2-3,4-5", "items=1-2", "bytes=", "bytes=-0"),
    "If-Modified-Since": ("Thu, 01 Jan 1970 00:00:00 GMT", "Sat, 01 Jan 10000 00:00:00 GMT",
                          "yesterday", "Mon, 32 Foo 2026 99:99:99 GMT", "0"),
    "If-Range": ("\"x\"", "Thu, 01 Jan 1970 00:00:00 GMT", "garbage"),
    "If-None-Match": ("*", "\"x\", W/\"y\"", "\"", "W/"),
    "Transfer-Encoding": ("chunked", "gzip, chunked", "identity"),
    "Content-Encoding": ("gzip", "deflate", "br"),
    "X-Forwarded-Proto": ("https", "http", "gopher"),
    "X-Forwarded-For": ("10.77.2.99", "1.2.3.4, 5.6.7.8", "garbage"),
    "X-Http-Method-Override": ("DELETE", "PUT", "GET"),
    "Authorization": ("Basic YWxpY2U6eA==", "Bearer x", "Basic %%%", "Digest"),
    "Expect": ("100-continue", "garbage"),
}
CONTENT_TYPES = (
    "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=latin1",
    "multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=\"",
    "application/json", "text/plain", "application/octet-stream", "text/html; charset=utf-8",
    "garbage", "application/x-www-form-urlencoded; charset=\u00e9", "",
    "multipart/mixed; boundary=b0undary",
)
SPECIAL_HOSTS = (
    "evil.example", "evil.example:443", "[::1]", "[::1]:8090", "[fd77::1]:8443",
    "[::ffff:10.77.0.1]", "[::1", "::1", "[]", "10.77.0.1", "127.0.0.1:99999", "localhost:abc",
    "a@b", "portail.parvis.test.", "PORTAIL.PARVIS.TEST", "", " ", "x" * 5000, "a" * 64,
    "a..b", ".", "host\u00e9.example", "host:8443:8443", "[zz::1]:80", "localhost:",
    "localhost:-1", "127.0.0.1:8090\t",
) + _made(_LATIN1_PRINTABLE, 20, 30)
SPECIAL_ADDRESSES = ("127.0.0.1", "::1", "0.0.0.0", "255.255.255.255", "224.0.0.1",
                     "fd77::10", "fe80::1%br-lan", "::", "10.77.0.1", "169.254.1.1",
                     "::ffff:127.0.0.1")
GARBAGE_ADDRESSES = ("", "unknown", "1.2.3", "999.1.1.1", "::ffff:999.1.1.1", "a" * 300,
                     "10.77.2.10 ", "é", "10.77.2.10:5555", "[::1]", "\x00", "0x0a.0.0.1")


def _text(pool: Sequence[str], free_size: int, alphabet: str | None = None
          ) -> st.SearchStrategy[str]:
    """A pool's value mostly; sometimes free text from hypothesis (which shrinks it)."""
    free = st.text(alphabet, max_size=free_size) if alphabet else st.text(max_size=free_size)
    return st.one_of(st.sampled_from(tuple(pool)), st.sampled_from(tuple(pool)),
                     st.sampled_from(tuple(pool)), free)


# --- targets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One rule of the app: its template (``/passerelles/<gateway_id>``) and methods."""

    template: str
    methods: frozenset[str]


def routes(app: Flask) -> list[Route]:
    """Every rule of ``app``'s url_map (sorted, so the draws are reproducible)."""
    found = [Route(rule.rule, frozenset(rule.methods or ()))
             for rule in app.url_map.iter_rules()]
    return sorted(found, key=lambda route: route.template)


@dataclass(eq=False)
class Target:
    """One application under fuzz and what its requests may carry."""

    name: str
    app: Flask
    # scheme://host[:port] of each listener the app answers (repeat one to weigh it).
    base_urls: tuple[str, ...]
    # Host header values the app calls its own (with and without port).
    own_hosts: tuple[str, ...]
    # URL argument name -> values that name something that exists.
    known: dict[str, tuple[str, ...]]
    # Form and query fields the views read (drawn more often than random names).
    fields: tuple[str, ...]
    # Values that mean something to those views (codes, tokens, …).
    values: tuple[str, ...]
    # Whole forms as the app's pages post them, by route template (coherent batches post
    # the form of their first request's route, or any of them).
    forms: dict[str, tuple[tuple[tuple[str, str], ...], ...]]
    # Session contents the app itself would have written (each gets the CSRF raw token).
    sessions: tuple[dict[str, Any], ...]
    # The usual clients' source addresses.
    clients: tuple[str, ...]
    # Paths under which errors are JSON, not HTML.
    json_prefixes: tuple[str, ...] = ()
    # Statuses >= 500 accepted for the next request (503 when Redis is down, …).
    allowed_5xx: frozenset[int] = frozenset()
    # Called by the tests before each batch (re-creates what a request may have spent).
    prepare: Callable[[], None] = lambda: None
    csrf_raw: str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
    route_list: list[Route] = field(default_factory=list)
    session_cookies: tuple[str, ...] = ()
    csrf_valid: str = ""
    csrf_other: str = ""

    def __post_init__(self) -> None:
        self.route_list = routes(self.app)
        serializer = SecureCookieSessionInterface().get_signing_serializer(self.app)
        assert serializer is not None
        self.session_cookies = tuple(
            serializer.dumps({CSRF_FIELD: self.csrf_raw, **extra}) for extra in self.sessions)
        secret = self.app.secret_key
        assert isinstance(secret, bytes | str)
        signer = URLSafeTimedSerializer(secret, salt=CSRF_SALT)
        self.csrf_valid = signer.dumps(self.csrf_raw)
        self.csrf_other = signer.dumps("a" * 40)  # genuine, but not this session's
        # Cookies are drawn, never kept: each request carries exactly what was drawn.
        self.client: FlaskClient = self.app.test_client(use_cookies=False)
        self.strategies = _Strategies(self)

    def __repr__(self) -> str:
        return f"Target({self.name!r})"

    @property
    def cookie_name(self) -> str:
        return str(self.app.config["SESSION_COOKIE_NAME"])


@dataclass(frozen=True)
class FuzzRequest:
    """One request as a WSGI server would hand it to the app."""

    base_url: str
    method: str
    raw_path: str  # the request target's path as sent, percent-escapes included
    query: str  # the raw query string
    host: str
    remote_addr: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    content_length: str | None  # a Content-Length that lies, or None for the true one
    input_terminated: bool  # gunicorn's wsgi.input_terminated

    @property
    def path_info(self) -> str:
        """PATH_INFO: the path percent-decoded to bytes, as latin-1 (PEP 3333)."""
        return unquote_to_bytes(self.raw_path.encode("utf-8")).decode("latin-1")

    def describe(self) -> str:
        headers = "".join(f"\n  {name}: {value[:200]!r}" for name, value in self.headers)
        return (f"{self.method} {self.base_url}{self.raw_path[:300]!r} ?{self.query[:300]!r}"
                f"\n  Host: {self.host[:200]!r}  from {self.remote_addr!r}"
                f"  body {len(self.body)} bytes {self.body[:300]!r}"
                f"  Content-Length lie {self.content_length!r}{headers}")


# --- strategies ---------------------------------------------------------------------------


def _percent_encode(text: str) -> str:
    return quote(text, safe="")


def _mutate_segment(base: str, how: str) -> str:
    if how == "upper":
        return base.upper()
    if how == "newline":
        return base + "\n"
    if how == "encoded-newline":
        return base + "%0a"
    if how == "slash":
        return base + "%2f"
    if how == "prefix":
        return "." + base
    if how == "cut":
        return base[: len(base) // 2]
    if how == "encode":
        return _percent_encode(base)
    return base + "%00"


_SEGMENT_MUTATIONS = ("upper", "newline", "encoded-newline", "slash", "prefix", "cut", "encode",
                      "nul")
_PATH_MUTATIONS = ("none",) * 10 + (
    "slash", "double", "leading", "dotdot", "dot", "encode", "case", "overlong", "nul",
    "unicode", "backslash", "empty", "nopath", "semicolon")


def _mutate_path(path: str, how: str, extra: str) -> str:
    if how == "slash":
        return path + "/"
    if how == "double":
        return path.replace("/", "//")
    if how == "leading":
        return "//" + path.lstrip("/")
    if how == "dotdot":
        return "/.." + path if extra < "m" else "/static/%2e%2e" + path
    if how == "dot":
        return path.replace("/", "/./", 1)
    if how == "encode":
        return "/" + _percent_encode(path.lstrip("/"))
    if how == "case":
        return path.upper()
    if how == "overlong":
        return path + "/" + "A" * (1000 + 9000 * (len(extra) % 3))
    if how == "nul":
        return path + "%00"
    if how == "unicode":
        return path + extra
    if how == "backslash":
        return path.replace("/", "\\")
    if how == "empty":
        return ""
    if how == "nopath":
        return path.lstrip("/")
    if how == "semicolon":
        return path + ";jsessionid=x"
    return path


class _Strategies:
    """The strategies of one target, built once (making them per draw costs more than drawing)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.routes = st.sampled_from(target.route_list)
        self.segment = _text(SEGMENTS, 12)
        self.known = {name: st.sampled_from(values) for name, values in target.known.items()}
        self.segment_kind = st.sampled_from(("known",) * 4 + ("mutated",) * 2 + ("any",) * 4)
        self.segment_mutation = st.sampled_from(_SEGMENT_MUTATIONS)
        self.path_mutation = st.sampled_from(_PATH_MUTATIONS)
        self.path_extra = _text(SEGMENTS, 4)
        self.methods = st.sampled_from(METHODS)
        self.field_names = st.one_of(st.sampled_from(target.fields),
                                     st.sampled_from(target.fields), _text(GARBAGE, 8))
        self.field_values = st.one_of(
            st.sampled_from(SPECIAL_VALUES + target.values),
            st.sampled_from(SPECIAL_VALUES + target.values), _text(GARBAGE, 20),
            st.integers(-10**6, 10**6).map(str),
            st.sampled_from([17_000, 70_000]).map(lambda n: "A" * n),  # over the body limits
        )
        self.pairs = st.lists(st.tuples(self.field_names, self.field_values), max_size=4)
        every_form = tuple(form for forms in target.forms.values() for form in forms)
        self.any_form = st.sampled_from(every_form + ((),))
        self.forms = {template: st.sampled_from(forms) for template, forms in target.forms.items()}
        self.query_kind = st.sampled_from(("pairs",) * 5 + ("none",) * 3 + ("garbage",) * 2)
        self.query_garbage = _text(QUERY_GARBAGE, 30)
        self.csrf = st.sampled_from((None, None, "", "garbage", target.csrf_other,
                                     target.csrf_valid, target.csrf_valid, target.csrf_valid,
                                     target.csrf_valid + "x", target.csrf_valid[:-3]))
        self.encoding = st.sampled_from(("form",) * 6 + ("multipart", "json", "raw", "none"))
        self.boundary = st.sampled_from(("b0undary", "x" * 70, "--", "é", "a b"))
        self.content_type = st.sampled_from(CONTENT_TYPES)
        self.binary = st.one_of(st.sampled_from(BINARY), st.binary(max_size=40))
        self.header_name = st.one_of(st.sampled_from(_HEADER_NAMES),
                                     st.text(string.ascii_letters + "-", min_size=1,
                                             max_size=12))
        self.header_value = _text(HEADER_GARBAGE, 20, _LATIN1_PRINTABLE + "\t")
        self.accept_language = st.sampled_from(ACCEPT_LANGUAGES)
        self.cookie_kind = st.sampled_from(("none", "valid", "valid", "valid", "valid",
                                            "tampered", "garbage", "foreign", "huge", "twice"))
        self.valid_cookie = st.sampled_from(target.session_cookies)
        self.lang_cookie = st.sampled_from((None, None, "fr", "en", "xx", "", "fr;en"))
        self.host = st.one_of(st.sampled_from(target.own_hosts),
                              st.sampled_from(target.own_hosts), st.sampled_from(SPECIAL_HOSTS),
                              st.text(_LATIN1_PRINTABLE, max_size=20))
        self.remote_addr = st.one_of(
            st.sampled_from(target.clients), st.sampled_from(target.clients),
            st.sampled_from(target.clients).map(lambda address: f"::ffff:{address}"),
            st.sampled_from(SPECIAL_ADDRESSES), st.ip_addresses(v=4).map(str),
            st.ip_addresses(v=6).map(str), st.sampled_from(GARBAGE_ADDRESSES))
        self.client = st.sampled_from(target.clients)
        self.lie = st.sampled_from(("+10", "-1", "0", "-1", "abc", "99999999999999999999",
                                    "1e3", " 5"))
        self.base_url = st.sampled_from(target.base_urls)
        self.small = st.integers(0, 9)


@st.composite
def _shot(draw: st.DrawFn, s: _Strategies, coherent: bool) -> tuple[str, str, str]:
    """A method and a path: one of the app's routes, its arguments filled in, then mutated.

    ``coherent``: mostly a method the route takes and the path as is.
    """
    if not coherent and draw(s.small) == 0:  # now and then a path that is no route at all
        return draw(s.methods), "/" + draw(s.segment), ""
    route = draw(s.routes)

    def argument(match: re.Match[str]) -> str:
        known = s.known.get(match.group(1))
        kind = "known" if coherent and draw(s.small) < 8 else draw(s.segment_kind)
        if known is not None and kind == "known":
            return draw(known)
        if known is not None and kind == "mutated":
            return _mutate_segment(draw(known), draw(s.segment_mutation))
        return draw(s.segment)

    route_path = _ARGUMENT_RE.sub(argument, route.template)
    allowed = sorted(route.methods - {"OPTIONS"}) or ["GET"]
    if coherent and draw(s.small) < 8:
        method = allowed[draw(s.small) % len(allowed)]
        return method, route_path, route.template
    how = draw(s.path_mutation)
    extra = draw(s.path_extra) if how in ("unicode", "dotdot", "overlong") else ""
    return draw(s.methods), _mutate_path(route_path, how, extra), route.template


@st.composite
def _query(draw: st.DrawFn, s: _Strategies) -> str:
    kind = draw(s.query_kind)
    if kind == "pairs":
        return urlencode(draw(s.pairs))
    return draw(s.query_garbage) if kind == "garbage" else ""


def _multipart(pairs: Sequence[tuple[str, str]], boundary: str, files: bool) -> bytes:
    out = []
    for number, (name, value) in enumerate(pairs):
        disposition = f'form-data; name="{name}"'
        if files and number % 2:
            disposition += f'; filename="{name}.txt"'
        out.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n{value}\r\n")
    out.append(f"--{boundary}--\r\n")
    return "".join(out).encode("utf-8")


@st.composite
def _body(draw: st.DrawFn, s: _Strategies, coherent: bool, template: str
          ) -> tuple[bytes, str | None]:
    """A body and its Content-Type (matching it, mostly): form, multipart, JSON or raw.

    ``coherent``: a form with the genuine CSRF token, as a browser would post it.
    """
    encoding = "form" if coherent and draw(s.small) < 8 else draw(s.encoding)
    if encoding == "none":
        return b"", None
    if coherent:
        # One of the app's own forms, a value or two swapped for a drawn one.
        form = draw(s.forms.get(template, s.any_form))
        pairs = [(name, draw(s.field_values) if draw(s.small) < 2 else value)
                 for name, value in form]
    else:
        pairs = draw(s.pairs)
    csrf = s.target.csrf_valid if coherent else draw(s.csrf)
    if csrf is not None:
        pairs.insert(draw(s.small) % (len(pairs) + 1), (CSRF_FIELD, csrf))
    content_type: str | None
    if encoding == "form":
        body, content_type = urlencode(pairs).encode(), "application/x-www-form-urlencoded"
    elif encoding == "multipart":
        boundary = draw(s.boundary)
        body = _multipart(pairs, boundary, draw(s.small) < 5)
        content_type = f"multipart/form-data; boundary={boundary}"
    elif encoding == "json":
        body, content_type = json.dumps(dict(pairs)).encode(), "application/json"
    else:
        body, content_type = draw(s.binary), draw(s.content_type)
    if not coherent and draw(s.small) < 2:  # a Content-Type that does not match the body
        content_type = draw(s.content_type)
    return body, content_type


@st.composite
def _headers(draw: st.DrawFn, s: _Strategies) -> list[tuple[str, str]]:
    """Headers besides Host, Cookie and Content-Type: garbage, lies and huge values."""
    out: list[tuple[str, str]] = []
    if draw(s.small) < 6:
        out.append(("Accept-Language", draw(s.accept_language)))
    for _ in range(draw(s.small) % 4):
        name = draw(s.header_name)
        specials = HEADER_SPECIALS.get(name, ())
        if name in ("X-CSRFToken", "X-CSRF-Token"):
            specials = (s.target.csrf_valid, "garbage")
        if specials and draw(s.small) < 6:
            value = specials[draw(s.small) % len(specials)]
        else:
            value = draw(s.header_value)
        out.append((name, value))
    return out


@st.composite
def _cookies(draw: st.DrawFn, s: _Strategies, coherent: bool) -> str | None:
    """The Cookie header: the app's signed session (genuine, tampered, garbage), and others."""
    parts: list[str] = []
    name = s.target.cookie_name
    kind = "valid" if coherent else draw(s.cookie_kind)
    if kind != "none":
        valid = draw(s.valid_cookie)
        if kind == "valid":
            parts.append(f"{name}={valid}")
        elif kind == "tampered":
            where = len(valid) * draw(s.small) // 10
            flipped = "A" if valid[where] != "A" else "B"
            parts.append(f"{name}={valid[:where]}{flipped}{valid[where + 1:]}")
        elif kind == "garbage":
            parts.append(f"{name}={draw(s.header_value)}")
        elif kind == "foreign":  # well-formed, signed with another key
            parts.append(f"{name}=eyJjc3JmX3Rva2VuIjoieCJ9.Z0000A.AAAAAAAAAAAAAAAAAAAAAAAAAAA")
        elif kind == "huge":
            parts.append(f"{name}={'A' * 6000}")
        else:
            parts.append(f"{name}=garbage; {name}={valid}")
    lang = draw(s.lang_cookie)
    if lang is not None:
        parts.append(f"parvis_lang={lang}")
    if draw(s.small) == 0:
        parts.append(draw(s.header_value))
    return "; ".join(parts) if parts else None


@st.composite
def request_batches(draw: st.DrawFn, target: Target, size: int) -> list[FuzzRequest]:
    """``size`` requests to ``target`` sharing all but their method and path.

    Half the batches are coherent, as a browser would send them (the main
    listener, the app's own Host, a usual client, its genuine session cookie and
    CSRF token, a method the route takes) with drawn field values, so the views'
    own logic is reached; the other half are drawn field by field.
    """
    s = target.strategies
    coherent = draw(s.small) < 5
    shots = [draw(_shot(s, coherent)) for _ in range(size)]
    body, content_type = draw(_body(s, coherent, shots[0][2]))
    header_list = draw(_headers(s))
    if content_type is not None:
        header_list.append(("Content-Type", content_type))
    cookie = draw(_cookies(s, coherent))
    if cookie is not None:
        header_list.append(("Cookie", cookie))
    lie = draw(s.lie) if not coherent and draw(s.small) == 0 else None
    if lie is not None and lie[0] in "+-" and lie[1:].isdigit():
        lie = str(max(0, len(body) + int(lie)))
    shared = {
        "base_url": target.base_urls[0] if coherent else draw(s.base_url),
        "query": draw(_query(s)),
        "host": target.own_hosts[0] if coherent else draw(s.host),
        "remote_addr": draw(s.client if coherent else s.remote_addr),
        "headers": tuple(header_list),
        "content_length": lie,
        "input_terminated": draw(s.small) < 5,
    }
    batch = []
    for method, path, _template in shots:
        # Bodies on GET, HEAD and OPTIONS now and then only (browsers send none).
        sent = body if method not in ("GET", "HEAD", "OPTIONS") or draw(s.small) == 0 else b""
        batch.append(FuzzRequest(method=method, raw_path=path, body=sent, **shared))
    return batch


# --- sending and checking -----------------------------------------------------------------


def _wsgi(text: str) -> str:
    """A str as a WSGI server puts it in the environ (its UTF-8 bytes as latin-1)."""
    return text.encode("utf-8").decode("latin-1")


_UNSENDABLE = re.compile(r"[\x00-\x20\x7f]")


def sendable(text: str) -> str:
    """``text`` as it can travel in a request line: controls and blanks percent-encoded.

    A server never hands the app a raw CR, LF or space in the query string (they
    would end the request line), so a raw one is not a request anybody can send.
    """
    return _UNSENDABLE.sub(lambda match: f"%{ord(match.group()):02X}", text)


def send(target: Target, request: FuzzRequest) -> TestResponse:
    """Send ``request`` to ``target`` as a WSGI server would; count it."""
    query = sendable(request.query)
    target_uri = sendable(request.raw_path) + (f"?{query}" if query else "")
    overrides: dict[str, Any] = {
        "PATH_INFO": request.path_info,
        "QUERY_STRING": _wsgi(query),
        "REQUEST_URI": _wsgi(target_uri),
        "RAW_URI": _wsgi(target_uri),
        "HTTP_HOST": _wsgi(request.host),
        "REMOTE_ADDR": request.remote_addr,
    }
    if request.content_length is not None:
        overrides["CONTENT_LENGTH"] = request.content_length
    if request.input_terminated:
        overrides["wsgi.input_terminated"] = True
    TALLY[target.name] += 1
    return target.client.open("/", base_url=request.base_url, method=request.method,
                              headers=[(name, _wsgi(value)) for name, value in request.headers],
                              data=request.body, environ_overrides=overrides)


def problems(target: Target, request: FuzzRequest, response: TestResponse) -> list[str]:
    """What is wrong with the answer: a 5xx, a traceback, an unreadable error page."""
    found: list[str] = []
    status = response.status_code
    body = response.get_data()
    if status >= 500 and status not in target.allowed_5xx:
        found.append(f"status {status}")
    for marker in TRACEBACK_MARKERS:
        if marker in body:
            found.append(f"body shows {marker!r}")
    if response.headers.get("X-Content-Type-Options") != "nosniff":
        found.append("no X-Content-Type-Options: nosniff")
    if status in (301, 302, 303, 307, 308) and not response.headers.get("Location"):
        found.append(f"{status} without Location")
    if status >= 400 and request.method != "HEAD":
        path = "/" + request.path_info.lstrip("/")  # werkzeug's request.path
        if any(path.startswith(prefix) for prefix in target.json_prefixes):
            try:
                json.loads(body)
            except ValueError:
                found.append(f"{status} at {path!r} is not JSON: {body[:200]!r}")
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
                found.append(f"{status} body is not UTF-8")
            if response.mimetype != "text/html" or "<html" not in text or "<h1" not in text:
                found.append(f"{status} is not an HTML page ({response.mimetype}): "
                             f"{body[:200]!r}")
    return found


def check(target: Target, request: FuzzRequest) -> TestResponse:
    """Send and assert the answer is sound; the failure names the request and the problems."""
    response = send(target, request)
    STATUSES[target.name, response.status_code] += 1
    try:
        found = problems(target, request, response)
    finally:
        response.close()  # a static file's answer holds the file open until closed
    assert not found, (f"{target.name}: {'; '.join(found)}\nrequest: {request.describe()}"
                       f"\nanswer: {response.status} {response.get_data()[:500]!r}")
    return response
