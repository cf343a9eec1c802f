"""Drive Debian's headless Chromium through the captive portal, inside a lab client.

The end-to-end tests run this module *in* a client's namespace (chromedriver
listens on 127.0.0.1 there, unreachable from the host)::

    ip netns exec pt123-c1 python -m lab.browser accept --ca /run/parvis-lab/pt123/ca.crt \\
        --out /tmp/shots --probe http://connectivitycheck.gstatic.com/generate_204
    ip netns exec pt123-c2 python -m lab.browser code --code ABCD-EFGH-… --ca … --out …

Both flows start from a fresh profile whose NSS database trusts the lab CA and
open the probe URL (the gateway sends it to the splash page, in French):

``accept``
    the splash page in French (also at 900×572 and 360×740: no horizontal
    scrolling); switch to English (``<html lang=en>``, "Accept and connect")
    and back to French; tap "Accepter et me connecter"; the confirmation.
``code``
    the splash page in French; a wrong code (the French error message); switch
    to English, a wrong code again (the English message); back to French; the
    right code; the confirmation; and the portal's 404 page (``error.html``).

On each page worth checking, axe-core 4.x (its ``axe.min.js`` from the npm
package, installed beforehand: nothing is fetched at run time) runs with the
WCAG 2.1 A/AA rules, and the page weight is read from the Performance API
(the document's and every resource's transfer size). Screenshots go to
``--out`` as ``<flow>-<n>-<page>.png``. One JSON object on stdout says what
was seen; the exit status is 0 even when the portal misbehaves (the test
asserts on the JSON), 2 when the browser could not run at all.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from lab import tls

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_ARGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic", "--disable-dev-shm-usage", "--hide-scrollbars",
    "--disable-extensions", "--disable-default-apps", "--no-default-browser-check",
)
ACCEPT = {"fr": "Accepter et me connecter", "en": "Accept and connect"}
CODE_UNKNOWN = {"fr": "Ce code d’accès n’est pas valide",
                "en": "This access code is not valid"}
# The language switch: a link or button marked as English, or labelled so.
_SWITCH_XPATH = ("//*[(self::a or self::button) and (@hreflang='{lang}' or @lang='{lang}' "
                 "or normalize-space(.)='{label}')]")
_LABELS = {"en": "English", "fr": "Français"}
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
WRONG_CODE = "ZZZZ-ZZZZ-ZZZZ-ZZZZ"
# The whole run, browser start included; the test's own timeout is larger.
BUDGET_S = 45

_AXE_RUN = """
const done = arguments[arguments.length - 1];
axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}})
  .then(r => done({
    version: axe.version,
    passes: r.passes.length, incomplete: r.incomplete.length,
    incomplete_ids: r.incomplete.map(v => v.id),
    violations: r.violations.map(v => ({
      id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl, tags: v.tags,
      nodes: v.nodes.map(n => ({target: n.target, html: n.html,
                                summary: n.failureSummary}))}))}))
  .catch(e => done({error: String(e)}));
"""

_WEIGHT = """
const nav = performance.getEntriesByType('navigation')[0];
const entry = e => ({name: e.name, transfer: e.transferSize, encoded: e.encodedBodySize,
                     decoded: e.decodedBodySize});
return {status: nav.responseStatus || 0, document: entry(nav),
        resources: performance.getEntriesByType('resource').map(entry)};
"""


def axe_script() -> Path | None:
    """axe-core's ``axe.min.js`` (npm package axe-core 4.x), the first of axe_locations()."""
    for candidate in axe_locations():
        if candidate.is_file():
            return candidate
    return None


def axe_locations() -> list[Path]:
    """Where axe.min.js is looked for: $PARVIS_AXE_JS, then npm's global folders (the venv's
    first: ``npm install --global --prefix .venv axe-core@4``), then the clone's node_modules."""
    found = [Path(os.environ["PARVIS_AXE_JS"])] if os.environ.get("PARVIS_AXE_JS") else []
    for prefix in (Path(sys.prefix), Path("/usr/local"), Path("/usr")):
        found.append(prefix / "lib" / "node_modules" / "axe-core" / "axe.min.js")
    clone = Path(__file__).resolve().parent.parent
    found.append(clone / "node_modules" / "axe-core" / "axe.min.js")
    return found


