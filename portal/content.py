"""What the town edits: terms of use, privacy notice and tiles, read from ``content_dir``.

Files are read at request time (they are small), so an edit shows on the next
page without a restart. The Markdown subset is rendered by a tiny renderer
that HTML-escapes everything first: a town's text can never inject markup.
Tiles edited in the administration console live in Redis (``Keys.CONTENT_TILES``)
and are shown with the file's, also without a restart; without Redis the
file's tiles are still shown.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup, escape

from parvis.store import Store, StoreError
from portal.ended import read_epoch

log = logging.getLogger(__name__)

LANGUAGES = ("fr", "en")
TILE_KINDS = ("announcement", "activity", "offer")
_LINK_RE = re.compile(r"\[([^\]\n]+)\]\(((?:https?://|mailto:)[^\s)]+)\)")
_BOLD_RE = re.compile(r"\*\*([^*\n]+)\*\*")
_ORDERED_RE = re.compile(r"^\d{1,3}[.)]\s+")


class ContentError(Exception):
    """A content file is missing or unreadable; says which."""


def _inline(text: str) -> str:
    """Escape a line, then turn ``[text](url)`` and ``**bold**`` into markup."""
    escaped = str(escape(text))
    # The URL was escaped with the rest (& becomes &amp;), which is what an attribute needs.
    escaped = _LINK_RE.sub(r'<a href="\2">\1</a>', escaped)
    return _BOLD_RE.sub(r"<strong>\1</strong>", escaped)


def render_markdown(source: str, heading_offset: int = 2) -> Markup:
    """Render paragraphs, ``#`` headings, ``-``/``1.`` lists, links and bold as safe HTML.

    Headings are shifted by ``heading_offset`` (``#`` becomes ``<h3>``) so the
    page keeps its single ``<h1>``.
    """
    out: list[str] = []
    paragraph: list[str] = []
    list_tag: str | None = None

    def flush_paragraph() -> None:
        if paragraph:
            out.append("<p>" + " ".join(_inline(line) for line in paragraph) + "</p>")
            paragraph.clear()

    def close_list() -> None:
        nonlocal list_tag
        if list_tag:
            out.append(f"</{list_tag}>")
            list_tag = None

    for raw in source.splitlines():
        line = raw.strip()
        if not line:
            flush_paragraph()
            close_list()
            continue
        heading = re.match(r"^(#{1,4})\s+(.*)$", line)
        if heading:
            flush_paragraph()
            close_list()
            level = min(6, len(heading.group(1)) + heading_offset)
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            continue
        item_tag = None
        if line[:2] in ("- ", "* "):
            item_tag, text = "ul", line[2:]
        elif _ORDERED_RE.match(line):
            item_tag, text = "ol", _ORDERED_RE.sub("", line, count=1)
        if item_tag:
            flush_paragraph()
            if list_tag != item_tag:
                close_list()
                out.append(f"<{item_tag}>")
                list_tag = item_tag
            out.append(f"<li>{_inline(text)}</li>")
            continue
        close_list()
        paragraph.append(line)
    flush_paragraph()
    close_list()
    return Markup("\n".join(out))


@dataclass(frozen=True)
class Terms:
    """The terms of use and privacy notice in one language, and their version."""

    language: str
    terms_html: Markup
    privacy_html: Markup
    # First 12 hex digits of sha256(terms file + privacy file): recorded with the session.
    version: str


def _signature(paths: list[Path]) -> tuple[tuple[str, int, int], ...] | None:
    """What identifies these files' current contents cheaply (None if one cannot be read)."""
    try:
        return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
    except OSError:
        return None


# Parsed content by its files' signature: the town's edits show at the next page
# view (the signature changes), without re-reading and re-rendering on every one.
_TERMS_CACHE: dict[tuple[Path, str], tuple[tuple[tuple[str, int, int], ...], Terms]] = {}
_TILES_CACHE: dict[Path, tuple[tuple[tuple[str, int, int], ...], list[Tile]]] = {}
# Tiles edited in the console, by the content version they were read at (a random
# token rewritten with every edit: never reused, even after Redis lost its data).
# Only the latest is kept.
_EDITED_CACHE: dict[str, list[Tile]] = {}


def load_terms(content_dir: Path, language: str) -> Terms:
    """``terms.<lang>.md`` and ``privacy.<lang>.md``, rendered; raise ContentError if unreadable."""
    paths = [content_dir / f"terms.{language}.md", content_dir / f"privacy.{language}.md"]
    signature = _signature(paths)
    cached = _TERMS_CACHE.get((content_dir, language))
    if signature is not None and cached is not None and cached[0] == signature:
        return cached[1]
    terms = _read_terms(content_dir, language)
    if signature is not None:
        _TERMS_CACHE[(content_dir, language)] = (signature, terms)
    return terms


def _read_terms(content_dir: Path, language: str) -> Terms:
    texts: list[bytes] = []
    for name in (f"terms.{language}.md", f"privacy.{language}.md"):
        try:
            texts.append((content_dir / name).read_bytes())
        except OSError as error:
            raise ContentError(f"{content_dir / name}: {error.strerror or error}") from error
    digest = hashlib.sha256(texts[0] + b"\0" + texts[1]).hexdigest()[:12]
    return Terms(
        language=language,
        terms_html=render_markdown(texts[0].decode("utf-8", errors="replace")),
        privacy_html=render_markdown(texts[1].decode("utf-8", errors="replace")),
        version=digest,
    )


@dataclass(frozen=True)
class Tile:
    """One announcement, activity or merchant's offer, in both languages."""

    kind: str
    title: dict[str, str]
    text: dict[str, str]
    url: dict[str, str]
    start: dt.date | None = None
    end: dt.date | None = None
    # Tiles edited in the console: their id, and a window in epoch seconds
    # (start included, end excluded) that the town typed in its local time.
    id: str = ""
    starts_at: float | None = None
    ends_at: float | None = None

    def shown_on(self, day: dt.date) -> bool:
        """True when ``day`` is inside the tile's display window (both ends included)."""
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)

    def shown(self, day: dt.date, now: float) -> bool:
        """True when the tile is to be shown on ``day`` at ``now`` (both windows)."""
        return (self.shown_on(day) and (self.starts_at is None or self.starts_at <= now)
                and (self.ends_at is None or now < self.ends_at))


