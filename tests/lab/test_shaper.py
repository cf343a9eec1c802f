"""The shaper holds real traffic to its rates: HTB and nftables in throwaway namespaces.

A topology of its own, independent of the lab (names ``pt<pid>shp-*``)::

    pt<pid>shp-c1..c5 eth0 ── lan<i> ─ br-lan (bridge) │ wan0 ──── up0 pt<pid>shp-srv
                     10.99.0.1<i>/16   10.99.0.1/16     198.51.100.1/24   203.0.113.10 (lo)
                                       pt<pid>shp-gw                        iperf3 servers

The gateway namespace classifies with a small nftables table built here, shaped
like netctl's (``meta priority set ip daddr map @shape4``), and the Shaper works
in it through a netlink socket opened there (``Shaper(netns=...)``). Throughput
is measured with iperf3 (JSON output) from the client namespaces.

The batch operations (``set_clients``, ``remove_clients``) are checked against
tc's own listing, including the refusals they must report and leave
repairable; ``test_batch_timings`` prints the figures (run with ``-s``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from netctl.shaper import (
    MINOR_FIRST,
    MISSING,
    ClientRate,
    Shaper,
    ShaperError,
    applied_rate,
    classid,
    fifo_limit,
)
from tests.conftest import SESSION_LAB_PREFIX

if os.geteuid() != 0:
    pytest.skip("shaper lab tests need root (network namespaces)", allow_module_level=True)
if shutil.which("iperf3") is None or shutil.which("nft") is None:
    pytest.skip("shaper lab tests need iperf3 and nft", allow_module_level=True)

pytestmark = pytest.mark.lab

LAN = "br-lan"
WAN = "wan0"
SERVER = "203.0.113.10"
CLIENTS = 5
IPERF_PORT = 5201  # client i talks to the server on IPERF_PORT + i - 1
TABLE = "shp"
MBIT = 1_000_000
# Senders put wire-size packets on the wire, as a Wi-Fi client or a path through the
# internet does: over veth, TCP would otherwise hand the gateway 64 KiB TSO packets,
# each a 130 ms burst at 4 Mbit/s, and 0.5 s intervals would measure that granularity.
SENDER_SEGMENTS = "link set {} gso_max_segs 1"
# Rates for batches: a few distinct ones, as plans give (one cached message each).
RATES = (ClientRate(10 * MBIT, 2 * MBIT), ClientRate(3 * MBIT, 0), ClientRate(0, 0))
LEAF = re.compile(r"^qdisc (\S+) ([0-9a-f]+): parent 1:([0-9a-f]+) (.*)$", re.MULTILINE)


def client_ip(i: int) -> str:
    return f"10.99.0.{10 + i}"


def run(args: list[str], input_text: str | None = None, timeout: float = 30,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, input=input_text, capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}{result.stderr}")
    return result


@dataclass
class Topology:
    """Namespaces, links, nftables table and iperf3 servers; ``down()`` removes all of it."""

    # Inside the session guard's names (tests/conftest.py): a leak fails the run.
    prefix: str = field(default_factory=lambda: f"{SESSION_LAB_PREFIX}shp-")
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)

    def ns(self, node: str) -> str:
        return f"{self.prefix}{node}"

    @property
    def gw(self) -> str:
        return self.ns("gw")

    def namespaces(self) -> list[str]:
        return [self.ns("gw"), self.ns("srv")] + [self.ns(f"c{i}") for i in range(1, CLIENTS + 1)]

    def exec(self, node: str, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.ns(node), *args], **kwargs)

    def batch(self, node: str, commands: list[str]) -> None:
        run(["ip", "-n", self.ns(node), "-batch", "-"], input_text="\n".join(commands) + "\n")

    def up(self) -> None:
        for name in self.namespaces():
            run(["ip", "netns", "add", name])
        gw = ["link set lo up",
              f"link add {LAN} type bridge stp_state 0",
              f"link add {WAN} type veth peer name up0 netns {self.ns('srv')}"]
        for i in range(1, CLIENTS + 1):
            gw += [f"link add lan{i} type veth peer name eth0 netns {self.ns(f'c{i}')}",
                   f"link set lan{i} master {LAN} up"]
        gw += [f"addr add 10.99.0.1/16 dev {LAN}", f"link set {LAN} up",
               f"addr add 198.51.100.1/24 dev {WAN}", f"link set {WAN} up",
               "route add default via 198.51.100.2"]
        self.batch("gw", gw)
        self.exec("gw", ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
        self.batch("srv", ["link set lo up", f"addr add {SERVER}/32 dev lo",
                           "addr add 198.51.100.2/24 dev up0", "link set up0 up",
                           SENDER_SEGMENTS.format("up0"),
                           "route add 10.99.0.0/16 via 198.51.100.1"])
        for i in range(1, CLIENTS + 1):
            self.batch(f"c{i}", ["link set lo up", f"addr add {client_ip(i)}/16 dev eth0",
                                 "link set eth0 up", "route add default via 10.99.0.1",
                                 SENDER_SEGMENTS.format("eth0")])
        self.exec("gw", ["nft", "-f", "-"], input_text=f"""
