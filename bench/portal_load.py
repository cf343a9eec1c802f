"""The captive portal under load, from a lab client, each figure beside a baseline of the same run.

Measures (issue 3's benchmarks), from inside a client namespace:

* (a) the interceptor's redirect: ``wrk`` on ``http://203.0.113.10/`` from an
  unauthorised client (the gateway sends it to the portal's plain-HTTP
  listener, which answers 302); baseline: the stand-in internet's own page,
  hit the same way from an authorised client;
* (b) the splash page over HTTPS (``wrk`` on the portal's URL); baseline:
  ``/static/parvis.css``, a static file through the same TLS and gunicorn stack;
* (c) accept → online with N clients already authorised: on c2, deauthorise,
  open the splash page (cookie, CSRF token), then time from sending the accept
  POST to the moment the next Android probe (``generate_204``) answers 204,
  30 times; baseline: the same with the authorize command sent straight to
  netctl (what ``parvisctl auth`` sends), so the portal's share shows.

The accept timing runs inside c2 in one Python process (``_client-loop``), so
no process start or namespace entry falls inside a measurement.

Run as root: ``.venv/bin/python -m bench portal [--clients 1000] [--seconds 5]``.
``--workers``/``--threads`` start the portal with other gunicorn settings than
its defaults (to see what they change); figures go to ``artifacts/bench-portal.json``.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.figures import table, write
from bench.netctl_scale import authorise_all, percentile
from lab import topology
from lab.topology import Lab
from parvis.core.commands import Command, Verb
from parvis.store import Store, connect

REPO_ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 30
SETTLE_S = 0.5
PROBE_HOST = "connectivitycheck.gstatic.com"
PROBE_PATH = "/generate_204"
WRK_THREADS = 2
WRK_CONNECTIONS = 32

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_LATENCY_RE = re.compile(r"^\s*(50|75|90|99)%\s+([0-9.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_RATE_RE = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)
_TOTAL_RE = re.compile(r"^\s*(\d+) requests in", re.MULTILINE)
_NON2XX_RE = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_ERRORS_RE = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_ACCEPT_FORM_RE = re.compile(
    r'<form method="post" action="([^"]*/accepter[^"]*)">(.*?)</form>', re.DOTALL)
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def progress(message: str) -> None:
    """One progress line on stderr."""
    print(f"bench portal: {message}", file=sys.stderr, flush=True)


# --- wrk ---------------------------------------------------------------------------------

def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, p50/p99 (ms), request count and errors from ``wrk --latency`` output."""
    latencies = {pct: float(value) * _UNITS[unit]
                 for pct, value, unit in _LATENCY_RE.findall(output)}
    rate = _RATE_RE.search(output)
    total = _TOTAL_RE.search(output)
    if rate is None or total is None or "50" not in latencies or "99" not in latencies:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    non2xx = _NON2XX_RE.search(output)
    errors = _ERRORS_RE.search(output)
    return {
        "rps": float(rate.group(1)),
        "p50_ms": latencies["50"],
        "p99_ms": latencies["99"],
        "requests": float(total.group(1)),
        "non_2xx_3xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": float(sum(int(n) for n in errors.groups())) if errors else 0.0,
    }


def wrk(lab: Lab, node: str, url: str, seconds: int) -> dict[str, float]:
    """``wrk -t2 -c32 --latency`` on ``url`` from ``node``; its figures."""
    progress(f"wrk {url} from {node}, {seconds} s…")
    result = lab.exec(node, ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}",
                             f"-d{seconds}s", "--timeout", "5s", "--latency", url],
                      timeout=seconds + 30)
    figures = parse_wrk(result.stdout)
    if figures["non_2xx_3xx"] or figures["socket_errors"]:
        progress(f"  WARNING: {figures['non_2xx_3xx']:.0f} non-2xx/3xx answers, "
                 f"{figures['socket_errors']:.0f} socket errors")
    progress(f"  {figures['rps']:.0f} req/s, p50 {figures['p50_ms']:.2f} ms, "
             f"p99 {figures['p99_ms']:.2f} ms")
    return figures


