"""Wait until services answer, from inside a lab namespace (stdlib only).

The lab runs this with ``ip netns exec`` so one short process checks every
listener of a namespace, instead of one ``ip netns exec`` per attempt::

    python -m lab.readiness --timeout 10 tcp:203.0.113.10:80 dns:127.0.0.1

Targets: ``tcp:HOST:PORT`` (a TCP connect succeeds) and ``dns:HOST`` (a UDP
DNS query on port 53 gets any answer). IPv6 hosts are written in brackets:
``tcp:[2001:db8:203::10]:80``. Exits 0 when all answer, 1 (naming the ones
that did not) at the timeout.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time


def _split(target: str) -> tuple[str, str, int]:
    """``tcp:[::1]:80`` -> ("tcp", "::1", 80); ``dns:1.2.3.4`` -> ("dns", "1.2.3.4", 53)."""
    kind, _, rest = target.partition(":")
    port = 53
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            port = int(tail[1:])
    elif kind == "tcp":
        host, _, port_text = rest.rpartition(":")
        port = int(port_text)
    else:
        host = rest
    if kind not in ("tcp", "dns") or not host:
        raise ValueError(f"bad target {target!r}: expected tcp:HOST:PORT or dns:HOST")
    return kind, host, port


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _dns_query() -> bytes:
    """A minimal query: id 0x5a5a, recursion desired, one question ``lab.test A IN``."""
    header = struct.pack("!HHHHHH", 0x5A5A, 0x0100, 1, 0, 0, 0)
    name = b"".join(bytes([len(label)]) + label for label in (b"lab", b"test")) + b"\0"
    return header + name + struct.pack("!HH", 1, 1)


def check(target: str, timeout: float = 0.5) -> bool:
    """Whether ``target`` answers right now."""
    kind, host, port = _split(target)
    try:
        if kind == "tcp":
            with socket.create_connection((host, port), timeout=timeout):
                return True
        with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(_dns_query(), (host, port))
            data = sock.recv(512)
            return data[:2] == b"\x5a\x5a"
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Poll every target until all answer or the timeout passes."""
    parser = argparse.ArgumentParser(prog="python -m lab.readiness")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("targets", nargs="+")
    args = parser.parse_args(argv)
    for target in args.targets:
        _split(target)  # reject a malformed target at once, not at the timeout
    pending = list(args.targets)
    deadline = time.monotonic() + args.timeout
    while pending:
        pending = [target for target in pending if not check(target)]
        if not pending:
            break
        if time.monotonic() > deadline:
            print(f"not answering after {args.timeout:g} s: {' '.join(pending)}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