table inet {TABLE} {{
    map shape4 {{ type ipv4_addr : classid; flags timeout; }}
    chain postrouting {{
        type filter hook postrouting priority 0;
        oifname "{LAN}" meta priority set ip daddr map @shape4
    }}
    chain forward {{
        type filter hook forward priority 0;
        iifname "{LAN}" oifname "{WAN}" meta priority set ip saddr map @shape4
    }}
}}
""")
        for i in range(1, CLIENTS + 1):
            self.processes.append(subprocess.Popen(
                ["ip", "netns", "exec", self.ns("srv"), "iperf3", "-s", "-J", "-B", SERVER,
                 "-p", str(IPERF_PORT + i - 1)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for i in range(1, CLIENTS + 1):
            self.wait_for_port(IPERF_PORT + i - 1)

    def wait_for_port(self, port: int) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            listening = self.exec("srv", ["ss", "-Hltn", f"sport = :{port}"]).stdout
            if listening.strip():
                return
            time.sleep(0.05)
        raise AssertionError(f"iperf3 does not listen on port {port}")

    def down(self) -> None:
        """Kill every process we started or that lives in our namespaces, delete the namespaces."""
        pids = {p.pid for p in self.processes}
        for name in self.namespaces():
            if os.path.exists(f"/run/netns/{name}"):
                found = run(["ip", "netns", "pids", name], check=False).stdout.split()
                pids.update(int(pid) for pid in found)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self.processes.clear()
        for name in self.namespaces():
            if os.path.exists(f"/run/netns/{name}"):
                run(["ip", "netns", "del", name], check=False)

    # --- classification -------------------------------------------------------------------

    def classify(self, i: int, minor: int) -> None:
        """Put client i's address into the map with class 1:<minor> (as netctl's JSON does)."""
        element = [{"elem": {"val": client_ip(i), "timeout": 600}}, classid(minor)]
        batch = {"nftables": [{"add": {"element": {
            "family": "inet", "table": TABLE, "name": "shape4", "elem": [element]}}}]}
        self.exec("gw", ["nft", "-j", "-f", "-"], input_text=json.dumps(batch))

    def unclassify_all(self) -> None:
        self.exec("gw", ["nft", "flush", "map", "inet", TABLE, "shape4"])

    def map_listing(self) -> list[Any]:
        listing = json.loads(self.exec("gw", ["nft", "-j", "list", "map", "inet", TABLE,
                                              "shape4"]).stdout)
        for obj in listing["nftables"]:
            if "map" in obj:
                return list(obj["map"].get("elem", []))
        return []

    # --- measuring -------------------------------------------------------------------------

    def iperf(self, i: int, seconds: float, reverse: bool, interval: float = 1
              ) -> subprocess.Popen[str]:
        """Start iperf3 in client i (``reverse``: the server sends, i.e. a download)."""
        args = ["ip", "netns", "exec", self.ns(f"c{i}"), "iperf3", "-c", SERVER,
                "-p", str(IPERF_PORT + i - 1), "-t", str(seconds), "-i", str(interval), "-J"]
        # Intervals as the receiver saw them: the server's, for an upload.
        args.append("-R" if reverse else "--get-server-output")
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        self.processes.append(process)  # killed by down() if a test fails half-way
        return process

    def qdisc_kinds(self, ifname: str) -> str:
        return self.exec("gw", ["tc", "qdisc", "show", "dev", ifname]).stdout

    def class_listing(self, ifname: str) -> str:
        return self.exec("gw", ["tc", "class", "show", "dev", ifname]).stdout

    def leaves(self, ifname: str) -> dict[int, tuple[str, str, str]]:
        """Leaf qdiscs under classes 1:<minor>, from tc's listing: minor -> (kind, handle, rest)."""
        return {int(minor, 16): (kind, handle, rest)
                for kind, handle, minor, rest in LEAF.findall(self.qdisc_kinds(ifname))}


