"""Traffic-shaping adapter (pyroute2): one HTB class per shaped client, both directions.

Shape, on the LAN interface (download: egress towards the clients) and on the
WAN interface (upload: egress towards the internet)::

    1:    root HTB, unclassified traffic (skb priority 0) goes to the direct queue
    1:1   rate = ceil = the uplink cap of that direction (10 Gbit/s without a cap)
    1:<minor>   one per shaped client, the same minor on both interfaces:
                ceil = the client's rate (the cap if the client's rate is 0),
                rate = a small guarantee, equal quantum: spare capacity is
                shared equally among the clients that want it
      <minor>:  leaf fq_codel (where the kernel has none: pfifo, ~100 ms at the ceil)

Packets are put into a class by nftables (``meta priority set ... map @shape4``,
see :func:`classid` for the map's value), never by tc filters, so the
per-packet cost does not grow with the number of clients. A rate change is
a class change and a leaf request per interface; classes survive a restart
of netctl.

Client classes are set and removed in batches (:meth:`Shaper.set_clients`,
:meth:`Shaper.remove_clients`): pyroute2 builds each distinct message once
(an HTB class's options, rate tables included, depend only on its rate), the
encoding is cached, and each client's copy differs only in handle, parent and
sequence number, written in place. Those go out many per ``sendmsg`` on a raw
rtnetlink socket of their own: about 5 µs of Python per client, where
pyroute2's request machinery took 2.5 ms. What remains is the kernel's, and
it grows with the number of classes: creating or deleting a class walks
every class of the qdisc (``tc_bind_tclass`` rebinding filters), changing one
does not. 1,000 new clients take ~0.05 s on an empty shaper, 10,000 ~6 s,
1,000 more next to 9,000 ~1.3 s; changing the rates of 10,000 takes ~0.07 s
(tests/lab/test_shaper.py::test_batch_timings).
"""

from __future__ import annotations

import errno
import heapq
import logging
import os
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns
from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
)
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELTCLASS, RTM_NEWQDISC, RTM_NEWTCLASS, TC_H_ROOT
from pyroute2.netlink.rtnl.tcmsg import sched_htb, tcmsg

log = logging.getLogger(__name__)

MAJOR = 1
ROOT_HANDLE = MAJOR << 16  # 1:
PARENT_CLASS = ROOT_HANDLE | 1  # 1:1
MINOR_FIRST = 0x10  # 1:2 .. 1:f stay free for the shaper's own use
MINOR_LAST = 0xFFFE  # leaf qdiscs take <minor>: as their handle, and ffff: is ingress's

UNCAPPED_BPS = 10_000_000_000  # the parent class's rate when no uplink cap is configured
# Each client's assured rate; the rest is borrowed from 1:1, shared by quantum. Small, so
# that the guarantees of all clients together stay under the cap (2,500 clients at 20 Mbit/s):
# a class within its guarantee sends whatever its parent has left.
GUARANTEE_BPS = 8_000
MIN_CEIL_BPS = 8_000  # lower client rates are raised to this (1 kB/s; HTB's arithmetic needs some)
QUANTUM_BYTES = 1514  # the same for every client class: equal shares when they compete
DIRECT_QLEN = 1000  # packets; the interface's txqueuelen (0 on some bridges) is no guide
# Fallback leaf where the kernel has no fq_codel: a pfifo holding about this long at the
# class's ceil in full-size packets (in packets, not bytes: a GRO/GSO packet of 64 KiB
# must never be too big to queue), within these bounds.
FIFO_LATENCY_S = 0.1
FIFO_PACKET_BYTES = 1514
FIFO_MIN_PACKETS = 16
FIFO_MAX_PACKETS = 1000


# Batches (see _RequestSocket): messages per sendmsg, bounded so that the kernel's acks for
# all of them fit the receive buffer even if every one is refused (an ack takes about 1 KiB
# of it, with the refused request left out: NETLINK_CAP_ACK).
BATCH_MESSAGES = 1024
BATCH_BYTES = 2 << 20  # sendmsg size; an HTB class message is about 2 KiB (two rate tables)
SOCKET_BUFFER_BYTES = 4 << 20  # asked for both ways (the kernel doubles it)
ACK_ALLOWANCE_BYTES = 2048  # receive buffer counted per message of a batch
ACK_TIMEOUT_S = 30.0  # the kernel answers before sendmsg returns; this only guards a hang
TEMPLATES_MAX = 4096  # cached encodings (distinct interface, kind and rate); then start afresh


