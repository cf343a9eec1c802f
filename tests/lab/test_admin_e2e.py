"""The administration console end to end, from the management side, and closed to the LAN.

Headless Chromium (``lab/admin_browser.py``) runs in the lab's ``adm``
namespace, the administrators' workstation on the management network, and
goes through the console in French: log in, kick a connected client, make
codes and download their sheet, add an announcement, open the month's
report, log out. The test then checks the effects where residents see them:
the kicked client is cut, a code from the sheet gets a device online, the
announcement is on the splash page in both languages. A second test checks
that no client can reach the console or the metrics, and that the metrics
name no device.

Each test leaves the lab as it found it: clients unauthorised
(``clean_gateway``), the announcement deleted and the batch revoked (the
``made_by_console`` fixture), no browser process left, nothing unexpected in
the console's or netctl's log.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import pytest

from lab import admin_browser, browser, topology
from lab.topology import Lab
from parvis.core.config import load_config
from parvis.store import Store, connect
from tests.lab.test_fair_use import authorize
from tests.lab.test_gateway import (  # noqa: F401 (autouse fixtures are used by being imported)
    clean_gateway,
    lands_on_portal,
    netctl_logged_nothing_unexpected,
    reaches_internet,
    wait_for,
)
from tests.lab.test_portal_e2e import (
    PORTAL_PREFIX,
    SCREENSHOTS,
    assert_accessible,
    browser_processes,
    http,
    in_client_set,
    open_splash,
    page,
    parse_page,
)

pytestmark = pytest.mark.lab

ADMIN_URL = topology.ADMIN_URL  # http://10.78.0.1:8090/
METRICS_PORTS = (topology.NETCTL_METRICS_PORT, topology.PORTAL_METRICS_PORT)
CODE_COUNT = 3
CODE_PLAN = "event"
_CODE_RE = re.compile(r"^[3479ACEFHJKMNPRTWXY]{4}(-[3479ACEFHJKMNPRTWXY]{4}){3}$")
_MAC_RE = re.compile(r"(?i)\b[0-9a-f]{2}([:-][0-9a-f]{2}){5}\b")
_LABELS_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
# What the console may log at WARNING and above during these tests (nothing, so far).
ADMIN_LOG_ALLOWED: tuple[str, ...] = ()


@pytest.fixture
def store(lab: Lab) -> Iterator[Store]:
    """A Store on the lab's Redis for gateway ``lab`` (function scope)."""
    client = connect(lab.redis_url)
    yield Store(client, topology.GATEWAY_ID)
    client.close()


@pytest.fixture
def marker() -> str:
    """A text no other test uses: the announcement's and the batch's mark."""
    return f"e2e-{os.urandom(4).hex()}"


@pytest.fixture
def made_by_console(lab: Lab, store: Store, marker: str) -> Iterator[None]:
    """After the test: the tiles and batches marked with ``marker`` are gone or revoked.

    Found by the mark, not by what the browser reported: a run that stopped
    half-way is cleaned up too.
    """
    yield
    _version, tiles = store.content_snapshot()
    for tile_id, body in tiles.items():
        if marker in body:
            store.delete_content_tile(tile_id)
    for batch in store.list_code_batches():
        if marker in batch.note:
            store.revoke_code_batch(batch.id)


@pytest.fixture(autouse=True)
def console_logged_nothing_unexpected(lab: Lab) -> Iterator[None]:
    """Fail a test if the console logged a traceback, an error or a warning."""
    log_path = lab.state_dir / "admin.log"
    start = log_path.stat().st_size if log_path.exists() else 0
    yield
    if not log_path.exists():
        return
    with log_path.open("rb") as handle:
        handle.seek(min(start, log_path.stat().st_size))
        lines = handle.read().decode(errors="replace").splitlines()
    unexpected = [line for line in lines
                  if ("Traceback" in line or line.startswith(("ERROR", "WARNING", "CRITICAL"))
                      or "[ERROR]" in line or "[CRITICAL]" in line)
                  and not any(allowed in line for allowed in ADMIN_LOG_ALLOWED)]
    assert not unexpected, "the console logged:\n" + "\n".join(unexpected)


