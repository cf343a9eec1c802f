"""Drive Debian's headless Chromium through the captive-portal flow, inside a lab client.

The end-to-end test runs this module *in* a client's namespace (chromedriver
listens on 127.0.0.1 there, unreachable from the host)::

    ip netns exec pt123-c1 python -m lab.browser --ca /run/parvis-lab/pt123/ca.crt \\
        --out artifacts/screenshots --probe http://connectivitycheck.gstatic.com/generate_204

Steps: a fresh profile whose NSS database trusts the lab CA; open the probe
(the gateway sends it to the splash page); check French, the terms and the
accept button; switch to English and back, then to English again; accept;
wait for the confirmation page. Screenshots go to ``--out`` (splash in French
and English, the confirmation, the splash at 900×572 and 360×740). One JSON
object on stdout says what was seen; the exit status is 0 even when the
portal misbehaves (the test asserts on the JSON), 2 when the browser could
not run at all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
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
)
ACCEPT_FR = "Accepter et me connecter"
# The language switch: a link or button marked as English, or labelled so.
_SWITCH_XPATH = ("//*[(self::a or self::button) and (@hreflang='{lang}' or @lang='{lang}' "
                 "or normalize-space(.)='{label}')]")
_LABELS = {"en": "English", "fr": "Français"}


def _wait(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except WebDriverException:
            pass
        time.sleep(0.1)
    return False


def _lang(driver: WebDriver) -> str:
    return str(driver.execute_script("return document.documentElement.lang || ''"))


def _text(driver: WebDriver) -> str:
    return str(driver.execute_script("return document.body ? document.body.innerText : ''"))


def _switch_language(driver: WebDriver, lang: str) -> bool:
    """Click the switch to ``lang``; True once the page says ``<html lang=…>`` of it."""
    found = driver.find_elements(By.XPATH, _SWITCH_XPATH.format(lang=lang, label=_LABELS[lang]))
    if not found:
        return False
    found[0].click()
    return _wait(lambda: _lang(driver).lower().startswith(lang))


def _accept_form_action(driver: WebDriver) -> str | None:
    """The action of the form holding the French accept button."""
    for button in driver.find_elements(By.XPATH, "//form//button | //form//input[@type='submit']"):
        label = (button.text or button.get_attribute("value") or "").strip()
        if ACCEPT_FR in label:
            form = button.find_element(By.XPATH, "./ancestor::form[1]")
            return form.get_attribute("action") or ""
    return None


def _submit_of(driver: WebDriver) -> WebElement | None:
    """The accept button in any language: that of the POST form without a text field.

    (The access-code form has one; routes may be localised, so the action differs.)
    """
    for form in driver.find_elements(By.TAG_NAME, "form"):
        if (form.get_attribute("method") or "get").lower() != "post":
            continue
        if form.find_elements(By.XPATH, ".//input[not(@type) or @type='text']"):
            continue
        buttons = form.find_elements(By.XPATH, ".//button | .//input[@type='submit']")
        if buttons:
            return buttons[-1]
    return None


def _shot(driver: WebDriver, out: Path, name: str, shots: list[str]) -> None:
    path = out / f"{name}.png"
    driver.save_screenshot(str(path))
    shots.append(str(path))


def _profile(ca_cert: Path, home: Path) -> None:
    """An NSS database trusting the lab CA where Chromium looks: $HOME/.pki/nssdb."""
    nss = home / ".pki" / "nssdb"
    nss.mkdir(parents=True)
    for argv in (tls.nss_init_command(nss), tls.nss_import_command(nss, ca_cert)):
        subprocess.run(argv, check=True, capture_output=True, timeout=30)


def run_flow(probe: str, ca_cert: Path, out: Path, portal_prefix: str) -> dict[str, Any]:
    """Run the whole flow; return what was observed (see the module docstring)."""
    result: dict[str, Any] = {"probe": probe, "screenshots": [], "errors": []}
    shots: list[str] = result["screenshots"]
    errors: list[str] = result["errors"]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="parvis-browser-") as tmp:
        home = Path(tmp)
        _profile(ca_cert, home)
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
        try:
            driver.set_page_load_timeout(15)
            driver.get(probe)
            landed = _wait(lambda: driver.current_url.startswith(portal_prefix))
            result["splash_url"] = driver.current_url
            result["landed_on_portal"] = landed
            result["title"] = driver.title
            result["lang_initial"] = _lang(driver)
            text = _text(driver)
            result["has_accept_button_fr"] = ACCEPT_FR in text
            lowered = text.lower()
            result["mentions_terms_fr"] = "conditions" in lowered
            result["mentions_privacy_fr"] = "confidentialité" in lowered
            _shot(driver, out, "splash-fr", shots)
            action = _accept_form_action(driver)
            result["accept_action"] = action
            for width, height in ((900, 572), (360, 740)):
                # The viewport itself (set_window_size would include the window's frame).
                driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                    "width": width, "height": height, "deviceScaleFactor": 1,
                    "mobile": width < 600})
                result[f"scroll_width_{width}"] = int(driver.execute_script(
                    "return document.documentElement.scrollWidth"))
                result[f"client_width_{width}"] = int(driver.execute_script(
                    "return document.documentElement.clientWidth"))
                _shot(driver, out, f"splash-fr-{width}x{height}", shots)
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
            result["switched_to_en"] = _switch_language(driver, "en")
            result["lang_after_switch"] = _lang(driver)
            result["text_en_excerpt"] = _text(driver)[:400]
            _shot(driver, out, "splash-en", shots)
            result["switched_back_to_fr"] = _switch_language(driver, "fr")
            result["lang_after_switch_back"] = _lang(driver)
            _switch_language(driver, "en")
            button = _submit_of(driver)
            result["accept_label_en"] = button.text if button is not None else None
            if button is None:
                errors.append("no accept form/button found")
            else:
                before = driver.current_url
                button.click()
                _wait(lambda: driver.current_url != before
                      and driver.execute_script("return document.readyState") == "complete")
                result["confirmation_url"] = driver.current_url
                result["confirmation_lang"] = _lang(driver)
                result["confirmation_text"] = _text(driver)[:600]
                _shot(driver, out, "confirmation", shots)
            result["flow_s"] = round(time.monotonic() - started, 2)
        except (TimeoutException, WebDriverException) as error:
            errors.append(f"{type(error).__name__}: {error.msg}")
            try:
                _shot(driver, out, "error", shots)
            except WebDriverException:
                pass
        finally:
            driver.quit()
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the flow, print its JSON."""
    parser = argparse.ArgumentParser(prog="python -m lab.browser")
    parser.add_argument("--probe", default="http://connectivitycheck.gstatic.com/generate_204")
    parser.add_argument("--ca", type=Path, required=True, help="the lab CA to trust")
    parser.add_argument("--out", type=Path, required=True, help="directory for screenshots")
    parser.add_argument("--portal-prefix", default="https://portail.lab.test:8443/")
    args = parser.parse_args(argv)
    try:
        result = run_flow(args.probe, args.ca, args.out, args.portal_prefix)
    except (OSError, subprocess.SubprocessError, WebDriverException) as error:
        print(json.dumps({"fatal": f"{type(error).__name__}: {error}"}))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
