"""Drive Debian's headless Chromium through the administration console, from the management side.

The end-to-end test runs this module in the lab's ``adm`` namespace (the
administrators' workstation, 10.78.0.2; chromedriver listens on that
namespace's 127.0.0.1)::

    ip netns exec pt123-adm python -m lab.admin_browser --url http://10.78.0.1:8090/ \\
        --user admin --password-file /run/parvis-lab/pt123/admin.password \\
        --out /tmp/shots --client-mac 02:50:76:00:00:01 --marker e2e-1a2b3c

The flow, in French (the browser asks for fr-CA first):

1. the console's address → the login page; log in;
2. the gateways overview; the gateway's page; the row of ``--client-mac``
   (connected), its actions opened, "Déconnecter"; netctl's answer shown there;
3. the codes page: a batch (``--codes`` codes valid ``--valid-for``, plan
   ``--plan``); the codes shown once; the printable sheet downloaded (PDF);
4. the splash page's tiles: a new announcement in French and English, titled
   with ``--marker``, shown from yesterday to tomorrow; saved;
5. the report of ``--month`` (the current one by default);
6. logout, and the console's address leads to the login page again.

The console needs no script and this flow only clicks, types and reads:
JavaScript runs here only to measure (axe-core, the Performance API) and,
should typing into a ``datetime-local`` field not take (an unknown locale
layout), to set its value (``window_typed`` says which happened). Every page
is checked with axe-core (WCAG 2.1 A/AA) and saved as a screenshot
``admin-<n>-<page>.png`` in ``--out``. One JSON object on stdout says what
was seen; exit status 0 even when the console misbehaves (the test asserts on
the JSON), 2 when the browser could not run at all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from lab import browser
from lab.browser import Budget, Flow, _loaded, _navigate, _wait

# The whole run, browser start included; the test's own timeout is larger.
BUDGET_S = 60
DOWNLOAD_TIMEOUT_S = 15
# What the new announcement says: the marker follows each title and text.
ANNOUNCEMENT = {
    "fr": ("Avis aux résidents", "Travaux place du marché : le réseau reste ouvert."),
    "en": ("Notice to residents", "Work on the market square: the network stays open."),
}
# French labels of the console (admin/translations/fr).
LOGIN_HEADING = "Connexion à la console"
LOGIN_BUTTON = "Connexion"
DISCONNECT = "Déconnecter"
DONE_PREFIX = "Fait :"
MAKE_CODES = "Créer les codes"
DOWNLOAD_SHEET = "Télécharger la feuille à imprimer (PDF)"
ADD_TILE = "Ajouter une tuile"
SAVE = "Enregistrer"
LOGOUT = "Me déconnecter"
NAV = {"codes": "Codes d’accès", "content": "Page d’accueil", "reports": "Rapports"}
_TILE_LINK = re.compile(r"/contenu/(t-[0-9a-f]{12})$")
_SHEET_NAME = re.compile(r"^codes-(.+)\.pdf$")


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise Budget(f"console run exceeded {BUDGET_S} s")


def announcement_texts(marker: str) -> dict[str, tuple[str, str]]:
    """The announcement's (title, text) in each language, each carrying ``marker``."""
    return {lang: (f"{title} {marker}", f"{text} {marker}")
            for lang, (title, text) in ANNOUNCEMENT.items()}


def _button(scope: WebDriver | WebElement, label: str) -> WebElement | None:
    """The first submit button whose visible text starts with ``label``."""
    found = scope.find_elements(By.XPATH, f".//button[starts-with(normalize-space(.), "
                                          f"{_xpath_literal(label)})]")
    return found[0] if found else None


def _link(driver: WebDriver, label: str) -> WebElement | None:
    found = driver.find_elements(By.XPATH, f"//a[normalize-space(.)={_xpath_literal(label)}]")
    return found[0] if found else None


def _xpath_literal(text: str) -> str:
    """``text`` as an XPath 1.0 string literal (the labels hold ’, never both quote kinds)."""
    return f'"{text}"' if '"' not in text else f"'{text}'"


def _heading(driver: WebDriver) -> str:
    found = driver.find_elements(By.TAG_NAME, "h1")
    return found[0].text.strip() if found else ""


def _flashes(driver: WebDriver) -> list[str]:
    return [p.text.strip() for p in driver.find_elements(By.CSS_SELECTOR, "p.flash")]


def _type(field: WebElement, text: str) -> None:
    field.clear()
    field.send_keys(text)