class TilesError(ValueError):
    """tiles.toml does not describe tiles; the message says where."""


def _as_date(value: object, where: str) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    raise TilesError(f"{where}: expected a date such as 2026-12-24")


def parse_tiles(data: dict[str, object]) -> list[Tile]:
    """Validate a decoded tiles.toml (``[[tile]]`` tables); raise TilesError on any problem."""
    unknown = set(data) - {"tile"}
    if unknown:
        raise TilesError(f"unknown key {sorted(unknown)[0]!r}, expected only [[tile]] tables")
    items = data.get("tile", [])
    if not isinstance(items, list):
        raise TilesError("'tile' must be an array of tables ([[tile]])")
    tiles = []
    for number, item in enumerate(items, 1):
        where = f"tile {number}"
        if not isinstance(item, dict):
            raise TilesError(f"{where}: expected a table")
        kind, fields = _tile_fields(item, where, {"start", "end"})
        start = _as_date(item.get("start"), f"{where}: start")
        end = _as_date(item.get("end"), f"{where}: end")
        tiles.append(Tile(kind=kind, title=fields["title"], text=fields["text"],
                          url=fields["url"], start=start, end=end))
    return tiles


_TEXT_KEYS = {f"{k}_{lang}" for k in ("title", "text", "url") for lang in LANGUAGES}
TILE_TEXT_MAX = 500
_URL_RE = re.compile(r"^https?://[^\s\\]+$")


def _tile_fields(item: dict[str, object], where: str,
                 extra_keys: set[str]) -> tuple[str, dict[str, dict[str, str]]]:
    """A tile's kind and its texts by field and language; TilesError on any problem."""
    extra = set(item) - _TEXT_KEYS - extra_keys - {"kind"}
    if extra:
        raise TilesError(f"{where}: unknown key {sorted(extra)[0]!r}")
    kind = item.get("kind")
    if kind not in TILE_KINDS:
        raise TilesError(f"{where}: kind must be one of {', '.join(TILE_KINDS)}")
    fields: dict[str, dict[str, str]] = {"title": {}, "text": {}, "url": {}}
    for key, per_language in fields.items():
        for lang in LANGUAGES:
            value = item.get(f"{key}_{lang}", "")
            if not isinstance(value, str) or len(value) > TILE_TEXT_MAX:
                raise TilesError(f"{where}: {key}_{lang} must be text "
                                 f"({TILE_TEXT_MAX} characters at most)")
            if key == "url" and value and not _URL_RE.match(value):
                raise TilesError(f"{where}: {key}_{lang} must be an http(s):// address")
            per_language[lang] = value
    if not fields["title"]["fr"] or not fields["title"]["en"]:
        raise TilesError(f"{where}: title_fr and title_en are required")
    return str(kind), fields


