"""MAC and IP address parsing: one canonical text form for each, so keys always match."""

from __future__ import annotations

import ipaddress
import re

_MAC_RE = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressError(ValueError):
    """A MAC or IP address that cannot be understood."""


def parse_mac(text: object) -> str:
    """Return the MAC in lower-case colon form, or raise AddressError.

    Accepts ``aa:bb:cc:dd:ee:ff``, ``AA-BB-…`` and ``aabbccddeeff``. Refuses
    broadcast and multicast addresses: no real client has one.
    """
    if not isinstance(text, str):
        raise AddressError(f"{text!r} is not a MAC address")
    lowered = text.strip().lower()
    if not _MAC_RE.match(lowered):
        raise AddressError(f"{text!r} is not a MAC address (expected aa:bb:cc:dd:ee:ff)")
    digits = lowered.replace(":", "").replace("-", "")
    if int(digits[0:2], 16) & 1:
        raise AddressError(f"{text!r} is a multicast or broadcast MAC address, not a device")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def parse_ip(text: object) -> IPAddress:
    """Return the IPv4 or IPv6 address, or raise AddressError."""
    if not isinstance(text, str):
        raise AddressError(f"{text!r} is not an IP address")
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise AddressError(f"{text!r} is not an IP address") from None


def parse_client_ip(text: object) -> IPAddress:
    """Return an address a LAN client can have (unicast, not loopback), or raise AddressError."""
    address = parse_ip(text)
    if (
        address.is_multicast
        or address.is_loopback
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv4Address) and address == ipaddress.IPv4Address(
            "255.255.255.255"))
    ):
        raise AddressError(f"{text!r} cannot be a client's address")
    return address


def looks_like_mac(text: str) -> bool:
    """True when ``text`` parses as a MAC address (used to tell ``deauth MAC`` from an IP)."""
    try:
        parse_mac(text)
    except AddressError:
        return False
    return True