def _datetime_keys(moment: dt.datetime) -> list[list[str]]:
    """Keystrokes for a ``datetime-local`` field, one list per locale layout tried.

    Chromium's field takes digits segment by segment in the order of its UI
    locale (not ``--lang``: Debian's package has only en-US unless
    chromium-l10n is installed). The year segment takes up to six digits and
    does not move on by itself: Tab does.
    """
    hour12 = moment.strftime("%I%M") + ("AM" if moment.hour < 12 else "PM")
    return [
        [moment.strftime("%m%d%Y"), Keys.TAB, hour12],  # en-US: mm/dd/yyyy, hh:mm AM
        [moment.strftime("%Y"), Keys.TAB, moment.strftime("%m%d%H%M")],  # fr-CA: yyyy-mm-dd hh h mm
    ]


def _set_datetime(driver: WebDriver, field: WebElement, moment: dt.datetime) -> bool:
    """Type a date and time into a ``datetime-local`` field; True if typing took.

    When no known layout gives the value, it is set directly (the harness,
    not the console, uses a script for it).
    """
    wanted = moment.strftime("%Y-%m-%dT%H:%M")
    for keys in _datetime_keys(moment):
        field.send_keys(*keys)  # focuses the field's first segment
        if field.get_attribute("value") == wanted:
            return True
        driver.execute_script("arguments[0].value = ''; arguments[0].blur()", field)
    driver.execute_script("arguments[0].value = arguments[1]", field, wanted)
    return False


