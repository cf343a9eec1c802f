"""How the console writes times, durations, sizes and rates (pure functions, no I/O)."""

from __future__ import annotations

import datetime as dt

from portal.ended import duration_text as short_duration
from portal.ended import local_time, size_text

# datetime-local form fields: what browsers send and what we put back in them.
INPUT_FORMAT = "%Y-%m-%dT%H:%M"


def timestamp_text(epoch: float | None, zone: dt.tzinfo | None) -> str:
    """``2026-11-27 14:05`` in the town's zone (the same in both languages); "" for None."""
    if epoch is None:
        return ""
    return local_time(float(epoch), zone).strftime("%Y-%m-%d %H:%M")


def input_value(epoch: float | None, zone: dt.tzinfo | None) -> str:
    """The value of a ``datetime-local`` field for ``epoch``; "" for None."""
    return "" if epoch is None else local_time(float(epoch), zone).strftime(INPUT_FORMAT)


def parse_local(text: str, zone: dt.tzinfo | None) -> float | None:
    """Epoch seconds of a ``datetime-local`` value typed in the town's zone; None if blank.

    ValueError when it is not a date and time. A time that a daylight-saving
    change skips or repeats is read as the clocks showed it before the change.
    """
    text = text.strip()
    if not text:
        return None
    if len(text) > 32:
        raise ValueError("too long")
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        raise ValueError("a local time has no offset")
    if zone is None:
        return moment.timestamp()  # naive: the host's own zone
    return moment.replace(tzinfo=zone).timestamp()


def duration_text(seconds: float, language: str) -> str:
    """``45 min``, ``3 h 05``, ``2 j 4 h`` (``2 d 4 h`` in English)."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    if days:
        hours = rest // 3600
        unit = "j" if language == "fr" else "d"
        return f"{days} {unit} {hours} h" if hours else f"{days} {unit}"
    if seconds < 60:
        return f"{seconds} s"
    return short_duration(seconds, language)


def rate_text(bps: int | None, language: str) -> str:
    """``10 Mbit/s``, ``2,5 Mbit/s`` (French decimal comma); "" for None or 0 (not shaped)."""
    if not bps:
        return ""
    value, unit = float(bps), 0
    units = ("bit/s", "kbit/s", "Mbit/s", "Gbit/s")
    while value >= 1000 and unit < len(units) - 1:
        value, unit = value / 1000, unit + 1
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{text.replace('.', ',') if language == 'fr' else text} {units[unit]}"


def bytes_text(count: int | None, language: str) -> str:
    """``1,5 Go`` / ``1.5 GB``; "" for None."""
    return "" if count is None else size_text(int(count), language)
