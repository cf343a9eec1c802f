"""Why a resident's session ended, and when they may reconnect, in their language.

netctl writes an end record (``Store.note_ended``) when a session ends; the
portal reads it for the requesting address while that address has no live
session, and shows a banner. Times are shown in the town's zone
(``[gateway] timezone``, else the host's). The record is read tolerantly: a
field that is missing or malformed is left out of the wording, never an error.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask_babel import get_locale, gettext  # type: ignore[import-untyped]

from parvis.core.sessions import EndReason

log = logging.getLogger(__name__)

# Epoch seconds accepted from a record (to 2100-01-01): beyond, a time is nonsense.
_MAX_EPOCH = 4_102_444_800.0
_MONTHS = {
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
           "septembre", "octobre", "novembre", "décembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}


@dataclass(frozen=True)
class Ended:
    """An end record as netctl wrote it (see ``Keys.ended``), with safe defaults."""

    reason: str
    ended_at: float = 0.0
    reconnect_at: float | None = None  # None: may reconnect now
    plan: str = ""
    quota_bytes: int = 0
    hard_timeout_s: int = 0
    idle_timeout_s: int = 0

    def waiting(self, now: float) -> bool:
        """True while the resident may not reconnect yet."""
        return self.reconnect_at is not None and self.reconnect_at > now


def parse_ended(info: Mapping[str, Any] | None) -> Ended | None:
    """The record in ``info``, or None when there is none or it has no reason."""
    if not info or not isinstance(info.get("reason"), str) or not info["reason"]:
        return None
    plan = info.get("plan")
    return Ended(reason=info["reason"][:64], ended_at=read_epoch(info.get("ended_at")) or 0.0,
                 reconnect_at=read_epoch(info.get("reconnect_at")),
                 plan=plan[:64] if isinstance(plan, str) else "",
                 quota_bytes=_count(info.get("quota_bytes")),
                 hard_timeout_s=_count(info.get("hard_timeout_s")),
                 idle_timeout_s=_count(info.get("idle_timeout_s")))


def read_epoch(value: object) -> float | None:
    """``value`` as epoch seconds if it is a plausible time (finite, 1970 to 2100), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) and 0 <= number < _MAX_EPOCH else None


def _count(value: object) -> int:
    # Beyond 64 bits a count is nonsense, and the wording's float arithmetic would overflow.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        return 0
    return value


# --- the town's clock ---------------------------------------------------------------------


def town_zone(name: str | None) -> dt.tzinfo | None:
    """The zone called ``name``; None (the host's zone) for None or an unknown name."""
    if not name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        # The configuration checks the name at start; tzdata changed since.
        log.warning("time zone unknown, using the host's: timezone=%s", name)
        return None


def local_time(epoch: float, zone: dt.tzinfo | None) -> dt.datetime:
    """Wall-clock time at ``epoch`` in ``zone`` (None: the host's zone, naive)."""
    return dt.datetime.fromtimestamp(epoch, zone) if zone else dt.datetime.fromtimestamp(epoch)


def next_midnight(now: float, zone: dt.tzinfo | None) -> float:
    """The epoch of the next local midnight after ``now`` (when daily quotas start over)."""
    tomorrow = local_time(now, zone).date() + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(0), tzinfo=zone).timestamp()


# --- wording helpers, one spelling per language (no I/O) -----------------------------------


def clock_text(moment: dt.datetime, language: str) -> str:
    """``14 h 30`` (Québec French) or ``2:30 p.m.`` (Canadian English)."""
    if language == "fr":
        return f"{moment.hour} h" if moment.minute == 0 else f"{moment.hour} h {moment.minute:02d}"
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d} {'a.m.' if moment.hour < 12 else 'p.m.'}"


def date_text(moment: dt.datetime, language: str) -> str:
    """``28 novembre`` or ``November 28``."""
    month = _MONTHS["fr" if language == "fr" else "en"][moment.month - 1]
    day = "1er" if language == "fr" and moment.day == 1 else str(moment.day)
    return f"{day} {month}" if language == "fr" else f"{month} {moment.day}"