# --- the accept loop, run inside the client's namespace -----------------------------------

def _probe_status(address: str) -> int:
    """One Android probe on a new connection, as the OS sends it: its HTTP status (0 on error)."""
    connection = http.client.HTTPConnection(address, 80, timeout=2)
    try:
        connection.request("GET", PROBE_PATH, headers={"Host": PROBE_HOST,
                                                       "User-Agent": "bench-probe"})
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


def _wait_probe(address: str, wanted: int, timeout_s: float) -> float:
    """Poll the probe in a tight loop until it answers ``wanted``; the moment it did."""
    deadline = time.perf_counter() + timeout_s
    while True:
        if _probe_status(address) == wanted:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the probe did not answer {wanted} within {timeout_s:g} s")


def _open_splash(context: ssl.SSLContext) -> tuple[http.client.HTTPSConnection, str, str, str]:
    """GET the splash page on a kept-alive connection: (connection, cookie, action, token)."""
    connection = http.client.HTTPSConnection(topology.PORTAL_NAME, topology.PORTAL_HTTPS_PORT,
                                             context=context, timeout=5)
    connection.request("GET", "/", headers={"Accept-Language": "fr"})
    response = connection.getresponse()
    page = response.read().decode()
    if response.status != 200:
        raise RuntimeError(f"splash page answered {response.status}")
    cookie = "; ".join(value.split(";", 1)[0] for name, value in response.getheaders()
                       if name.lower() == "set-cookie")
    form = _ACCEPT_FORM_RE.search(page)
    token = _CSRF_RE.search(form.group(2)) if form else None
    if form is None or token is None:
        raise RuntimeError("no accept form with a CSRF token on the splash page")
    return connection, cookie, form.group(1).replace("&amp;", "&"), token.group(1)


def client_loop(mode: str, rounds: int, redis_url: str, ip: str, mac: str) -> dict[str, Any]:
    """In the client's namespace: ``rounds`` times deauthorise, then authorise and time it.

    ``mode`` "portal": open the splash page, then time from sending the accept
    POST to the first 204 from the probe (and, apart, until the POST's 303).
    ``mode`` "netctl": the same, but the authorize command goes straight to netctl
    instead of the POST (and "answered" is its acknowledgement).
    """
    store = Store(connect(redis_url, timeout_s=10), topology.GATEWAY_ID)
    probe = socket.gethostbyname(PROBE_HOST)  # once: a device's resolver caches it too
    context = ssl.create_default_context()  # trusts the lab CA through the namespace's /etc/ssl
    online: list[float] = []
    answered: list[float] = []
    for _ in range(rounds):
        result = store.call(Command(Verb.DEAUTHORIZE, mac=mac, by="bench"), timeout_s=10)
        if result is None or not result.ok:
            raise RuntimeError(f"deauthorize {mac} failed: {result}")
        _wait_probe(probe, 302, timeout_s=5)
        # netctl cuts a deauthorised client's connections (conntrack -D) in a worker thread
        # after acknowledging; a cut still running would kill the next round's first probe.
        time.sleep(SETTLE_S)
        # Both modes open the splash page first, so netctl is in the same state when timing starts.
        connection, cookie, action, token = _open_splash(context)
        if mode == "portal":
            body = f"csrf_token={token}"
            started = time.perf_counter()
            connection.request("POST", action, body=body, headers={
                "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie,
                "Referer": topology.PORTAL_URL,
                "Origin": topology.PORTAL_URL.rstrip("/")})
            response = connection.getresponse()
            response.read()
            answered.append(time.perf_counter() - started)
            connection.close()
            if response.status != 303:
                raise RuntimeError(f"accept answered {response.status}, not 303")
        else:
            connection.close()
            started = time.perf_counter()
            result = store.call(Command(Verb.AUTHORIZE, ip=ipaddress.IPv4Address(ip),
                                        by="bench"), timeout_s=10)
            answered.append(time.perf_counter() - started)
            if result is None or not result.ok:
                raise RuntimeError(f"authorize {ip} failed: {result}")
        online.append(_wait_probe(probe, 204, timeout_s=5) - started)
    store.client.close()
    return {"online_s": online, "answered_s": answered}


