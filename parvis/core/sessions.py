"""Client sessions on a gateway: what they hold, how their bytes are counted, when they end.

Pure domain logic: no Redis, no nftables. netctl owns the sessions of its
gateway; the store adapter persists them as JSON and the nft adapter reads
the kernel counters that :func:`account` folds in.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, NamedTuple


class EndReason(StrEnum):
    """Why a session ended, in RADIUS Acct-Terminate-Cause words."""

    USER_REQUEST = "User-Request"
    IDLE_TIMEOUT = "Idle-Timeout"
    SESSION_TIMEOUT = "Session-Timeout"
    ADMIN_RESET = "Admin-Reset"
    LOST_CARRIER = "Lost-Carrier"
    # Not in RFC 2866's list, but the word the issue and the reports use; RADIUS
    # servers that only know the standard causes read it as a vendor cause.
    QUOTA_EXCEEDED = "Quota-Exceeded"


class ClientSet(StrEnum):
    """The nftables sets that hold authorised clients, by direction and family.

    Upstream sets are keyed by (address, MAC) so that a spoofed address with
    another MAC does not match; downstream sets by address, because the
    destination MAC is not known yet when a packet is forwarded to the LAN.
    Each element carries its own counter and the session's hard timeout.
    """

    UP4 = "clients4_up"
    DOWN4 = "clients4_down"
    UP6 = "clients6_up"
    DOWN6 = "clients6_down"

    @property
    def upstream(self) -> bool:
        return self in (ClientSet.UP4, ClientSet.UP6)


class Element(NamedTuple):
    """One element of a client set: an address, and the MAC for upstream sets.

    A named tuple rather than a dataclass: the sweep hashes tens of thousands
    of these each pass, and tuple hashing is done in C.
    """

    set: ClientSet
    ip: str
    mac: str | None = None

    @property
    def key(self) -> str:
        """A stable text key, used to remember this element's last counter reading."""
        return f"{self.set.value} {self.ip}" + (f" {self.mac}" if self.mac else "")


class Counter(NamedTuple):
    """A kernel counter reading."""

    packets: int = 0
    bytes: int = 0


@dataclass(slots=True)
class Session:
    """An authorised device on one gateway.

    Slotted: a gateway holds ten thousand of these, and a per-instance dict of
    some thirty attributes would double their memory.
    """

    mac: str
    ipv4: str
    started_at: float
    expires_at: float
    idle_timeout_s: int
    last_activity_at: float
    ipv6: list[str] = field(default_factory=list)
    bytes_up: int = 0
    bytes_down: int = 0
    packets_up: int = 0
    packets_down: int = 0
    authorized_by: str = ""
    terms_version: str = ""
    via: str = ""
    code_batch: str = ""
    # Unique for each session: the Acct-Session-Id of its accounting records.
    session_id: str = ""
    # The plan it was granted, and its current rates in bits/s (0 = not shaped).
    plan: str = ""
    down_bps: int = 0
    up_bps: int = 0
    # Its HTB class minor on the gateway's qdiscs (0 = no class of its own).
    class_minor: int = 0
    # Daily data quota in bytes (0 = none). Usage is counted per local day: bytes
    # this MAC used earlier today in sessions that ended, plus this session's
    # bytes since the day began (quota_offset is its total at that moment).
    quota_bytes: int = 0
    quota_day: str = ""
    quota_used_before: int = 0
    quota_offset: int = 0
    # Where the lifecycle stands (parvis.core.lifecycle.State) and when the next
    # interim accounting record is due.
    state: str = "active"
    state_since: float = 0.0
    next_interim_at: float = 0.0
    # Set once a DHCP lease was seen for (ipv4, mac): from then on, the lease
    # going away (release or expiry) ends the session.
    lease_expires_at: float = 0.0
    # The last counter reading taken from each kernel element, by Element.key:
    # what lets a restarted netctl count only the bytes it has not yet counted.
    kernel: dict[str, list[int]] = field(default_factory=dict)
    # Elements and their keys, built once per address change rather than every
    # sweep (the sweep walks every session every few seconds). Not persisted.
    # The check is by identity: ``ipv6`` is always replaced, never changed in place.
    _cache: tuple[str, list[str], list[tuple[Element, str]]] | None = field(
        default=None, repr=False, compare=False)

    def keyed_elements(self) -> list[tuple[Element, str]]:
        """Every kernel element this session needs, each with its Element.key."""
        cache = self._cache
        if cache is not None and cache[0] is self.ipv4 and cache[1] is self.ipv6:
            return cache[2]
        elements = [Element(ClientSet.UP4, self.ipv4, self.mac),
                    Element(ClientSet.DOWN4, self.ipv4)]
        for ip6 in self.ipv6:
            elements.append(Element(ClientSet.UP6, ip6, self.mac))
            elements.append(Element(ClientSet.DOWN6, ip6))
        keyed = [(e, e.key) for e in elements]
        self._cache = (self.ipv4, self.ipv6, keyed)
        return keyed

    def elements(self) -> list[Element]:
        """Every kernel element this session needs."""
        return [element for element, _ in self.keyed_elements()]

    def remaining_s(self, now: float) -> int:
        """Whole seconds left before the hard timeout (at least 1, for the kernel)."""
        return max(1, math.ceil(self.expires_at - now))

    def to_json(self) -> str:
        """Serialise for the store."""
        body = {name: getattr(self, name) for name in _PERSISTED}
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Session:
        """Read what :meth:`to_json` wrote."""
        body: dict[str, Any] = json.loads(text)
        return cls(**body)


