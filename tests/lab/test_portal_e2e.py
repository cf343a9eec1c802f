"""The captive portal end to end: every OS's probe, the accept flow, RFC 8908/8910, a browser.

Everything runs from a lab client as a device would: curl (with the lab CA
trusted through the namespace's /etc/ssl, never ``-k``) and headless Chromium
(``lab/browser.py``, run inside the client's namespace). Each test leaves the
clients unauthorised (``clean_gateway``, imported from test_gateway) and
netctl's log free of errors.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

from lab import browser, topology
from lab.topology import Lab
from parvis.core.dnsmasq import GARDEN_NAMES4
from tests.lab.test_gateway import (  # noqa: F401 (autouse fixtures are used by being imported)
    INTERNET_MARK,
    clean_gateway,
    netctl_logged_nothing_unexpected,
    parvisctl,
    reaches_internet,
    udp_probe,
    wait_for,
)

pytestmark = pytest.mark.lab

PORTAL_PREFIX = topology.PORTAL_URL  # https://portail.lab.test:8443/
API_URL = topology.CAPPORT_API_URL
SCREENSHOTS = topology.REPO_ROOT / "artifacts" / "screenshots"
ACCEPT_FR = "Accepter et me connecter"

ANDROID_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0.0.0 Safari/537.36")  # what Android's NetworkMonitor sends
APPLE_UA = "CaptiveNetworkSupport-481.100.5 wispr"
WINDOWS_UA = "Microsoft NCSI"
FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
NM_UA = "NetworkManager/1.42.4"
KINDLE_UA = ("Mozilla/5.0 (Linux; U; Android 4.0.3; en-us; KFTT Build/IML74K) "
             "AppleWebKit/537.36 (KHTML, like Gecko) Silk/3.68 like Chrome/39.0.2171.93 Safari")
APPLE_SUCCESS = "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
FIREFOX_CANONICAL = ('<meta http-equiv="refresh" '
                     'content="0;url=https://support.mozilla.org/kb/captive-portal"/>')
KINDLE_MARK = "81ce4465-7167-4dcb-835b-dcc9e44c112a"


# --- HTTP helpers ------------------------------------------------------------------------

@dataclass
class Reply:
    """One HTTP response as curl printed it (``-i``), plus curl's exit status."""

    exit: int
    status: int
    headers: dict[str, str]
    body: str
    raw: str = field(repr=False)

    def header(self, name: str) -> str:
        """A header's value ('' if absent); names are case-insensitive."""
        return self.headers.get(name.lower(), "")