class ShaperError(Exception):
    """A traffic-control request failed; says which interface and what was being done.

    From a batch (:meth:`Shaper.set_clients`, :meth:`Shaper.remove_clients`):
    ``minor`` is the first client in the batch with a refused request, and
    ``failed_minors`` every one (in batch order).
    """

    def __init__(self, message: str, interface: str = "", operation: str = "",
                 errno_: int = 0, minor: int | None = None,
                 failed_minors: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.interface = interface
        self.operation = operation
        self.errno = errno_
        self.minor = minor
        self.failed_minors = failed_minors


class PoolExhausted(ShaperError):
    """Every class minor is in use."""


@dataclass(frozen=True)
class ClientRate:
    """A client's rates in bits/s; 0 means unlimited in that direction."""

    down_bps: int
    up_bps: int


MISSING = -1  # in a rate read back from the kernel: no class on that interface


def classid(minor: int) -> str:
    """The class 1:<minor> as nftables' JSON writes a ``classid`` map value: "1:<hex minor>".

    nft reads and prints the minor in hexadecimal without "0x", like tc
    ("1:10" is minor 16), so this is also the form tc shows.
    """
    _check_minor(minor)
    return f"{MAJOR:x}:{minor:x}"


def needs_class(rate: ClientRate, uplink_down_bps: int, uplink_up_bps: int) -> bool:
    """True if a client with ``rate`` must have a class: it has a rate, or the uplink a cap.

    With a cap, every client needs a class even if unlimited itself: unclassified
    traffic bypasses the cap (it goes to HTB's direct queue).
    """
    return bool(rate.down_bps or rate.up_bps or uplink_down_bps or uplink_up_bps)


def applied_rate(rate: ClientRate, uplink_down_bps: int, uplink_up_bps: int) -> ClientRate:
    """What :meth:`Shaper.classes` reads back after ``set_client(minor, rate)``.

    0 becomes the cap of that direction; a rate is raised to MIN_CEIL_BPS if
    below it and rounded down to whole bytes per second, as the kernel keeps
    it; UNCAPPED_BPS or more reads back as 0 (unlimited).
    """
    return ClientRate(_reported(_ceil_bps(rate.down_bps, uplink_down_bps)),
                      _reported(_ceil_bps(rate.up_bps, uplink_up_bps)))


def _ceil_bps(client_bps: int, cap_bps: int) -> int:
    """The class ceil in bits/s, a whole number of bytes/s, for a client rate and a cap."""
    bps = client_bps or cap_bps or UNCAPPED_BPS
    return max(bps, MIN_CEIL_BPS) // 8 * 8


def _reported(ceil_bps: int) -> int:
    return 0 if ceil_bps >= UNCAPPED_BPS else ceil_bps


def fifo_limit(ceil_bps: int) -> int:
    """Packets the fallback pfifo leaf of a class with this ceil holds (see FIFO_LATENCY_S)."""
    packets = int(ceil_bps / 8 * FIFO_LATENCY_S / FIFO_PACKET_BYTES)
    return min(FIFO_MAX_PACKETS, max(FIFO_MIN_PACKETS, packets))


def _check_minor(minor: int) -> None:
    if not MINOR_FIRST <= minor <= MINOR_LAST:
        raise ValueError(f"class minor {minor:#x} outside {MINOR_FIRST:#x}..{MINOR_LAST:#x}")


class MinorPool:
    """Class minors in use; hands out the lowest free one in MINOR_FIRST..MINOR_LAST.

    Pure bookkeeping (no kernel): every minor below ``_top`` is either in use
    or in the ``_freed`` heap, every one from ``_top`` up is free unless marked
    used, so allocate and release cost O(log n).
    """

    def __init__(self, used: Iterable[int] = ()) -> None:
        self._used: set[int] = set()
        self._freed: list[int] = []  # a heap; may hold minors marked used since (skipped)
        self._top = MINOR_FIRST
        for minor in used:
            self.mark_used(minor)

    def __len__(self) -> int:
        return len(self._used)

    def __contains__(self, minor: object) -> bool:
        return minor in self._used

    def allocate(self) -> int:
        """The lowest free minor, now marked used; PoolExhausted if there is none."""
        while self._freed:
            minor = heapq.heappop(self._freed)
            if minor not in self._used:
                self._used.add(minor)
                return minor
        while self._top in self._used:
            self._top += 1
        if self._top > MINOR_LAST:
            raise PoolExhausted(f"all {MINOR_LAST - MINOR_FIRST + 1} class minors are in use")
        minor = self._top
        self._top += 1
        self._used.add(minor)
        return minor

    def release(self, minor: int) -> None:
        """Give ``minor`` back (nothing happens if it was not in use)."""
        if minor not in self._used:
            return
        self._used.discard(minor)
        if minor < self._top:
            heapq.heappush(self._freed, minor)

    def mark_used(self, minor: int) -> None:
        """Record ``minor`` as in use (read back from a session or the kernel)."""
        _check_minor(minor)
        self._used.add(minor)


# --- batches: hand-packed rtnetlink ---------------------------------------------------------

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
NLMSG_ERROR = 2
NLM_F_CAPPED = 0x100  # in an ack: the refused request is not echoed
NLM_F_ACK_TLVS = 0x200  # in an ack: attributes follow (the kernel's message)
NLMSGERR_ATTR_MSG = 1

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, seq, port
_FLAGS_AT = 6
_SEQ_AT = 8
_HANDLE_AT = 16 + 8  # after nlmsghdr, struct tcmsg: family, 3 bytes pad, ifindex, handle, parent
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_HANDLE_PARENT = struct.Struct("=II")
_ERRNO = struct.Struct("=i")
_NLA = struct.Struct("=HH")

_STEP_CLASS, _STEP_LEAF, _STEP_DELETE = 0, 1, 2
_OPERATIONS = ("setting class {}", "setting the leaf qdisc of {}", "deleting class {}")


class _Request(NamedTuple):
    """One message of a batch: a cached encoding, and what its copy gets written into it."""

    template: bytes  # nlmsghdr + tcmsg + attributes; seq, handle and parent are overwritten
    handle: int
    parent: int
    item: int  # the position of its client in the batch: errors are reported in that order
    minor: int
    ifname: str
    step: int  # _STEP_CLASS, _STEP_LEAF or _STEP_DELETE: names the operation in an error


class _Refusal(NamedTuple):
    request: _Request
    errno: int
    text: str  # the kernel's own message, else strerror


def _encode(kind: int, flags: int, index: int, attrs: list[Any]) -> bytes:
    """A tc message built by pyroute2, its length rounded up to 4 bytes for packing in a row."""
    msg = tcmsg()
    msg["header"]["type"] = kind
    msg["header"]["flags"] = flags
    msg["index"] = index
    msg["attrs"] = attrs
    msg.encode()
    data = bytes(msg.data)
    return data + b"\0" * (-len(data) % 4)


def _ack_text(data: bytes | bytearray, offset: int, length: int, flags: int) -> str:
    """The kernel's message in an ack (NETLINK_EXT_ACK), or "" if it gave none."""
    if not flags & NLM_F_ACK_TLVS:
        return ""
    start = offset + _NLMSGHDR.size + _ERRNO.size
    if flags & NLM_F_CAPPED:
        start += _NLMSGHDR.size
    else:
        start += _U32.unpack_from(data, start)[0]  # the echoed request's own length
    end = offset + length
    while start + _NLA.size <= end:
        size, kind = _NLA.unpack_from(data, start)
        if size < _NLA.size:
            break
        if kind == NLMSGERR_ATTR_MSG:
            return bytes(data[start + _NLA.size:start + size]).rstrip(b"\0").decode(
                errors="replace")
        start += (size + 3) & ~3
    return ""


def _grow_buffer(sock: socket.socket, force: int, plain: int, size: int) -> int:
    """Ask for a ``size`` socket buffer (beyond rmem_max/wmem_max if allowed); what it got."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, plain, size)
    return int(sock.getsockopt(socket.SOL_SOCKET, plain))


class _RequestSocket:
    """A raw rtnetlink socket that sends tc messages many per sendmsg and reports refusals.

    The kernel handles the messages of one sendmsg in order before the call
    returns, and acks a refused one whether it asked for an ack or not. So
    only the last message of each sendmsg asks (NLM_F_ACK): its ack ends the
    batch, and every ack read before it is a refusal. One read per sendmsg
    and one per refusal, not one per message.
    """

    def __init__(self, netns: str | None) -> None:
        if netns is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                 NETLINK_ROUTE)
        else:
            # Made by a child process inside the namespace; flags=0: never creates it.
            sock = pyroute2_netns.create_socket(netns, socket.AF_NETLINK, socket.SOCK_RAW,
                                                NETLINK_ROUTE, flags=0)
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)  # the kernel says why, in words
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)  # a refusal does not echo 2 KiB
            sndbuf = _grow_buffer(sock, SO_SNDBUFFORCE, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
            rcvbuf = _grow_buffer(sock, SO_RCVBUFFORCE, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
            sock.bind((0, 0))
            sock.settimeout(ACK_TIMEOUT_S)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        # The kernel refuses a sendmsg longer than its send buffer, and drops acks (ENOBUFS)
        # once the receive buffer is full: a batch must fit both.
        self._max_bytes = min(BATCH_BYTES, sndbuf // 2)
        self._max_messages = max(1, min(BATCH_MESSAGES, rcvbuf // ACK_ALLOWANCE_BYTES))
        self._receive = bytearray(1 << 16)
        self._seq = 0

    def close(self) -> None:
        self._socket.close()

    def send(self, requests: Sequence[_Request]) -> list[_Refusal]:
        """Send every request, in order; the refused ones. OSError if the answers were lost."""
        refused: list[_Refusal] = []
        start = 0
        while start < len(requests):
            end, size = start, 0
            while end < len(requests) and end - start < self._max_messages:
                size += len(requests[end].template)
                if size > self._max_bytes and end > start:
                    break
                end += 1
            refused += self._send_batch(requests[start:end])
            start = end
        return refused

    def _send_batch(self, batch: Sequence[_Request]) -> list[_Refusal]:
        first = self._seq
        self._seq = (first + len(batch)) & 0xFFFFFFFF
        buffer = bytearray(b"".join([request.template for request in batch]))
        offset = 0
        for position, request in enumerate(batch):
            _U32.pack_into(buffer, offset + _SEQ_AT, (first + position) & 0xFFFFFFFF)
            _HANDLE_PARENT.pack_into(buffer, offset + _HANDLE_AT, request.handle, request.parent)
            offset += len(request.template)
        last = offset - len(batch[-1].template)
        flags = _U16.unpack_from(buffer, last + _FLAGS_AT)[0]
        _U16.pack_into(buffer, last + _FLAGS_AT, flags | NLM_F_ACK)
        sent = self._socket.send(buffer)
        if sent != len(buffer):
            raise OSError(errno.EMSGSIZE, f"netlink took {sent} of {len(buffer)} bytes")
        return self._read_acks(batch, first)

    def _read_acks(self, batch: Sequence[_Request], first: int) -> list[_Refusal]:
        refused: list[_Refusal] = []
        data = self._receive
        last = len(batch) - 1
        while True:
            received = self._socket.recv_into(data)
            offset, done = 0, False
            while offset + _NLMSGHDR.size <= received:
                length, kind, flags, seq, _port = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    break
                position = (seq - first) & 0xFFFFFFFF
                if kind == NLMSG_ERROR and position <= last:
                    code = -_ERRNO.unpack_from(data, offset + _NLMSGHDR.size)[0]
                    if code:
                        text = _ack_text(data, offset, length, flags) or os.strerror(code)
                        refused.append(_Refusal(batch[position], code, text))
                    done = done or position == last
                offset += (length + 3) & ~3
            if done:
                return refused


class Shaper:
    """HTB on the LAN and WAN interfaces of the current network namespace.

    ``netns`` names another namespace (``ip netns``) to work in instead: the
    netlink socket is opened there, the rest of the process stays where it is.
    The socket is opened on first use and kept; :meth:`close` closes it.
    """

    def __init__(self, lan: str, wan: str, uplink_down_bps: int = 0, uplink_up_bps: int = 0,
                 netns: str | None = None) -> None:
        if uplink_down_bps < 0 or uplink_up_bps < 0:
            raise ValueError("uplink caps are bits/s, 0 for none")
        self.lan = lan
        self.wan = wan
        self.uplink_down_bps = uplink_down_bps
        self.uplink_up_bps = uplink_up_bps
        self._netns = netns
        self._ipr: Any = None
        self._index: dict[str, int] = {}
        # "fq_codel", or "pfifo" once the kernel has shown it has no fq_codel (a leaf
        # qdisc seen by ensure(), or an add refused). Known: a leaf of that kind was seen
        # or made; until then a batch tries it with one client first (see set_clients).
        self._leaf_kind = "fq_codel"
        self._leaf_kind_known = False
        self._requests: _RequestSocket | None = None
        self._templates: dict[tuple[object, ...], bytes] = {}

    # --- life cycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the netlink socket (opened again if the shaper is used afterwards)."""
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
        self._close_requests()
        self._index.clear()
        self._templates.clear()

    def __enter__(self) -> Shaper:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- the interface ----------------------------------------------------------------------

    def ensure(self) -> None:
        """Make both root qdiscs and parent classes as configured, keeping client classes.

        A root qdisc that is not our HTB 1: (or one made with other options: HTB
        cannot change them in place) is replaced, which drops what was under it.
        """
        for ifname, cap_bps in ((self.lan, self.uplink_down_bps), (self.wan, self.uplink_up_bps)):
            index = self._ifindex(ifname)
            if self._root(ifname, index) != "ours":
                self._replace_root(ifname, index)
                log.info("shaper root created interface=%s", ifname)
            bytes_per_s = (cap_bps or UNCAPPED_BPS) // 8
            self._call(ifname, "setting the parent class 1:1", "replace-class", "htb", index,
                       PARENT_CLASS, parent=ROOT_HANDLE, rate=bytes_per_s, ceil=bytes_per_s,
                       quantum=QUANTUM_BYTES)  # unused by an inner class; saves a kernel warning

    def classes(self) -> dict[int, ClientRate]:
        """Client classes in the kernel: minor -> ceils in bits/s (see :func:`applied_rate`).

        0 means uncapped; MISSING (-1) in a direction means the class exists on the
        other interface only (a change that failed half-way): ``set_client`` or
        ``remove_client`` repairs it. One dump per interface.
        """
        down = self._ceils(self.lan)
        up = self._ceils(self.wan)
        return {minor: ClientRate(down.get(minor, MISSING), up.get(minor, MISSING))
                for minor in sorted(down.keys() | up.keys())}

    def set_client(self, minor: int, rate: ClientRate) -> None:
        """Give the client class 1:<minor> ``rate`` on both interfaces, creating it if needed.

        :meth:`set_clients` with one client; also what repairs a client left
        half-done by a failed batch.
        """
        self.set_clients([(minor, rate)])

    def set_clients(self, items: Sequence[tuple[int, ClientRate]]) -> None:
        """Give each class 1:<minor> its rate on both interfaces, creating the missing ones.

        Per client and interface two requests, whether the class exists or not:
        create-or-change the class, then create-or-replace its leaf qdisc (an
        fq_codel leaf already there is kept as it is, a pfifo one takes the
        length for the new rate). No dump, no record of which classes exist, so
        a restart of netctl changes nothing. Needs :meth:`ensure` first.

        A minor listed twice ends with its later rate. A refused request does
        not stop the others. Once all were sent,
        ShaperError names the first client (in ``items`` order, LAN before WAN)
        with a refusal; ``failed_minors`` lists all of them. Each of those may be
        left, on the interface that refused, without its class, with its old
        rate, or with HTB's default leaf; everything else is as asked.
        :meth:`classes` shows MISSING for a class on one interface only.
        ``set_client`` (or ``remove_client``) of such a minor repairs it: both are
        idempotent. ValueError for a bad minor or rate, before anything is sent.
        """
        plan = []
        for item, (minor, rate) in enumerate(items):
            _check_minor(minor)
            if rate.down_bps < 0 or rate.up_bps < 0:
                raise ValueError(f"rates are bits/s, 0 for unlimited: {rate}")
            plan.append((item, minor, _ceil_bps(rate.down_bps, self.uplink_down_bps),
                         _ceil_bps(rate.up_bps, self.uplink_up_bps)))
        if not plan:
            return
        indexes, missing = self._indexes()
        if self._leaf_kind_known:
            refused = self._set_batch(plan, indexes)
        else:
            # One client first: where the kernel has no fq_codel, every refused leaf costs
            # it a module lookup; after one, the rest go as pfifo.
            refused = self._set_batch(plan[:1], indexes) + self._set_batch(plan[1:], indexes)
        log.debug("shaper set clients=%d refused=%d", len(plan), len(refused))
        self._raise_refused(refused, missing, plan[0][1], [minor for _, minor, _, _ in plan])

    def remove_client(self, minor: int) -> None:
        """Delete class 1:<minor> (and its leaf) from both interfaces; absent is fine."""
        self.remove_clients([minor])

    def remove_clients(self, minors: Iterable[int]) -> None:
        """Delete the classes 1:<minor> (and their leaves) from both interfaces; absent is fine.

        One request per client and interface, many per sendmsg. A refused one
        does not stop the others; then ShaperError names the first client with
        a refusal (``failed_minors``: all of them), whose class may still be on
        the interface that refused; ``remove_client`` repairs it. ValueError for
        a bad minor, before anything is sent.
        """
        wanted = list(minors)
        for minor in wanted:
            _check_minor(minor)
        if not wanted:
            return
        indexes, missing = self._indexes()
        requests = [
            _Request(self._template(index, _STEP_DELETE), ROOT_HANDLE | minor, 0, item, minor,
                     ifname, _STEP_DELETE)
            for item, minor in enumerate(wanted) for ifname, index in indexes]
        # ENOENT: no such class; EINVAL: no HTB 1: at all, so no class either.
        refused = [refusal for refusal in self._send(requests, wanted)
                   if refusal.errno not in (errno.ENOENT, errno.EINVAL)]
        log.debug("shaper remove clients=%d refused=%d", len(wanted), len(refused))
        self._raise_refused(refused, missing, wanted[0], wanted)

    def remove_all(self) -> None:
        """Delete our root qdisc from both interfaces (with every class); absent is fine.

        A root qdisc that is not HTB 1: is someone else's and is left alone.
        """
        for ifname in (self.lan, self.wan):
            index = self._ifindex(ifname)
            if self._root(ifname, index) in ("ours", "stale"):
                self._call(ifname, "deleting the root qdisc", "del", None, index, ROOT_HANDLE,
                           parent=TC_H_ROOT)
                log.info("shaper root removed interface=%s", ifname)

    # --- internals --------------------------------------------------------------------------

    def _socket(self) -> Any:
        if self._ipr is None:
            try:
                # groups=0: no multicast subscriptions, so nothing piles up unread.
                self._ipr = IPRoute(groups=0, ext_ack=True, netns=self._netns)
            except (OSError, NetlinkError) as error:
                raise ShaperError(f"opening a netlink socket: {error}",
                                  operation="opening a netlink socket") from error
        return self._ipr

    def _failed(self, ifname: str, operation: str, error: Exception) -> ShaperError:
        code = error.code if isinstance(error, NetlinkError) else getattr(error, "errno", 0)
        if code == errno.ENODEV:
            self._index.pop(ifname, None)  # the interface was recreated: look it up again
        message = error.args[-1] if isinstance(error, NetlinkError) and error.args else error
        return ShaperError(f"{ifname}: {operation}: {message}", ifname, operation, code or 0)

    def _ifindex(self, ifname: str) -> int:
        index = self._index.get(ifname)
        if index is None:
            operation = "looking up the interface"
            try:
                found = self._socket().link_lookup(ifname=ifname)
            except (OSError, NetlinkError) as error:
                raise self._failed(ifname, operation, error) from error
            if not found:
                raise ShaperError(f"{ifname}: no such interface", ifname, operation, errno.ENODEV)
            index = self._index[ifname] = int(found[0])
        return index

    def _call(self, ifname: str, operation: str, command: str, kind: str | None, index: int,
              handle: int, **kwargs: Any) -> None:
        """ipr.tc(...), with a failure turned into ShaperError."""
        try:
            self._socket().tc(command, kind, index, handle, **kwargs)
        except (OSError, NetlinkError) as error:
            raise self._failed(ifname, operation, error) from error

    def _dump(self, ifname: str, operation: str, what: str, index: int) -> list[Any]:
        """Every qdisc (``what="qdiscs"``) or class (``"classes"``) of ``index``, in one dump."""
        try:
            # Not tc("dump-class"): pyroute2 0.9's sync wrapper hands that back un-run.
            if what == "classes":
                return list(self._socket().get_classes(index))
            return list(self._socket().get_qdiscs(index))
        except (OSError, NetlinkError) as error:
            raise self._failed(ifname, operation, error) from error

    def _root(self, ifname: str, index: int) -> str:
        """"ours" (HTB 1: with our options), "stale" (HTB 1:, other options), "foreign", "none".

        Also learns the leaf kind from the client classes' leaves found on the way.
        """
        state = "none"
        for qdisc in self._dump(ifname, "reading the qdiscs", "qdiscs", index):
            if qdisc.get("index") != index:
                continue
            kind = qdisc.get_attr("TCA_KIND")
            parent = qdisc.get("parent", 0)
            if parent >> 16 == MAJOR and MINOR_FIRST <= parent & 0xFFFF <= MINOR_LAST \
                    and kind in ("fq_codel", "pfifo"):
                self._leaf_kind = kind
                self._leaf_kind_known = True
            if parent != TC_H_ROOT:
                continue
            if kind != "htb" or qdisc.get("handle") != ROOT_HANDLE:
                state = "foreign" if kind not in ("noqueue", None) else "none"
                continue
            options = qdisc.get_attr("TCA_OPTIONS")
            init = options.get_attr("TCA_HTB_INIT") if options else None
            ours = (init is not None and init.get("defcls") == 0
                    and options.get_attr("TCA_HTB_DIRECT_QLEN") == DIRECT_QLEN)
            state = "ours" if ours else "stale"
        return state

    def _replace_root(self, ifname: str, index: int) -> None:
        # Built by hand: pyroute2's htb plugin has no way to send TCA_HTB_DIRECT_QLEN.
        options = {"attrs": [
            # defcls 0: unclassified packets take the direct queue, unshaped.
            ["TCA_HTB_INIT", {"version": 3, "rate2quantum": 10, "defcls": 0,
                              "debug": 0, "direct_pkts": 0}],
            ["TCA_HTB_DIRECT_QLEN", DIRECT_QLEN],
        ]}
        self._replace_qdisc(ifname, "replacing the root qdisc", index, ROOT_HANDLE, TC_H_ROOT,
                            "htb", options)

    def _replace_qdisc(self, ifname: str, operation: str, index: int, handle: int, parent: int,
                       kind: str, options: Any) -> None:
        """Create or replace one qdisc, from a message built here.

        Not through ``ipr.tc()``: for a kind it has no plugin for (bfifo, say), that
        makes the qdisc the root one whatever parent is asked for, and for htb it
        leaves out the direct queue's length.
        """
        msg = tcmsg()
        msg["header"]["type"] = RTM_NEWQDISC
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        msg["index"] = index
        msg["handle"] = handle
        msg["parent"] = parent
        msg["attrs"] = [["TCA_KIND", kind]]
        if options is not None:
            msg["attrs"].append(["TCA_OPTIONS", options])
        try:
            self._socket().nlm_request_batch([msg])
        except (OSError, NetlinkError) as error:
            raise self._failed(ifname, operation, error) from error

    def _ceils(self, ifname: str) -> dict[int, int]:
        """minor -> ceil in bits/s (0 for uncapped) of the client classes on ``ifname``."""
        index = self._ifindex(ifname)
        ceils: dict[int, int] = {}
        for msg in self._dump(ifname, "reading the classes", "classes", index):
            handle = msg.get("handle", 0)
            minor = handle & 0xFFFF
            if (msg.get("index") != index or handle >> 16 != MAJOR
                    or msg.get("parent") != PARENT_CLASS or not MINOR_FIRST <= minor <= MINOR_LAST):
                continue
            options = msg.get_attr("TCA_OPTIONS")
            parms = (options.get_attr("TCA_HTB_PARMS") if options else None) or {}
            bytes_per_s = (options.get_attr("TCA_HTB_CEIL64") if options else None) \
                or parms.get("ceil", 0)
            ceils[minor] = _reported(int(bytes_per_s) * 8)
        return ceils

    # --- batches --------------------------------------------------------------------------

    def _indexes(self) -> tuple[list[tuple[str, int]], ShaperError | None]:
        """(name, index) of the interfaces found, and the error for one that was not."""
        found: list[tuple[str, int]] = []
        missing: ShaperError | None = None
        for ifname in (self.lan, self.wan):
            try:
                found.append((ifname, self._ifindex(ifname)))
            except ShaperError as error:
                missing = missing or error
        return found, missing

    def _template(self, index: int, step: int, ceil_bps: int = 0) -> bytes:
        """The cached encoding of a class, leaf or delete request for ``index`` and a ceil."""
        limit = fifo_limit(ceil_bps) if step == _STEP_LEAF and self._leaf_kind == "pfifo" else 0
        # What the encoding depends on: a class its ceil, a leaf its kind and length.
        key: tuple[object, ...] = (index, step, ceil_bps if step == _STEP_CLASS else limit,
                                   self._leaf_kind if step == _STEP_LEAF else "")
        template = self._templates.get(key)
        if template is not None:
            return template
        if len(self._templates) >= TEMPLATES_MAX:
            self._templates.clear()
        if step == _STEP_CLASS:
            ceil = ceil_bps // 8
            options = sched_htb.get_class_parameters({
                "rate": min(GUARANTEE_BPS // 8, ceil), "ceil": ceil, "quantum": QUANTUM_BYTES})
            # No NLM_F_EXCL: an existing class is changed in place.
            template = _encode(RTM_NEWTCLASS, NLM_F_REQUEST | NLM_F_CREATE, index,
                               [["TCA_KIND", "htb"], ["TCA_OPTIONS", options]])
        elif step == _STEP_LEAF:
            attrs: list[Any] = [["TCA_KIND", self._leaf_kind]]
            if limit:
                attrs.append(["TCA_OPTIONS", {"limit": limit}])
            template = _encode(RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
                               index, attrs)
        else:
            template = _encode(RTM_DELTCLASS, NLM_F_REQUEST, index, [])
        self._templates[key] = template
        return template

    def _set_batch(self, plan: Sequence[tuple[int, int, int, int]],
                   indexes: Sequence[tuple[str, int]]) -> list[_Refusal]:
        """Send the class and leaf requests of ``plan`` (item, minor, down, up ceils)."""
        if not plan or not indexes:
            return []
        requests = self._set_requests(plan, indexes)
        refused = self._send(requests, [minor for _, minor, _, _ in plan])
        leaves = sum(1 for request in requests if request.step == _STEP_LEAF)
        if self._leaf_kind == "fq_codel":
            classes_refused = {(r.request.minor, r.request.ifname) for r in refused
                               if r.request.step == _STEP_CLASS}
            # ENOENT for a leaf whose class is there: "qdisc kind is unknown".
            unknown = [r for r in refused if r.request.step == _STEP_LEAF
                       and r.errno == errno.ENOENT
                       and (r.request.minor, r.request.ifname) not in classes_refused]
            if unknown:
                self._leaf_kind = "pfifo"
                log.info("shaper leaf=pfifo reason=%s", "this kernel has no fq_codel")
                again = {(r.request.minor, r.request.ifname) for r in unknown}
                retry = [(item, minor, down, up) for item, minor, down, up in plan
                         if (minor, self.lan) in again or (minor, self.wan) in again]
                leaf_requests = [request for request in self._set_requests(retry, indexes)
                                 if request.step == _STEP_LEAF
                                 and (request.minor, request.ifname) in again]
                retried = {id(r) for r in unknown}
                refused = [r for r in refused if id(r) not in retried]
                refused += self._send(leaf_requests, [minor for _, minor, _, _ in retry])
        if leaves > sum(1 for r in refused if r.request.step == _STEP_LEAF):
            self._leaf_kind_known = True
        return refused

    def _set_requests(self, plan: Sequence[tuple[int, int, int, int]],
                      indexes: Sequence[tuple[str, int]]) -> list[_Request]:
        ceil_of = {self.lan: 2, self.wan: 3}  # the field of a plan entry with that ceil
        requests: list[_Request] = []
        for entry in plan:
            item, minor = entry[0], entry[1]
            handle = ROOT_HANDLE | minor
            for ifname, index in indexes:
                ceil_bps = entry[ceil_of[ifname]]
                requests.append(_Request(self._template(index, _STEP_CLASS, ceil_bps), handle,
                                         PARENT_CLASS, item, minor, ifname, _STEP_CLASS))
                requests.append(_Request(self._template(index, _STEP_LEAF, ceil_bps),
                                         minor << 16, handle, item, minor, ifname, _STEP_LEAF))
        return requests

    def _send(self, requests: Sequence[_Request], minors: Sequence[int]) -> list[_Refusal]:
        """The requests sent in batches; ShaperError if the kernel's answers were lost."""
        if not requests:
            return []
        try:
            if self._requests is None:
                self._requests = _RequestSocket(self._netns)
            return self._requests.send(requests)
        except (OSError, NetlinkError) as error:
            # Answers still queued would be taken for the next batch's: start afresh.
            self._close_requests()
            code = getattr(error, "errno", None) or getattr(error, "code", 0) or 0
            operation = f"sending {len(requests)} tc requests"
            raise ShaperError(f"{operation}: {error}; the outcome for these clients is unknown",
                              operation=operation, errno_=code, minor=minors[0],
                              failed_minors=tuple(minors)) from error

    def _close_requests(self) -> None:
        if self._requests is not None:
            self._requests.close()
            self._requests = None

    def _raise_refused(self, refused: list[_Refusal], missing: ShaperError | None,
                       first_minor: int, minors: Sequence[int]) -> None:
        """ShaperError for the first refusal in batch order (or a missing interface)."""
        for refusal in refused:
            if refusal.errno == errno.ENODEV:  # gone, or recreated: look it up again next time
                self._index.pop(refusal.request.ifname, None)
        if missing is not None:
            missing.minor = first_minor
            missing.failed_minors = tuple(minors)
            raise missing
        if not refused:
            return
        order = {self.lan: 0, self.wan: 1}
        refused.sort(key=lambda r: (r.request.item, order[r.request.ifname], r.request.step))
        first = refused[0].request
        failed = tuple(dict.fromkeys(r.request.minor for r in refused))
        operation = _OPERATIONS[first.step].format(classid(first.minor))
        more = f" (and {len(failed) - 1} more clients)" if len(failed) > 1 else ""
        log.debug("shaper batch refused=%d first=%s interface=%s", len(refused),
                  classid(first.minor), first.ifname)
        raise ShaperError(f"{first.ifname}: {operation}: {refused[0].text}{more}", first.ifname,
                          operation, refused[0].errno, first.minor, failed)
