"""Netlink adapter (pyroute2): interfaces, the neighbour table and conntrack.

A small typed wrapper, so the rest of netctl never sees pyroute2's untyped
keyword API. Every call opens its socket in the current network namespace.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable

from pyroute2 import Conntrack, IPRoute
from pyroute2.netlink.exceptions import NetlinkError as _PyrouteNetlinkError
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

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
    index = interface_index(ifname)
    if index is None:
        raise NetlinkError(f"no interface {ifname!r}")
    pairs = []
    try:
        with IPRoute() as ipr:
            for neighbour in ipr.get_neighbours(family=family, ifindex=index):
                if neighbour["state"] & (_NUD_FAILED | _NUD_INCOMPLETE | _NUD_NOARP):
                    continue
                dst = neighbour.get_attr("NDA_DST")
                lladdr = neighbour.get_attr("NDA_LLADDR")
                if not dst or not lladdr:
                    continue
                try:
                    pairs.append((str(ipaddress.ip_address(dst)), parse_mac(lladdr)))
                except (ValueError, AddressError):
                    continue
    except OSError as error:
        raise NetlinkError(f"reading the neighbour table of {ifname}: {error}") from error
    return pairs


def ipv4_neighbours(ifname: str) -> dict[str, str]:
    """IPv4 address -> MAC for every reachable neighbour on ``ifname``."""
    return dict(_neighbour_pairs(ifname, socket.AF_INET))


def ipv6_neighbours(ifname: str) -> list[tuple[str, str]]:
    """(address, MAC) of every routable IPv6 neighbour on ``ifname`` (no link-local)."""
    return [
        (address, mac)
        for address, mac in _neighbour_pairs(ifname, socket.AF_INET6)
        if not ipaddress.IPv6Address(address).is_link_local
    ]


def forget_connections(addresses: Iterable[str]) -> int:
    """Delete every conntrack entry whose original source is one of ``addresses``.

    Without this a deauthorised client's established connections would keep
    their replies flowing until they time out. Returns how many were deleted.
    """
    wanted = {str(ipaddress.ip_address(a)) for a in addresses}
    if not wanted:
        return 0
    deleted = 0
    try:
        with Conntrack() as ct:
            for family in (socket.AF_INET, socket.AF_INET6):
                for entry in list(ct.dump_entries(tuple_orig=NFCTAttrTuple(family=family))):
                    source = getattr(entry.tuple_orig, "saddr", None)
                    if source is None or str(ipaddress.ip_address(source)) not in wanted:
                        continue
                    try:
                        ct.delete(entry)
                        deleted += 1
                    except _PyrouteNetlinkError as error:  # it ended meanwhile: not a failure
                        log.debug("conntrack entry already gone: %s", error)
    except (OSError, _PyrouteNetlinkError) as error:
        raise NetlinkError(f"conntrack: {error}") from error
    return deleted