def parse_reply(result: subprocess.CompletedProcess[str]) -> Reply:
    """Split ``curl -i`` output into status, headers (last response, 1xx skipped) and body."""
    text = result.stdout
    status, body = 0, text
    headers: dict[str, str] = {}
    while text.startswith("HTTP/"):
        head, _, rest = text.replace("\r\n", "\n").partition("\n\n")
        lines = head.split("\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = rest
        if 100 <= status < 200:
            text = rest
            continue
        break
    return Reply(result.returncode, status, headers, body, result.stdout)


def http(lab: Lab, node: str, url: str, *extra: str, max_time: float = 5) -> Reply:
    """curl ``url`` from a node (no redirect following, CA trusted through /etc/ssl)."""
    result = lab.exec(node, ["curl", "-s", "-i", "-m", str(max_time), *extra, url],
                      check=False, timeout=max_time + 10)
    return parse_reply(result)


@dataclass
class Form:
    """A form of a page: where it posts, its fields and its submit buttons' labels."""

    action: str
    method: str
    fields: dict[str, str]
    buttons: list[str]
    has_text_input: bool = False


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.lang = ""
        self._button: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.lang = attr.get("lang", "")
        elif tag == "form":
            self.forms.append(Form(attr.get("action", ""), attr.get("method", "get").lower(),
                                   {}, []))
        elif self.forms and tag == "input":
            kind = attr.get("type", "text").lower()
            if kind == "submit":
                self.forms[-1].buttons.append(attr.get("value", ""))
            elif kind in ("hidden",) and attr.get("name"):
                self.forms[-1].fields[attr["name"]] = attr.get("value", "")
            elif kind in ("text", "search", "tel", ""):
                self.forms[-1].has_text_input = True
        elif self.forms and tag == "button":
            self._button = []
            if attr.get("name"):
                self.forms[-1].fields[attr["name"]] = attr.get("value", "")

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None and self.forms:
            self.forms[-1].buttons.append(" ".join("".join(self._button).split()))
            self._button = None


def parse_page(html: str) -> _FormParser:
    """The page's forms and ``<html lang>``."""
    parser = _FormParser()
    parser.feed(html)
    return parser


def accept_form(html: str) -> Form:
    """The splash page's accept form: a POST whose button says "Accepter et me connecter"."""
    forms = parse_page(html).forms
    for form in forms:
        if form.method == "post" and any(ACCEPT_FR in label for label in form.buttons):
            return form
    raise AssertionError(f"no POST form with a {ACCEPT_FR!r} button among {forms}")


def open_splash(lab: Lab, node: str, jar: Path, family: str = "-4",
                probe: str = "http://connectivitycheck.gstatic.com/generate_204"
                ) -> tuple[str, Reply]:
    """Follow a probe's redirect to the splash page as a device would; (splash URL, page)."""
    caught = http(lab, node, probe, family, "-c", str(jar), "-b", str(jar))
    assert caught.status == 302, caught
    location = caught.header("location")
    assert location.startswith(PORTAL_PREFIX), caught
    page = http(lab, node, location, family, "-c", str(jar), "-b", str(jar),
                "-H", "Accept-Language: fr-CA,fr;q=0.9")
    assert page.exit == 0 and page.status == 200, page
    return location, page


def accept(lab: Lab, node: str, jar: Path, family: str = "-4") -> tuple[Reply, float]:
    """Open the splash page, then POST its accept form (CSRF token and all hidden fields).

    Returns the POST's reply and the moment (monotonic) it came back.
    """
    splash_url, page = open_splash(lab, node, jar, family)
    form = accept_form(page.body)
    data = [arg for name, value in form.fields.items()
            for arg in ("--data-urlencode", f"{name}={value}")]
    if not data:
        data = ["--data", ""]
    reply = http(lab, node, urljoin(splash_url, form.action or splash_url), family,
                 "-c", str(jar), "-b", str(jar), "-H", f"Referer: {splash_url}",
                 "-H", f"Origin: {PORTAL_PREFIX.rstrip('/')}", *data)
    return reply, time.monotonic()


def login(lab: Lab, node: str, jar: Path, family: str = "-4") -> None:
    """Accept the terms as ``node`` and check the POST answered 303."""
    reply, _ = accept(lab, node, jar, family)
    assert reply.status == 303, reply


def in_client_set(lab: Lab, i: int) -> bool:
    """Whether netctl holds client i's (address, MAC) pair in clients4_up right now."""
    element = f"{{ {lab.client_ip(i)} . {lab.client_mac(i)} }}"
    result = lab.exec("gw", ["nft", "get", "element", "inet", "parvis", "clients4_up", element],
                      check=False)
    return result.returncode == 0


def dig(lab: Lab, node: str, name: str, rtype: str = "A") -> list[str]:
    result = lab.exec(node, ["dig", "+short", "+time=2", "+tries=1",
                             f"@{topology.LAN_GATEWAY4}", name, rtype], check=False)
    return result.stdout.split()


# --- each OS's probe, before and after accepting ---------------------------------------------

@dataclass(frozen=True)
class Probe:
    """An OS's connectivity check and exactly what the real service answers when open."""

    os: str
    url: str
    user_agent: str
    status: int
    body: str | None = None  # exact body; None: not checked here
    contains: str | None = None  # a part of the body
    header: tuple[str, str] | None = None


PROBES = [
    Probe("android-gstatic", "http://connectivitycheck.gstatic.com/generate_204",
          ANDROID_UA, 204, body=""),
    Probe("android-google", "http://www.google.com/generate_204", ANDROID_UA, 204, body=""),
    Probe("chromeos-clients3", "http://clients3.google.com/generate_204", ANDROID_UA, 204,
          body=""),
    Probe("android-oem", "http://connectivitycheck.android.com/generate_204", ANDROID_UA, 204,
          body=""),
    Probe("apple", "http://captive.apple.com/hotspot-detect.html", APPLE_UA, 200,
          body=APPLE_SUCCESS),
    Probe("windows", "http://www.msftconnecttest.com/connecttest.txt", WINDOWS_UA, 200,
          body="Microsoft Connect Test"),
    Probe("firefox-canonical", "http://detectportal.firefox.com/canonical.html", FIREFOX_UA,
          200, body=FIREFOX_CANONICAL),
    Probe("firefox-success", "http://detectportal.firefox.com/success.txt?ipv4", FIREFOX_UA,
          200, body="success\n"),
    Probe("ubuntu", "http://connectivity-check.ubuntu.com/", NM_UA, 204,
          header=("X-NetworkManager-Status", "online")),
    Probe("gnome", "http://nmcheck.gnome.org/check_network_status.txt", NM_UA, 200,
          body="NetworkManager is online\n"),
    Probe("kindle", "http://spectrum.s3.amazonaws.com/kindle-wifi/wifistub.html", KINDLE_UA,
          200, contains=KINDLE_MARK),
]


def open_answer(probe: Probe, reply: Reply) -> bool:
    """Whether ``reply`` is exactly the open network's answer (the OS closes its sheet)."""
    if reply.exit != 0 or reply.status != probe.status:
        return False
    if probe.body is not None and reply.body != probe.body:
        return False
    if probe.contains is not None and probe.contains not in reply.body:
        return False
    return probe.header is None or reply.header(probe.header[0]) == probe.header[1]


@pytest.mark.parametrize("family", ["-4", "-6"])
@pytest.mark.parametrize("probe", PROBES, ids=[p.os for p in PROBES])
def test_probe_is_redirected_before_and_answered_as_open_after_accepting(
        lab: Lab, probe: Probe, family: str, tmp_path: Path) -> None:
    before = http(lab, "c1", probe.url, family, "-A", probe.user_agent)
    assert before.exit == 0 and before.status == 302, before
    assert before.header("location").startswith(PORTAL_PREFIX), before
    assert "no-store" in before.header("cache-control"), before
    assert PORTAL_PREFIX in before.body, "the 302's body should carry a link to the portal"
    assert not open_answer(probe, before)

    # The portal's name has an A record only, so a dual-stack device accepts over
    # IPv4; its IPv6 addresses follow its MAC (known at once if the device already
    # spoke IPv6 to the gateway, as the probe above did, else within a sweep or two).
    login(lab, "c1", tmp_path / "jar", "-4")
    timeout = 1.0 if family == "-4" else 6.0
    after: list[Reply] = []

    def is_open() -> bool:
        after.append(http(lab, "c1", probe.url, family, "-A", probe.user_agent))
        return open_answer(probe, after[-1])

    assert wait_for(is_open, timeout=timeout, interval=0.2) is not None, after[-1]


def test_windows_redirect_page_and_ncsi_dns(lab: Lab, tmp_path: Path) -> None:
    # Windows opens /redirect in the browser once it detected a portal.
    before = http(lab, "c1", "http://www.msftconnecttest.com/redirect", "-A", WINDOWS_UA)
    assert before.status == 302 and before.header("location").startswith(PORTAL_PREFIX), before
    assert "no-store" in before.header("cache-control")
    # DNS stays truthful, before and after: NCSI's DNS check passes.
    assert dig(lab, "c1", topology.NCSI_NAME) == [topology.NCSI4]
    assert dig(lab, "c1", topology.NCSI_NAME, "AAAA") == [topology.NCSI6]
    login(lab, "c1", tmp_path / "jar")
    after = http(lab, "c1", "http://www.msftconnecttest.com/redirect", "-A", WINDOWS_UA)
    assert after.status == 200 and INTERNET_MARK in after.body, after
    assert dig(lab, "c1", topology.NCSI_NAME) == [topology.NCSI4]


# --- the accept flow ---------------------------------------------------------------------

def test_accept_answers_303_only_once_netctl_applied_it(lab: Lab, tmp_path: Path) -> None:
    jar = tmp_path / "jar"
    assert not in_client_set(lab, 1)
    splash_url, page = open_splash(lab, "c1", jar)
    assert parse_page(page.body).lang.lower().startswith("fr"), page.body[:300]
    assert "no-store" in page.header("cache-control") or "private" in page.header(
        "cache-control"), page
    form = accept_form(page.body)
    assert any("csrf" in name.lower() for name in form.fields), \
        f"no CSRF token among the accept form's fields {sorted(form.fields)}"

    reply, returned = accept(lab, "c1", jar)
    assert reply.status == 303, reply
    # Checked at once: the firewall held the client when the 303 came back.
    assert in_client_set(lab, 1), "the 303 came back before netctl had applied the session"
    confirmation = urljoin(splash_url, reply.header("location"))
    assert confirmation.startswith(PORTAL_PREFIX) and confirmation != splash_url, reply
    delay = wait_for(lambda: reaches_internet(lab, "c1"), timeout=1.0)
    assert delay is not None, "accepted client did not reach the internet within 1 s"
    assert time.monotonic() - returned < 3
    page2 = http(lab, "c1", confirmation, "-c", str(jar), "-b", str(jar))
    assert page2.status == 200, page2


def test_accept_without_the_csrf_token_is_refused(lab: Lab, tmp_path: Path) -> None:
    jar = tmp_path / "jar"
    splash_url, page = open_splash(lab, "c1", jar)
    form = accept_form(page.body)
    fields = {k: v for k, v in form.fields.items() if "csrf" not in k.lower()}
    data = [arg for k, v in fields.items() for arg in ("--data-urlencode", f"{k}={v}")]
    reply = http(lab, "c1", urljoin(splash_url, form.action or splash_url), "-c", str(jar),
                 "-b", str(jar), *(data or ["--data", ""]))
    assert 400 <= reply.status < 500, reply
    assert not in_client_set(lab, 1)
    assert not reaches_internet(lab, "c1")


# --- RFC 8908 / RFC 8910 -------------------------------------------------------------------

def captive_api(lab: Lab, node: str = "c1") -> tuple[Reply, dict[str, Any]]:
    reply = http(lab, node, API_URL, "-H", "Accept: application/captive+json")
    assert reply.exit == 0, f"curl exit {reply.exit} (60 = CA not trusted): {reply.raw}"
    assert reply.status == 200, reply
    assert reply.header("content-type").split(";")[0].strip() == "application/captive+json"
    cache = reply.header("cache-control")
    assert "private" in cache or "no-store" in cache, reply
    assert len(reply.body.encode()) <= 4096  # Android reads at most 4096 bytes
    data = json.loads(reply.body)
    assert isinstance(data, dict)
    return reply, data


def test_dhcp_option_114_announces_the_api(lab: Lab) -> None:
    for i in range(1, lab.clients + 1):
        assert lab.client_dhcp_option(i, "captive-portal-uri") == API_URL


def test_captive_api_before_and_after_accepting(lab: Lab, tmp_path: Path) -> None:
    _, before = captive_api(lab)
    assert before["captive"] is True, before
    portal_url = before.get("user-portal-url")
    assert isinstance(portal_url, str) and portal_url.startswith(PORTAL_PREFIX), before
    assert before.get("venue-info-url") == topology.VENUE_INFO_URL, before
    assert "seconds-remaining" not in before

    login(lab, "c1", tmp_path / "jar")
    _, after = captive_api(lab)
    assert after["captive"] is False, after
    remaining = after.get("seconds-remaining")
    assert isinstance(remaining, int) and 0 < remaining <= 14400, after
    assert isinstance(after.get("can-extend-session"), bool), after
    # Another client is still captive: the answer is per client.
    _, other = captive_api(lab, "c2")
    assert other["captive"] is True


# --- walled garden, poster address, what is never intercepted -------------------------------

def test_walled_garden_by_name_opens_as_clients_resolve(lab: Lab) -> None:
    name, address = topology.GARDEN_SUBNAME, topology.GARDEN_SUB4
    set4 = GARDEN_NAMES4
    # Start from a set that does not hold the address (an earlier test may have resolved it).
    lab.exec("gw", ["nft", "delete", "element", "inet", "parvis", set4, f"{{ {address} }}"],
             check=False)
    by_address = http(lab, "c1", f"http://{address}/")
    assert by_address.status == 302 and by_address.header("location").startswith(
        PORTAL_PREFIX), "the name's address is open before anyone resolved the name"
    by_name = http(lab, "c1", f"http://{name}/")
    assert by_name.status == 200 and INTERNET_MARK in by_name.body, by_name
    assert f"host={name}" in by_name.body
    listed = lab.exec("gw", ["nft", "list", "set", "inet", "parvis", set4]).stdout
    assert address in listed
    by_name6 = http(lab, "c1", f"http://{name}/", "-6")
    assert by_name6.status == 200 and INTERNET_MARK in by_name6.body, by_name6
    # The configured name itself, and a name outside the garden.
    garden = http(lab, "c1", f"http://{topology.GARDEN_NAME}/")
    assert garden.status == 200 and INTERNET_MARK in garden.body, garden
    outside = http(lab, "c1", "http://example.org/")
    assert outside.status == 302 and outside.header("location").startswith(PORTAL_PREFIX)


def poster_leads_to_portal(reply: Reply) -> bool:
    if reply.exit != 0:
        return False
    if 300 <= reply.status < 400:
        return reply.header("location").startswith(PORTAL_PREFIX)
    return reply.status == 200 and INTERNET_MARK not in reply.body


def test_poster_address_leads_to_the_portal_before_and_after_login(
        lab: Lab, tmp_path: Path) -> None:
    url = f"http://{topology.POSTER_NAME}/"
    assert dig(lab, "c1", topology.POSTER_NAME) == [topology.LAN_GATEWAY4]
    assert dig(lab, "c1", topology.PORTAL_NAME) == [topology.LAN_GATEWAY4]
    # No AAAA: devices reach the portal over IPv4, the address netctl knows them by.
    assert dig(lab, "c1", topology.PORTAL_NAME, "AAAA") == []
    for family in ("-4", "-6"):
        reply = http(lab, "c1", url, family)
        assert poster_leads_to_portal(reply), reply
    login(lab, "c1", tmp_path / "jar")
    assert wait_for(lambda: reaches_internet(lab, "c1"), timeout=1.0) is not None
    for family in ("-4", "-6"):
        reply = http(lab, "c1", url, family)
        assert poster_leads_to_portal(reply), reply


@pytest.mark.parametrize(("family", "target"), [("-4", topology.INTERNET_WEB4),
                                                ("-6", f"[{topology.INTERNET_WEB6}]")])
def test_https_and_quic_outside_are_refused_never_intercepted(
        lab: Lab, family: str, target: str) -> None:
    reply = http(lab, "c1", f"https://{target}/", family)
    assert reply.exit == 7, f"expected connection refused (curl 7), got {reply.exit}"
    by_name = http(lab, "c1", "https://www.google.com/generate_204", family)
    assert by_name.exit == 7, f"expected connection refused (curl 7), got {by_name.exit}"
    address = topology.INTERNET_WEB4 if family == "-4" else topology.INTERNET_WEB6
    assert udp_probe(lab, "c1", address, 443).startswith("refused")
    # Meanwhile the portal's own HTTPS answers (over IPv4: its name has no AAAA),
    # with a certificate the client trusts.
    portal = http(lab, "c1", PORTAL_PREFIX, "-4")
    assert portal.exit == 0 and portal.status < 500, portal


# --- a real browser ------------------------------------------------------------------------
# lab/browser.py runs Debian's headless Chromium inside a client's namespace and
# prints what it saw as JSON: each page's URL, status, language, text, axe-core
# result (WCAG 2.1 A/AA) and weight (Performance API), and its screenshots.

ACCEPT_EN = "Accept and connect"
CODE_UNKNOWN = {"fr": "Ce code d’accès n’est pas valide. Vérifiez-le et réessayez.",
                "en": "This access code is not valid. Check it and try again."}
PAGE_WEIGHT_LIMIT = 50_000  # bytes: "under 50 KB for the whole page"
BROWSER_PROGRAMS = ("chromium", "chromedriver", "chrome_crashpad", "chrome")


def browser_processes(lab: Lab) -> list[str]:
    """'pid comm' of every Chromium or chromedriver process this lab started (should be none)."""
    mark = f"PARVIS_LAB={lab.name}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if comm.startswith(BROWSER_PROGRAMS) and mark in environ:
            found.append(f"{entry.name} {comm}")
    return found


def run_browser(lab: Lab, node: str, flow: str, out: Path, *extra: str) -> dict[str, Any]:
    """Run a flow of lab/browser.py in ``node``; its JSON. Screenshots to ``out``, copied
    to artifacts/screenshots/ for humans; no browser process is left behind."""
    if not Path("/usr/bin/chromium").exists() or not Path("/usr/bin/chromedriver").exists():
        pytest.fail("Debian's chromium and chromium-driver are needed: "
                    "apt-get install chromium chromium-driver libnss3-tools")
    if browser.axe_script() is None:
        pytest.fail("axe-core 4.x is needed: npm install --global --prefix .venv axe-core@4 "
                    f"(looked in {[str(p) for p in browser.axe_locations()]})")
    run = lab.exec(node, [sys.executable, "-m", "lab.browser", flow,
                          "--ca", str(lab.state_dir / "ca.crt"), "--out", str(out),
                          "--portal-prefix", PORTAL_PREFIX, *extra], check=False, timeout=60)
    leftovers = wait_for(lambda: not browser_processes(lab), timeout=3, interval=0.1)
    assert leftovers is not None, f"browser processes left: {browser_processes(lab)}"
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    seen: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for shot in out.glob("*.png"):
        shutil.copy2(shot, SCREENSHOTS / shot.name)
    print(f"{flow}: browser start {seen.get('browser_start_s')} s, "
          f"whole flow {seen.get('flow_s')} s; screenshots in {out} and {SCREENSHOTS}")
    return seen


def page(seen: dict[str, Any], name: str) -> dict[str, Any]:
    """One page of the run's JSON (fails clearly if the flow did not get there)."""
    pages = seen.get("pages")
    assert isinstance(pages, dict) and name in pages, \
        f"the browser never reached {name!r}: errors {seen.get('errors')}, pages {pages}"
    found: dict[str, Any] = pages[name]
    return found


def axe_report(name: str, result: dict[str, Any]) -> str:
    """axe-core's violations of one page, readable: rule, impact, elements, what to fix."""
    lines = [f"{name} ({result.get('url', '')}): {len(result['axe']['violations'])} "
             f"WCAG 2.1 A/AA violation(s), axe-core {result['axe'].get('version')}"]
    for violation in result["axe"]["violations"]:
        lines.append(f"  [{violation['impact']}] {violation['id']}: {violation['help']} "
                     f"({violation['helpUrl']})")
        for node in violation["nodes"]:
            lines.append(f"    at {' '.join(node['target'])}: {node['html'][:160]}")
            lines.extend(f"      {line}" for line in (node.get("summary") or "").splitlines())
    return "\n".join(lines)


def assert_accessible(seen: dict[str, Any], *names: str) -> None:
    """axe-core ran on each page and found no WCAG 2.1 A/AA violation."""
    reports = []
    for name in names:
        result = page(seen, name)
        assert "error" not in result["axe"], f"axe-core did not run on {name}: {result['axe']}"
        assert result["axe"]["passes"] > 0, f"axe-core checked nothing on {name}"
        assert int(result["axe"]["version"].split(".")[0]) >= 4, result["axe"]["version"]
        print(f"{name}: axe-core {result['axe']['version']}: {result['axe']['passes']} rules "
              f"passed, {len(result['axe']['violations'])} violated, to review by hand: "
              f"{result['axe']['incomplete_ids']}")
        if result["axe"]["violations"]:
            reports.append(axe_report(name, result))
    assert not reports, "\n\n".join(reports)


def assert_light(seen: dict[str, Any], *names: str) -> None:
    """Each page, its document and every resource, weighs under 50 KB as the browser got it."""
    for name in names:
        weight = page(seen, name)["weight"]
        entries = "\n".join(f"  {e['name']}: transfer {e['transfer']} B, body "
                            f"{e['encoded']} B ({e['decoded']} B decoded)"
                            for e in weight["entries"])
        print(f"{name}: {weight['bytes']} B ({weight['decoded']} B decoded)\n{entries}")
        assert weight["bytes"] > 0 and weight["entries"][0]["encoded"] > 0, weight
        assert weight["bytes"] < PAGE_WEIGHT_LIMIT, \
            f"{name} weighs {weight['bytes']} B (limit {PAGE_WEIGHT_LIMIT} B):\n{entries}"


def assert_screenshots(seen: dict[str, Any], *names: str) -> None:
    """The named screenshots exist (as PNG files) in the run's output and in artifacts/."""
    shots = {Path(p).name: Path(p) for p in seen["screenshots"]}
    for name in names:
        assert name in shots, f"no screenshot {name} among {sorted(shots)}"
        assert shots[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shots[name]
        assert (SCREENSHOTS / name).exists()


def probe_answers_open(lab: Lab, node: str) -> bool:
    """Android's probe, from ``node`` with curl, gets the open network's 204 within a second."""
    probe = PROBES[0]
    return wait_for(lambda: open_answer(probe, http(lab, node, probe.url, "-A", ANDROID_UA)),
                    timeout=1.0, interval=0.1) is not None


def assert_confirmed_and_online(lab: Lab, seen: dict[str, Any], i: int) -> None:
    """The browser ended on the French confirmation page and client i is really online."""
    done = page(seen, "confirmation")
    assert done["url"].startswith(PORTAL_PREFIX + "bienvenue"), done
    assert done["status"] == 200 and done["lang"] == "fr", done
    assert "Vous êtes connecté·e" in done["text"], done
    assert in_client_set(lab, i)
    assert probe_answers_open(lab, f"c{i}"), f"the probe from c{i} did not answer as open"


def test_headless_chromium_lands_on_the_splash_and_accepts(lab: Lab, tmp_path: Path) -> None:
    assert not in_client_set(lab, 1)
    seen = run_browser(lab, "c1", "accept", tmp_path)
    assert not seen["errors"], seen["errors"]
    assert seen["landed_on_portal"], seen
    splash = page(seen, "splash-fr")
    assert splash["status"] == 200 and splash["lang"] == "fr", splash
    assert seen["accept_label_fr"] == ACCEPT_FR, seen
    assert "conditions" in splash["text"].lower() and "confidentialité" in splash["text"].lower()
    # Fits the macOS sheet and a small phone: no horizontal scrolling.
    assert seen["scroll_width_900"] <= seen["client_width_900"], seen
    assert seen["scroll_width_360"] <= seen["client_width_360"], seen
    # English one tap away, and back.
    assert [s["to"] for s in seen["switches"] if s["ok"]] == ["en", "fr"], seen["switches"]
    english = page(seen, "splash-en")
    assert english["lang"] == "en" and english["status"] == 200, english
    assert seen["accept_label_en"] == ACCEPT_EN, seen
    assert page(seen, "splash-fr-again")["lang"] == "fr"
    assert seen["accept_label_fr_again"] == ACCEPT_FR, seen
    # Accepted (in French): the confirmation page, and the client is online.
    assert_confirmed_and_online(lab, seen, 1)
    assert_screenshots(seen, "accept-1-splash-fr.png", "accept-2-splash-fr-900x572.png",
                       "accept-3-splash-fr-360x740.png", "accept-4-splash-en.png",
                       "accept-5-confirmation.png")
    assert_accessible(seen, "splash-fr", "splash-en", "confirmation")
    assert_light(seen, "splash-fr", "splash-en", "confirmation")


def test_headless_chromium_gets_online_with_an_access_code(lab: Lab, tmp_path: Path) -> None:
    created = parvisctl(lab, "codes", "create", "--count", "1", "--valid-for", "1h",
                        "--uses", "1", "--csv")
    assert created.returncode == 0, created.stderr
    rows = list(csv.DictReader(io.StringIO(created.stdout)))
    assert len(rows) == 1 and rows[0]["code"], created.stdout
    assert not in_client_set(lab, 2)
    assert not probe_answers_open(lab, "c2")

    seen = run_browser(lab, "c2", "code", tmp_path, "--code", rows[0]["code"])
    assert not seen["errors"], seen["errors"]
    assert page(seen, "splash-fr")["lang"] == "fr"
    # A wrong code: the splash again (400) with the message in the page's language.
    for lang in ("fr", "en"):
        wrong = page(seen, f"wrong-code-{lang}")
        assert wrong["status"] == 400 and wrong["lang"] == lang, wrong
        assert CODE_UNKNOWN[lang] in wrong["text"], wrong["text"]
        other = CODE_UNKNOWN["en" if lang == "fr" else "fr"]
        assert other not in wrong["text"], wrong["text"]
    assert [s["to"] for s in seen["switches"] if s["ok"]] == ["en", "fr"], seen["switches"]
    assert seen["accept_label_fr_again"] == ACCEPT_FR, seen
    # The right code (typed on the French page): the confirmation, and online.
    assert_confirmed_and_online(lab, seen, 2)
    assert not in_client_set(lab, 1), "the code let the wrong client online"
    assert page(seen, "not-found")["status"] == 404
    assert_screenshots(seen, "code-1-splash-fr.png", "code-2-wrong-code-fr.png",
                       "code-3-wrong-code-en.png", "code-4-confirmation.png",
                       "code-5-not-found.png")
    assert_accessible(seen, "wrong-code-fr", "wrong-code-en", "confirmation", "not-found")
    assert_light(seen, "splash-fr", "wrong-code-fr", "confirmation", "not-found")
