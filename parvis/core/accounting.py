"""Accounting records of sessions, in RADIUS words: start, interim and stop.

Pure domain logic: no Redis, no files. netctl builds a record when a session
starts, every interim interval while it lasts, and when it ends; the spool
(netctl/spool.py) keeps it on disk until the store (parvis/store.py) has
written it to the gateway's accounting stream, whose entry ids are the
records' own ids. Totals are cumulative over the session, as in RADIUS
interim updates; ``up`` is from the client (Acct-Input), ``down`` to it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from parvis.core.sessions import EndReason, Session

# Raw records name MAC and IP addresses (personal data): they are kept this long
# ([accounting] retention_days), reports keep only aggregates.
RETENTION_S = 30 * 24 * 3600

_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_U64 = 2**64 - 1


class RecordType(StrEnum):
    """What a record says about its session (RADIUS Acct-Status-Type)."""

    START = "start"
    INTERIM = "interim"
    STOP = "stop"


def parse_id(record_id: str) -> tuple[int, int]:
    """The (milliseconds, sequence) of a record id ``"<ms>-<seq>"``; ValueError if malformed."""
    match = _ID.fullmatch(record_id)
    if match is None:
        raise ValueError(f"record id {record_id!r}: expected '<ms>-<seq>'")
    ms, seq = int(match[1]), int(match[2])
    if ms > _U64 or seq > _U64 or (ms, seq) == (0, 0):
        raise ValueError(f"record id {record_id!r}: out of range (above 0-0, 64-bit parts)")
    return ms, seq


def compare_ids(a: str, b: str) -> int:
    """-1, 0 or 1 as record id ``a`` sorts before, with or after ``b`` (as Redis sorts them)."""
    pa, pb = parse_id(a), parse_id(b)
    return (pa > pb) - (pa < pb)


class RecordIds:
    """Hands out strictly increasing record ids ``"<ms>-<seq>"`` from a clock.

    The milliseconds never go back, even when the clock does: a clock stepped
    back keeps the last millisecond and counts up its sequence, as does a burst
    within one millisecond. Redis refuses an entry id not above its stream's
    top, which is what makes a replay detectable (netctl/spool.py): ids must
    therefore keep increasing across restarts too, see :meth:`advance_past`.
    """

    def __init__(self, after: str | None = None) -> None:
        self._last = (0, 0)
        if after is not None:
            self.advance_past(after)

    @property
    def last(self) -> str | None:
        """The last id handed out or advanced past, or None."""
        return None if self._last == (0, 0) else f"{self._last[0]}-{self._last[1]}"

    def advance_past(self, record_id: str | None) -> None:
        """Make every later id sort after ``record_id`` (the stream's and the spool's last)."""
        if record_id is not None:
            self._last = max(self._last, parse_id(record_id))

    def next_id(self, now: float) -> str:
        """A new id above every earlier one, from ``now`` (epoch seconds)."""
        ms = int(now * 1000)
        last_ms, last_seq = self._last
        self._last = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        return f"{self._last[0]}-{self._last[1]}"


@dataclass(frozen=True)
class Record:
    """One accounting record of one session (a RADIUS Accounting-Request, in effect)."""

    id: str
    type: RecordType
    session_id: str
    gateway: str
    mac: str
    ip: str
    # The IPv6 addresses the session has used so far: unlike IPv4 they are not
    # translated, so the outside world sees these very addresses.
    ipv6: tuple[str, ...]
    plan: str
    via: str
    code_batch: str
    terms_version: str
    started_at: float
    at: float
    duration_s: int
    bytes_up: int
    bytes_down: int
    packets_up: int
    packets_down: int
    # The EndReason value of a stop record; "" for start and interim records.
    cause: str = ""

    def __post_init__(self) -> None:
        parse_id(self.id)

    def to_fields(self) -> dict[str, str]:
        """The fields of its stream entry, all strings (the id is the entry's id)."""
        out: dict[str, str] = {}
        for name in _FIELD_NAMES:
            value = getattr(self, name)
            if isinstance(value, tuple):
                out[name] = " ".join(value)
            elif isinstance(value, float):
                out[name] = repr(value)
            else:
                out[name] = str(value)
        return out

    @classmethod
    def from_fields(cls, record_id: str, entry: dict[str, str]) -> Record:
        """Read what :meth:`to_fields` wrote; ValueError naming the field that is wrong.

        Fields it does not know are ignored: a newer writer may add some.
        """
        values: dict[str, Any] = {"id": record_id}
        for name in _FIELD_NAMES:
            text = entry.get(name, "" if name == "cause" else None)
            if not isinstance(text, str):
                what = "is missing" if text is None else "is not a string"
                raise ValueError(f"record {record_id}: field {name!r} {what}")
            try:
                values[name] = _FIELD_PARSERS.get(name, str)(text)
            except ValueError as error:
                raise ValueError(f"record {record_id}: field {name!r}: {error}") from None
        return cls(**values)

    def to_json(self) -> str:
        """One line of JSON for the spool (the id and the entry's fields)."""
        return json.dumps({"id": self.id, **self.to_fields()}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Record:
        """Read what :meth:`to_json` wrote; ValueError if it is not a record."""
        try:
            body = json.loads(text)
        except RecursionError:  # a garbled line of nested brackets
            raise ValueError("not an accounting record (nested too deeply)") from None
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise ValueError("not an accounting record")
        record_id = body.pop("id")
        return cls.from_fields(record_id, body)


# Every field of an entry, in order (the id is the entry's id, not a field).
_FIELD_NAMES = tuple(spec.name for spec in fields(Record) if spec.name != "id")


def _tuple(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


_FIELD_PARSERS: dict[str, Any] = {
    "type": RecordType, "ipv6": _tuple, "started_at": float, "at": float,
    "duration_s": _count, "bytes_up": _count, "bytes_down": _count,
    "packets_up": _count, "packets_down": _count,
}


def _record(kind: RecordType, session: Session, gateway_id: str, record_id: str, now: float,
            cause: str = "") -> Record:
    return Record(
        id=record_id, type=kind, session_id=session.session_id, gateway=gateway_id,
        mac=session.mac, ip=session.ipv4, ipv6=tuple(session.ipv6), plan=session.plan,
        via=session.via, code_batch=session.code_batch, terms_version=session.terms_version,
        started_at=session.started_at, at=now,
        duration_s=max(0, int(now - session.started_at)),
        bytes_up=session.bytes_up, bytes_down=session.bytes_down,
        packets_up=session.packets_up, packets_down=session.packets_down, cause=cause)


def start_record(session: Session, gateway_id: str, record_id: str, now: float) -> Record:
    """The record of a session that starts now."""
    return _record(RecordType.START, session, gateway_id, record_id, now)


def interim_record(session: Session, gateway_id: str, record_id: str, now: float) -> Record:
    """An interim record: the session's totals so far."""
    return _record(RecordType.INTERIM, session, gateway_id, record_id, now)


def stop_record(session: Session, reason: EndReason, gateway_id: str, record_id: str,
                now: float) -> Record:
    """The record of a session that ends now, for ``reason``, with its final totals."""
    return _record(RecordType.STOP, session, gateway_id, record_id, now, cause=reason.value)


def interim_due(session: Session, now: float, interval_s: float) -> bool:
    """True when an interim record of this session is due (never if ``interval_s`` <= 0)."""
    return interval_s > 0 and now >= session.next_interim_at


def schedule_next_interim(session: Session, now: float, interval_s: float) -> None:
    """Set when the session's next interim record is due, ``interval_s`` after this one.

    A sweep that runs a little late keeps the cadence (the next one is due one
    interval after the one just due, not after now); after a longer gap (netctl
    was stopped) the cadence restarts from now rather than catching up in a burst.
    """
    due = session.next_interim_at
    base = due if 0 < due <= now < due + interval_s else now
    session.next_interim_at = base + interval_s