# What the console stores with an edited tile besides its kind and texts.
EDITED_KEYS = {"starts_at", "ends_at", "created_at", "updated_at", "by"}


def parse_edited_tile(tile_id: str, text: str) -> Tile:
    """A tile edited in the console, from its JSON in Redis; TilesError on any problem."""
    where = f"edited tile {tile_id}"
    try:
        item = json.loads(text)
    except (ValueError, RecursionError):
        raise TilesError(f"{where}: not JSON") from None
    if not isinstance(item, dict):
        raise TilesError(f"{where}: expected a JSON object")
    kind, fields = _tile_fields(item, where, EDITED_KEYS)
    window: list[float | None] = []
    for key in ("starts_at", "ends_at"):
        value = item.get(key)
        moment = read_epoch(value)
        if value is not None and moment is None:
            raise TilesError(f"{where}: {key} must be a time in seconds (1970 to 2100) or null")
        window.append(moment)
    return Tile(kind=kind, title=fields["title"], text=fields["text"], url=fields["url"],
                id=tile_id, starts_at=window[0], ends_at=window[1])


def edited_tiles(store: Store) -> list[Tile]:
    """Every tile edited in the console (any window), announcements first, newest first.

    Read again only when the content version changed; a malformed entry is left
    out with a warning. StoreError when Redis fails.
    """
    version = store.content_version()
    if version is None:
        return []
    cached = _EDITED_CACHE.get(version)
    if cached is not None:
        return cached
    # The version and the tiles in one step: what is cached is what that version names.
    version, raw = store.content_snapshot()
    tiles: list[tuple[int, float, Tile]] = []
    for tile_id, text in raw.items():
        try:
            tile = parse_edited_tile(tile_id, text)
            created = json.loads(text).get("created_at", 0)
        except TilesError as error:
            log.warning("edited tile not shown: problem=%s", error)
            continue
        order = -(read_epoch(created) or 0.0)
        tiles.append((TILE_KINDS.index(tile.kind), order, tile))
    result = [tile for _kind, _order, tile in sorted(tiles, key=lambda t: t[:2])]
    if version is not None:
        _EDITED_CACHE.clear()
        _EDITED_CACHE[version] = result
    return result


def load_tiles(content_dir: Path, today: dt.date, *, store: Store | None = None,
               now: float | None = None) -> list[Tile]:
    """The tiles to show today (at ``now``): the console's from ``store``, then the file's.

    An absent file means none, an invalid one logs a warning; Redis failing
    logs a warning and leaves the file's tiles.
    """
    path = content_dir / "tiles.toml"
    signature = _signature([path])
    cached = _TILES_CACHE.get(content_dir)
    if signature is not None and cached is not None and cached[0] == signature:
        tiles = cached[1]
    else:
        tiles = _read_tiles(path)
        if signature is not None:
            _TILES_CACHE[content_dir] = (signature, tiles)
    edited: list[Tile] = []
    if store is not None:
        try:
            edited = edited_tiles(store)
        except StoreError as error:
            log.warning("edited tiles not shown: problem=%s", error)
    moment = time.time() if now is None else now
    return [tile for tile in edited + tiles if tile.shown(today, moment)]


def _read_tiles(path: Path) -> list[Tile]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
        tiles = parse_tiles(data)
    except FileNotFoundError:
        return []
    except (OSError, ValueError, RecursionError) as error:
        # ValueError: TOMLDecodeError, TilesError, and bytes that are not UTF-8 (a file
        # saved as Latin-1), which tomllib lets through; RecursionError: arrays nested deep.
        # The page must still render: the tiles are extra, the terms are what matter.
        log.warning("tiles not shown: path=%s problem=%s", path, error)
        return []
    return tiles
