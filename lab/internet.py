"""The lab's stand-in internet: HTTP, TCP echo and UDP echo servers (stdlib only).

Runs inside the lab's ``up`` namespace, where whole documentation ranges are
made local with AnyIP routes, so whatever address a client's DNS answer points
to, this process answers. HTTP answers the operating systems' captive-portal
probe URLs byte for byte as the real services do (see
``/work/shared/reference/standards-and-clients.md`` §2.1); every other request
gets a short text page naming the host, the path and the client address as
seen here, which tests use to tell "reached the internet" (and whether the
gateway masqueraded) from "caught by the portal".

Usage::

    python -m lab.internet [--http-port 80] [--tcp-ports 443,8081] [--udp-ports 443,7777]

Every socket is dual-stack: bound to ``::`` with ``IPV6_V6ONLY`` off.
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import struct
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MARKER = "parvis-lab internet"
BYTES_CAP = 100 * 1024 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Probe:
    """One canned answer: status, body and extra headers, exactly as the real service."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


_NO_CONTENT = Probe(204)
_APPLE = Probe(
    200,
    b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>",
    "text/html",
)
_NM_ONLINE = Probe(200, b"NetworkManager is online\n", "text/plain")

_APPLE_HOSTS = (
    "captive.apple.com",
    "www.apple.com",
    "apple.com",
    "www.appleiphonecell.com",
    "www.airport.us",
    "www.ibook.info",
    "www.itools.info",
    "www.thinkdifferent.us",
)
_ANDROID_204_HOSTS = (
    "connectivitycheck.gstatic.com",
    "connectivitycheck.android.com",
    "www.google.com",
    "clients3.google.com",
    "play.googleapis.com",
    "d2uzsrnmmf6tds.cloudfront.net",
)


def _probe_table() -> dict[tuple[str, str], Probe]:
    """(host, path without query) -> the answer the real service gives."""
    table: dict[tuple[str, str], Probe] = {}
    for host in _ANDROID_204_HOSTS:
        table[(host, "/generate_204")] = _NO_CONTENT
    table[("www.google.com", "/gen_204")] = _NO_CONTENT
    for host in _APPLE_HOSTS:
        table[(host, "/hotspot-detect.html")] = _APPLE
        table[(host, "/library/test/success.html")] = _APPLE
    for host in ("www.msftconnecttest.com", "ipv6.msftconnecttest.com"):
        table[(host, "/connecttest.txt")] = Probe(200, b"Microsoft Connect Test", "text/plain")
    table[("www.msftncsi.com", "/ncsi.txt")] = Probe(200, b"Microsoft NCSI", "text/plain")
    table[("detectportal.firefox.com", "/canonical.html")] = Probe(
        200,
        b'<meta http-equiv="refresh" '
        b'content="0;url=https://support.mozilla.org/kb/captive-portal"/>',
        "text/html",
    )
    table[("detectportal.firefox.com", "/success.txt")] = Probe(200, b"success\n", "text/plain")
    table[("connectivity-check.ubuntu.com", "/")] = Probe(
        204, headers=(("X-NetworkManager-Status", "online"),)
    )
    table[("nmcheck.gnome.org", "/check_network_status.txt")] = _NM_ONLINE
    table[("network-test.debian.org", "/nm")] = _NM_ONLINE
    table[("spectrum.s3.amazonaws.com", "/kindle-wifi/wifistub.html")] = Probe(
        200,
        b"<html><head><title>Kindle Wi-Fi</title></head><body>"
        b"<!-- 81ce4465-7167-4dcb-835b-dcc9e44c112a --></body></html>",
        "text/html",
    )
    return table


PROBES = _probe_table()


def _peer(address: str) -> str:
    """The client address as seen, without the ``::ffff:`` of a v4-mapped peer."""
    return address.removeprefix("::ffff:") if "." in address else address


