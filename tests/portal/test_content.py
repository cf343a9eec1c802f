"""The town's content: the tiny Markdown renderer, terms versions, tiles."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest

from portal.content import load_terms, load_tiles, parse_tiles, render_markdown
from tests.portal.conftest import CONTENT


def test_markdown_escapes_html_and_renders_the_subset() -> None:
    html = str(render_markdown(
        "# Titre\n\n<script>alert(1)</script> **gras** [lien](https://ex.test/a?b=1&c=2)\n\n"
        "- un\n- deux\n\n1. premier\n2. second\n\n[x](javascript:alert(1))"))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<h3>Titre</h3>" in html
    assert "<strong>gras</strong>" in html
    assert '<a href="https://ex.test/a?b=1&amp;c=2">lien</a>' in html
    assert "<ul>\n<li>un</li>\n<li>deux</li>\n</ul>" in html
    assert "<ol>\n<li>premier</li>" in html
    assert "javascript:" not in html.split("href=")[-1] or 'href="javascript' not in html


def test_link_text_cannot_break_out_of_the_attribute() -> None:
    html = str(render_markdown('[a](https://ex.test/"onmouseover=x)'))
    assert '"onmouseover' not in html


def test_terms_version_changes_with_either_file(tmp_path: Path) -> None:
    for name in ("terms.fr.md", "privacy.fr.md"):
        (tmp_path / name).write_text(f"# {name}\n")
    first = load_terms(tmp_path, "fr").version
    assert len(first) == 12 and int(first, 16) >= 0
    (tmp_path / "privacy.fr.md").write_text("# changed\n")
    assert load_terms(tmp_path, "fr").version != first


def test_example_content_is_valid() -> None:
    for language in ("fr", "en"):
        terms = load_terms(CONTENT, language)
        assert "Plessisville" in str(terms.terms_html)
    assert load_tiles(CONTENT, dt.date(2026, 11, 20))


def test_tiles_display_window() -> None:
    tiles = parse_tiles({"tile": [{"kind": "announcement", "title_fr": "A", "title_en": "A",
                                   "start": dt.date(2026, 1, 10), "end": dt.date(2026, 1, 20)}]})
    assert not tiles[0].shown_on(dt.date(2026, 1, 9))
    assert tiles[0].shown_on(dt.date(2026, 1, 10)) and tiles[0].shown_on(dt.date(2026, 1, 20))
    assert not tiles[0].shown_on(dt.date(2026, 1, 21))


@pytest.mark.parametrize("text", [
    "[[tile]]\nkind = 'party'\ntitle_fr = 'a'\ntitle_en = 'b'\n",
    "[[tile]]\nkind = 'offer'\ntitle_fr = 'a'\n",
    "[[tile]]\nkind = 'offer'\ntitle_fr = 'a'\ntitle_en = 'b'\nurl_fr = 'javascript:x'\n",
    "not toml [",
])
def test_invalid_tiles_file_logs_a_warning_and_shows_none(
        tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "tiles.toml").write_text(text)
    with caplog.at_level(logging.WARNING, logger="portal.content"):
        assert load_tiles(tmp_path, dt.date.today()) == []
    assert "tiles not shown" in caplog.text