def duration_text(seconds: int, language: str) -> str:
    """``4 h``, ``45 min``; ``1 h 30`` in French, ``1 h 30 min`` in English."""
    minutes = max(1, round(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    if not minutes:
        return f"{hours} h"
    return f"{hours} h {minutes:02d}" if language == "fr" else f"{hours} h {minutes} min"


def size_text(count: int, language: str) -> str:
    """``2 Go`` / ``2 GB``, ``1,5 Go`` / ``1.5 GB`` (SI units, as plans are written)."""
    units = ("o", "ko", "Mo", "Go", "To") if language == "fr" else ("B", "kB", "MB", "GB", "TB")
    value, unit = float(count), 0
    while value >= 1000 and unit < len(units) - 1:
        value, unit = value / 1000, unit + 1
    text = f"{value:.1f}".rstrip("0").rstrip(".") if unit else str(count)
    return f"{text.replace('.', ',') if language == 'fr' else text} {units[unit]}"


# --- sentences in the request's language (flask_babel) -------------------------------------


def _language() -> str:
    language = str(get_locale() or "fr")
    return language if language in ("fr", "en") else "fr"


def reconnect_sentence(reconnect_at: float | None, now: float, zone: dt.tzinfo | None) -> str:
    """"You can reconnect now." or when, in the town's local time."""
    if reconnect_at is None or reconnect_at <= now:
        return str(gettext("You can reconnect now."))
    language = _language()
    when, today = local_time(reconnect_at, zone), local_time(now, zone).date()
    days = (when.date() - today).days
    if days == 1 and when.hour == 0 and when.minute == 0:
        return str(gettext("You can reconnect at midnight."))
    time = clock_text(when, language)
    if days == 0:
        text = gettext("You can reconnect at %(time)s.", time=time)
    elif days == 1:
        text = gettext("You can reconnect tomorrow at %(time)s.", time=time)
    else:
        text = gettext("You can reconnect on %(date)s at %(time)s.",
                       date=date_text(when, language), time=time)
    # "at 5:30 p.m." ends the sentence: its period is the sentence's.
    return str(text).replace("m..", "m.")


def _reason_text(ended: Ended, language: str) -> tuple[str, str]:
    """The banner's title and first sentence for the end's reason."""
    reason = ended.reason
    if reason == EndReason.SESSION_TIMEOUT:
        title = gettext("Time limit reached")
        if ended.hard_timeout_s:
            text = gettext("Your %(duration)s session has ended.",
                           duration=duration_text(ended.hard_timeout_s, language))
        else:
            text = gettext("Your session has reached its time limit.")
    elif reason == EndReason.IDLE_TIMEOUT:
        title = gettext("Session ended after inactivity")
        if ended.idle_timeout_s:
            text = gettext("Your session ended after %(duration)s without activity.",
                           duration=duration_text(ended.idle_timeout_s, language))
        else:
            text = gettext("Your session ended because the device was inactive.")
    elif reason == EndReason.QUOTA_EXCEEDED:
        title = gettext("Daily data limit reached")
        if ended.quota_bytes:
            text = gettext("This device has used its %(amount)s of data for today.",
                           amount=size_text(ended.quota_bytes, language))
        else:
            text = gettext("This device has used all of its data for today.")
    elif reason == EndReason.ADMIN_RESET:
        title = gettext("Session ended")
        text = gettext("Your session was ended by the network administrator.")
    elif reason == EndReason.LOST_CARRIER:
        title = gettext("Device disconnected")
        text = gettext("Your session ended because your device left the Wi-Fi network.")
    elif reason == EndReason.USER_REQUEST:
        title = gettext("Session ended")
        text = gettext("Your session ended when your device disconnected from the Wi-Fi.")
    else:
        title = gettext("Session ended")
        text = gettext("Your session has ended.")
    return str(title), str(text)


def banner(ended: Ended, now: float, zone: dt.tzinfo | None) -> dict[str, Any]:
    """What the pages show: ``title``, ``text``, ``reconnect`` and ``waiting``."""
    title, text = _reason_text(ended, _language())
    return {"title": title, "text": text, "waiting": ended.waiting(now),
            "reason": ended.reason,
            "reconnect": reconnect_sentence(ended.reconnect_at, now, zone)}


class Localized:
    """A value worded at the moment it is shown (an error page shows both languages)."""

    def __init__(self, render: Callable[[], str]) -> None:
        self._render = render

    def __str__(self) -> str:
        return self._render()
