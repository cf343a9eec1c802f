"""Wire adapter (scapy): DHCP sightings on the LAN and ARP probes.

The DHCP watcher runs scapy's AsyncSniffer in its own thread with a kernel
BPF filter (only DHCP packets ever reach Python, however busy the LAN) and
hands each sighting to a queue that the daemon drains in its own loop.
"""

from __future__ import annotations

import logging
import queue
import time
from typing import Any

from scapy.config import conf

conf.verb = 0

from scapy.layers.dhcp import BOOTP, DHCP  # noqa: E402 - after the verbosity setting
from scapy.layers.l2 import ARP, Ether  # noqa: E402
from scapy.sendrecv import AsyncSniffer, srp  # noqa: E402

from parvis.core.addresses import AddressError, parse_mac  # noqa: E402

log = logging.getLogger(__name__)

Sighting = tuple[str, str | None, float]  # (MAC, IPv4 address or None, when)

_DHCP_MESSAGE_TYPES = {1: "discover", 3: "request", 5: "ack", 7: "release"}


def _dhcp_options(packet: Any) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for option in packet[DHCP].options:
        if isinstance(option, tuple) and len(option) >= 2:
            options[str(option[0])] = option[1]
    return options


def sighting_from_packet(packet: Any, now: float) -> Sighting | None:
    """The device a DHCP packet tells about, or None for anything else."""
    if BOOTP not in packet or DHCP not in packet:
        return None
    bootp = packet[BOOTP]
    try:
        mac = parse_mac(":".join(f"{b:02x}" for b in bytes(bootp.chaddr)[:6]))
    except AddressError:
        return None
    options = _dhcp_options(packet)
    kind = _DHCP_MESSAGE_TYPES.get(options.get("message-type", 0))
    address: str | None = None
    if kind == "ack" and bootp.yiaddr not in (None, "0.0.0.0"):
        address = str(bootp.yiaddr)
    elif kind == "request":
        address = options.get("requested_addr") or (
            str(bootp.ciaddr) if bootp.ciaddr not in (None, "0.0.0.0") else None)
    elif kind is None:
        return None
    return (mac, address, now)


class DhcpWatcher:
    """Watches DHCP on an interface and queues (MAC, IPv4, time) sightings."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.sightings: queue.SimpleQueue[Sighting] = queue.SimpleQueue()
        self._sniffer: Any = None
        self._wanted = False
        self._next_restart = 0.0

    def start(self) -> None:
        """Start sniffing in a background thread."""
        self._wanted = True
        self._sniffer = AsyncSniffer(
            iface=self.interface,
            filter="udp and (port 67 or port 68)",
            store=False,
            prn=self._on_packet,
        )
        self._sniffer.start()
        log.info("watching DHCP interface=%s", self.interface)

    def _on_packet(self, packet: Any) -> None:
        try:
            sighting = sighting_from_packet(packet, time.time())
        except (IndexError, ValueError, TypeError) as error:
            log.debug("unreadable DHCP packet: %s", error)
            return
        if sighting is not None:
            self.sightings.put(sighting)

    def drain(self, limit: int = 10_000) -> list[Sighting]:
        """Every sighting queued since the last call (at most ``limit``).

        Also restarts the sniffer if it died: scapy's ends on "Network is down"
        when the LAN link bounces, and would not come back by itself.
        """
        self._keep_alive()
        out: list[Sighting] = []
        while len(out) < limit:
            try:
                out.append(self.sightings.get_nowait())
            except queue.Empty:
                break
        return out

    def _keep_alive(self) -> None:
        sniffer = self._sniffer
        if not self._wanted or sniffer is None:
            return
        # The thread, not scapy's `running` flag: an error other than Ctrl-C ends the
        # thread with the flag still set.
        thread = getattr(sniffer, "thread", None)
        if thread is None or thread.is_alive():
            return
        now = time.monotonic()
        if now < self._next_restart:
            return
        self._next_restart = now + 1.0
        log.warning("DHCP watching stopped (the link went down?); restarting it "
                    "interface=%s", self.interface)
        try:
            self.start()
        except (OSError, RuntimeError) as error:
            log.warning("DHCP watching cannot restart yet interface=%s error=%s",
                        self.interface, error)

    def stop(self) -> None:
        """Stop the sniffer thread."""
        self._wanted = False
        if self._sniffer is not None and getattr(self._sniffer, "running", False):
            try:
                self._sniffer.stop()
            except (OSError, RuntimeError) as error:
                log.debug("stopping the DHCP sniffer: %s", error)
        self._sniffer = None


def arp_probe(interface: str, ips: list[str], timeout_s: float = 0.5) -> dict[str, str]:
    """Ask who has each of ``ips`` on ``interface``, all at once; address -> MAC that answered."""
    if not ips:
        return {}
    try:
        answered, _unanswered = srp([Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=ip) for ip in ips],
                                    iface=interface, timeout=timeout_s, verbose=False)
    except OSError as error:
        log.warning("ARP probe failed interface=%s count=%d error=%s", interface, len(ips), error)
        return {}
    found: dict[str, str] = {}
    for _sent, reply in answered:
        if ARP in reply and reply[ARP].psrc in ips:
            try:
                found[str(reply[ARP].psrc)] = parse_mac(reply[ARP].hwsrc)
            except AddressError:
                continue
    return found


def arp_presence(interface: str, targets: list[tuple[str, str]], timeout_s: float = 1.0,
                 tries: int = 3) -> set[str]:
    """Which of the (address, MAC) pairs answer a unicast ARP request; raises OSError.

    Unicast to the MAC netctl knows, as the kernel's own neighbour probes are, so
    only that device is asked; a phone asleep may miss one request, so each is
    sent ``tries`` times. A failure to send raises instead of reporting everyone
    absent: an idle probe that cannot run must never end sessions.
    """
    if not targets:
        return set()
    wanted = dict(targets)
    answered, _unanswered = srp(
        [Ether(dst=mac) / ARP(pdst=ip, hwdst=mac) for ip, mac in targets],
        iface=interface, timeout=timeout_s / tries, retry=tries - 1, verbose=False)
    present: set[str] = set()
    for _sent, reply in answered:
        if ARP not in reply:
            continue
        ip = str(reply[ARP].psrc)
        try:
            mac = parse_mac(reply[ARP].hwsrc)
        except AddressError:
            continue
        if wanted.get(ip) == mac:
            present.add(ip)
    return present