def accept_rounds(lab: Lab, mode: str, rounds: int) -> dict[str, Any]:
    """Run :func:`client_loop` in c2 (one process for all rounds); its durations."""
    progress(f"accept → online on c2, {rounds} rounds, via {mode}…")
    argv = [sys.executable, "-m", "bench.portal_load", "_client-loop", mode, str(rounds),
            lab.redis_url, lab.client_ip(2), lab.client_mac(2)]
    child = lab.popen("c2", argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT)
    try:
        out, err = child.communicate(timeout=60 + rounds * 15)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode != 0:
        raise RuntimeError(f"the accept loop failed (exit {child.returncode}):\n{err}")
    data: dict[str, Any] = json.loads(out)
    online = [s * 1000 for s in data["online_s"]]
    answered = [s * 1000 for s in data["answered_s"]]
    figures = {"p50_ms": percentile(online, 0.5), "p99_ms": percentile(online, 0.99),
               "max_ms": max(online), "answered_p50_ms": percentile(answered, 0.5),
               "answered_p99_ms": percentile(answered, 0.99), "rounds": rounds}
    progress(f"  online p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
             f"max {figures['max_ms']:.1f} ms (answer p50 {figures['answered_p50_ms']:.1f} ms)")
    return figures


# --- the lab -----------------------------------------------------------------------------