def iperf_result(process: subprocess.Popen[str], timeout: float = 30) -> dict[str, Any]:
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"iperf3 failed: {stdout[-2000:]}{stderr}"
    result: dict[str, Any] = json.loads(stdout)
    return result


def receiver_intervals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-interval reports of the receiving side (the server's for an upload)."""
    if result["start"]["test_start"]["reverse"]:
        return list(result["intervals"])
    return list(result["server_output_json"]["intervals"])


def received_bps(result: dict[str, Any], skip_s: float = 0.0) -> float:
    """Bits/s the receiving side saw, over the intervals starting at or after ``skip_s``."""
    if not skip_s:
        return float(result["end"]["sum_received"]["bits_per_second"])
    intervals = [iv["sum"] for iv in receiver_intervals(result)
                 if iv["sum"]["start"] >= skip_s - 1e-3]
    total_bytes = sum(iv["bytes"] for iv in intervals)
    total_s = sum(iv["seconds"] for iv in intervals)
    return float(total_bytes * 8 / total_s)


def measure(topo: Topology, i: int, seconds: float, reverse: bool, skip_s: float = 1.0) -> float:
    """Throughput of one iperf3 run from client i, leaving out the first ``skip_s`` (ramp-up)."""
    return received_bps(iperf_result(topo.iperf(i, seconds, reverse, interval=0.5)), skip_s)


def ping_rtts_ms(topo: Topology, i: int, count: int = 20, interval_s: float = 0.1) -> list[float]:
    out = topo.exec(f"c{i}", ["ping", "-n", "-c", str(count), "-i", str(interval_s), "-W", "2",
                              SERVER], check=False, timeout=count * interval_s + 10).stdout
    return [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]


def jain(values: list[float]) -> float:
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def within(value: float, target: float, tolerance: float = 0.10) -> bool:
    return abs(value - target) <= tolerance * target


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    """The throwaway topology, shared by this module; removed whatever happens.

    Name prefix ``pt<pid>shp-``, scope ``module``. Example::

        def test_x(topo: Topology, shaper: Shaper) -> None:
            shaper.set_client(0x10, ClientRate(10 * MBIT, 0))
            topo.classify(1, 0x10)
    """
    topology = Topology()
    try:
        topology.up()
        yield topology
    finally:
        topology.down()


def make_shaper(topo: Topology, down_cap: int = 0, up_cap: int = 0) -> Shaper:
    return Shaper(LAN, WAN, uplink_down_bps=down_cap, uplink_up_bps=up_cap, netns=topo.gw)


@pytest.fixture
def shaper(topo: Topology) -> Iterator[Shaper]:
    """A Shaper on the topology's gateway, without uplink caps, ensured (function scope).

    Afterwards: no map element, no qdisc of ours.
    """
    instance = make_shaper(topo)
    try:
        instance.ensure()
        yield instance
    finally:
        topo.unclassify_all()
        instance.remove_all()
        instance.close()


@pytest.fixture(autouse=True)
def measuring_processes_gone(topo: Topology) -> Iterator[None]:
    """After each test (autouse): the iperf3 clients it started are gone, passed or not."""
    yield
    for process in topo.processes[CLIENTS:]:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)
    del topo.processes[CLIENTS:]


