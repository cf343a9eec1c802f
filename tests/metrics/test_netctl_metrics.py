"""netctl's metrics: the methods the daemon calls, scraped over HTTP like Prometheus does."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from netctl.metrics import MetricsError, NetctlMetrics
from parvis.core.config import Config, MetricsConfig, parse_config
from parvis.core.sessions import EndReason
from tests.metrics.conftest import address_like, families, label_values, sample

MAC = "02:50:76:00:00:01"
IPV4 = "10.77.2.144"
IPV6 = "fd77::2:144"


def _free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _config(tmp_path: Path, port: int, address: str = "127.0.0.1") -> Config:
    config = parse_config({
        "gateway": {"id": "gw-test", "lan_interface": "br-lan", "wan_interface": "wan0",
                    "zone": "centre-ville"},
        "portal": {"address": "10.77.0.1", "hostname": "portail.parvis.test",
                   "secret_key_file": str(tmp_path / "secret")},
        "session": {"default_plan": "residents"},
        "plans": {"residents": {"down": "10M", "up": "2M"}, "event": {"down": "20M"}},
    }, tmp_path / "parvis.toml")
    return dataclasses.replace(config, metrics=MetricsConfig(
        address=ipaddress.ip_address(address), netctl_port=port))


def _scrape(metrics: NetctlMetrics) -> dict[str, Metric]:
    settings = metrics.config.metrics
    host = str(settings.address)
    host = f"[{host}]" if ":" in host else host
    with urllib.request.urlopen(f"http://{host}:{settings.netctl_port}/metrics",
                                timeout=5) as answer:
        assert answer.status == 200
        return families(answer.read().decode())


@pytest.fixture
def metrics(tmp_path: Path) -> Iterator[NetctlMetrics]:
    """NetctlMetrics serving on 127.0.0.1:<a free port>, stopped after the test."""
    served = NetctlMetrics(_config(tmp_path, _free_port()))
    assert served.start()
    yield served
    served.stop()


def test_every_method_shows_in_the_scrape(metrics: NetctlMetrics) -> None:
    metrics.observe_sweep(0.120, {"read": 0.035, "account": 0.050, "plan": 0.020,
                                  "persist": 0.015}, changed=812, ended=3)
    metrics.observe_sweep(0.080, {"read": 0.030, "account": 0.030, "plan": 0.010,
                                  "persist": 0.010}, changed=640, ended=1)
    metrics.add_bytes(1_000, 50_000)
    metrics.add_bytes(24, 0)
    metrics.command("authorize", True, count=3)
    metrics.command("authorize", False)
    metrics.command("block", True)
    metrics.command(None, False)
    metrics.session_started("event")
    metrics.session_started("")  # the default plan
    metrics.session_ended(EndReason.IDLE_TIMEOUT)
    metrics.session_ended("Session-Timeout", count=2)
    metrics.error("nft")
    metrics.error("store")
    metrics.error("store")
    metrics.records(spooled=5, written=4, duplicate=1)
    metrics.records(written=1)
    metrics.set_state(active=9_990, confirming=10, trusted=2, blocked=1, shaped=9_000,
                      spool_length=7, redis_reachable=True)

    found = _scrape(metrics)

    assert sample(found, "parvis_netctl_build_info", version="0.1.0", gateway="gw-test",
                  zone="centre-ville") == 1
    assert sample(found, "parvis_netctl_sweep_duration_seconds_count") == 2
    assert sample(found, "parvis_netctl_sweep_duration_seconds_sum") == pytest.approx(0.2)
    assert sample(found, "parvis_netctl_sweep_duration_seconds_bucket", le="0.1") == 1
    assert sample(found, "parvis_netctl_sweep_duration_seconds_bucket", le="0.15") == 2
    assert sample(found, "parvis_netctl_sweep_phase_seconds", phase="read") == 0.030
    assert sample(found, "parvis_netctl_sweep_phase_seconds", phase="persist") == 0.010
    assert sample(found, "parvis_netctl_sweep_sessions", outcome="changed") == 640
    assert sample(found, "parvis_netctl_sweep_sessions", outcome="ended") == 1
    assert sample(found, "parvis_netctl_bytes_total", direction="up") == 1_024
    assert sample(found, "parvis_netctl_bytes_total", direction="down") == 50_000
    assert sample(found, "parvis_netctl_commands_total", verb="authorize", result="ok") == 3
    assert sample(found, "parvis_netctl_commands_total", verb="authorize",
                  result="failed") == 1
    assert sample(found, "parvis_netctl_commands_total", verb="block", result="ok") == 1
    assert sample(found, "parvis_netctl_commands_total", verb="invalid", result="failed") == 1
    assert sample(found, "parvis_netctl_commands_total", verb="extend", result="ok") == 0
    assert sample(found, "parvis_netctl_sessions_started_total", plan="event") == 1
    assert sample(found, "parvis_netctl_sessions_started_total", plan="residents") == 1
    assert sample(found, "parvis_netctl_sessions_ended_total", reason="Idle-Timeout") == 1
    assert sample(found, "parvis_netctl_sessions_ended_total", reason="Session-Timeout") == 2
    assert sample(found, "parvis_netctl_sessions_ended_total", reason="Quota-Exceeded") == 0
    assert sample(found, "parvis_netctl_errors_total", kind="nft") == 1
    assert sample(found, "parvis_netctl_errors_total", kind="store") == 2
    assert sample(found, "parvis_netctl_errors_total", kind="shaper") == 0
    assert sample(found, "parvis_netctl_records_total", outcome="spooled") == 5
    assert sample(found, "parvis_netctl_records_total", outcome="written") == 5
    assert sample(found, "parvis_netctl_records_total", outcome="duplicate") == 1
    assert sample(found, "parvis_netctl_clients", state="active") == 9_990
    assert sample(found, "parvis_netctl_clients", state="confirming") == 10
    assert sample(found, "parvis_netctl_clients", state="trusted") == 2
    assert sample(found, "parvis_netctl_clients", state="blocked") == 1
    assert sample(found, "parvis_netctl_shaped_clients") == 9_000
    assert sample(found, "parvis_netctl_spool_records") == 7
    assert sample(found, "parvis_netctl_redis_up") == 1
    assert sample(found, "process_resident_memory_bytes") is not None

    metrics.redis_reachable(False)
    assert sample(_scrape(metrics), "parvis_netctl_redis_up") == 0


def test_no_label_ever_holds_an_address(metrics: NetctlMetrics) -> None:
    """Whatever a caller passes, label values come from closed lists: never a MAC or an IP."""
    for value in (MAC, IPV4, IPV6, "10.77.2.144 02:50:76:00:00:01"):
        metrics.command(value, True)
        metrics.session_started(value)
        metrics.session_ended(value)
        metrics.error(value)
        metrics.observe_sweep(0.01, {value: 0.01}, changed=1, ended=0)

    found = _scrape(metrics)

    assert address_like(MAC) and address_like(IPV4) and address_like(IPV6)  # the check works
    leaked = [value for value in label_values(found) if address_like(value)]
    assert leaked == []
    assert sample(found, "parvis_netctl_commands_total", verb="other", result="ok") == 4
    assert sample(found, "parvis_netctl_sessions_started_total", plan="other") == 4
    assert sample(found, "parvis_netctl_sessions_ended_total", reason="other") == 4
    assert sample(found, "parvis_netctl_errors_total", kind="other") == 4


def test_negative_or_zero_amounts_change_nothing(metrics: NetctlMetrics) -> None:
    """A counter never goes back (a delta below zero would raise inside prometheus_client)."""
    metrics.add_bytes(-5, 0)
    metrics.command("rate", True, count=0)
    metrics.records(spooled=-1)
    found = _scrape(metrics)
    assert sample(found, "parvis_netctl_bytes_total", direction="up") == 0
    assert sample(found, "parvis_netctl_commands_total", verb="rate", result="ok") == 0
    assert sample(found, "parvis_netctl_records_total", outcome="spooled") == 0


def test_each_instance_has_its_own_registry(tmp_path: Path, metrics: NetctlMetrics) -> None:
    """Not prometheus_client's global registry: a second netctl (a test) starts from zero."""
    metrics.add_bytes(10, 10)
    other = NetctlMetrics(_config(tmp_path, 0))
    assert other.registry is not metrics.registry
    assert other.registry.get_sample_value("parvis_netctl_bytes_total",
                                           {"direction": "up"}) == 0
    assert metrics.registry.get_sample_value("parvis_netctl_bytes_total",
                                             {"direction": "up"}) == 10


