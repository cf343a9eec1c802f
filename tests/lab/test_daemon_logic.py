"""netctl's logic between Redis and the kernel: batching, replays, resync, IPv6 learning.

The kernel side is a recording stand-in here (the lab tests prove the real
rules); Redis is the lab's real server, under a gateway id of its own.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from lab.topology import Lab
from netctl.daemon import Gateway
from netctl.health import HealthSampler
from netctl.nft import NftError
from parvis.core.commands import Command, Verb
from parvis.core.config import Config, parse_config
from parvis.core.sessions import Counter, Element
from parvis.store import Keys, Store, StoreError, connect

pytestmark = pytest.mark.lab

POISON = "10.77.9.9"


class RecordingNft:
    """Records every batch; refuses any batch that mentions the POISON address."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.rules: dict[str, int] = {}

    def apply(self, commands: list[dict[str, Any]]) -> None:
        if not commands:
            return
        self.batches.append(commands)
        if f"\"{POISON}\"" in json.dumps(commands):
            raise NftError("refused for the test", commands)
        for command in commands:  # the chains' rules, as the kernel would hold them
            if "chain" in command.get("flush", {}):
                self.rules[command["flush"]["chain"]["name"]] = 0
            elif "rule" in command.get("add", {}):
                chain = command["add"]["rule"]["chain"]
                self.rules[chain] = self.rules.get(chain, 0) + 1

    def rule_counts(self, chains: list[str]) -> dict[str, int]:
        return {chain: self.rules.get(chain, -1) for chain in chains}

    def table_exists(self) -> bool:
        return True

    def set_names(self) -> set[str]:
        return set()

    def client_elements(self) -> dict[Element, Counter]:
        return dict(self.present)

    def shape_elements(self) -> dict[str, str]:
        return {}

    present: dict[Element, Counter] = {}


def config(lab: Lab, gateway_id: str) -> Config:
    return parse_config({
        "gateway": {"id": gateway_id, "lan_interface": "lan0", "wan_interface": "wan0"},
        "portal": {"address": "10.77.0.1"},
        "redis": {"url": lab.redis_url},
        "accounting": {"spool_dir": str(lab.state_dir / f"spool-{gateway_id}")},
    })


@pytest.fixture
def gateway(lab: Lab, request: pytest.FixtureRequest) -> Iterator[tuple[Gateway, Store,
                                                                        RecordingNft]]:
    """A Gateway on the lab's Redis with a recording kernel stand-in (function scope)."""
    gateway_id = "batch-" + request.node.name.split("[")[0][-20:].replace("_", "-").strip("-")
    client = connect(lab.redis_url)
    store = Store(client, gateway_id)
    for key in client.scan_iter(f"{store.keys.prefix}:*"):
        client.delete(key)
    nft = RecordingNft()
    neighbours = {f"10.77.9.{i}": f"02:bb:00:00:00:{i:02x}" for i in range(1, 70)}
    neighbours6: list[tuple[str, str]] = []
    instance = Gateway(config(lab, gateway_id), store, nft,  # type: ignore[arg-type]
                       ipv4_neighbours=lambda: neighbours, ipv6_neighbours=lambda: neighbours6,
                       cut_connections=lambda addresses: None)
    instance.test_neighbours = neighbours  # type: ignore[attr-defined]
    instance.test_neighbours6 = neighbours6  # type: ignore[attr-defined]
    instance.start()
    nft.batches.clear()
    yield instance, store, nft
    for key in client.scan_iter(f"{store.keys.prefix}:*"):
        client.delete(key)
    client.srem(Keys.GATEWAYS, gateway_id)
    client.close()


def send_authorizations(store: Store, last_octets: range) -> list[str]:
    return [store.send_command(Command(Verb.AUTHORIZE, ip=ipaddress.IPv4Address(f"10.77.9.{i}")))
            for i in last_octets]


def test_a_burst_of_commands_is_one_transaction(
        gateway: tuple[Gateway, Store, RecordingNft]) -> None:
    daemon, store, nft = gateway
    ids = send_authorizations(store, range(11, 61))
    daemon.handle_entries(store.read_commands(daemon.consumer, 100, 1000))
    assert len(nft.batches) == 1
    added = sum(len(c["add"]["element"]["elem"]) for c in nft.batches[0] if "add" in c)
    assert added == 100  # upstream and downstream element for each of 50 clients
    results = [store.wait_reply(i, 1) for i in ids]
    assert all(r is not None and r.ok for r in results)
    assert len(store.sessions()) == 50