class ConsoleFlow:
    """The console run: one Flow (screenshots, axe, weights) plus what this flow records."""

    def __init__(self, flow: Flow, base_url: str, download_dir: Path) -> None:
        self.flow = flow
        self.driver = flow.driver
        self.base = base_url.rstrip("/") + "/"
        self.download_dir = download_dir
        self.result = flow.result
        self.result["timings_s"] = {}
        self._step_started = time.monotonic()

    def timed(self, step: str) -> None:
        """Close the timing of ``step`` (from the previous call)."""
        now = time.monotonic()
        self.result["timings_s"][step] = round(now - self._step_started, 2)
        self._step_started = now

    def page(self, name: str, *, axe: bool = True, shot: bool = True) -> dict[str, Any]:
        seen = self.flow.check_page(name, axe=axe, shot=shot)
        seen["h1"] = _heading(self.driver)
        seen["flashes"] = _flashes(self.driver)
        return seen

    def click(self, element: WebElement | None, what: str) -> bool:
        """Click ``element`` and wait for the next page; an error if it is missing."""
        if element is None:
            self.flow.error(f"not found: {what} (on {self.driver.current_url})")
            return False
        if not _navigate(self.driver, element.click):
            self.flow.error(f"no new page after {what}")
            return False
        return True

    # --- the steps --------------------------------------------------------------------------

    def login(self, user: str, password: str) -> bool:
        driver, result = self.driver, self.result
        driver.get(self.base)
        _wait(lambda: _loaded(driver))
        result["first_url"] = driver.current_url
        seen = self.page("login")
        result["login_form_french"] = seen["lang"] == "fr" and seen["h1"] == LOGIN_HEADING
        form = driver.find_elements(By.CSS_SELECTOR, "form input[name='password']")
        if not form:
            self.flow.error("no password field on the login page")
            return False
        _type(driver.find_element(By.ID, "name"), user)
        _type(driver.find_element(By.ID, "password"), password)
        form_element = form[0].find_element(By.XPATH, "./ancestor::form[1]")
        if not self.click(_button(form_element, LOGIN_BUTTON), "the login button"):
            return False
        seen = self.page("dashboard")
        result["logged_in"] = (driver.current_url == self.base and seen["status"] == 200
                               and _button(driver, LOGOUT) is not None)
        self.timed("login")
        return bool(result["logged_in"])

    def kick(self, gateway: str, mac: str) -> None:
        driver, result = self.driver, self.result
        dashboard_row = driver.find_elements(
            By.XPATH, f"//table//tr[th[normalize-space(.)={_xpath_literal(gateway)}]]")
        result["dashboard_row"] = dashboard_row[0].text if dashboard_row else None
        if not self.click(_link(driver, gateway), f"the link to gateway {gateway}"):
            return
        row_xpath = (f"//table[contains(@class, 'clients')]//tr"
                     f"[td[normalize-space(.)={_xpath_literal(mac.lower())}]]")
        rows = driver.find_elements(By.XPATH, row_xpath)
        result["client_row"] = rows[0].text if rows else None
        if not rows:
            self.page("gateway")
            self.flow.error(f"no row for {mac} on the gateway's page")
            return
        row = rows[0]
        summaries = row.find_elements(By.TAG_NAME, "summary")
        if summaries:
            summaries[0].click()  # <details>: opens without any script
        # Checked with the row's actions open: axe sees the forms too.
        self.page("gateway")
        result["client_state"] = row.find_elements(By.TAG_NAME, "td")[1].text.strip()
        if not self.click(_button(row, DISCONNECT), f"the {DISCONNECT} button of {mac}"):
            return
        seen = self.page("gateway-after-kick")
        result["kick_answer"] = seen["flashes"]
        after = driver.find_elements(By.XPATH, row_xpath)
        result["client_row_after"] = after[0].text if after else None
        result["client_state_after"] = (after[0].find_elements(By.TAG_NAME, "td")[1].text.strip()
                                        if after else None)
        self.timed("kick")

    def codes(self, count: int, valid_for: str, plan: str, note: str) -> None:
        driver, result = self.driver, self.result
        if not self.click(_link(driver, NAV["codes"]), "the codes page's link"):
            return
        self.page("codes")
        _type(driver.find_element(By.ID, "count"), str(count))
        _type(driver.find_element(By.ID, "valid_for"), valid_for)
        _type(driver.find_element(By.ID, "uses"), "1")
        Select(driver.find_element(By.ID, "plan")).select_by_value(plan)
        _type(driver.find_element(By.ID, "note"), note)
        if not self.click(_button(driver, MAKE_CODES), f"the {MAKE_CODES} button"):
            return
        seen = self.page("codes-created")
        result["codes_heading"] = seen["h1"]
        result["codes"] = [li.text.strip()
                           for li in driver.find_elements(By.CSS_SELECTOR, "ol.codes li")]
        self.timed("codes")
        self.download_sheet()

    def download_sheet(self) -> None:
        """Press the sheet's button; wait for the PDF in the download directory."""
        result = self.result
        button = _button(self.driver, DOWNLOAD_SHEET)
        if button is None:
            self.flow.error(f"no {DOWNLOAD_SHEET} button")
            return
        before = set(self.download_dir.iterdir())
        started = time.monotonic()
        button.click()  # an attachment: the page stays
        found: list[Path] = []

        def done() -> bool:
            new = [p for p in self.download_dir.iterdir() if p not in before]
            found[:] = [p for p in new if p.suffix == ".pdf"]
            partial = [p for p in new if p.suffix == ".crdownload"]
            return bool(found) and not partial and found[0].stat().st_size > 0

        if not _wait(done, DOWNLOAD_TIMEOUT_S):
            self.flow.error(f"no PDF in {self.download_dir} after {DOWNLOAD_TIMEOUT_S} s: "
                            f"{sorted(p.name for p in self.download_dir.iterdir())}")
            return
        pdf = found[0]
        named = _SHEET_NAME.match(pdf.name)
        result["pdf"] = {"path": str(pdf), "bytes": pdf.stat().st_size,
                         "seconds": round(time.monotonic() - started, 2)}
        result["batch"] = named.group(1) if named else None
        self.timed("sheet")

    def announce(self, marker: str) -> None:
        driver, result = self.driver, self.result
        if not self.click(_link(driver, NAV["content"]), "the splash page's link"):
            return
        self.page("content")
        if not self.click(_link(driver, ADD_TILE), f"the {ADD_TILE} link"):
            return
        Select(driver.find_element(By.ID, "kind")).select_by_value("announcement")
        for lang, (title, text) in announcement_texts(marker).items():
            _type(driver.find_element(By.ID, f"title_{lang}"), title)
            _type(driver.find_element(By.ID, f"text_{lang}"), text)
        # Yesterday to tomorrow, written in UTC: that covers now in any town's zone.
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None, second=0, microsecond=0)
        typed = [_set_datetime(driver, driver.find_element(By.ID, field), moment)
                 for field, moment in (("starts_at", now - dt.timedelta(days=1)),
                                       ("ends_at", now + dt.timedelta(days=1)))]
        result["window_typed"] = all(typed)
        self.page("content-new")
        if not self.click(_button(driver, SAVE), f"the {SAVE} button"):
            return
        seen = self.page("content-saved")
        result["content_answer"] = seen["flashes"]
        title_fr = announcement_texts(marker)["fr"][0]
        rows = driver.find_elements(By.XPATH, f"//tr[th[contains(., {_xpath_literal(marker)})]]")
        result["tile_row"] = rows[0].text if rows else None
        result["tile_id"] = None
        for row in rows:
            for link in row.find_elements(By.TAG_NAME, "a"):
                matched = _TILE_LINK.search(link.get_attribute("href") or "")
                if matched:
                    result["tile_id"] = matched.group(1)
        if not rows:
            self.flow.error(f"the new tile {title_fr!r} is not listed")
        self.timed("announcement")

    def report(self, month: str) -> None:
        driver = self.driver
        if not self.click(_link(driver, NAV["reports"]), "the reports' link"):
            return
        # The month asked for (the link shows the latest month with figures).
        driver.get(f"{self.base}rapports?mois={month}")
        _wait(lambda: _loaded(driver))
        self.page("reports")
        self.timed("report")

    def logout(self) -> None:
        driver, result = self.driver, self.result
        if not self.click(_button(driver, LOGOUT), f"the {LOGOUT} button"):
            return
        seen = self.page("logged-out", axe=False)
        result["logged_out_url"] = seen["url"]
        # The session is gone: the console's address leads to the login page again.
        driver.get(self.base)
        _wait(lambda: _loaded(driver))
        result["after_logout_url"] = driver.current_url
        self.timed("logout")


