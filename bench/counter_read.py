"""Reading every client counter: netctl's nfnetlink dump against libnftables, same run.

Builds a throwaway network namespace with the Parvis table and N clients (an
IPv4 and an IPv6 address each, so four elements per client), then times:

* ``netctl.setdump`` through ``Nft.client_elements()`` (what the sweep uses);
* libnftables' JSON listing of the table, in-process (``list table``), parsed;
* the ``nft -j list table`` command;
* optionally (``--pyroute2``) pyroute2's generic nfnetlink parser.

Run as root: ``.venv/bin/python -m bench counters --clients 10000``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

NAMESPACE = f"pvbench{os.getpid() % 100000}"


def _in_namespace(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", NAMESPACE, *argv], capture_output=True,
                          text=True, check=True, timeout=600)


def _median_ms(action: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(clients: int, repeat: int, with_pyroute2: bool) -> dict[str, float]:
    """Runs inside the namespace: build the table, time each reader."""
    from netctl import ruleset
    from netctl.nft import Nft
    from parvis.core.config import parse_config
    from parvis.core.reconcile import plan
    from parvis.core.sessions import Session

    config = parse_config({"gateway": {"id": "bench", "lan_interface": "lan0",
                                       "wan_interface": "wan0"},
                           "portal": {"address": "10.77.0.1"}})
    nft = Nft()
    nft.apply(ruleset.build_table(config, [], []))
    now = time.time()
    sessions = []
    for i in range(clients):
        mac = f"02:aa:00:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"
        sessions.append(Session(
            mac=mac, ipv4=str(ipaddress.IPv4Address("10.77.16.0") + i),
            ipv6=[str(ipaddress.IPv6Address("fd77::1:0") + i)], started_at=now,
            expires_at=now + 3600, idle_timeout_s=0, last_activity_at=now))
    nft.apply(ruleset.add_client_elements(plan(sessions, {}, now).add))
    readings = nft.client_elements()
    assert readings is not None and len(readings) == 4 * clients, len(readings or {})

    def libnftables_json() -> None:
        objects = nft.query([{"list": {"table": {"family": "inet", "name": "parvis"}}}])
        count = sum(len(o["set"].get("elem", [])) for o in objects if "set" in o)
        assert count >= 4 * clients

    figures = {
        "elements": 4 * clients,
        "setdump_ms": _median_ms(nft.client_elements, repeat),
        "libnftables_json_ms": _median_ms(libnftables_json, repeat),
        "nft_command_ms": _median_ms(lambda: subprocess.run(
            ["nft", "-j", "list", "table", "inet", "parvis"], capture_output=True, check=True),
            repeat),
    }
    if with_pyroute2:
        figures["pyroute2_ms"] = _median_ms(lambda: _pyroute2_read(clients), 1)
    return figures


def _pyroute2_read(clients: int) -> None:
    from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
    from pyroute2.netlink.nfnetlink.nftsocket import NFT_MSG_GETSETELEM, nft_set_elem_list_msg
    from pyroute2.nftables.main import NFTables

    with NFTables(nfgen_family=1) as socket:
        count = 0
        for name in ("clients4_up", "clients4_down", "clients6_up", "clients6_down"):
            message = nft_set_elem_list_msg()
            message["attrs"] = [("NFTA_SET_ELEM_LIST_TABLE", "parvis"),
                                ("NFTA_SET_ELEM_LIST_SET", name)]
            for reply in socket.request_get(message, NFT_MSG_GETSETELEM,
                                            NLM_F_DUMP | NLM_F_REQUEST):
                for element in reply.get_attr("NFTA_SET_ELEM_LIST_ELEMENTS") or []:
                    data = element.get_attr("NFTA_SET_ELEM_EXPR").get_attr("NFTA_EXPR_DATA")
                    data.get_attr("NFTA_COUNTER_BYTES")
                    count += 1
        assert count == 4 * clients


def report(f: dict[str, float]) -> str:
    """The figures as a small table."""
    rows = [("netctl (nfnetlink dump, setdump.py)", f["setdump_ms"]),
            ("libnftables JSON listing, in-process", f["libnftables_json_ms"]),
            ("nft -j list table (command)", f["nft_command_ms"])]
    if "pyroute2_ms" in f:
        rows.append(("pyroute2 generic parser", f["pyroute2_ms"]))
    lines = [f"reading {int(f['elements'])} counted elements (median of runs):"]
    lines += [f"  {name:<40} {ms:8.1f} ms  ({ms / f['setdump_ms']:.1f}x)" for name, ms in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Create the namespace, measure inside it, remove it, print the figures."""
    parser = argparse.ArgumentParser(prog="bench counters", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pyroute2", action="store_true", help="also time pyroute2 (slow)")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        print(json.dumps(measure(args.clients, args.repeat, args.pyroute2)))
        return 0
    subprocess.run(["ip", "netns", "add", NAMESPACE], check=True)
    try:
        subprocess.run(["ip", "-n", NAMESPACE, "link", "add", "lan0", "type", "veth", "peer",
                        "name", "wan0"], check=True)
        argv_inside = [sys.executable, "-m", "bench.counter_read", "--inside",
                       "--clients", str(args.clients), "--repeat", str(args.repeat)]
        if args.pyroute2:
            argv_inside.append("--pyroute2")
        figures = json.loads(_in_namespace(argv_inside).stdout)
    finally:
        subprocess.run(["ip", "netns", "del", NAMESPACE], check=False)
    print(report(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
