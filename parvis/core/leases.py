"""DHCP leases as dnsmasq writes them, and what their changes mean for sessions.

dnsmasq's lease file has one IPv4 lease per line: ``EXPIRY MAC IP HOSTNAME
CLIENT-ID`` (EXPIRY in epoch seconds, 0 for an infinite lease). DHCPv6 leases
follow a ``duid`` line and are not used: sessions are keyed by IPv4.
"""

from __future__ import annotations

from typing import NamedTuple

from parvis.core.addresses import AddressError, parse_mac
from parvis.core.lifecycle import Event
from parvis.core.sessions import Session

# An infinite lease, as a date JSON can hold (2100-01-01).
INFINITE_LEASE = 4_102_444_800.0


class Lease(NamedTuple):
    """One IPv4 lease: the device that holds it, and when it runs out (0 = never)."""

    mac: str
    expires_at: float


def parse_leases(text: str) -> dict[str, Lease]:
    """IPv4 address -> lease, from a dnsmasq lease file; malformed lines are skipped."""
    leases: dict[str, Lease] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] == "duid" or ":" in parts[2]:
            continue
        try:
            expires_at = float(parts[0])
            mac = parse_mac(parts[1])
        except (ValueError, AddressError):
            continue
        leases[parts[2]] = Lease(mac, expires_at)
    return leases


def lease_event(session: Session, lease: Lease | None, now: float) -> Event | None:
    """Follow a session's lease; the event when it went away, else None.

    A session is tied to its lease once the lease was seen: sessions that
    never had one (a device with a fixed address) are not ended by this.
    Updates ``session.lease_expires_at``.
    """
    if lease is not None and lease.mac == session.mac:
        if lease.expires_at and lease.expires_at <= now:
            return Event.LEASE_EXPIRED if session.lease_expires_at else None
        session.lease_expires_at = lease.expires_at or INFINITE_LEASE
        return None
    if not session.lease_expires_at:
        return None
    if lease is not None:  # dnsmasq gave the address to another device
        return Event.ADDRESS_TAKEN
    # Gone before its end: the device released it. Gone after: it ran out.
    return Event.LEASE_RELEASED if now < session.lease_expires_at else Event.LEASE_EXPIRED