def _driver(home: Path, download_dir: Path) -> tuple[WebDriver, Service]:
    """Chromium as lab/browser.py starts it, French first, downloads to ``download_dir``."""
    options = webdriver.ChromeOptions()
    options.binary_location = browser.CHROMIUM
    for arg in (*browser.CHROMIUM_ARGS, f"--user-data-dir={home / 'profile'}",
                "--window-size=1280,900", "--lang=fr-CA"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {
        "intl.accept_languages": "fr-CA,fr,en",
        "download.default_directory": str(download_dir),
        "download.prompt_for_download": False,
        "download.directory_upgrade": True,
        "plugins.always_open_pdf_externally": True,
    })
    service = Service(executable_path=browser.CHROMEDRIVER, log_output=str(home / "driver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        # Headless Chromium follows the preferences above only when told to allow downloads.
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {
            "behavior": "allow", "downloadPath": str(download_dir)})
    except WebDriverException:
        driver.quit()
        service.stop()
        raise
    return driver, service


def current_month() -> str:
    """``YYYY-MM`` of today, in this process's zone (``TZ``)."""
    return dt.date.today().strftime("%Y-%m")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the browser, run the console flow; return what was observed."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    download_dir: Path = (args.download_dir or out / "downloads").resolve()
    download_dir.mkdir(parents=True, exist_ok=True)
    axe_path = Path(args.axe_js) if args.axe_js else browser.axe_script()
    if axe_path is None:
        raise OSError(f"axe-core's axe.min.js not found in {browser.axe_locations()}")
    axe_js = axe_path.read_text(encoding="utf-8")
    password = args.password_file.read_text(encoding="utf-8").strip()
    with tempfile.TemporaryDirectory(prefix="parvis-admin-browser-") as tmp:
        home = Path(tmp)
        os.environ["HOME"] = str(home)
        started = time.monotonic()
        driver, service = _driver(home, download_dir)
        flow = Flow(driver, "admin", out, axe_js)
        flow.result["browser_start_s"] = round(time.monotonic() - started, 2)
        console = ConsoleFlow(flow, args.url, download_dir)
        try:
            driver.set_page_load_timeout(15)
            driver.set_script_timeout(10)
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
            if console.login(args.user, password):
                console.kick(args.gateway, args.client_mac)
                console.codes(args.codes, args.valid_for, args.plan, f"e2e {args.marker}")
                console.announce(args.marker)
                console.report(args.month or current_month())
                console.logout()
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
    parser = argparse.ArgumentParser(prog="python -m lab.admin_browser")
    parser.add_argument("--url", required=True, help="the console, e.g. http://10.78.0.1:8090/")
    parser.add_argument("--user", required=True, help="a console account with the admin role")
    parser.add_argument("--password-file", type=Path, required=True,
                        help="a file holding the account's password (one line)")
    parser.add_argument("--out", type=Path, required=True, help="directory for screenshots")
    parser.add_argument("--client-mac", required=True, help="the connected device to kick")
    parser.add_argument("--download-dir", type=Path, default=None,
                        help="where the browser saves the PDF (default OUT/downloads)")
    parser.add_argument("--marker", default=f"e2e-{os.urandom(4).hex()}",
                        help="a unique text put in the announcement's titles and texts")
    parser.add_argument("--gateway", default="lab", help="the gateway id (default lab)")
    parser.add_argument("--codes", type=int, default=3, help="how many codes to make")
    parser.add_argument("--valid-for", default="4h", help="the codes' validity (default 4h)")
    parser.add_argument("--plan", default="event", help="the codes' plan (default event)")
    parser.add_argument("--month", default="",
                        help="the report's month, YYYY-MM (default: this month here)")
    parser.add_argument("--axe-js", default="",
                        help="axe.min.js to use (default: the first of axe_locations())")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(BUDGET_S)
    try:
        result = run(args)
    except (OSError, WebDriverException, Budget) as error:
        print(json.dumps({"fatal": f"{type(error).__name__}: {error}"}))
        return 2
    finally:
        signal.alarm(0)
    result["marker"] = args.marker
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
