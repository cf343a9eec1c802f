"""The console's catalogues: every message the code and templates use is in French."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

ADMIN = Path(__file__).resolve().parents[2] / "admin"


def test_every_message_is_in_both_catalogues() -> None:
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    used = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(ADMIN), method_map, keywords={"_": None, "gettext": None,
                                              "lazy_gettext": None}):
        used.add(message if isinstance(message, str) else message[0])
    assert "Log in to the console" in used
    for language in ("fr", "en"):
        with (ADMIN / "translations" / language / "LC_MESSAGES" / "messages.po").open("rb") as f:
            catalog = read_po(f)
        missing = sorted(m for m in used if m not in catalog)
        assert not missing, f"{language}: {missing}"
        if language == "fr":
            assert not sorted(m.id for m in catalog if m.id and not m.string)
            assert catalog["Log in to the console"].string == "Connexion à la console"