def start_portal(lab: Lab, workers: int, threads: int) -> subprocess.Popen[str]:
    """Start the portal in gw with explicit gunicorn settings; wait for both listeners."""
    progress(f"starting the portal with --workers {workers} --threads {threads}…")
    child = lab.popen("gw", [sys.executable, "-m", "portal", "--config", str(lab.config_path),
                             "--workers", str(workers), "--threads", str(threads)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    targets = [f"tcp:{topology.LAN_GATEWAY4}:{port}"
               for port in (topology.PORTAL_HTTP_PORT, topology.PORTAL_HTTPS_PORT)]
    result = lab.exec("gw", [sys.executable, "-m", "lab.readiness", "--timeout", "20", *targets],
                      check=False, timeout=40)
    if result.returncode != 0:
        stop_portal(child)
        raise RuntimeError(f"the portal did not listen: {result.stderr.strip()}")
    return child


def stop_portal(child: subprocess.Popen[str]) -> None:
    """SIGTERM the portal this benchmark started (its graceful stop), then wait for it."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run(name: str, clients: int, seconds: int, workers: int | None,
        threads: int | None) -> dict[str, Any]:
    """Build the lab, take every measurement, always tear the lab down."""
    lab = Lab(name=name, clients=2, progress=lambda m: progress(f"lab: {m}"))
    custom = workers is not None or threads is not None
    figures: dict[str, Any] = {"clients": clients, "seconds": seconds,
                               "wrk": f"-t{WRK_THREADS} -c{WRK_CONNECTIONS}",
                               "portal_workers": workers if workers is not None else "default",
                               "portal_threads": threads if threads is not None else "default"}
    lab.down()
    portal: subprocess.Popen[str] | None = None
    try:
        lab.up(portal=not custom)
        if custom:
            portal = start_portal(lab, workers or 2, threads or 16)
        client = connect(lab.redis_url, timeout_s=30)
        store = Store(client, topology.GATEWAY_ID)
        result = store.call(Command(Verb.AUTHORIZE, ip=ipaddress.IPv4Address(lab.client_ip(2)),
                                    by="bench"))
        if result is None or not result.ok:
            raise RuntimeError(f"authorising c2 failed: {result}")
        web = f"http://{topology.INTERNET_WEB4}/"
        figures["redirect"] = wrk(lab, "c1", web, seconds)
        figures["internet_page"] = wrk(lab, "c2", web, seconds)
        figures["splash"] = wrk(lab, "c1", topology.PORTAL_URL, seconds)
        figures["static_css"] = wrk(lab, "c1", topology.PORTAL_URL + "static/parvis.css",
                                    seconds)
        progress(f"authorising {clients} synthetic clients…")
        figures["authorise_all_s"] = authorise_all(store, clients)
        figures["accept"] = accept_rounds(lab, "portal", ROUNDS)
        figures["netctl_only"] = accept_rounds(lab, "netctl", ROUNDS)
        figures["sessions"] = len(store.client.hkeys(store.keys.sessions))
        client.close()
    finally:
        if portal is not None:
            stop_portal(portal)
        progress("taking the lab down…")
        lab.down()
    return figures


def report(f: dict[str, Any]) -> str:
    """The figures as a table: measure | portal | baseline (same run) | target."""
    a, web, b, css = f["redirect"], f["internet_page"], f["splash"], f["static_css"]
    c, base = f["accept"], f["netctl_only"]
    n = f["clients"]
    rows = [
        ("(a) redirect, req/s", f"{a['rps']:,.0f}", f"internet page: {web['rps']:,.0f}",
         ">= 3,000"),
        ("(a) redirect, p50 / p99", f"{a['p50_ms']:.1f} / {a['p99_ms']:.1f} ms",
         f"{web['p50_ms']:.1f} / {web['p99_ms']:.1f} ms", "p99 < 20 ms"),
        ("(b) splash HTTPS, req/s", f"{b['rps']:,.0f}", f"parvis.css: {css['rps']:,.0f}",
         ">= 800"),
        ("(b) splash HTTPS, p50 / p99", f"{b['p50_ms']:.1f} / {b['p99_ms']:.1f} ms",
         f"{css['p50_ms']:.1f} / {css['p99_ms']:.1f} ms", ""),
        (f"(c) accept → online, p50 ({n:,} authorised)", f"{c['p50_ms']:.1f} ms",
         f"netctl alone: {base['p50_ms']:.1f} ms", ""),
        ("(c) accept → online, p99 / max", f"{c['p99_ms']:.1f} / {c['max_ms']:.1f} ms",
         f"{base['p99_ms']:.1f} / {base['max_ms']:.1f} ms", "p99 < 100 ms"),
        ("(c) POST → 303, p50 / p99", f"{c['answered_p50_ms']:.1f} / "
         f"{c['answered_p99_ms']:.1f} ms", f"command → ack: {base['answered_p50_ms']:.1f} / "
         f"{base['answered_p99_ms']:.1f} ms", ""),
    ]
    return table(("measure", "portal", "baseline (same run)", "target"), rows)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures (or, internally, the in-namespace loop)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_client-loop":
        mode, rounds, redis_url, ip, mac = argv[1:6]
        print(json.dumps(client_loop(mode, int(rounds), redis_url, ip, mac)))
        return 0
    parser = argparse.ArgumentParser(prog="bench portal", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000,
                        help="synthetic clients authorised before (c) (default %(default)s)")
    parser.add_argument("--seconds", type=int, default=5, help="each wrk run (default %(default)s)")
    parser.add_argument("--name", default="bp", help="lab name (namespaces bp-*)")
    parser.add_argument("--workers", type=int, help="portal processes per listener "
                        "(default: the portal's own)")
    parser.add_argument("--threads", type=int, help="threads per portal process "
                        "(default: the portal's own)")
    args = parser.parse_args(argv)
    if not args.name.startswith("bp"):
        parser.error("the lab name must start with 'bp'")
    figures = run(args.name, args.clients, args.seconds, args.workers, args.threads)
    print(report(figures))
    suffix = "" if args.workers is None and args.threads is None else \
        f"-w{args.workers or 'd'}-t{args.threads or 'd'}"
    write(f"bench-portal{suffix}", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