class Budget(Exception):
    """The run took longer than its budget (raised from SIGALRM, so ``finally`` still runs)."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise Budget(f"browser run exceeded {BUDGET_S} s")


def _wait(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except WebDriverException:
            pass
        time.sleep(0.05)
    return False


def _lang(driver: WebDriver) -> str:
    return str(driver.execute_script("return document.documentElement.lang || ''"))


def _text(driver: WebDriver) -> str:
    return str(driver.execute_script("return document.body ? document.body.innerText : ''"))


def _loaded(driver: WebDriver) -> bool:
    return bool(driver.execute_script("return document.readyState") == "complete")


def _navigate(driver: WebDriver, action: Callable[[], Any]) -> bool:
    """Run ``action`` (a click…) and wait for the next document to be fully loaded."""
    marker = "__parvis_old_page"
    driver.execute_script(f"window.{marker} = true")
    action()
    return _wait(lambda: not driver.execute_script(f"return window.{marker} === true")
                 and _loaded(driver))


def _switch_language(driver: WebDriver, lang: str) -> bool:
    """Click the switch to ``lang``; True once the page says ``<html lang=…>`` of it."""
    found = driver.find_elements(By.XPATH, _SWITCH_XPATH.format(lang=lang, label=_LABELS[lang]))
    if not found:
        return False
    _navigate(driver, found[0].click)
    return _lang(driver).lower().startswith(lang)


def _accept_button(driver: WebDriver) -> WebElement | None:
    """The accept button: that of the POST form without a text field (the code form has one)."""
    for form in driver.find_elements(By.TAG_NAME, "form"):
        if (form.get_attribute("method") or "get").lower() != "post":
            continue
        if form.find_elements(By.XPATH, ".//input[not(@type) or @type='text']"):
            continue
        buttons = form.find_elements(By.XPATH, ".//button | .//input[@type='submit']")
        if buttons:
            return buttons[-1]
    return None


def _code_field(driver: WebDriver) -> WebElement | None:
    found = driver.find_elements(By.CSS_SELECTOR, "form input[name='code']")
    return found[0] if found else None


class Flow:
    """One browser on the portal: its observations, screenshots, axe results and weights."""

    def __init__(self, driver: WebDriver, name: str, out: Path, axe_js: str) -> None:
        self.driver = driver
        self.name = name
        self.out = out
        self.axe_js = axe_js
        self.result: dict[str, Any] = {"flow": name, "screenshots": [], "errors": [],
                                       "pages": {}}
        self._shots = 0

    def error(self, message: str) -> None:
        self.result["errors"].append(message)

    def shot(self, page: str) -> None:
        """A screenshot named ``<flow>-<n>-<page>.png`` (numbered in the order taken)."""
        self._shots += 1
        path = self.out / f"{self.name}-{self._shots}-{page}.png"
        self.driver.save_screenshot(str(path))
        self.result["screenshots"].append(str(path))

    def check_page(self, page: str, *, axe: bool = True, shot: bool = True) -> dict[str, Any]:
        """Record the page (URL, status, language, text, weight), run axe, take a screenshot."""
        driver = self.driver
        seen: dict[str, Any] = {"url": driver.current_url, "lang": _lang(driver),
                                "title": driver.title, "text": _text(driver)[:1500]}
        weight = driver.execute_script(_WEIGHT)
        entries = [weight["document"], *weight["resources"]]
        seen["status"] = int(weight["status"])
        seen["weight"] = {
            # The cache is off; were a resource cached (transferSize 0), count its size.
            "bytes": sum(max(e["transfer"], e["encoded"]) for e in entries),
            "transfer": sum(e["transfer"] for e in entries),
            "decoded": sum(e["decoded"] for e in entries),
            "entries": entries,
        }
        if axe:
            seen["axe"] = self.axe()
        if shot:
            self.shot(page)
        self.result["pages"][page] = seen
        return seen

    def axe(self) -> dict[str, Any]:
        """axe-core's WCAG 2.1 A/AA run on the rendered page (violations in full)."""
        self.driver.execute_script(self.axe_js)
        found = self.driver.execute_async_script(_AXE_RUN, list(WCAG_TAGS))
        if not isinstance(found, dict) or "error" in found:
            self.error(f"axe did not run: {found}")
            return {"violations": [], "error": str(found)}
        return found

    def open_probe(self, probe: str, portal_prefix: str) -> bool:
        self.result["probe"] = probe
        self.driver.get(probe)
        landed = _wait(lambda: self.driver.current_url.startswith(portal_prefix)
                       and _loaded(self.driver))
        self.result["landed_on_portal"] = landed
        self.result["splash_url"] = self.driver.current_url
        return landed

    def switch(self, lang: str) -> bool:
        switched = _switch_language(self.driver, lang)
        self.result.setdefault("switches", []).append(
            {"to": lang, "ok": switched, "lang": _lang(self.driver)})
        return switched

    def accept_label(self) -> str | None:
        button = _accept_button(self.driver)
        return button.text.strip() if button is not None else None

    def tap_accept(self) -> bool:
        button = _accept_button(self.driver)
        if button is None:
            self.error("no accept button")
            return False
        return _navigate(self.driver, button.click)

    def enter_code(self, code: str) -> bool:
        field = _code_field(self.driver)
        if field is None:
            self.error("no access-code field")
            return False
        field.clear()
        field.send_keys(code)
        form = field.find_element(By.XPATH, "./ancestor::form[1]")
        return _navigate(self.driver,
                         form.find_element(By.CSS_SELECTOR, "button[type='submit']").click)