# --- tests --------------------------------------------------------------------------------

def test_client_rate_holds_in_both_directions(topo: Topology, shaper: Shaper) -> None:
    # Made by a batch, among others: the cached message patched for this minor.
    shaper.set_clients([(MINOR_FIRST + 1, RATES[1]), (MINOR_FIRST, ClientRate(10 * MBIT, 2 * MBIT)),
                        (MINOR_FIRST + 2, RATES[0])])
    topo.classify(1, MINOR_FIRST)

    down = measure(topo, 1, 3, reverse=True)
    up = measure(topo, 1, 3, reverse=False)
    print(f"\n10 Mbit/s down -> {down / MBIT:.2f}, 2 Mbit/s up -> {up / MBIT:.2f}")
    assert within(down, 10 * MBIT), down
    assert within(up, 2 * MBIT), up


def test_rate_change_takes_hold_during_a_transfer(topo: Topology, shaper: Shaper) -> None:
    shaper.set_client(MINOR_FIRST, ClientRate(10 * MBIT, 0))
    topo.classify(1, MINOR_FIRST)
    process = topo.iperf(1, 5, reverse=True, interval=0.5)
    time.sleep(1.5)
    changed = time.monotonic()
    shaper.set_client(MINOR_FIRST, ClientRate(4 * MBIT, 0))
    change_s = time.monotonic() - changed
    result = iperf_result(process)

    # iperf3's clock starts a little after the process did, so an interval starting at
    # 3.5 s on it starts at least 2 s after the change.
    rates = [iv["sum"]["bits_per_second"] for iv in result["intervals"]
             if iv["sum"]["start"] >= 1.5 + 2 - 1e-3]
    print(f"\nchange took {change_s * 1000:.2f} ms; 2 s after it: "
          + ", ".join(f"{r / MBIT:.2f}" for r in rates))
    assert len(rates) >= 2
    assert all(within(r, 4 * MBIT) for r in rates), rates


def test_capped_uplink_is_shared_fairly_and_stays_responsive(topo: Topology) -> None:
    cap = 20 * MBIT
    capped = make_shaper(topo, down_cap=cap)
    try:
        capped.ensure()
        # One batch; plans above the cap.
        capped.set_clients([(MINOR_FIRST + i, ClientRate(50 * MBIT, 0))
                            for i in range(1, CLIENTS + 1)])
        for i in range(1, CLIENTS + 1):
            topo.classify(i, MINOR_FIRST + i)
        baseline = ping_rtts_ms(topo, 5)

        downloads = [topo.iperf(i, 4, reverse=True, interval=0.5) for i in range(1, 5)]
        time.sleep(1.5)
        loaded = ping_rtts_ms(topo, 5)
        rates = [received_bps(iperf_result(p), skip_s=1.0) for p in downloads]
    finally:
        topo.unclassify_all()
        capped.remove_all()
        capped.close()
    fairness = jain(rates)
    increase = statistics.median(loaded) - statistics.median(baseline)
    print(f"\nshares {[round(r / MBIT, 2) for r in rates]} sum {sum(rates) / MBIT:.2f} "
          f"Jain {fairness:.3f}; ping median {statistics.median(baseline):.3f} -> "
          f"{statistics.median(loaded):.3f} ms")
    assert fairness >= 0.9, rates
    assert within(sum(rates), cap), rates
    assert len(loaded) >= 15 and increase < 50, (baseline, loaded)