@pytest.mark.parametrize("poison_position", [0, 5, 9])
def test_one_refused_command_does_not_sink_the_others(
        gateway: tuple[Gateway, Store, RecordingNft], poison_position: int) -> None:
    daemon, store, nft = gateway
    octets = [i for i in range(1, 11) if i != 9]
    octets.insert(poison_position, 9)
    ids = [store.send_command(Command(Verb.AUTHORIZE, ip=ipaddress.IPv4Address(f"10.77.9.{i}")))
           for i in octets]
    daemon.handle_entries(store.read_commands(daemon.consumer, 100, 1000))
    results = {octet: store.wait_reply(entry_id, 1) for octet, entry_id in zip(octets, ids,
                                                                              strict=True)}
    assert all(r is not None for r in results.values())
    assert [o for o, r in results.items() if r is not None and not r.ok] == [9]
    poisoned = results[9]
    assert poisoned is not None and "the firewall refused it" in poisoned.message
    sessions = store.sessions()
    assert len(sessions) == 9 and POISON not in {s.ipv4 for s in sessions.values()}
    assert POISON not in daemon.mac_by_ipv4
    # One try of the whole burst, then one transaction per command.
    assert len(nft.batches) == 1 + len(octets)


def test_commands_in_one_burst_see_each_others_effects(
        gateway: tuple[Gateway, Store, RecordingNft]) -> None:
    daemon, store, _nft = gateway
    mac = "02:bb:00:00:00:03"
    ids = [
        store.send_command(Command(Verb.AUTHORIZE, ip=ipaddress.IPv4Address("10.77.9.3"))),
        store.send_command(Command(Verb.DEAUTHORIZE, mac=mac)),
        store.send_command(Command(Verb.BLOCK, mac=mac)),
        store.send_command(Command(Verb.AUTHORIZE, ip=ipaddress.IPv4Address("10.77.9.3"))),
    ]
    daemon.handle_entries(store.read_commands(daemon.consumer, 100, 1000))
    results = [store.wait_reply(i, 1) for i in ids]
    assert [r.ok for r in results if r is not None] == [True, True, True, False]
    last = results[3]
    assert last is not None and "blocked" in last.message
    assert store.sessions() == {} and store.mac_set("blocked") == {mac}


def test_unacknowledged_commands_are_replayed_after_a_crash(
        lab: Lab, gateway: tuple[Gateway, Store, RecordingNft]) -> None:
    daemon, store, _nft = gateway
    ids = send_authorizations(store, range(1, 4))
    # Read but never handled: what a netctl killed at that instant leaves pending.
    assert len(store.read_commands(daemon.consumer, 100, 1000)) == 3
    successor = Gateway(config(lab, store.keys.gateway_id), store, RecordingNft(),  # type: ignore[arg-type]
                        ipv4_neighbours=daemon.ipv4_neighbours, ipv6_neighbours=lambda: [])
    successor.start()
    successor.handle_entries(store.read_commands(successor.consumer, 0, 1000, pending=True))
    assert all((r := store.wait_reply(i, 1)) is not None and r.ok for i in ids)
    assert len(store.sessions()) == 3


def test_commands_that_break_parsers_are_refused_and_do_not_stall_the_rest(
        gateway: tuple[Gateway, Store, RecordingNft]) -> None:
    daemon, store, _nft = gateway
    raw = store.client
    pipe = raw.pipeline(transaction=True)
    pipe.xadd(store.keys.commands, {"command": "[" * 3000})  # under the size limit
    pipe.xadd(store.keys.commands, {"command": b"\xff\xfe{"})
    pipe.xadd(store.keys.commands, {"command": Command(
        Verb.AUTHORIZE, ip=ipaddress.IPv4Address("10.77.9.4")).to_json()})
    ids = [str(i) for i in pipe.execute()]
    daemon.handle_entries(store.read_commands(daemon.consumer, 100, 1000))
    results = [store.wait_reply(i, 1) for i in ids]
    assert results[0] is not None and "nested too deeply" in results[0].message
    assert results[1] is not None and not results[1].ok
    assert results[2] is not None and results[2].ok
    # Handled entries leave the stream: it does not keep addresses and MACs.
    assert raw.xlen(store.keys.commands) == 0


def test_an_authorize_whose_sender_gave_up_long_ago_is_refused(
        gateway: tuple[Gateway, Store, RecordingNft]) -> None:
    daemon, store, _nft = gateway
    old_ms = int(store.server_time() * 1000) - 300_000
    entry_id = store.client.xadd(store.keys.commands, {"command": Command(
        Verb.AUTHORIZE, ip=ipaddress.IPv4Address("10.77.9.5")).to_json()}, id=f"{old_ms}-0")
    daemon.handle_entries(store.read_commands(daemon.consumer, 100, 1000))
    result = store.wait_reply(str(entry_id), 1)
    assert result is not None and not result.ok and "expired" in result.message
    assert store.sessions() == {}