def accept_flow(flow: Flow, probe: str, portal_prefix: str) -> None:
    """Probe → splash (fr, sizes) → English → French → accept → confirmation."""
    driver, result = flow.driver, flow.result
    if not flow.open_probe(probe, portal_prefix):
        flow.error(f"the probe did not land on the portal: {driver.current_url}")
        return
    flow.check_page("splash-fr")
    result["accept_label_fr"] = flow.accept_label()
    for width, height in ((900, 572), (360, 740)):
        # The viewport itself (set_window_size would include the window's frame).
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
        result[f"scroll_width_{width}"] = int(driver.execute_script(
            "return document.documentElement.scrollWidth"))
        result[f"client_width_{width}"] = int(driver.execute_script(
            "return document.documentElement.clientWidth"))
        flow.shot(f"splash-fr-{width}x{height}")
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    flow.switch("en")
    flow.check_page("splash-en")
    result["accept_label_en"] = flow.accept_label()
    flow.switch("fr")
    flow.check_page("splash-fr-again", axe=False, shot=False)
    result["accept_label_fr_again"] = flow.accept_label()
    if flow.tap_accept():
        flow.check_page("confirmation")


def code_flow(flow: Flow, probe: str, portal_prefix: str, code: str, wrong: str) -> None:
    """Probe → splash → wrong code (fr) → English → wrong code (en) → French → code → done."""
    result = flow.result
    if not flow.open_probe(probe, portal_prefix):
        flow.error(f"the probe did not land on the portal: {flow.driver.current_url}")
        return
    flow.check_page("splash-fr", axe=False)
    if flow.enter_code(wrong):
        flow.check_page("wrong-code-fr")
    flow.switch("en")
    flow.check_page("splash-en", axe=False, shot=False)
    if flow.enter_code(wrong):
        flow.check_page("wrong-code-en")
    flow.switch("fr")
    flow.check_page("splash-fr-again", axe=False, shot=False)
    result["accept_label_fr_again"] = flow.accept_label()
    if flow.enter_code(code):
        flow.check_page("confirmation")
    # The portal's own error page (error.html, both languages on it), e.g. a 404.
    flow.driver.get(portal_prefix.rstrip("/") + "/introuvable")
    _wait(lambda: _loaded(flow.driver))
    flow.check_page("not-found")