def test_port_0_is_off(tmp_path: Path) -> None:
    metrics = NetctlMetrics(_config(tmp_path, 0))
    assert metrics.start() is False
    metrics.add_bytes(1, 1)  # still usable: the daemon calls it either way
    metrics.stop()


def test_a_port_in_use_names_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        metrics = NetctlMetrics(_config(tmp_path, port))
        with pytest.raises(MetricsError) as raised:
            metrics.start()
    message = str(raised.value)
    assert f"{tmp_path}/parvis.toml: [metrics] netctl_port: cannot listen on 127.0.0.1:{port}" \
        in message
    assert "or 0 to turn netctl's metrics off" in message


def test_stop_closes_the_port(tmp_path: Path) -> None:
    metrics = NetctlMetrics(_config(tmp_path, _free_port()))
    assert metrics.start()
    _scrape(metrics)
    metrics.stop()
    with pytest.raises(urllib.error.URLError):
        _scrape(metrics)


def test_serves_on_ipv6_loopback(tmp_path: Path) -> None:
    try:
        port = _free_port("::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    metrics = NetctlMetrics(_config(tmp_path, port, "::1"))
    assert metrics.start()
    try:
        assert "parvis_netctl_bytes" in _scrape(metrics)
    finally:
        metrics.stop()