def test_unshaped_client_is_not_slowed(topo: Topology, shaper: Shaper) -> None:
    shaper.set_client(MINOR_FIRST, ClientRate(10 * MBIT, 2 * MBIT))  # someone else is shaped
    topo.classify(2, MINOR_FIRST)
    with_htb = measure(topo, 1, 2, reverse=True, skip_s=0.5)
    shaper.remove_all()
    without = measure(topo, 1, 2, reverse=True, skip_s=0.5)
    print(f"\nunshaped download: {with_htb / MBIT:.0f} Mbit/s with HTB, "
          f"{without / MBIT:.0f} without (ratio {with_htb / without:.2f})")
    assert with_htb / without > 0.5


def test_ensure_keeps_classes_and_removal_leaves_nothing(topo: Topology, shaper: Shaper) -> None:
    rates = {MINOR_FIRST: ClientRate(10 * MBIT, 2 * MBIT), 0x1234: ClientRate(0, 3 * MBIT),
             0xFFFE: ClientRate(1 * MBIT, 0)}
    for minor, rate in rates.items():
        shaper.set_client(minor, rate)
    expected = {minor: applied_rate(rate, 0, 0) for minor, rate in rates.items()}
    assert shaper.classes() == expected

    shaper.ensure()
    again = make_shaper(topo)  # as after a restart of netctl
    try:
        again.ensure()
        assert again.classes() == expected
    finally:
        again.close()

    shaper.remove_client(0x1234)
    shaper.remove_client(0x1234)  # absent: no error
    del expected[0x1234]
    assert shaper.classes() == expected
    assert "1:1234" not in topo.class_listing(LAN) + topo.class_listing(WAN)

    shaper.remove_all()
    shaper.remove_all()  # absent: no error
    assert shaper.classes() == {}
    for ifname in (LAN, WAN):
        assert "htb" not in topo.qdisc_kinds(ifname)
    shaper.remove_client(MINOR_FIRST)  # no root at all: no error either


def test_classid_is_what_nft_and_tc_show(topo: Topology, shaper: Shaper) -> None:
    shaper.set_client(0x1AB, ClientRate(1 * MBIT, 1 * MBIT))
    topo.classify(3, 0x1AB)
    assert classid(0x1AB) == "1:1ab"
    assert [element[1] for element in topo.map_listing()] == ["1:1ab"]
    assert "class htb 1:1ab " in topo.class_listing(LAN)


def test_ensure_replaces_a_foreign_root_and_follows_a_new_cap(topo: Topology,
                                                              shaper: Shaper) -> None:
    shaper.remove_all()
    topo.exec("gw", ["tc", "qdisc", "add", "dev", WAN, "root", "handle", "5:", "pfifo"])
    shaper.remove_all()  # not ours: left alone
    assert "pfifo 5: root" in topo.qdisc_kinds(WAN)
    shaper.ensure()
    assert "htb 1: root" in topo.qdisc_kinds(WAN)
    assert "default 0" in topo.qdisc_kinds(WAN) and "direct_qlen 1000" in topo.qdisc_kinds(WAN)

    shaper.set_client(0x42, ClientRate(0, 0))
    capped = make_shaper(topo, down_cap=20 * MBIT, up_cap=5 * MBIT)
    try:
        capped.ensure()
        assert capped.classes() == {0x42: ClientRate(0, 0)}  # kept, as it was set
        assert "rate 20Mbit ceil 20Mbit" in topo.class_listing(LAN)
        assert "rate 5Mbit ceil 5Mbit" in topo.class_listing(WAN)
        capped.set_client(0x42, ClientRate(0, 0))
        assert capped.classes() == {0x42: ClientRate(20 * MBIT, 5 * MBIT)}
    finally:
        capped.close()