# Every field but the element cache, in declaration order: what to_json writes.
_PERSISTED = tuple(f.name for f in fields(Session) if f.name != "_cache")


def account(session: Session, readings: dict[Element, Counter], now: float,
            missing: list[Element] | None = None) -> bool:
    """Fold the kernel's counter readings for this session's elements into its totals.

    A reading lower than the one remembered means the element was re-created
    (its counter restarted from zero), so the whole reading is new. Returns
    True when anything changed. Upstream bytes count as activity. Elements
    with no reading are appended to ``missing`` when it is given.
    """
    changed = False
    for element, key in session.keyed_elements():
        reading = readings.get(element)
        if reading is None:
            if missing is not None:
                missing.append(element)
            continue
        last = session.kernel.get(key)
        if last is None or reading.bytes < last[1] or reading.packets < last[0]:
            delta = reading
        else:
            delta = Counter(reading.packets - last[0], reading.bytes - last[1])
        if last is None or delta.packets or delta.bytes:
            session.kernel[key] = [reading.packets, reading.bytes]
            changed = True
        if not (delta.packets or delta.bytes):
            continue
        if element.set.upstream:
            session.packets_up += delta.packets
            session.bytes_up += delta.bytes
            session.last_activity_at = now
        else:
            session.packets_down += delta.packets
            session.bytes_down += delta.bytes
    return changed


def total_bytes(session: Session) -> int:
    """Bytes both ways over the whole session."""
    return session.bytes_up + session.bytes_down


def quota_used(session: Session) -> int:
    """Bytes this device has used today, counted against its daily quota."""
    return session.quota_used_before + total_bytes(session) - session.quota_offset


def quota_left(session: Session) -> int | None:
    """Bytes left of today's quota, or None when the session has no quota."""
    if not session.quota_bytes:
        return None
    return max(0, session.quota_bytes - quota_used(session))


def roll_quota_day(session: Session, day: str) -> bool:
    """Start a new quota day for a session that runs past midnight; True if it did."""
    if session.quota_day == day:
        return False
    session.quota_day = day
    session.quota_used_before = 0
    session.quota_offset = total_bytes(session)
    return True


def forget_element(session: Session, element: Element) -> None:
    """Drop the remembered reading of an element that is being (re-)created at zero."""
    session.kernel.pop(element.key, None)


def shift_times(session: Session, delta_s: float) -> None:
    """Move a session's clock readings by ``delta_s`` (after the wall clock was stepped)."""
    session.started_at += delta_s
    session.expires_at += delta_s
    session.last_activity_at += delta_s


def end_reason_due(session: Session, now: float) -> EndReason | None:
    """The reason this session must end now, or None if it goes on."""
    if now >= session.expires_at:
        return EndReason.SESSION_TIMEOUT
    if session.idle_timeout_s and now - session.last_activity_at >= session.idle_timeout_s:
        return EndReason.IDLE_TIMEOUT
    return None