# --- helpers ---------------------------------------------------------------------------------

def town_month(lab: Lab) -> str:
    """This month in the town's zone (``[gateway] timezone``): the report the flow opens."""
    zone = load_config(lab.config_path).gateway.timezone
    return dt.datetime.now(ZoneInfo(zone) if zone else None).strftime("%Y-%m")


def run_console(lab: Lab, out: Path, downloads: Path, mac: str, marker: str
                ) -> dict[str, Any]:
    """Run lab/admin_browser.py in ``adm``; its JSON. Screenshots to ``out``, copied to
    artifacts/screenshots/; no browser process is left behind."""
    if not Path(browser.CHROMIUM).exists() or not Path(browser.CHROMEDRIVER).exists():
        pytest.fail("Debian's chromium and chromium-driver are needed: "
                    "apt-get install chromium chromium-driver")
    if browser.axe_script() is None:
        pytest.fail("axe-core 4.x is needed: npm install --global --prefix .venv axe-core@4 "
                    f"(looked in {[str(p) for p in browser.axe_locations()]})")
    run = lab.exec("adm", [sys.executable, "-m", "lab.admin_browser", "--url", ADMIN_URL,
                           "--user", "admin", "--password-file", str(lab.admin_password_file),
                           "--out", str(out), "--download-dir", str(downloads),
                           "--client-mac", mac, "--marker", marker,
                           "--codes", str(CODE_COUNT), "--valid-for", "4h", "--plan", CODE_PLAN,
                           "--month", town_month(lab)],
                   check=False, timeout=admin_browser.BUDGET_S + 30)
    leftovers = wait_for(lambda: not browser_processes(lab), timeout=3, interval=0.1)
    assert leftovers is not None, f"browser processes left: {browser_processes(lab)}"
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    seen: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for shot in out.glob("*.png"):
        shutil.copy2(shot, SCREENSHOTS / shot.name)
    print(f"\nconsole: browser start {seen.get('browser_start_s')} s, whole flow "
          f"{seen.get('flow_s')} s, steps {seen.get('timings_s')}; screenshots in {out} "
          f"and {SCREENSHOTS}")
    for name, result in seen.get("pages", {}).items():
        weight = result["weight"]
        print(f"  {name}: HTTP {result['status']}, {weight['bytes']} B "
              f"({weight['decoded']} B decoded, {len(weight['entries'])} requests)")
    return seen


def use_code(lab: Lab, node: str, jar: Path, code: str) -> int:
    """Type ``code`` into the splash page's code form as a device would (curl); the status."""
    splash_url, splash = open_splash(lab, node, jar)
    forms = [f for f in parse_page(splash.body).forms
             if f.method == "post" and f.has_text_input]
    assert len(forms) == 1, f"expected one code form, got {forms}"
    data = [arg for name, value in forms[0].fields.items()
            for arg in ("--data-urlencode", f"{name}={value}")]
    reply = http(lab, node, urljoin(splash_url, forms[0].action or splash_url),
                 "-c", str(jar), "-b", str(jar), "-H", f"Referer: {splash_url}",
                 "-H", f"Origin: {PORTAL_PREFIX.rstrip('/')}", *data,
                 "--data-urlencode", f"code={code}")
    return reply.status


def splash_text(lab: Lab, node: str, lang: str) -> str:
    """The splash page as a device gets it (curl -L, the lab CA trusted), in ``lang``."""
    result = lab.exec(node, ["curl", "-s", "-L", "-m", "5", f"{PORTAL_PREFIX}?lang={lang}"],
                      check=False, timeout=15)
    assert result.returncode == 0, result
    return result.stdout


def pdf_text(path: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext is needed: apt-get install poppler-utils")
    result = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                            text=True, timeout=30, check=True)
    return result.stdout


