"""The catalogues: every message the code and templates use is translated into French."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from portal.i18n import compiled_translations

PORTAL = Path(__file__).resolve().parents[2] / "portal"


def _extracted() -> set[str]:
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(PORTAL), method_map, keywords={"_": None, "gettext": None,
                                               "lazy_gettext": None}):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_message_is_in_both_catalogues() -> None:
    used = _extracted()
    assert "Accept and connect" in used
    for language in ("fr", "en"):
        with (PORTAL / "translations" / language / "LC_MESSAGES" / "messages.po").open("rb") as f:
            catalog = read_po(f)
        missing = sorted(m for m in used if m not in catalog)
        assert not missing, f"{language}: {missing}"
        if language == "fr":
            untranslated = sorted(m.id for m in catalog if m.id and not m.string)
            assert not untranslated
            assert catalog["Accept and connect"].string == "Accepter et me connecter"


def test_catalogues_compile_into_a_private_dir_when_read_only(tmp_path: Path) -> None:
    source = tmp_path / "translations"
    po = source / "fr" / "LC_MESSAGES"
    po.mkdir(parents=True)
    (po / "messages.po").write_bytes(
        (PORTAL / "translations" / "fr" / "LC_MESSAGES" / "messages.po").read_bytes())
    assert compiled_translations(source) == source
    assert (po / "messages.mo").exists()
    (po / "messages.mo").unlink()
    po.chmod(0o555)
    try:
        target = compiled_translations(source)
        if target != source:  # not root: the directory really is read-only
            assert (target / "fr" / "LC_MESSAGES" / "messages.mo").exists()
    finally:
        po.chmod(0o755)