def test_failures_are_shaper_errors_naming_interface_and_operation(topo: Topology,
                                                                   shaper: Shaper) -> None:
    shaper.remove_all()
    with pytest.raises(ShaperError) as raised:
        shaper.set_client(0x20, ClientRate(1 * MBIT, 1 * MBIT))  # no ensure(): no HTB 1:
    assert raised.value.interface == LAN and LAN in str(raised.value)
    assert "setting class 1:20" in str(raised.value) and raised.value.minor == 0x20

    missing = Shaper("nosuch0", WAN, netns=topo.gw)
    try:
        with pytest.raises(ShaperError, match="nosuch0: no such interface"):
            missing.ensure()
    finally:
        missing.close()


# --- batches ------------------------------------------------------------------------------

def expected_leaf(rate_bps: int, kind: str) -> str:
    """The start of what tc shows after a leaf's handle and parent, for a class with that ceil."""
    return f"limit {fifo_limit(rate_bps or 10_000 * MBIT)}p" if kind == "pfifo" else "limit "


def test_batch_of_2000_new_classes_reads_back_with_rates_and_leaves(topo: Topology,
                                                                   shaper: Shaper) -> None:
    items = [(MINOR_FIRST + i, RATES[i % len(RATES)]) for i in range(2000)]
    shaper.set_clients(items)

    assert shaper.classes() == {minor: applied_rate(rate, 0, 0) for minor, rate in items}
    for ifname in (LAN, WAN):
        leaves = topo.leaves(ifname)
        assert sorted(leaves) == [minor for minor, _ in items], ifname
        kinds = {kind for kind, _, _ in leaves.values()}
        assert kinds in ({"fq_codel"}, {"pfifo"}), kinds
        for minor, rate in items:
            kind, handle, rest = leaves[minor]
            assert handle == f"{minor:x}"
            ceil = rate.down_bps if ifname == LAN else rate.up_bps
            assert rest.startswith(expected_leaf(ceil, kind)), (ifname, minor, rest)


def test_batch_mixing_new_and_existing_classes_changes_only_what_differs(topo: Topology,
                                                                        shaper: Shaper) -> None:
    first, second = ClientRate(10 * MBIT, 2 * MBIT), ClientRate(1 * MBIT, 4 * MBIT)
    shaper.set_clients([(0x10, first), (0x11, first)])
    shaper.set_clients([(0x10, first), (0x12, second), (0x11, second)])  # same, new, changed

    assert shaper.classes() == {0x10: applied_rate(first, 0, 0), 0x11: applied_rate(second, 0, 0),
                                0x12: applied_rate(second, 0, 0)}
    for ifname, ceils in ((LAN, {0x10: 10 * MBIT, 0x11: 1 * MBIT, 0x12: 1 * MBIT}),
                          (WAN, {0x10: 2 * MBIT, 0x11: 4 * MBIT, 0x12: 4 * MBIT})):
        leaves = topo.leaves(ifname)
        assert sorted(leaves) == [0x10, 0x11, 0x12]
        for minor, ceil in ceils.items():
            kind, handle, rest = leaves[minor]
            assert handle == f"{minor:x}" and rest.startswith(expected_leaf(ceil, kind)), rest
    shaper.set_client(0x11, first)  # the single-client path: the same requests
    assert shaper.classes()[0x11] == applied_rate(first, 0, 0)


def test_batch_remove_takes_classes_and_leaves_and_ignores_absent(topo: Topology,
                                                                 shaper: Shaper) -> None:
    minors = list(range(MINOR_FIRST, MINOR_FIRST + 60))
    shaper.set_clients([(minor, RATES[0]) for minor in minors])
    gone, kept = minors[::2], minors[1::2]

    shaper.remove_clients(iter(gone + [0x5000]))  # any iterable; 1:5000 never existed
    shaper.remove_clients(gone)  # absent: no error
    shaper.remove_clients([])

    assert shaper.classes() == {minor: applied_rate(RATES[0], 0, 0) for minor in kept}
    for ifname in (LAN, WAN):
        assert sorted(topo.leaves(ifname)) == kept
        listing = topo.class_listing(ifname)
        assert not [m for m in gone if f"class htb {classid(m)} " in listing]


