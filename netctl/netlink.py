"""Netlink adapter (pyroute2): interfaces and the neighbour table.

A small typed wrapper, so the rest of netctl never sees pyroute2's untyped
keyword API. Every call opens its socket in the current network namespace.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

from pyroute2 import IPRoute

from parvis.core.addresses import AddressError, parse_mac

log = logging.getLogger(__name__)

# Neighbour states that mean "this MAC really answered for this address lately".
_NUD_FAILED = 0x20
_NUD_INCOMPLETE = 0x01
_NUD_NOARP = 0x40


class NetlinkError(Exception):
    """A netlink request failed; the message says which."""


def interface_index(name: str) -> int | None:
    """The index of interface ``name`` in this namespace, or None if there is none."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _neighbour_pairs(ifname: str, family: int) -> list[tuple[str, str]]:
    """(address, MAC) of usable neighbours, the most recently confirmed or used first."""
    index = interface_index(ifname)
    if index is None:
        raise NetlinkError(f"no interface {ifname!r}")
    pairs: list[tuple[int, str, str]] = []
    try:
        with IPRoute() as ipr:
            for neighbour in ipr.get_neighbours(family=family, ifindex=index):
                if neighbour["state"] & (_NUD_FAILED | _NUD_INCOMPLETE | _NUD_NOARP):
                    continue
                dst = neighbour.get_attr("NDA_DST")
                lladdr = neighbour.get_attr("NDA_LLADDR")
                if not dst or not lladdr:
                    continue
                info = neighbour.get_attr("NDA_CACHEINFO") or {}
                # Ticks since the entry was last confirmed or used: smaller is fresher.
                age = min(info.get("ndm_confirmed", 1 << 62), info.get("ndm_used", 1 << 62))
                try:
                    pairs.append((age, str(ipaddress.ip_address(dst)), parse_mac(lladdr)))
                except (ValueError, AddressError):
                    continue
    except OSError as error:
        raise NetlinkError(f"reading the neighbour table of {ifname}: {error}") from error
    pairs.sort()
    return [(address, mac) for _age, address, mac in pairs]


def ipv4_neighbours(ifname: str) -> dict[str, str]:
    """IPv4 address -> MAC for every reachable neighbour on ``ifname``."""
    return dict(_neighbour_pairs(ifname, socket.AF_INET))


def ipv6_neighbours(ifname: str) -> list[tuple[str, str]]:
    """(address, MAC) of every routable IPv6 neighbour on ``ifname``, freshest first."""
    return [
        (address, mac)
        for address, mac in _neighbour_pairs(ifname, socket.AF_INET6)
        if not ipaddress.IPv6Address(address).is_link_local
    ]