# --- the flow --------------------------------------------------------------------------------

@pytest.mark.usefixtures("made_by_console")
def test_console_in_a_browser_kicks_makes_codes_announces_and_reports(
        lab: Lab, store: Store, marker: str, tmp_path: Path) -> None:
    mac1 = lab.client_mac(1)
    authorize(lab, 1)
    assert wait_for(lambda: reaches_internet(lab, "c1"), timeout=2) is not None

    downloads = tmp_path / "downloads"
    seen = run_console(lab, tmp_path / "shots", downloads, mac1, marker)
    assert not seen["errors"], seen["errors"]

    # Logged in from the French login page (the console's address led there).
    assert "/connexion" in seen["first_url"], seen["first_url"]
    login = page(seen, "login")
    assert login["status"] == 200 and login["lang"] == "fr", login
    assert seen["login_form_french"], login["h1"]
    assert seen["logged_in"], page(seen, "dashboard")
    assert topology.GATEWAY_ID in (seen["dashboard_row"] or ""), seen["dashboard_row"]

    # The connected client was listed, kicked, and netctl said so.
    assert seen["client_state"] == "connecté", seen["client_row"]
    assert lab.client_ip(1) in seen["client_row"], seen["client_row"]
    assert any(a.startswith(admin_browser.DONE_PREFIX) for a in seen["kick_answer"]), \
        seen["kick_answer"]
    assert seen["client_state_after"] in (None, "aperçu, non connecté"), seen["client_row_after"]
    # ...and it is really cut: no session in Redis, no element in the set, the portal.
    assert mac1 not in store.sessions()
    assert not in_client_set(lab, 1)
    assert not reaches_internet(lab, "c1")
    assert lands_on_portal(lab, "c1", f"http://{topology.INTERNET_WEB4}/")

    # The codes, shown once and on the downloaded sheet.
    codes = seen["codes"]
    assert len(codes) == CODE_COUNT and all(_CODE_RE.match(c) for c in codes), codes
    pdf = Path(seen["pdf"]["path"])
    assert pdf.parent == downloads and pdf.read_bytes()[:5] == b"%PDF-", seen["pdf"]
    text = pdf_text(pdf)
    missing = [code for code in codes if code not in text]
    assert not missing, f"codes not on the sheet: {missing}\n{text[:1500]}"
    batches = [b for b in store.list_code_batches() if marker in b.note]
    assert [b.id for b in batches] == [seen["batch"]], (batches, seen["batch"])
    assert batches[0].count == CODE_COUNT and batches[0].plan == CODE_PLAN, batches[0]
    print(f"sheet: {seen['pdf']['bytes']} B, downloaded in {seen['pdf']['seconds']} s")

    # A code from the sheet gets another device online, on the batch's plan.
    assert use_code(lab, "c3", tmp_path / "jar3", codes[0]) == 303
    assert wait_for(lambda: reaches_internet(lab, "c3"), timeout=2) is not None
    session = store.sessions().get(lab.client_mac(3))
    assert session is not None and session.plan == CODE_PLAN, session

    # The announcement, saved, and on the splash page of a device in both languages.
    assert seen["content_answer"] and seen["content_answer"][0].startswith("Enregistré"), \
        seen["content_answer"]
    assert seen["tile_id"], seen["tile_row"]
    assert "affichée" in (seen["tile_row"] or ""), seen["tile_row"]  # within its window now
    texts = admin_browser.announcement_texts(marker)
    for lang, other in (("fr", "en"), ("en", "fr")):
        splash = splash_text(lab, "c2", lang)
        assert f'lang="{lang}"' in splash[:200], splash[:200]
        for part in texts[lang]:
            assert part in splash, f"{part!r} not on the {lang} splash page"
        assert texts[other][0] not in splash, f"the {other} title on the {lang} splash page"

    # The month's report was reached.
    report = page(seen, "reports")
    assert report["status"] == 200 and f"mois={town_month(lab)}" in report["url"], report
    assert report["h1"] == "Rapports pour le conseil", report["h1"]

    # Logged out: the console's address leads to the login page again.
    assert "/connexion" in seen["logged_out_url"], seen["logged_out_url"]
    assert "/connexion" in seen["after_logout_url"], seen["after_logout_url"]

    # Every console page passes axe-core's WCAG 2.1 A/AA rules; the screenshots are kept.
    checked = [name for name, result in seen["pages"].items() if "axe" in result]
    assert {"login", "dashboard", "gateway", "codes", "codes-created", "content",
            "content-new", "reports"} <= set(checked), checked
    assert_accessible(seen, *checked)
    for shot in seen["screenshots"]:
        assert Path(shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shot
        assert (SCREENSHOTS / Path(shot).name).exists(), shot
    print(f"window typed into the datetime-local fields: {seen['window_typed']}")


# --- closed to the residents ---------------------------------------------------------------

def _refused(lab: Lab, node: str, url: str) -> tuple[int, str]:
    """curl's exit status and HTTP code for ``url`` from ``node`` (short timeout)."""
    result = lab.exec(node, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                             "-m", "2", url], check=False, timeout=15)
    return result.returncode, result.stdout.strip()


