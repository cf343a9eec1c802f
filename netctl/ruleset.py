"""The gateway's nftables table, as pure functions that return libnftables JSON commands.

Nothing here talks to the kernel: :mod:`netctl.nft` sends what these build, one
atomic batch per change. Per-client state lives only in set elements (never in
per-client rules), so the per-packet cost is one hash lookup per direction
whatever the number of clients.

The shape, for the LAN interface ``lan``:

* ``prerouting`` (mangle priority): a blocked MAC is dropped before anything
  else (no DHCP, no DNS, no portal); a trusted MAC, or an (address, MAC) pair
  in ``clients4_up``/``clients6_up``, gets the AUTHORISED mark bit. That
  lookup is also what counts the client's upstream bytes.
* walled garden: ``garden4``/``garden6`` hold the configured CIDRs;
  ``garden_names4``/``garden_names6`` are filled by dnsmasq (``nftset=``) with
  the addresses of the configured names as clients resolve them.
* ``nat_prerouting``: HTTP to the gateway's own addresses always goes to the
  portal (the poster address); unauthorised HTTP to anywhere but the walled
  garden is DNATed to the portal. Nothing else is intercepted.
* ``forward``: from the LAN, authorised or walled garden passes, everything
  else is rejected at once (TCP reset, ICMP admin-prohibited) so devices fail
  fast; to the LAN, only replies to connections that were let out.
* ``input``: from the LAN the gateway answers DHCP, DNS, the portal, ping and
  neighbour discovery; everything else is rejected. Before login, DNS is
  limited per source address (a resolver is a tunnel otherwise): queries by
  packet rate here, answers by bytes in ``postrouting`` (the query's
  connection carries a conntrack mark that says it was made before login).
* ``postrouting``: the ``clients*_down`` lookup counts downstream bytes.
* shaping: ``shape4``/``shape6`` map a shaped client's address to its HTB
  class; ``forward`` sets the priority of forwarded packets from them (by
  destination from the WAN to the LAN, by source the other way), which HTB on
  the egress interface reads as the class: one hash lookup per packet whatever
  the number of clients, no tc filters. The priority survives masquerade, and
  the gateway's own traffic (DNS answers, the portal) is never shaped.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from parvis.core import dnsmasq
from parvis.core.config import Config
from parvis.core.sessions import ClientSet, Element

FAMILY = "inet"
TABLE = "parvis"
AUTHORISED_MARK = 0x00010000  # one bit of the packet mark; the rest is left to others

Json = dict[str, Any]

BLOCKED_MACS = "blocked_macs"
TRUSTED_MACS = "trusted_macs"
GARDEN4 = "garden4"
GARDEN6 = "garden6"
# Filled by the gateway's dnsmasq (nftset=) with the addresses of walled-garden
# names as clients resolve them. netctl never flushes them; each address ages
# out on its own so a name that moves does not stay open for ever.
GARDEN_NAMES4 = dnsmasq.GARDEN_NAMES4
GARDEN_NAMES6 = dnsmasq.GARDEN_NAMES6
GARDEN_NAMES_TIMEOUT_S = 6 * 3600
# DNS before login is a tunnel (iodine and the like): each unauthorised source
# gets this many DNS packets a second (with this burst) and no more. A phone
# joining sends a few dozen at most; a tunnel needs far more.
DNS_METER4 = "dns_meter4"
DNS_METER6 = "dns_meter6"
DNS_RATE_BEFORE_LOGIN = 30
# ...and its answers at most this many bytes a second (burst below): a phone
# resolving the portal and its probes needs a few kilobytes in all; a tunnel
# carries its data in big answers (TXT records, TCP DNS).
DNS_ANSWER_KBYTES_BEFORE_LOGIN = 4
DNS_ANSWER_BURST_KBYTES = 16
DNS_BYTES4 = "dns_bytes4"
DNS_BYTES6 = "dns_bytes6"
# Set on the connection of a DNS query made before login, so that its answers,
# which leave through postrouting where the device's mark is not known, can be
# limited too. One bit of the conntrack mark, as AUTHORISED_MARK is of the packet's.
PRELOGIN_DNS_CTMARK = 0x00020000
SHAPE4 = "shape4"
SHAPE6 = "shape6"
DNS_BURST_BEFORE_LOGIN = 60

_CLIENT_SET_TYPES: dict[ClientSet, list[str] | str] = {
    ClientSet.UP4: ["ipv4_addr", "ether_addr"],
    ClientSet.DOWN4: "ipv4_addr",
    ClientSet.UP6: ["ipv6_addr", "ether_addr"],
    ClientSet.DOWN6: "ipv6_addr",
}

# Chains: name -> (type, hook, priority); None for regular chains.
_BASE_CHAINS: dict[str, tuple[str, str, int]] = {
    "prerouting": ("filter", "prerouting", -150),
    "nat_prerouting": ("nat", "prerouting", -100),
    "forward": ("filter", "forward", 0),
    "input": ("filter", "input", 0),
    "postrouting": ("filter", "postrouting", 0),
    "nat_postrouting": ("nat", "postrouting", 100),
}
_REGULAR_CHAINS = ("lan_out", "lan_in")


# --- expression helpers -------------------------------------------------------------------

def _meta(key: str) -> Json:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> Json:
    return {"payload": {"protocol": protocol, "field": field}}


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _iif(name: str) -> Json:
    return _match(_meta("iifname"), name)


def _oif(name: str) -> Json:
    return _match(_meta("oifname"), name)


def _authorised() -> Json:
    return _match({"&": [_meta("mark"), AUTHORISED_MARK]}, AUTHORISED_MARK)


def _not_authorised() -> Json:
    return _match({"&": [_meta("mark"), AUTHORISED_MARK]}, AUTHORISED_MARK, "!=")


def _set_mark() -> Json:
    return {"mangle": {"key": _meta("mark"), "value": {"|": [_meta("mark"), AUTHORISED_MARK]}}}


def _pair(family: str) -> Json:
    return {"concat": [_payload(family, "saddr"), _payload("ether", "saddr")]}


def _reject_fast() -> list[list[Json]]:
    """Refuse at once: a TCP reset for TCP, ICMP administratively prohibited for the rest."""
    return [
        [_match(_meta("l4proto"), "tcp"), {"reject": {"type": "tcp reset"}}],
        [{"reject": {"type": "icmpx", "expr": "admin-prohibited"}}],
    ]


def _garden_tcp() -> list[Json]:
    return [_match(_payload("tcp", "dport"), {"set": [80, 443]}), ACCEPT]


def _garden_quic() -> list[Json]:
    return [_match(_payload("udp", "dport"), 443), ACCEPT]


ACCEPT: Json = {"accept": None}
DROP: Json = {"drop": None}
RETURN: Json = {"return": None}


# --- the table ---------------------------------------------------------------------------

def rules(config: Config) -> dict[str, list[list[Json]]]:
    """Every rule of every chain, as lists of expressions, for this configuration."""
    lan = config.gateway.lan_interface
    wan = config.gateway.wan_interface
    portal = config.portal
    portal_ports = {"set": sorted({portal.http_port, portal.https_port})}

    nat_prerouting: list[list[Json]] = [
        # The poster address (http://wifi.<town>/ resolves to the gateway) always
        # shows the portal, also to authorised clients.
        [_iif(lan), _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local"),
         _match(_payload("tcp", "dport"), 80), _match(_meta("nfproto"), "ipv4"),
         {"dnat": {"family": "ip", "addr": str(portal.address), "port": portal.http_port}}],
    ]
    if portal.address6 is not None:
        nat_prerouting.append(
            [_iif(lan), _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local"),
             _match(_payload("tcp", "dport"), 80), _match(_meta("nfproto"), "ipv6"),
             {"dnat": {"family": "ip6", "addr": str(portal.address6),
                       "port": portal.http_port}}])
    nat_prerouting += [
        [_iif(lan), _authorised(), RETURN],
        [_iif(lan), _match(_payload("ip", "daddr"), "@" + GARDEN4), RETURN],
        [_iif(lan), _match(_payload("ip6", "daddr"), "@" + GARDEN6), RETURN],
        [_iif(lan), _match(_payload("ip", "daddr"), "@" + GARDEN_NAMES4), RETURN],
        [_iif(lan), _match(_payload("ip6", "daddr"), "@" + GARDEN_NAMES6), RETURN],
        [_iif(lan), _match(_meta("nfproto"), "ipv4"), _match(_payload("tcp", "dport"), 80),
         {"dnat": {"family": "ip", "addr": str(portal.address), "port": portal.http_port}}],
    ]
    if portal.address6 is not None:
        nat_prerouting.append(
            [_iif(lan), _match(_meta("nfproto"), "ipv6"), _match(_payload("tcp", "dport"), 80),
             {"dnat": {"family": "ip6", "addr": str(portal.address6),
                       "port": portal.http_port}}])

    chains: dict[str, list[list[Json]]] = {
        "prerouting": [
            [_iif(lan), _match(_payload("ether", "saddr"), "@" + BLOCKED_MACS), DROP],
            [_iif(lan), _match(_payload("ether", "saddr"), "@" + TRUSTED_MACS), _set_mark()],
            [_iif(lan), _match(_pair("ip"), "@" + ClientSet.UP4.value), _set_mark()],
            [_iif(lan), _match(_pair("ip6"), "@" + ClientSet.UP6.value), _set_mark()],
        ],
        "nat_prerouting": nat_prerouting,
        "forward": [
            # Shaping classifies forwarded traffic only: the gateway's own answers
            # (DNS, the portal) are never held back by a client's rate.
            *([_iif(lan), _oif(wan),
               {"mangle": {"key": _meta("priority"), "value": {"map": {
                   "key": _payload(family, "saddr"), "data": "@" + shape}}}}]
              for family, shape in (("ip", SHAPE4), ("ip6", SHAPE6))),
            *([_iif(wan), _oif(lan),
               {"mangle": {"key": _meta("priority"), "value": {"map": {
                   "key": _payload(family, "daddr"), "data": "@" + shape}}}}]
              for family, shape in (("ip", SHAPE4), ("ip6", SHAPE6))),
            [_iif(lan), {"jump": {"target": "lan_out"}}],
            [_oif(lan), _match({"ct": {"key": "state"}}, ["established", "related"], "in"),
             ACCEPT],
            [_oif(lan), DROP],
        ],
        "lan_out": [
            [_authorised(), ACCEPT],
            # The walled garden is for web pages: HTTP, HTTPS and QUIC only, so a
            # garden address on a shared host or CDN opens nothing else.
            *([_match(_payload(family, "daddr"), "@" + name), *_web()]
              for family, name in (("ip", GARDEN4), ("ip6", GARDEN6),
                                   ("ip", GARDEN_NAMES4), ("ip6", GARDEN_NAMES6))
              for _web in (_garden_tcp, _garden_quic)),
            *_reject_fast(),
        ],
        "input": [[_iif(lan), {"jump": {"target": "lan_in"}}]],
        "lan_in": [
            [_not_authorised(), _match(_meta("l4proto"), {"set": ["tcp", "udp"]}),
             _match(_payload("th", "dport"), 53),
             {"mangle": {"key": {"ct": {"key": "mark"}},
                         "value": {"|": [{"ct": {"key": "mark"}}, PRELOGIN_DNS_CTMARK]}}}],
            *([_not_authorised(), _match(_meta("l4proto"), {"set": ["tcp", "udp"]}),
               _match(_payload("th", "dport"), 53),
               {"set": {"op": "update", "elem": _payload(family, "saddr"), "set": "@" + meter,
                        "stmt": [{"limit": {"rate": DNS_RATE_BEFORE_LOGIN, "per": "second",
                                            "burst": DNS_BURST_BEFORE_LOGIN, "inv": True}}]}},
               DROP]
              for family, meter in (("ip", DNS_METER4), ("ip6", DNS_METER6))),
            [_match({"ct": {"key": "state"}}, ["established", "related"], "in"), ACCEPT],
            [_match(_payload("udp", "dport"), {"set": [67, 547]}), ACCEPT],  # DHCP, DHCPv6
            [_match(_meta("l4proto"), {"set": ["tcp", "udp"]}),
             _match(_payload("th", "dport"), 53), ACCEPT],
            [_match(_payload("tcp", "dport"), portal_ports), ACCEPT],
            [_match(_payload("icmp", "type"), "echo-request"), ACCEPT],
            [_match(_payload("icmpv6", "type"), {"set": [
                "echo-request", "nd-router-solicit", "nd-neighbor-solicit",
                "nd-neighbor-advert", "mld-listener-report", "mld2-listener-report"]}), ACCEPT],
            # No ICMP error in answer to broadcast or multicast chatter (mDNS, SSDP…).
            [_match({"fib": {"result": "type", "flags": ["daddr"]}},
                    {"set": ["broadcast", "multicast"]}), DROP],
            *_reject_fast(),
        ],
        "postrouting": [
            [_oif(lan), _match(_payload("ip", "daddr"), "@" + ClientSet.DOWN4.value)],
            [_oif(lan), _match(_payload("ip6", "daddr"), "@" + ClientSet.DOWN6.value)],
            # Answers to DNS queries made before login: a byte budget per device.
            *([_oif(lan),
               _match({"&": [{"ct": {"key": "mark"}}, PRELOGIN_DNS_CTMARK]}, PRELOGIN_DNS_CTMARK),
               _match(_payload("th", "sport"), 53),
               {"set": {"op": "update", "elem": _payload(family, "daddr"), "set": "@" + meter,
                        "stmt": [{"limit": {
                            "rate": DNS_ANSWER_KBYTES_BEFORE_LOGIN, "rate_unit": "kbytes",
                            "per": "second", "burst": DNS_ANSWER_BURST_KBYTES,
                            "burst_unit": "kbytes", "inv": True}}]}},
               DROP]
              for family, meter in (("ip", DNS_BYTES4), ("ip6", DNS_BYTES6))),
        ],
        "nat_postrouting": (
            [[_oif(wan), {"masquerade": None}]] if config.gateway.masquerade else []
        ),
    }
    return chains


def _set_definition(name: str, type_: list[str] | str, flags: list[str],
                    counter: bool = False) -> Json:
    definition: Json = {"family": FAMILY, "table": TABLE, "name": name, "type": type_}
    if flags:
        definition["flags"] = flags
    if counter:
        definition["stmt"] = [{"counter": None}]
    return definition


def set_definitions() -> list[Json]:
    """The table's sets: client sets with per-element counters and timeouts, and static ones."""
    definitions = [
        _set_definition(s.value, t, ["timeout"], counter=True)
        for s, t in _CLIENT_SET_TYPES.items()
    ]
    definitions += [
        _set_definition(BLOCKED_MACS, "ether_addr", []),
        _set_definition(TRUSTED_MACS, "ether_addr", []),
        _set_definition(GARDEN4, "ipv4_addr", ["interval"]),
        _set_definition(GARDEN6, "ipv6_addr", ["interval"]),
        {**_set_definition(GARDEN_NAMES4, "ipv4_addr", ["timeout"]),
         "timeout": GARDEN_NAMES_TIMEOUT_S},
        {**_set_definition(GARDEN_NAMES6, "ipv6_addr", ["timeout"]),
         "timeout": GARDEN_NAMES_TIMEOUT_S},
        {**_set_definition(SHAPE4, "ipv4_addr", ["timeout"]), "map": "classid"},
        {**_set_definition(SHAPE6, "ipv6_addr", ["timeout"]), "map": "classid"},
        {**_set_definition(DNS_METER4, "ipv4_addr", ["timeout"]), "timeout": 60},
        {**_set_definition(DNS_METER6, "ipv6_addr", ["timeout"]), "timeout": 60},
        {**_set_definition(DNS_BYTES4, "ipv4_addr", ["timeout"]), "timeout": 60},
        {**_set_definition(DNS_BYTES6, "ipv6_addr", ["timeout"]), "timeout": 60},
    ]
    return definitions