def _profile(ca_cert: Path, home: Path) -> None:
    """An NSS database trusting the lab CA where Chromium looks: $HOME/.pki/nssdb."""
    nss = home / ".pki" / "nssdb"
    nss.mkdir(parents=True)
    for argv in (tls.nss_init_command(nss), tls.nss_import_command(nss, ca_cert)):
        subprocess.run(argv, check=True, capture_output=True, timeout=30)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the browser, run the flow asked for; return what was observed."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    axe_path = Path(args.axe_js) if args.axe_js else axe_script()
    if axe_path is None:
        raise OSError(f"axe-core's axe.min.js not found in {axe_locations()}")
    axe_js = axe_path.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="parvis-browser-") as tmp:
        home = Path(tmp)
        _profile(args.ca, home)
        os.environ["HOME"] = str(home)  # Chromium reads $HOME/.pki/nssdb
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (*CHROMIUM_ARGS, f"--user-data-dir={home / 'profile'}",
                    "--window-size=1280,900", "--lang=fr-CA"):
            options.add_argument(arg)
        # A resident's phone in Québec: French first (--lang does not set the
        # Accept-Language header of headless Chromium; this preference does).
        options.add_experimental_option("prefs", {"intl.accept_languages": "fr-CA,fr,en"})
        service = Service(executable_path=CHROMEDRIVER, log_output=str(home / "driver.log"))
        started = time.monotonic()
        driver = webdriver.Chrome(service=service, options=options)
        flow = Flow(driver, args.flow, out, axe_js)
        flow.result["browser_start_s"] = round(time.monotonic() - started, 2)
        try:
            driver.set_page_load_timeout(10)
            driver.set_script_timeout(10)
            # Every page as a first-time visitor downloads it: its weight counts the CSS too.
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
            if args.flow == "accept":
                accept_flow(flow, args.probe, args.portal_prefix)
            else:
                code_flow(flow, args.probe, args.portal_prefix, args.code, args.wrong_code)
        except (TimeoutException, WebDriverException, Budget) as error:
            message = error.msg if isinstance(error, WebDriverException) else str(error)
            flow.error(f"{type(error).__name__}: {message}")
            try:
                flow.shot("error")
            except (WebDriverException, Budget):
                pass
        finally:
            flow.result["flow_s"] = round(time.monotonic() - started, 2)
            try:
                driver.quit()
            finally:
                service.stop()
    return flow.result


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the flow, print its JSON."""
    parser = argparse.ArgumentParser(prog="python -m lab.browser")
    parser.add_argument("flow", choices=("accept", "code"))
    parser.add_argument("--probe", default="http://connectivitycheck.gstatic.com/generate_204")
    parser.add_argument("--ca", type=Path, required=True, help="the lab CA to trust")
    parser.add_argument("--out", type=Path, required=True, help="directory for screenshots")
    parser.add_argument("--portal-prefix", default="https://portail.lab.test:8443/")
    parser.add_argument("--code", default="", help="the access code to use (flow code)")
    parser.add_argument("--wrong-code", default=WRONG_CODE, help="a code the portal refuses")
    parser.add_argument("--axe-js", default="",
                        help="axe.min.js to use (default: the first of axe_locations())")
    args = parser.parse_args(argv)
    if args.flow == "code" and not args.code:
        parser.error("the code flow needs --code")
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(BUDGET_S)
    try:
        result = run(args)
    except (OSError, subprocess.SubprocessError, WebDriverException, Budget) as error:
        print(json.dumps({"fatal": f"{type(error).__name__}: {error}"}))
        return 2
    finally:
        signal.alarm(0)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