def device_labels(body: str) -> list[str]:
    """Label values of a Prometheus text exposition that look like a MAC or an IP address."""
    found = []
    for line in body.splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        for name, value in _LABELS_RE.findall(line[line.index("{"):line.rindex("}") + 1]):
            try:
                ipaddress.ip_address(value.split("%", 1)[0])
                found.append(f"{name}={value}")
            except ValueError:
                if _MAC_RE.search(value):
                    found.append(f"{name}={value}")
    return found


def test_console_and_metrics_are_unreachable_from_clients_and_name_no_device(
        lab: Lab) -> None:
    targets = [f"http://{host}:{port}/{path}"
               for host in (topology.MGMT_GATEWAY4, topology.LAN_GATEWAY4, "[fd77::1]")
               for port, path in ((topology.ADMIN_PORT, ""),
                                  *((p, "metrics") for p in METRICS_PORTS))]
    # Before and after login: an authorised device reaches the internet, never these.
    for authorised in (False, True):
        if authorised:
            authorize(lab, 1)
            assert wait_for(lambda: reaches_internet(lab, "c1"), timeout=2) is not None
        answered = {url: _refused(lab, "c1", url) for url in targets}
        reached = {url: got for url, got in answered.items() if got[0] == 0 or got[1] != "000"}
        assert not reached, f"reachable from c1 (authorised={authorised}): {reached}"
        print(f"from c1 (authorised={authorised}): curl exits "
              f"{sorted({got[0] for got in answered.values()})}")

    # From the management side the metrics answer, and name no device.
    devices = [lab.client_mac(i) for i in range(1, lab.clients + 1)] + [
        lab.client_ip(i) for i in range(1, lab.clients + 1)]
    for port in METRICS_PORTS:
        url = f"http://{topology.MGMT_GATEWAY4}:{port}/metrics"
        result = lab.exec("adm", ["curl", "-s", "-m", "5", "-w", "\n%{http_code}", url],
                          check=False, timeout=15)
        body, _, status = result.stdout.rpartition("\n")
        assert result.returncode == 0 and status == "200", (url, result)
        assert "# TYPE" in body, body[:500]
        assert not device_labels(body), f"{url}: device-like label values {device_labels(body)}"
        named = [d for d in devices if d in body]
        assert not named, f"{url} names lab devices: {named}"
        print(f"{url}: {len(body)} B, {sum(1 for li in body.splitlines() if li[:1] != '#')} "
              "samples, no device named")
    # The console itself answers there too (its login page).
    console = lab.exec("adm", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5",
                               f"{ADMIN_URL}connexion"], check=False, timeout=15)
    assert console.stdout == "200", console
