"""Small helpers shared by the portal tests: form tokens and an HTML structure checker."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from flask.testing import FlaskClient


def csrf_token(client: FlaskClient, path: str = "/") -> str:
    """The CSRF token of the form on ``path`` (a GET through the same client)."""
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


class PageAudit(HTMLParser):
    """Collects what the basic accessibility check needs from one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.html_lang: str | None = None
        self.h1_count = 0
        self.title = False
        self.labels_for: set[str] = set()
        self.inputs: list[dict[str, str | None]] = []
        self.buttons_open = 0
        self.button_texts: list[str] = []
        self.links_without_text: list[str] = []
        self._link: dict[str, str | None] | None = None
        self._link_text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "html":
            self.html_lang = attributes.get("lang")
        elif tag == "h1":
            self.h1_count += 1
        elif tag == "title":
            self.title = True
        elif tag == "label" and attributes.get("for"):
            self.labels_for.add(str(attributes["for"]))
        elif tag in ("input", "select", "textarea"):
            self.inputs.append(attributes)
        elif tag == "button":
            self.buttons_open += 1
            self.button_texts.append("")
        elif tag == "a":
            self._link, self._link_text = attributes, ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self.buttons_open -= 1
        elif tag == "a" and self._link is not None:
            if not self._link_text.strip():
                self.links_without_text.append(str(self._link.get("href")))
            self._link = None

    def handle_data(self, data: str) -> None:
        if self.buttons_open:
            self.button_texts[-1] += data
        if self._link is not None:
            self._link_text += data


def accessibility_problems(html: str) -> list[str]:
    """Basic WCAG checks: lang attribute, one h1, a title, labelled inputs, named controls."""
    audit = PageAudit()
    audit.feed(html)
    problems = []
    if audit.html_lang not in ("fr", "en"):
        problems.append(f"<html lang> is {audit.html_lang!r}")
    if audit.h1_count != 1:
        problems.append(f"{audit.h1_count} <h1> elements")
    if not audit.title:
        problems.append("no <title>")
    for field in audit.inputs:
        if field.get("type") in ("hidden", "submit"):
            continue
        if field.get("id") not in audit.labels_for and not field.get("aria-label"):
            problems.append(f"input {field.get('name')!r} has no label")
    problems += [f"button without text #{i}" for i, text in enumerate(audit.button_texts)
                 if not text.strip()]
    problems += [f"link without text to {href}" for href in audit.links_without_text]
    return problems
