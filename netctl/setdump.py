"""Read set elements and their counters straight from the kernel over nfnetlink.

Why not libnftables: listing 20,000 elements with counters through its JSON
output takes about 190 ms here (it builds its whole cache and formats every
element), and pyroute2's generic parser takes seconds. The sweep reads every
counter every couple of seconds, so it asks the kernel directly for one
``NFT_MSG_GETSETELEM`` dump per set and walks the attributes with ``struct``
(docs/benchmarks.md has the figures). Changes still go through libnftables'
JSON interface as one atomic batch; this module only reads.

The socket is opened in the caller's network namespace, like the libnftables
context: create the reader inside the namespace it is meant to read.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from collections.abc import Iterator

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETSETELEM = 13
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
NFPROTO_INET = 1

# Attribute numbers from linux/netfilter/nf_tables.h.
NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_SET_ELEM_KEY = 1
NFTA_SET_ELEM_EXPR = 7
NFTA_SET_ELEM_EXPRESSIONS = 11
NFTA_DATA_VALUE = 1
NFTA_EXPR_NAME = 1
NFTA_EXPR_DATA = 2
NFTA_COUNTER_BYTES = 1
NFTA_COUNTER_PACKETS = 2

_NLA_TYPE_MASK = 0x3FFF
_NLMSGHDR = struct.Struct("=IHHII")
_NLA = struct.Struct("=HH")
_BE64 = struct.Struct(">Q")
_ERRNO = struct.Struct("=i")

Counters = dict[bytes, tuple[int, int]]  # raw element key -> (packets, bytes)


class SetDumpError(OSError):
    """The kernel refused the dump (no such table or set, no permission)."""


def _attributes(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of each netlink attribute in data[start:end]."""
    offset = start
    while offset + 4 <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4:
            return
        yield kind & _NLA_TYPE_MASK, offset + 4, offset + length
        offset += (length + 3) & ~3


def _counter(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """(packets, bytes) of a counter expression, or None for another expression."""
    name = b""
    counts: tuple[int, int] | None = None
    for kind, a, b in _attributes(data, start, end):
        if kind == NFTA_EXPR_NAME:
            name = data[a:b].rstrip(b"\0")
        elif kind == NFTA_EXPR_DATA:
            packets = octets = 0
            for inner, c, _d in _attributes(data, a, b):
                if inner == NFTA_COUNTER_BYTES:
                    octets = _BE64.unpack_from(data, c)[0]
                elif inner == NFTA_COUNTER_PACKETS:
                    packets = _BE64.unpack_from(data, c)[0]
            counts = (packets, octets)
    return counts if name == b"counter" else None


def parse_elements(data: bytes, start: int, end: int, into: Counters) -> None:
    """Add the elements of one NFTA_SET_ELEM_LIST_ELEMENTS attribute to ``into``."""
    for _list_kind, a, b in _attributes(data, start, end):
        key = b""
        counts = (0, 0)
        for kind, c, d in _attributes(data, a, b):
            if kind == NFTA_SET_ELEM_KEY:
                for inner, e, f in _attributes(data, c, d):
                    if inner == NFTA_DATA_VALUE:
                        key = data[e:f]
            elif kind == NFTA_SET_ELEM_EXPR:
                counts = _counter(data, c, d) or counts
            elif kind == NFTA_SET_ELEM_EXPRESSIONS:
                for _inner, e, f in _attributes(data, c, d):
                    counts = _counter(data, e, f) or counts
        if key:
            into[key] = counts


def parse_messages(data: bytes, seq: int, into: Counters) -> bool:
    """Parse a buffer of netlink messages; True once the dump is complete."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, message_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        end = offset + length
        if message_seq == seq:
            if kind == NLMSG_DONE:
                return True
            if kind == NLMSG_ERROR:
                code = -_ERRNO.unpack_from(data, offset + _NLMSGHDR.size)[0]
                if code:
                    raise SetDumpError(code, os.strerror(code))
                return True
            # nlmsghdr, then nfgenmsg (4 bytes), then the attributes.
            for attr, a, b in _attributes(data, offset + _NLMSGHDR.size + 4, end):
                if attr == NFTA_SET_ELEM_LIST_ELEMENTS:
                    parse_elements(data, a, b, into)
        offset += (length + 3) & ~3
    return False


def _attribute(kind: int, payload: bytes) -> bytes:
    padded = payload + b"\0" * (-len(payload) % 4)
    return _NLA.pack(4 + len(payload), kind) + padded


class SetReader:
    """Dumps nftables sets of one table with their element counters."""

    _sequence = itertools.count(1)

    def __init__(self, table: str, family: int = NFPROTO_INET) -> None:
        self.table = table
        self.family = family
        self._socket = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                     NETLINK_NETFILTER)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self._socket.bind((0, 0))

    def counters(self, set_name: str) -> Counters:
        """Every element of ``set_name`` as raw key bytes -> (packets, bytes)."""
        seq = next(self._sequence)
        payload = (struct.pack("=BBH", self.family, 0, 0)
                   + _attribute(NFTA_SET_ELEM_LIST_TABLE, self.table.encode() + b"\0")
                   + _attribute(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0"))
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(payload),
                                (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM,
                                NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
        self._socket.send(header + payload)
        result: Counters = {}
        while True:
            try:
                data = self._socket.recv(1 << 20)
            except OSError as error:
                if error.errno == errno.EINTR:
                    continue
                raise SetDumpError(error.errno, f"reading set {set_name}: {error}") from error
            if parse_messages(data, seq, result):
                return result

    def close(self) -> None:
        """Close the netlink socket."""
        self._socket.close()


def decode_key(key: bytes, ip_length: int, with_mac: bool) -> tuple[str, str | None]:
    """(address, MAC or None) from a raw element key.

    Concatenated keys put each field in a 4-byte aligned slot: an IPv4
    address takes 4 bytes, an IPv6 address 16, a MAC 6 padded to 8.
    """
    family = socket.AF_INET if ip_length == 4 else socket.AF_INET6
    address = socket.inet_ntop(family, key[:ip_length])
    if not with_mac:
        return address, None
    return address, key[ip_length:ip_length + 6].hex(":")
