"""French first, English second: the locale selector and the gettext catalogues.

The catalogues are English msgids with French (and identity English)
translations in ``portal/translations/<lang>/LC_MESSAGES/messages.po``. The
``.mo`` files are compiled when the application starts, if missing or older
than their ``.po``: into the package when it is writable (a clone), else into a
private temporary directory (a read-only install under systemd's
ProtectSystem=strict). No manual step on a fresh clone.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import request

log = logging.getLogger(__name__)

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"
LANG_PARAM = "lang"
LANG_COOKIE = "parvis_lang"
TRANSLATIONS_DIR = Path(__file__).parent / "translations"


def explicit_language() -> str | None:
    """The language the resident chose on this request (``?lang=``), if any.

    Only the query string: reading the form here would parse bodies from error
    handlers too (an oversized body must stay a 413). Forms carry ``?lang=`` in
    their action URL.
    """
    value = request.args.get(LANG_PARAM, "")
    return value if value in LANGUAGES else None


def select_locale() -> str:
    """Explicit choice (parameter, then cookie), else Accept-Language among fr/en, else fr."""
    chosen = explicit_language()
    if chosen:
        return chosen
    cookie = request.cookies.get(LANG_COOKIE, "")
    if cookie in LANGUAGES:
        return cookie
    return accept_language(request.accept_languages)


def accept_language(accepted: Iterable[tuple[str, float]]) -> str:
    """The first of fr/en by quality, matching on the primary tag (fr-CA is fr).

    Not werkzeug's best_match: it prefers an exact "en;q=0.5" over "fr-CA" at
    q=1, which would show English to most Québec browsers.
    """
    for tag, quality in accepted:  # werkzeug keeps them sorted by quality
        primary = tag.split("-", 1)[0].split("_", 1)[0].lower()
        if quality > 0 and primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


def _stale(po: Path, mo: Path) -> bool:
    return not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime


def _compile_into(source: Path, target: Path) -> None:
    for po in sorted(source.glob("*/LC_MESSAGES/messages.po")):
        mo = target / po.relative_to(source).with_suffix(".mo")
        if target != source or _stale(po, mo):
            mo.parent.mkdir(parents=True, exist_ok=True)
            with po.open("rb") as handle:
                catalog = read_po(handle)
            partial = mo.with_suffix(".mo.tmp")
            with partial.open("wb") as handle:
                write_mo(handle, catalog)
            partial.replace(mo)  # atomic: a concurrent worker never reads half a file


def compiled_translations(source: Path = TRANSLATIONS_DIR) -> Path:
    """A directory holding up-to-date ``.mo`` files for every ``.po`` under ``source``."""
    try:
        _compile_into(source, source)
        return source
    except OSError as error:
        # Read-only install: compile privately, removed when the process exits.
        target = Path(tempfile.mkdtemp(prefix="parvis-portal-i18n-"))
        atexit.register(shutil.rmtree, target, ignore_errors=True)
        log.info("catalogues compiled privately: reason=%s dir=%s", error, target)
        _compile_into(source, target)
        return target