def test_bad_minor_or_rate_in_a_batch_sends_nothing(shaper: Shaper) -> None:
    with pytest.raises(ValueError, match="outside"):
        shaper.set_clients([(0x10, RATES[0]), (0xFFFF, RATES[0])])
    with pytest.raises(ValueError, match="rates are bits/s"):
        shaper.set_clients([(0x10, RATES[0]), (0x11, ClientRate(-1, 0))])
    assert shaper.classes() == {}
    shaper.set_clients([(0x10, RATES[0])])
    with pytest.raises(ValueError, match="outside"):
        shaper.remove_clients([0x10, 0x5])
    assert list(shaper.classes()) == [0x10]


def test_refused_client_is_named_the_rest_applied_and_set_client_repairs(topo: Topology,
                                                                        shaper: Shaper) -> None:
    # Someone else's class 1:70 on LAN with a child: its leaf cannot be set (HTB: EINVAL).
    tc = ["tc", "class", "add", "dev", LAN]
    topo.exec("gw", [*tc, "parent", "1:1", "classid", "1:70", "htb", "rate", "1mbit"])
    topo.exec("gw", [*tc, "parent", "1:70", "classid", "1:71", "htb", "rate", "1mbit"])
    items = [(0x20, RATES[0]), (0x70, RATES[1]), (0x21, RATES[2])]

    with pytest.raises(ShaperError) as raised:
        shaper.set_clients(items)
    error = raised.value
    assert (error.minor, error.interface, error.failed_minors) == (0x70, LAN, (0x70,))
    assert error.operation == "setting the leaf qdisc of 1:70" and LAN in str(error)
    expected = {minor: applied_rate(rate, 0, 0) for minor, rate in items}
    assert shaper.classes() == expected  # every class applied, 1:70 changed too
    assert sorted(topo.leaves(LAN)) == [0x20, 0x21] and sorted(topo.leaves(WAN)) == [0x20, 0x21,
                                                                                      0x70]

    topo.exec("gw", ["tc", "class", "del", "dev", LAN, "classid", "1:71"])  # the obstacle goes
    shaper.set_client(0x70, RATES[1])
    assert shaper.classes() == expected
    assert sorted(topo.leaves(LAN)) == [0x20, 0x21, 0x70]


def test_root_flushed_under_the_shaper_fails_one_side_and_ensure_repairs(topo: Topology,
                                                                        shaper: Shaper) -> None:
    shaper.set_clients([(0x30, RATES[0])])
    topo.exec("gw", ["tc", "qdisc", "del", "dev", WAN, "root"])  # a manual flush
    items = [(0x31, RATES[1]), (0x30, RATES[2]), (0x32, RATES[0])]

    with pytest.raises(ShaperError) as raised:
        shaper.set_clients(items)
    error = raised.value
    assert (error.minor, error.interface, error.failed_minors) == (0x31, WAN, (0x31, 0x30, 0x32))
    assert error.operation == "setting class 1:31"
    assert shaper.classes() == {minor: ClientRate(applied_rate(rate, 0, 0).down_bps, MISSING)
                                for minor, rate in items}  # LAN side applied

    shaper.ensure()
    shaper.set_clients(items)
    assert shaper.classes() == {minor: applied_rate(rate, 0, 0) for minor, rate in items}