class InternetHandler(BaseHTTPRequestHandler):
    """Answers probes exactly, ``/bytes?n=N`` with N bytes, anything else with a marker page."""

    protocol_version = "HTTP/1.1"
    server_version = "parvis-lab-internet/1"

    def do_GET(self) -> None:  # noqa: N802 (the http.server naming convention)
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def do_POST(self) -> None:  # noqa: N802
        # Drain the request body so a keep-alive connection stays in sync.
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._answer(send_body=True)

    def _answer(self, send_body: bool) -> None:
        host = (self.headers.get("Host") or "").strip().lower()
        # Strip a port, keeping bracketed IPv6 literals intact.
        if host.startswith("["):
            host = host.split("]", 1)[0] + "]"
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        url = urlsplit(self.path)
        probe = PROBES.get((host, url.path or "/"))
        if probe is not None:
            self._send(probe.status, probe.body, probe.content_type, probe.headers, send_body)
        elif url.path == "/bytes":
            self._send_bytes(url.query, send_body)
        else:
            text = f"{MARKER}: host={host} path={self.path} from={_peer(self.client_address[0])}\n"
            self._send(200, text.encode(), "text/plain; charset=utf-8", (), send_body)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: tuple[tuple[str, str], ...],
        send_body: bool,
    ) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def _send_bytes(self, query: str, send_body: bool) -> None:
        try:
            count = int(parse_qs(query).get("n", ["0"])[0])
        except ValueError:
            self._send(400, b"n must be a whole number\n", "text/plain", (), send_body)
            return
        count = max(0, min(count, BYTES_CAP))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(count))
        self.end_headers()
        if not send_body:
            return
        chunk = b"\0" * _CHUNK
        left = count
        while left > 0:
            piece = chunk if left >= _CHUNK else chunk[:left]
            self.wfile.write(piece)
            left -= len(piece)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (base signature)
        host = self.headers.get("Host", "-") if hasattr(self, "headers") else "-"
        sys.stderr.write(
            f"{time.strftime('%H:%M:%S')} http {_peer(self.client_address[0])} "
            f"host={host} {format % args}\n"
        )


class DualStackHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer on ``::`` accepting IPv4 too (v4-mapped)."""

    address_family = socket.AF_INET6
    daemon_threads = True
    request_queue_size = 1024

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class TcpEchoHandler(socketserver.BaseRequestHandler):
    """Writes a banner naming the port, then echoes until the peer closes."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        port = sock.getsockname()[1]
        peer = _peer(self.client_address[0])
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} tcp {port} {peer}\n")
        try:
            sock.sendall(f"{MARKER} tcp {port}\n".encode())
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            # A reset from the client (or the gateway) just ends the echo.
            return


class DualStackTCPServer(socketserver.ThreadingTCPServer):
    """Threading TCP server on ``::`` accepting IPv4 too."""

    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def udp_echo(port: int) -> None:
    """Echo every datagram back, from the exact address it was sent to.

    The AnyIP ranges are not interface addresses, so a reply sourced by the
    routing table would come from 198.51.100.1 and the gateway's conntrack
    would not match it; IPV6_PKTINFO (which Linux also fills in, v4-mapped,
    for IPv4 datagrams on a dual-stack socket) pins the source.
    """
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", port))
    while True:
        data, ancillary, _flags, peer = sock.recvmsg(65535, socket.CMSG_SPACE(20))
        control = []
        for level, kind, payload in ancillary:
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                # in6_pktinfo: the destination address, then the ifindex (0 = any).
                control.append((level, kind, payload[:16] + struct.pack("@I", 0)))
        try:
            sock.sendmsg([data], control, 0, peer)
        except OSError as error:
            sys.stderr.write(f"udp {port}: reply to {peer[0]} failed: {error}\n")


def _ports(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    """Start every listener and serve until killed."""
    parser = argparse.ArgumentParser(prog="python -m lab.internet",
                                     description="The lab's stand-in internet.")
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--tcp-ports", type=_ports, default=[443, 8081])
    parser.add_argument("--udp-ports", type=_ports, default=[443, 7777])
    args = parser.parse_args(argv)

    threads: list[threading.Thread] = []
    http = DualStackHTTPServer(("::", args.http_port), InternetHandler)
    threads.append(threading.Thread(target=http.serve_forever, name="http", daemon=True))
    for port in args.tcp_ports:
        tcp = DualStackTCPServer(("::", port), TcpEchoHandler)
        threads.append(threading.Thread(target=tcp.serve_forever, name=f"tcp{port}", daemon=True))
    for port in args.udp_ports:
        threads.append(threading.Thread(target=udp_echo, args=(port,), name=f"udp{port}",
                                        daemon=True))
    for thread in threads:
        thread.start()
    sys.stderr.write(
        f"{MARKER}: http :{args.http_port}, tcp {args.tcp_ports}, udp {args.udp_ports}\n"
    )
    sys.stderr.flush()
    try:
        while all(thread.is_alive() for thread in threads):
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    sys.stderr.write("a listener stopped; exiting\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
