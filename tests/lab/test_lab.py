"""The lab itself: addresses, DNS, the stand-in internet's exact probe answers, up/down."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from lab.topology import (
    GARDEN4,
    GARDEN6,
    GATEWAY_ID,
    INTERNET_DNS4,
    INTERNET_DNS6,
    INTERNET_WEB4,
    INTERNET_WEB6,
    LAN_GATEWAY4,
    LAN_GATEWAY6,
    NCSI4,
    NCSI6,
    Lab,
    lab_pids,
)
from parvis.core.config import load_config

pytestmark = pytest.mark.lab

APPLE_SUCCESS = "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
FIREFOX_CANONICAL = (
    '<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/kb/captive-portal"/>'
)
KINDLE_MARKER = "81ce4465-7167-4dcb-835b-dcc9e44c112a"


def _curl(lab: Lab, node: str, url: str, *extra: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``url`` with curl inside ``node``: (status, headers lower-cased, body as bytes).

    Bytes, not text: exact bodies are compared, and text mode would fold CRLF.
    """
    result = subprocess.run(
        ["ip", "netns", "exec", lab.ns(node), "curl", "-sS", "-i", "--max-time", "5", *extra, url],
        capture_output=True, timeout=15, check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    head, _, body = out.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def _dig(lab: Lab, node: str, server: str, name: str, kind: str = "A") -> list[str]:
    result = lab.exec(node, ["dig", "+short", "+time=2", "+tries=2", f"@{server}", name, kind])
    return result.stdout.split()


def test_clients_have_their_mac_a_dhcp_address_and_a_slaac_address(lab: Lab) -> None:
    seen4, seen6 = set(), set()
    for i in range(1, lab.clients + 1):
        ip4 = ipaddress.ip_address(lab.client_ip(i))
        ip6 = ipaddress.ip_address(lab.client_ip6(i))
        assert ip4 in ipaddress.ip_network("10.77.0.0/16")
        assert ip6 in ipaddress.ip_network("fd77::/64")
        link = json.loads(lab.exec(f"c{i}", ["ip", "-j", "link", "show", "eth0"]).stdout)[0]
        assert link["address"] == lab.client_mac(i) == f"02:50:76:00:00:{i:02x}"
        # The lease came from the gateway: default route and resolver point at it.
        route = lab.exec(f"c{i}", ["ip", "-4", "route", "show", "default"]).stdout
        assert f"via {LAN_GATEWAY4} dev eth0" in route
        resolv = lab.exec(f"c{i}", ["cat", "/etc/resolv.conf"]).stdout
        assert f"nameserver {LAN_GATEWAY4}" in resolv
        seen4.add(ip4)
        seen6.add(ip6)
    assert len(seen4) == len(seen6) == lab.clients


def test_the_gateway_resolves_through_the_stand_in_internet(lab: Lab) -> None:
    assert _dig(lab, "gw", LAN_GATEWAY4, "www.example.org") == [INTERNET_WEB4]
    assert _dig(lab, "gw", LAN_GATEWAY4, "www.example.org", "AAAA") == [INTERNET_WEB6]
    assert _dig(lab, "gw", LAN_GATEWAY4, "garden.test") == [GARDEN4]
    assert _dig(lab, "gw", LAN_GATEWAY4, "garden.test", "AAAA") == [GARDEN6]
    # The poster's name is the gateway's own, answered locally.
    assert _dig(lab, "gw", LAN_GATEWAY4, "wifi.lab.test") == [LAN_GATEWAY4]
    assert _dig(lab, "gw", LAN_GATEWAY4, "wifi.lab.test", "AAAA") == [LAN_GATEWAY6]


def test_clients_resolve_through_the_gateway(lab: Lab) -> None:
    # DHCP named the gateway as resolver; netctl lets DNS to it through before login.
    for i in range(1, lab.clients + 1):
        assert _dig(lab, f"c{i}", LAN_GATEWAY4, "garden.test") == [GARDEN4]
    assert _dig(lab, "c1", LAN_GATEWAY6, "www.example.org", "AAAA") == [INTERNET_WEB6]


@pytest.mark.parametrize("server", [LAN_GATEWAY4, INTERNET_DNS4, INTERNET_DNS6])
def test_dns_msftncsi_com_resolves_as_windows_expects(lab: Lab, server: str) -> None:
    node = "gw" if server == LAN_GATEWAY4 else "up"
    assert _dig(lab, node, server, "dns.msftncsi.com") == [NCSI4]
    assert _dig(lab, node, server, "dns.msftncsi.com", "AAAA") == [NCSI6]


# host, path, status, exact body (None: not checked), a header that must be present
PROBES: list[tuple[str, str, int, str | None, tuple[str, str] | None]] = [
    ("connectivitycheck.gstatic.com", "/generate_204", 204, "", None),
    ("connectivitycheck.android.com", "/generate_204", 204, "", None),
    ("www.google.com", "/generate_204", 204, "", None),
    ("www.google.com", "/gen_204", 204, "", None),
    ("clients3.google.com", "/generate_204", 204, "", None),
    ("play.googleapis.com", "/generate_204", 204, "", None),
    ("captive.apple.com", "/hotspot-detect.html", 200, APPLE_SUCCESS, None),
    ("www.apple.com", "/library/test/success.html", 200, APPLE_SUCCESS, None),
    ("www.appleiphonecell.com", "/hotspot-detect.html", 200, APPLE_SUCCESS, None),
    ("www.msftconnecttest.com", "/connecttest.txt", 200, "Microsoft Connect Test", None),
    ("ipv6.msftconnecttest.com", "/connecttest.txt", 200, "Microsoft Connect Test", None),
    ("www.msftncsi.com", "/ncsi.txt", 200, "Microsoft NCSI", None),
    ("detectportal.firefox.com", "/canonical.html", 200, FIREFOX_CANONICAL, None),
    ("detectportal.firefox.com", "/success.txt", 200, "success\n", None),
    ("detectportal.firefox.com", "/success.txt?ipv4", 200, "success\n", None),
    ("connectivity-check.ubuntu.com", "/", 204, "", ("x-networkmanager-status", "online")),
    ("nmcheck.gnome.org", "/check_network_status.txt", 200, "NetworkManager is online\n", None),
    ("network-test.debian.org", "/nm", 200, "NetworkManager is online\n", None),
    ("spectrum.s3.amazonaws.com", "/kindle-wifi/wifistub.html", 200, None, None),
]


@pytest.mark.parametrize(("host", "path", "status", "body", "header"), PROBES,
                         ids=[f"{host}{path}" for host, path, *_ in PROBES])
@pytest.mark.parametrize("family", ["-4", "-6"])
def test_probe_urls_answer_exactly_as_the_real_services(
    lab: Lab, host: str, path: str, status: int, body: str | None,
    header: tuple[str, str] | None, family: str,
) -> None:
    got_status, headers, got_body = _curl(lab, "up", f"http://{host}{path}", family)
    assert got_status == status
    if body is not None:
        assert got_body == body.encode()
    else:
        assert KINDLE_MARKER.encode() in got_body
    if header is not None:
        assert headers.get(header[0]) == header[1]


def test_any_other_url_gets_the_marker_page_naming_the_client(lab: Lab) -> None:
    status, _, body = _curl(lab, "up", "http://news.example.net/a/b?c=1")
    assert status == 200
    assert body.startswith(b"parvis-lab internet: host=news.example.net path=/a/b?c=1 from=")
    # Any address of the AnyIP ranges answers.
    _, _, body = _curl(lab, "up", "http://192.0.2.33/")
    assert body.startswith(b"parvis-lab internet: host=192.0.2.33 path=/ from=")
    _, _, body = _curl(lab, "up", "http://[2001:db8:203::4242]/")
    assert body.startswith(b"parvis-lab internet: host=[2001:db8:203::4242] path=/ from=")


def test_bytes_returns_the_size_asked(lab: Lab) -> None:
    result = lab.exec("up", ["curl", "-sS", "-o", "/dev/null", "-w",
                             "%{http_code} %{size_download}",
                             f"http://{INTERNET_WEB4}/bytes?n=1234567"])
    assert result.stdout == "200 1234567"


@pytest.mark.parametrize("address", [GARDEN4, f"[{INTERNET_WEB6}]"])
def test_tcp_and_udp_echo(lab: Lab, address: str) -> None:
    host = address.strip("[]")
    family = "AF_INET6" if ":" in host else "AF_INET"
    script = f"""
import socket
for port in (443, 8081):
    with socket.create_connection(({host!r}, port), timeout=3) as tcp:
        banner = tcp.recv(100)
        assert banner == b"parvis-lab internet tcp %d\\n" % port, banner
        tcp.sendall(b"ping")
        assert tcp.recv(100) == b"ping"
for port in (443, 7777):
    with socket.socket(socket.{family}, socket.SOCK_DGRAM) as udp:
        udp.settimeout(3)
        udp.connect(({host!r}, port))
        udp.send(b"quic?")
        assert udp.recv(100) == b"quic?"
print("ok")
"""
    assert lab.exec("up", ["python3", "-c", script]).stdout == "ok\n"


def test_generated_config_loads(lab: Lab) -> None:
    config = load_config(lab.config_path)
    assert config.gateway.id == GATEWAY_ID
    assert (config.gateway.lan_interface, config.gateway.wan_interface) == ("lan0", "wan0")
    assert config.gateway.masquerade
    assert str(config.portal.address) == LAN_GATEWAY4
    assert str(config.portal.address6) == LAN_GATEWAY6
    assert config.redis.url == f"unix://{lab.redis_socket}" == lab.redis_url
    assert [str(c) for c in config.walled_garden.cidrs] == [f"{GARDEN4}/32", f"{GARDEN6}/128"]
    assert (config.session.hard_timeout_s, config.session.idle_timeout_s) == (14400, 1200)
    assert (config.netctl.sweep_interval_s, config.netctl.health_interval_s) == (1.0, 2.0)


def test_redis_answers_on_its_socket_only(lab: Lab) -> None:
    import redis

    client = redis.Redis(unix_socket_path=str(lab.redis_socket))
    try:
        assert client.ping()
    finally:
        client.close()
    assert oct(lab.redis_socket.stat().st_mode & 0o777) == "0o700"


def test_status_reports_a_healthy_lab(lab: Lab) -> None:
    report = lab.status()
    assert report["healthy"], report["problems"]
    clients = report["clients"]
    assert isinstance(clients, list)
    assert [c["mac"] for c in clients] == [lab.client_mac(i) for i in range(1, lab.clients + 1)]


def test_up_twice_is_idempotent(lab: Lab) -> None:
    before = lab.status()["processes"]
    started = time.monotonic()
    lab.up()
    assert time.monotonic() - started < 5
    assert lab.status()["processes"] == before


def test_down_leaves_nothing() -> None:
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (network namespaces)")
    other = Lab(name=f"pt{os.getpid() % 100000}d", clients=1)
    try:
        other.up(netctl=False, portal=False)
        assert other.client_ip(1).startswith("10.77.")
        assert lab_pids(other.name, other.state_dir)
    finally:
        other.down()
    assert other.existing_namespaces() == []
    assert lab_pids(other.name, other.state_dir) == set()
    assert not other.state_dir.exists()
    for node in other.nodes():
        assert not (Path("/etc/netns") / other.ns(node)).exists()
    # Safe to call again, on nothing.
    other.down()
