"""netctl at scale: 10,000 authorised clients on one lab gateway, with baselines in the same run.

Measures, each beside a baseline taken in the same run:

* authorising N clients through the command stream (XADD -> acknowledgement of the
  last one), against the ``nft`` command adding the same N elements to a set;
* one more ``authorize``, stream write -> acknowledgement, p50/p99 over 200
  commands, against one ``nft add element`` process;
* one full counter sweep (netctl's own timing: counters, lifecycle decisions
  for idle, quota and timeouts, interim accounting records), against
  ``nft -j list table``;
* changing one client's rate (``rate`` command, stream write -> acknowledgement);
* netctl's resident memory;
* forwarding throughput of one client on an unshaped plan (iperf3, 3 s) with N
  shaped others authorised (HTB on both interfaces), as a ratio to the same
  client with 0 others and no shaping at all.

Every synthetic client is on the lab's ``residents`` plan (10/2 Mbit/s, a daily
quota, idle expiry, interim records every 60 s): the real per-client work.

Run as root: ``./parvis-dev bench`` (or ``.venv/bin/python -m bench --clients 10000``).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.figures import table, write
from lab import topology
from lab.topology import Lab
from parvis.core.commands import Command, Verb
from parvis.store import Store, connect


def synthetic_client(i: int) -> tuple[ipaddress.IPv4Address, str]:
    """Client number i: an address outside the lab's DHCP range, a unique MAC."""
    address = ipaddress.IPv4Address("10.77.16.0") + i
    return address, f"02:aa:00:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def iperf_bits_per_s(lab: Lab, seconds: int = 3) -> float:
    result = lab.exec("c1", ["iperf3", "-c", topology.INTERNET_WEB4, "-t", str(seconds), "-J"],
                      timeout=seconds + 20)
    report = json.loads(result.stdout)
    return float(report["end"]["sum_received"]["bits_per_second"])


def nft_baseline(lab: Lab, count: int) -> dict[str, float]:
    """The nft command itself, in the gateway's namespace, on a scratch table."""
    lines = ["add table inet parvis_bench",
             "add set inet parvis_bench s { type ipv4_addr . ether_addr; flags timeout; counter; }"]
    elements = ", ".join(f"{a} . {m} timeout 4h" for a, m in map(synthetic_client, range(count)))
    with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as handle:
        handle.write("\n".join(lines) + "\n")
        handle.write(f"add element inet parvis_bench s {{ {elements} }}\n")
        path = handle.name
    try:
        started = time.perf_counter()
        lab.exec("gw", ["nft", "-f", path])
        add_s = time.perf_counter() - started
        started = time.perf_counter()
        lab.exec("gw", ["nft", "-j", "list", "set", "inet", "parvis_bench", "s"])
        list_s = time.perf_counter() - started
        singles = []
        for i in range(20):
            address, mac = synthetic_client(count + 1000 + i)
            started = time.perf_counter()
            lab.exec("gw", ["nft", "add", "element", "inet", "parvis_bench", "s",
                            f"{{ {address} . {mac} timeout 4h }}"])
            singles.append(time.perf_counter() - started)
    finally:
        lab.exec("gw", ["nft", "delete", "table", "inet", "parvis_bench"], check=False)
        Path(path).unlink(missing_ok=True)
    return {"nft_add_all_s": add_s, "nft_list_s": list_s,
            "nft_one_process_ms": statistics.median(singles) * 1000}


def authorise_all(store: Store, count: int) -> float:
    """Send ``count`` authorize commands at once; seconds until the last is acknowledged."""
    pipe = store.client.pipeline(transaction=False)
    for i in range(count):
        address, mac = synthetic_client(i)
        pipe.xadd(store.keys.commands, {"command": Command(
            Verb.AUTHORIZE, ip=address, mac=mac, by="bench").to_json()})
    started = time.perf_counter()
    entry_ids = [str(e) for e in pipe.execute()]
    # netctl acknowledges in stream order: the last acknowledgement marks the end.
    last = store.wait_reply(entry_ids[-1], timeout_s=60)
    elapsed = time.perf_counter() - started
    if last is None or not last.ok:
        raise RuntimeError(f"authorize {entry_ids[-1]} failed: {last}")
    check = store.client.pipeline(transaction=False)
    for entry_id in entry_ids[:-1]:
        check.lpop(store.keys.reply(entry_id))
    failed = [r for r in check.execute() if r is None or '"ok":true' not in r]
    if failed:
        raise RuntimeError(f"{len(failed)} authorize commands failed or were not acknowledged")
    return elapsed


def one_more_latencies(store: Store, first: int, count: int) -> list[float]:
    latencies = []
    for i in range(first, first + count):
        address, mac = synthetic_client(i)
        command = Command(Verb.AUTHORIZE, ip=address, mac=mac, by="bench")
        started = time.perf_counter()
        result = store.call(command, timeout_s=10)
        latencies.append(time.perf_counter() - started)
        if result is None or not result.ok:
            raise RuntimeError(f"authorize {address} failed: {result}")
    return latencies


def rate_change_latencies(store: Store, count: int) -> list[float]:
    """``rate`` on shaped clients one at a time: stream write -> acknowledgement."""
    latencies = []
    for i in range(count):
        _address, mac = synthetic_client(i)
        command = Command(Verb.RATE, mac=mac, down_bps=(20 + i % 5) * 10**6,
                          up_bps=5 * 10**6, by="bench")
        started = time.perf_counter()
        result = store.call(command, timeout_s=10)
        latencies.append(time.perf_counter() - started)
        if result is None or not result.ok:
            raise RuntimeError(f"rate {mac} failed: {result}")
    return latencies