def build_table(
    config: Config,
    blocked_macs: Iterable[str],
    trusted_macs: Iterable[str],
    replace_sets: bool = True,
    existing_sets: Iterable[str] = (),
) -> list[Json]:
    """Commands that create or refresh the whole table, keeping client set elements.

    ``add`` of an existing table, set or chain is not an error, so the same
    batch serves a first start and a restart; chains are flushed and refilled,
    static sets are flushed and refilled, client sets are left untouched (their
    elements, counters and timeouts survive). With ``replace_sets=False`` the
    static sets only gain the given members (used to close the gateway at once,
    before the run-time lists can be read from Redis).

    ``existing_sets`` names the table's sets already in the kernel: the DNS
    meters among them are not declared again, because the kernel reports them
    with a flag (dynamic) that libnftables 1.0.6's JSON cannot express, and an
    ``add`` whose flags differ from the existing set's is refused.
    """
    commands: list[Json] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
    keep = set(existing_sets) & {DNS_METER4, DNS_METER6, DNS_BYTES4, DNS_BYTES6}
    commands += [{"add": {"set": d}} for d in set_definitions() if d["name"] not in keep]
    for name, (type_, hook, priority) in _BASE_CHAINS.items():
        commands.append({"add": {"chain": {
            "family": FAMILY, "table": TABLE, "name": name,
            "type": type_, "hook": hook, "prio": priority, "policy": "accept"}}})
    for name in _REGULAR_CHAINS:
        commands.append({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": name}}})
    for name in (*_BASE_CHAINS, *_REGULAR_CHAINS):
        commands.append({"flush": {"chain": {"family": FAMILY, "table": TABLE, "name": name}}})
    for chain, chain_rules in rules(config).items():
        for expressions in chain_rules:
            commands.append({"add": {"rule": {
                "family": FAMILY, "table": TABLE, "chain": chain, "expr": expressions}}})
    if replace_sets:
        for name in (BLOCKED_MACS, TRUSTED_MACS, GARDEN4, GARDEN6):
            commands.append({"flush": {"set": {"family": FAMILY, "table": TABLE,
                                               "name": name}}})
    commands += replace_mac_set(BLOCKED_MACS, blocked_macs, flush=False)
    commands += replace_mac_set(TRUSTED_MACS, trusted_macs, flush=False)
    garden4 = [str(c) for c in config.walled_garden.cidrs if isinstance(c, ipaddress.IPv4Network)]
    garden6 = [str(c) for c in config.walled_garden.cidrs if isinstance(c, ipaddress.IPv6Network)]
    commands += _add_prefixes(GARDEN4, garden4)
    commands += _add_prefixes(GARDEN6, garden6)
    return commands


def _add_prefixes(set_name: str, cidrs: list[str]) -> list[Json]:
    if not cidrs:
        return []
    elems = []
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr)
        elems.append({"prefix": {"addr": str(network.network_address),
                                 "len": network.prefixlen}})
    return [{"add": {"element": {"family": FAMILY, "table": TABLE, "name": set_name,
                                 "elem": elems}}}]


def replace_mac_set(set_name: str, macs: Iterable[str], flush: bool = True) -> list[Json]:
    """Commands that make a MAC set hold exactly ``macs``."""
    commands: list[Json] = []
    if flush:
        commands.append({"flush": {"set": {"family": FAMILY, "table": TABLE, "name": set_name}}})
    elems = sorted(set(macs))
    if elems:
        commands.append({"add": {"element": {"family": FAMILY, "table": TABLE, "name": set_name,
                                             "elem": elems}}})
    return commands


def mac_set_change(set_name: str, mac: str, present: bool) -> list[Json]:
    """Commands that add or remove one MAC; removal never fails on an absent element."""
    element = {"family": FAMILY, "table": TABLE, "name": set_name, "elem": [mac]}
    if present:
        return [{"add": {"element": element}}]
    # Add before delete so that deleting an element that is not there is not an error.
    return [{"add": {"element": element}}, {"delete": {"element": element}}]


def _element_value(element: Element) -> Any:
    if element.mac is not None:
        return {"concat": [element.ip, element.mac]}
    return element.ip


def add_client_elements(elements: Iterable[tuple[Element, int]]) -> list[Json]:
    """Commands that add client elements, each with its own kernel timeout (seconds)."""
    by_set: dict[ClientSet, list[Json]] = {}
    for element, timeout_s in elements:
        by_set.setdefault(element.set, []).append(
            {"elem": {"val": _element_value(element), "timeout": max(1, int(timeout_s))}})
    return [{"add": {"element": {"family": FAMILY, "table": TABLE, "name": s.value, "elem": e}}}
            for s, e in sorted(by_set.items())]


def delete_client_elements(elements: Iterable[Element]) -> list[Json]:
    """Commands that delete client elements, never failing on one that already expired."""
    by_set: dict[ClientSet, list[Any]] = {}
    for element in elements:
        by_set.setdefault(element.set, []).append(_element_value(element))
    commands: list[Json] = []
    for client_set, values in sorted(by_set.items()):
        target: Json = {"family": FAMILY, "table": TABLE, "name": client_set.value}
        # Add before delete: an element the kernel already timed out is not an error.
        # The add gives it a 1 s timeout so that it can never linger if the delete were lost.
        commands.append({"add": {"element": {**target, "elem": [
            {"elem": {"val": v, "timeout": 1}} for v in values]}}})
        commands.append({"delete": {"element": {**target, "elem": values}}})
    return commands


def add_shape_elements(entries: Iterable[tuple[str, str, int]]) -> list[Json]:
    """Commands that map client addresses to HTB classes: (address, classid, timeout_s)."""
    by_map: dict[str, list[Any]] = {}
    for address, classid, timeout_s in entries:
        name = SHAPE6 if ":" in address else SHAPE4
        by_map.setdefault(name, []).append(
            [{"elem": {"val": address, "timeout": max(1, int(timeout_s))}}, classid])
    return [{"add": {"element": {"family": FAMILY, "table": TABLE, "name": name, "elem": e}}}
            for name, e in sorted(by_map.items())]


def delete_shape_elements(entries: Iterable[tuple[str, str]]) -> list[Json]:
    """Commands that unmap client addresses: (address, classid it is mapped to).

    The classid is needed because the add-before-delete that makes a missing
    element harmless must carry the same data as an element already there.
    """
    commands: list[Json] = []
    by_map: dict[str, list[tuple[str, str]]] = {}
    for address, classid in entries:
        by_map.setdefault(SHAPE6 if ":" in address else SHAPE4, []).append((address, classid))
    for name, pairs in sorted(by_map.items()):
        target: Json = {"family": FAMILY, "table": TABLE, "name": name}
        commands.append({"add": {"element": {**target, "elem": [
            [{"elem": {"val": a, "timeout": 1}}, c] for a, c in pairs]}}})
        commands.append({"delete": {"element": {**target, "elem": [a for a, _ in pairs]}}})
    return commands


def delete_table() -> list[Json]:
    """The command that removes everything netctl created (never fails on a missing table)."""
    table = {"table": {"family": FAMILY, "name": TABLE}}
    # Add before delete: deleting a table that is not there is not an error.
    return [{"add": table}, {"delete": table}]