def test_interface_vanishing_is_named_and_repairable_once_it_is_back(topo: Topology) -> None:
    lan, wan = "shxa0", "shxb0"
    for name in (lan, wan):
        topo.exec("gw", ["ip", "link", "add", name, "type", "bridge"])
    shaper = Shaper(lan, wan, netns=topo.gw)
    try:
        shaper.ensure()
        shaper.set_clients([(0x40, RATES[0])])
        topo.exec("gw", ["ip", "link", "del", wan])

        with pytest.raises(ShaperError) as raised:
            shaper.set_clients([(0x41, RATES[1]), (0x40, RATES[2])])
        error = raised.value
        assert (error.minor, error.interface, error.errno) == (0x41, wan, errno.ENODEV)
        with pytest.raises(ShaperError, match=f"{wan}: no such interface"):
            shaper.remove_clients([0x40])  # looked up afresh: gone

        topo.exec("gw", ["ip", "link", "add", wan, "type", "bridge"])
        shaper.ensure()
        shaper.set_clients([(0x41, RATES[1]), (0x40, RATES[2])])
        assert shaper.classes() == {0x40: applied_rate(RATES[2], 0, 0),
                                    0x41: applied_rate(RATES[1], 0, 0)}
    finally:
        shaper.close()
        for name in (lan, wan):
            topo.exec("gw", ["ip", "link", "del", name], check=False)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def test_batch_timings(topo: Topology, shaper: Shaper) -> None:
    """Prints what batches cost against the one-by-one path; asserts only a loose bound.

    Class creation and deletion cost the kernel time in proportion to the classes
    already under the HTB qdisc (it walks them all to rebind filters), so the
    10,000 figures grow faster than tenfold; a rate change does not.
    """
    def items(count: int, offset: int = 0) -> list[tuple[int, ClientRate]]:
        return [(MINOR_FIRST + i, RATES[(i + offset) % len(RATES)]) for i in range(count)]

    def set_one_by_one() -> None:
        for minor, rate in items(1000):
            shaper.set_client(minor, rate)

    def remove_one_by_one() -> None:
        for minor, _ in items(1000):
            shaper.remove_client(minor)

    lines = []
    add_s = timed(set_one_by_one)
    remove_s = timed(remove_one_by_one)
    lines.append(f"1,000 one by one: set_client {add_s * 1000:.0f} ms, "
                 f"remove_client {remove_s * 1000:.0f} ms")
    assert shaper.classes() == {}

    batch_add_s = timed(lambda: shaper.set_clients(items(1000)))
    remove_s = timed(lambda: shaper.remove_clients(m for m, _ in items(1000)))
    lines.append(f"1,000 batch: set_clients {batch_add_s * 1000:.0f} ms, "
                 f"remove_clients {remove_s * 1000:.0f} ms")

    add_s = timed(lambda: shaper.set_clients(items(10_000)))
    assert len(shaper.classes()) == 10_000
    change_s = timed(lambda: shaper.set_clients(items(10_000, offset=1)))
    assert shaper.classes() == {m: applied_rate(r, 0, 0) for m, r in items(10_000, offset=1)}
    last = [m for m, _ in items(10_000)[-1000:]]
    remove_last_s = timed(lambda: shaper.remove_clients(last))
    readd_last_s = timed(lambda: shaper.set_clients(items(10_000, offset=1)[-1000:]))
    remove_s = timed(lambda: shaper.remove_clients(m for m, _ in items(10_000)))
    lines.append(f"10,000 batch: set_clients new {add_s * 1000:.0f} ms, "
                 f"all rates changed {change_s * 1000:.0f} ms, remove_clients {remove_s * 1000:.0f}"
                 f" ms; 1,000 with 9,000 others there: removed {remove_last_s * 1000:.0f} ms, "
                 f"added {readd_last_s * 1000:.0f} ms")
    print("\n" + "\n".join(lines))
    assert shaper.classes() == {}
    # pyroute2's request path took 2.5 s for these 1,000 (2 classes and 2 leaves each).
    assert batch_add_s < 1.0