def sweep_samples(store: Store, wanted: int, timeout_s: float = 60) -> list[float]:
    """netctl's own sweep timings, one per health snapshot."""
    samples: list[float] = []
    last_at = None
    deadline = time.monotonic() + timeout_s
    while len(samples) < wanted and time.monotonic() < deadline:
        health = store.health() or {}
        if health.get("at") != last_at and health.get("sweeps", 0) > 0:
            last_at = health.get("at")
            samples.append(float(health["sweep_ms"]))
        time.sleep(0.2)
    return samples


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run(count: int, name: str) -> dict[str, Any]:
    lab = Lab(name=name, clients=1, progress=lambda m: print(f"  {m}", file=sys.stderr))
    lab.down()
    # An unshaped plan beside the lab's own (residents: 10/2 Mbit/s, quota, idle).
    lab.config_overrides = {"plans": {"open": {"down": "0", "up": "0"}}}
    lab.up()
    figures: dict[str, Any] = {"clients": count}
    try:
        client = connect(lab.redis_url, timeout_s=30)
        store = Store(client, topology.GATEWAY_ID)
        print("baseline: the nft command itself…", file=sys.stderr)
        figures.update(nft_baseline(lab, count))
        result = store.call(Command(Verb.AUTHORIZE, ip=ipaddress.IPv4Address(lab.client_ip(1)),
                                    by="bench", plan="open"))
        assert result is not None and result.ok, result
        print("throughput with 0 others, no shaping…", file=sys.stderr)
        figures["iperf_0_others_bit_s"] = iperf_bits_per_s(lab)
        pid = lab.netctl_pid()
        assert pid is not None
        figures["rss_0_clients_bytes"] = rss_bytes(pid)
        print(f"authorising {count} clients through the stream…", file=sys.stderr)
        figures["authorise_all_s"] = authorise_all(store, count)
        print("200 more, one at a time…", file=sys.stderr)
        latencies = one_more_latencies(store, count, 200)
        figures["one_more_p50_ms"] = percentile(latencies, 0.5) * 1000
        figures["one_more_p99_ms"] = percentile(latencies, 0.99) * 1000
        print("100 rate changes, one at a time…", file=sys.stderr)
        rates = rate_change_latencies(store, 100)
        figures["rate_p50_ms"] = percentile(rates, 0.5) * 1000
        figures["rate_p99_ms"] = percentile(rates, 0.99) * 1000
        print("sweeps…", file=sys.stderr)
        sweeps = sweep_samples(store, 6)
        figures["sweep_ms_median"] = statistics.median(sweeps)
        figures["sweep_ms_max"] = max(sweeps)
        figures["sessions"] = len(store.client.hkeys(store.keys.sessions))
        figures["rss_bytes"] = rss_bytes(pid)
        health = store.health() or {}
        figures["sweep_phases_ms"] = {k: health.get(k) for k in (
            "sweep_read_ms", "sweep_account_ms", "sweep_plan_ms", "sweep_persist_ms")}
        figures["records_written"] = health.get("records_written")
        print(f"throughput with {count} shaped others…", file=sys.stderr)
        figures["iperf_n_others_bit_s"] = iperf_bits_per_s(lab)
        figures["throughput_ratio"] = (figures["iperf_n_others_bit_s"]
                                       / figures["iperf_0_others_bit_s"])
        client.close()
    finally:
        lab.down()
    return figures


def report(f: dict[str, Any]) -> str:
    n = f["clients"]
    rows = [
        ("authorise all via the stream", f"{f['authorise_all_s']:.2f} s",
         f"nft -f, same {n} elements: {f['nft_add_all_s']:.2f} s", "< 2 s"),
        ("one more authorize, p50", f"{f['one_more_p50_ms']:.1f} ms",
         f"one nft process: {f['nft_one_process_ms']:.1f} ms", ""),
        ("one more authorize, p99", f"{f['one_more_p99_ms']:.1f} ms", "", "< 20 ms"),
        ("one full sweep (median / max)", f"{f['sweep_ms_median']:.0f} / {f['sweep_ms_max']:.0f}"
         " ms", f"nft -j list of {n} elements: {f['nft_list_s'] * 1000:.0f} ms", "< 250 ms"),
        ("change one client's rate, p50 / p99", f"{f['rate_p50_ms']:.1f} / "
         f"{f['rate_p99_ms']:.1f} ms", f"one nft process: {f['nft_one_process_ms']:.1f} ms", ""),
        ("netctl resident memory", f"{f['rss_bytes'] / 2**20:.0f} MiB",
         f"with 0 clients: {f['rss_0_clients_bytes'] / 2**20:.0f} MiB", "< 120 MB"),
        ("unshaped client's throughput, shaping on", f"{f['iperf_n_others_bit_s'] / 1e9:.2f}"
         " Gbit/s", f"shaping off, 0 others: {f['iperf_0_others_bit_s'] / 1e9:.2f} Gbit/s", ""),
        ("  ratio", f"{f['throughput_ratio']:.2f}", "", ">= 0.9"),
    ]
    return table(("measure", "netctl", "baseline (same run)", "target"), rows)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="bench.netctl_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--name", default="bench", help="lab name (namespaces bench-*)")
    args = parser.parse_args(argv)
    figures = run(args.clients, args.name)
    print(report(figures))
    write(f"bench-netctl-{args.clients}", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