def test_a_new_address_for_the_same_device_keeps_its_session(
        gateway: tuple[Gateway, Store, RecordingNft]) -> None:
    daemon, store, _nft = gateway
    neighbours = daemon.test_neighbours  # type: ignore[attr-defined]
    mac = neighbours["10.77.9.6"]
    first = store.send_command(Command(Verb.AUTHORIZE, ip=ipaddress.IPv4Address("10.77.9.6")))
    daemon.handle_entries(store.read_commands(daemon.consumer, 100, 1000))
    assert (r := store.wait_reply(first, 1)) is not None and r.ok
    before = store.sessions()[mac]
    neighbours["10.77.9.66"] = mac  # DHCP gave the device another address
    second = store.send_command(Command(Verb.AUTHORIZE, ip=ipaddress.IPv4Address("10.77.9.66")))
    daemon.handle_entries(store.read_commands(daemon.consumer, 100, 1000))
    assert (r := store.wait_reply(second, 1)) is not None and r.ok
    after = store.sessions()[mac]
    assert after.ipv4 == "10.77.9.66"
    assert (after.started_at, after.expires_at) == (before.started_at, before.expires_at)
    assert list(store.sessions()) == [mac]
    # The portal finds the session by the address a request comes from.
    found = store.session_for_ip("10.77.9.66")
    assert found is not None and found.mac == mac
    assert store.session_for_ip("10.77.9.6") is None
    assert store.client.hgetall(store.keys.sessions_by_ip) == {"10.77.9.66": mac}
    # What the connection cutter asks before cutting: the new address is held again.
    assert daemon.held_addresses(["10.77.9.66", "10.77.9.6", "fd77::9:6"]) == {"10.77.9.66"}


def test_a_failed_redis_write_is_replayed_after_reloading_state(
        lab: Lab, gateway: tuple[Gateway, Store, RecordingNft]) -> None:
    daemon, store, _nft = gateway
    real_execute = store.execute
    failures: list[int] = []

    def fail_once(pipe: Any) -> None:
        if not failures:
            failures.append(1)
            raise StoreError("simulated: connection lost during EXEC")
        real_execute(pipe)

    store.execute = fail_once  # type: ignore[method-assign]
    mac = "02:bb:00:00:00:07"
    entry_id = store.send_command(Command(Verb.BLOCK, mac=mac))
    stop = threading.Event()
    worker = threading.Thread(target=daemon.run, args=(stop, HealthSampler("t", ["lo"])))
    worker.start()
    try:
        result = store.wait_reply(entry_id, 10)
    finally:
        stop.set()
        worker.join(10)
    assert failures, "the simulated failure did not happen"
    assert result is not None and result.ok
    # The block reached Redis on the replay, not only netctl's memory.
    assert store.mac_set("blocked") == {mac}


def test_ipv6_learning_is_capped_and_stable(
        gateway: tuple[Gateway, Store, RecordingNft]) -> None:
    daemon, store, _nft = gateway
    mac = daemon.test_neighbours["10.77.9.8"]  # type: ignore[attr-defined]
    entry_id = store.send_command(Command(Verb.AUTHORIZE, ip=ipaddress.IPv4Address("10.77.9.8")))
    daemon.handle_entries(store.read_commands(daemon.consumer, 100, 1000))
    assert (r := store.wait_reply(entry_id, 1)) is not None and r.ok
    # Twelve addresses for the device, freshest first (as netlink.ipv6_neighbours gives them).
    daemon.test_neighbours6[:] = [(f"fd77::8:{i}", mac) for i in range(12)]  # type: ignore[attr-defined]
    daemon.sweep()
    first = list(daemon.sessions[mac].ipv6)
    assert first == [f"fd77::8:{i}" for i in range(8)]
    for _ in range(3):
        daemon.sweep()
    assert daemon.sessions[mac].ipv6 == first
    assert store.sessions()[mac].ipv6 == first


def test_a_wall_clock_step_shifts_sessions_instead_of_ending_them(
        lab: Lab, gateway: tuple[Gateway, Store, RecordingNft]) -> None:
    daemon, store, _nft = gateway
    wall = [1_800_000_000.0]
    mono = [1000.0]
    daemon.clock = lambda: wall[0]
    daemon.monotonic = lambda: mono[0]
    entry_id = store.send_command(Command(Verb.AUTHORIZE, ip=ipaddress.IPv4Address("10.77.9.10")))
    daemon.handle_entries(store.read_commands(daemon.consumer, 100, 1000))
    assert (r := store.wait_reply(entry_id, 1)) is not None and r.ok
    mac = daemon.test_neighbours["10.77.9.10"]  # type: ignore[attr-defined]
    daemon.sweep()
    remaining = daemon.sessions[mac].expires_at - wall[0]
    # NTP steps the clock a year forward while only 2 s really pass.
    wall[0] += 365 * 86400 + 2
    mono[0] += 2
    daemon.sweep()
    assert mac in daemon.sessions, "the step ended the session"
    assert daemon.sessions[mac].expires_at - wall[0] == pytest.approx(remaining - 2, abs=0.01)
    assert store.sessions()[mac].expires_at == daemon.sessions[mac].expires_at
