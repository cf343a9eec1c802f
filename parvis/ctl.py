"""``parvisctl``: administer a gateway from any host that reaches its Redis.

Exit status: 0 done, 1 refused or failed (with the reason on stderr), 2 usage
or configuration error.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import ipaddress
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import parvis
from parvis import usersctl
from parvis.core import codes as access_codes
from parvis.core import dnsmasq
from parvis.core.addresses import AddressError, looks_like_mac, parse_client_ip, parse_mac
from parvis.core.commands import Command, Verb
from parvis.core.config import DEFAULT_CONFIG_PATH, ConfigError, config_problem, load_config
from parvis.core.sessions import quota_left
from parvis.core.units import parse_rate
from parvis.reports import cli as report_cli
from parvis.store import Store, StoreError, check_reachable, connect

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
HEARTBEAT_STALE_S = 30


class UsageError(Exception):
    """A command-line argument that is not what the command takes."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parvisctl", description="Administer Parvis gateways.")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH,
                        help=f"configuration file (default {DEFAULT_CONFIG_PATH})")
    parser.add_argument("--gateway", help="gateway id (default: the one in the configuration)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for the gateway to acknowledge (default 5)")
    parser.add_argument("--version", action="version", version=f"parvis {parvis.__version__}")
    sub = parser.add_subparsers(dest="action", required=True, metavar="COMMAND")
    sub.add_parser("dnsmasq", help="the lines the gateway's dnsmasq needs (no Redis needed)")
    status = sub.add_parser("status", help="gateways: heartbeat, health, sessions")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    clients = sub.add_parser("clients", help="authorised, seen, trusted and blocked devices")
    clients.add_argument("--json", action="store_true", help="machine-readable output")
    auth = sub.add_parser("auth", help="authorise the device at an IPv4 address")
    auth.add_argument("address")
    auth.add_argument("--mac", help="expected MAC (refused if the LAN says otherwise)")
    auth.add_argument("--timeout-s", type=int, dest="timeout_s",
                      help="session length in seconds (default: the plan's hard_timeout_s)")
    auth.add_argument("--plan", default="", help="plan to grant (default: [session] default_plan)")
    deauth = sub.add_parser("deauth", help="end a device's session (by address or MAC)")
    deauth.add_argument("target", metavar="ADDRESS|MAC")
    rate = sub.add_parser("rate", help="change a live session's rates (e.g. --down 20M --up 5M)")
    rate.add_argument("target", metavar="ADDRESS|MAC")
    rate.add_argument("--down", type=_rate, help="download rate in bits/s (k, M, G; 0 = not "
                                                 "shaped)")
    rate.add_argument("--up", type=_rate, help="upload rate in bits/s (k, M, G; 0 = not shaped)")
    extend = sub.add_parser("extend", help="give a live session more time (e.g. 1h, 30m)")
    extend.add_argument("target", metavar="ADDRESS|MAC")
    extend.add_argument("duration", type=_duration_in(1, 7 * 86400, "1s and 7d"),
                        metavar="DURATION")
    for verb, text in (("block", "block a MAC: no access at all, not even the portal"),
                       ("unblock", "unblock a MAC"),
                       ("trust", "let a MAC through without the portal"),
                       ("untrust", "stop trusting a MAC")):
        sub.add_parser(verb, help=text).add_argument("mac", metavar="MAC")
    _add_codes_parser(sub)
    report_cli.add_parser(sub)
    usersctl.add_parser(sub)
    return parser


def _command(args: argparse.Namespace) -> Command:
    try:
        if args.action == "auth":
            address = parse_client_ip(args.address)
            if not isinstance(address, ipaddress.IPv4Address):
                raise UsageError(f"{args.address} is not an IPv4 address (IPv6 addresses "
                                 f"follow the device's MAC automatically)")
            mac = parse_mac(args.mac) if args.mac else None
            if args.timeout_s is not None and not 1 <= args.timeout_s <= 7 * 86400:
                raise UsageError("--timeout-s must be between 1 and 604800")
            return Command(Verb.AUTHORIZE, ip=address, mac=mac,
                           timeout_s=args.timeout_s, by="parvisctl", plan=args.plan)
        if args.action in ("deauth", "rate", "extend"):
            if args.action == "rate" and args.down is None and args.up is None:
                raise UsageError("rate needs --down, --up or both")
            details: dict[str, Any] = {
                "deauth": {}, "rate": {"down_bps": getattr(args, "down", None),
                                       "up_bps": getattr(args, "up", None)},
                "extend": {"extend_s": getattr(args, "duration", None)}}[args.action]
            verb = {"deauth": Verb.DEAUTHORIZE, "rate": Verb.RATE,
                    "extend": Verb.EXTEND}[args.action]
            if looks_like_mac(args.target):
                return Command(verb, mac=parse_mac(args.target), by="parvisctl", **details)
            address = parse_client_ip(args.target)
            if not isinstance(address, ipaddress.IPv4Address):
                raise UsageError(f"{args.target}: give the device's IPv4 address or its MAC")
            return Command(verb, ip=address, by="parvisctl", **details)
        verb = {"block": Verb.BLOCK, "unblock": Verb.UNBLOCK,
                "trust": Verb.TRUST, "untrust": Verb.UNTRUST}[args.action]
        return Command(verb, mac=parse_mac(args.mac), by="parvisctl")
    except AddressError as error:
        raise UsageError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run one parvisctl command."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"parvisctl: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.action == "dnsmasq":
        print("\n".join(dnsmasq.portal_lines(config)))
        return EXIT_OK
    code_key: bytes | None = None
    if args.action == "codes" and args.codes_action == "create":
        # Codes are stored under a hash keyed with the portal's secret: without
        # the very same secret the portal could never recognise them.
        try:
            code_key = access_codes.load_secret(config.portal.secret_key_file)
        except ValueError as error:
            print("parvisctl: " + config_problem(
                config.path, "portal", "secret_key_file", str(error),
                f"a file holding at least {access_codes.MIN_SECRET_BYTES} random bytes "
                f"(e.g. `head -c 32 /dev/urandom | base64 > FILE`), the portal's own"),
                file=sys.stderr)
            return EXIT_USAGE
    if getattr(args, "plan", "") and args.plan not in config.plans:
        # A plan netctl does not know would fail every redemption: refuse it now.
        print(f"parvisctl: --plan {args.plan!r} is not a plan of {config.path} "
              f"(known plans: {', '.join(sorted(config.plans))})", file=sys.stderr)
        return EXIT_USAGE
    reason = check_reachable(config.redis.url, config.redis.timeout_s)
    if reason is not None:
        print("parvisctl: " + config_problem(config.path, "redis", "url",
                                             f"cannot reach {config.redis.url} ({reason})",
                                             "a running Redis server at that URL"),
              file=sys.stderr)
        return EXIT_USAGE
    gateway_id = args.gateway or config.gateway.id
    store = Store(connect(config.redis.url, config.redis.timeout_s), gateway_id)
    try:
        if args.action == "status":
            return _status(store, args.json)
        if args.action == "clients":
            return _clients(store, args.json)
        if args.action == "codes":
            return _codes(store, args, code_key)
        if args.action == "report":
            return report_cli.run(store, args, config)
        if args.action == "users":
            return usersctl.run(store, args)
        command = _command(args)
        return _send(store, command, args.timeout)
    except UsageError as error:
        print(f"parvisctl: {error}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as error:
        print(f"parvisctl: Redis failed: {error}", file=sys.stderr)
        return EXIT_FAILED


def _send(store: Store, command: Command, timeout_s: float) -> int:
    result = store.call(command, timeout_s)
    if result is None:
        print(f"parvisctl: gateway {store.keys.gateway_id} did not answer within {timeout_s:g} s "
              f"(is parvis-netctl running? see `parvisctl status`); the command stays queued "
              f"and will be applied when it starts", file=sys.stderr)
        return EXIT_FAILED
    if not result.ok:
        print(f"parvisctl: refused: {result.message}", file=sys.stderr)
        return EXIT_FAILED
    print(result.message)
    return EXIT_OK


def _status(store: Store, as_json: bool) -> int:
    now = time.time()
    gateway_ids = sorted(set(store.gateways()) | {store.keys.gateway_id})
    rows: list[dict[str, Any]] = []
    for gateway_id in gateway_ids:
        gw = Store(store.client, gateway_id)
        beat = gw.heartbeat()
        health = gw.health() or {}
        age = None if beat is None else round(now - float(beat["at"]), 1)
        rows.append({
            "gateway": gateway_id,
            "running": beat is not None and age is not None and age < HEARTBEAT_STALE_S,
            "heartbeat_age_s": age,
            "version": (beat or {}).get("version"),
            "sessions": len(gw.sessions()),
            "cpu_percent": health.get("cpu_percent"),
            "memory_percent": health.get("memory_percent"),
            "netctl_rss_bytes": health.get("netctl_rss_bytes"),
            "uptime_s": health.get("uptime_s"),
            "interfaces": health.get("interfaces", {}),
        })
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            state = "running" if row["running"] else "NOT RUNNING (no heartbeat)"
            print(f"gateway {row['gateway']}: netctl {state}"
                  + (f", version {row['version']}, heartbeat {row['heartbeat_age_s']} s ago"
                     if row["running"] else ""))
            print(f"  sessions {row['sessions']}")
            if row["running"]:
                rss = (row["netctl_rss_bytes"] or 0) / 1e6
                print(f"  cpu {row['cpu_percent']} %  memory {row['memory_percent']} %  "
                      f"netctl {rss:.0f} MB  host up {_duration(row['uptime_s'] or 0)}")
                for name, iface in row["interfaces"].items():
                    if not iface.get("present"):
                        print(f"  {name}: missing")
                        continue
                    print(f"  {name}: rx {_bits(iface.get('rx_bit_s'))} tx "
                          f"{_bits(iface.get('tx_bit_s'))}  (total rx {iface['bytes_recv']} B, "
                          f"tx {iface['bytes_sent']} B)")
    own = next(r for r in rows if r["gateway"] == store.keys.gateway_id)
    return EXIT_OK if own["running"] else EXIT_FAILED


def client_rows(store: Store) -> list[dict[str, Any]]:
    """Every device the gateway knows of: authorised, trusted, blocked or only seen."""
    rows: dict[str, dict[str, Any]] = {}
    seen = store.seen()
    for mac, info in seen.items():
        rows[mac] = {"address": info.get("ipv4"), "ipv6": [], "mac": mac, "state": "seen",
                     "since": info.get("first_seen"), "expires_at": None,
                     "bytes_up": 0, "bytes_down": 0}
    for mac in store.mac_set("trusted"):
        rows.setdefault(mac, {"address": None, "ipv6": [], "mac": mac, "since": None,
                              "expires_at": None, "bytes_up": 0, "bytes_down": 0})
        rows[mac]["state"] = "trusted"
    for mac, session in store.sessions().items():
        rows[mac] = {"address": session.ipv4, "ipv6": session.ipv6, "mac": mac,
                     "state": "authorized", "since": session.started_at,
                     "expires_at": session.expires_at,
                     "bytes_up": session.bytes_up, "bytes_down": session.bytes_down,
                     "plan": session.plan, "down_bps": session.down_bps,
                     "up_bps": session.up_bps, "quota_left": quota_left(session),
                     "idle": session.state != "active"}
    for mac in store.mac_set("blocked"):
        rows.setdefault(mac, {"address": seen.get(mac, {}).get("ipv4"), "ipv6": [], "mac": mac,
                              "since": None, "expires_at": None, "bytes_up": 0, "bytes_down": 0})
        rows[mac]["state"] = "blocked"
    order = {"authorized": 0, "trusted": 1, "seen": 2, "blocked": 3}
    return sorted(rows.values(), key=lambda r: (order[r["state"]], r["address"] or "", r["mac"]))


def _clients(store: Store, as_json: bool) -> int:
    rows = client_rows(store)
    if as_json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no clients")
        return EXIT_OK
    header = (f"{'ADDRESS':<16} {'MAC':<17} {'STATE':<10} {'SINCE':<19} {'LEFT':>8} "
              f"{'PLAN':<10} {'RATE DOWN/UP':<22} {'UP':>10} {'DOWN':>10} {'QUOTA LEFT':>10}")
    print(header)
    now = time.time()
    for row in rows:
        since = (datetime.fromtimestamp(row["since"]).strftime("%Y-%m-%d %H:%M:%S")
                 if row["since"] else "-")
        left = _duration(row["expires_at"] - now) if row["expires_at"] else "-"
        rates = (f"{_bits(row['down_bps'] or None)}/{_bits(row['up_bps'] or None)}"
                 if "plan" in row else "-")
        quota = "-" if row.get("quota_left") is None else _bytes(row["quota_left"])
        print(f"{row['address'] or '-':<16} {row['mac']:<17} {row['state']:<10} {since:<19} "
              f"{left:>8} {row.get('plan') or '-':<10} {rates:<22} "
              f"{_bytes(row['bytes_up']):>10} {_bytes(row['bytes_down']):>10} {quota:>10}")
    return EXIT_OK


def _bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def _bits(rate: int | None) -> str:
    if rate is None:
        return "-"
    value = float(rate)
    for unit in ("bit/s", "kbit/s", "Mbit/s"):
        if value < 1000:
            return f"{value:.0f} {unit}"
        value /= 1000
    return f"{value:.1f} Gbit/s"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours}h {rest // 60}m" if days else f"{hours}h {rest // 60}m"


# --- codes: access codes for events (docs/codes.md) -------------------------------------------


def _rate(text: str) -> int:
    """An argparse type: a rate in bits/s such as 20M."""
    try:
        return parse_rate(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not from {low} to {high}")
        return value
    return parse


def _duration_in(low_s: int, high_s: int, words: str) -> Callable[[str], int]:
    """An argparse type: a duration (``4h``, ``1h30m``) from ``low_s`` to ``high_s`` seconds."""
    def parse(text: str) -> int:
        try:
            value = access_codes.parse_duration(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if not low_s <= value <= high_s:
            raise argparse.ArgumentTypeError(f"{text!r} is not {words}")
        return value
    return parse


def _add_codes_parser(sub: Any) -> None:
    codes = sub.add_parser("codes", help="access codes for events: create, list, revoke")
    actions = codes.add_subparsers(dest="codes_action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a batch of codes and print them (once)")
    create.add_argument("--count", type=_int_in(1, access_codes.MAX_CODES_PER_BATCH),
                        required=True, help="how many codes (1 to 10000)")
    create.add_argument("--valid-for", dest="valid_for_s", required=True, metavar="DURATION",
                        type=_duration_in(access_codes.MIN_VALID_FOR_S,
                                          access_codes.MAX_VALID_FOR_S, "from 1m to 90d"),
                        help="how long the codes may be redeemed, e.g. 4h, 2d, 1h30m")
    create.add_argument("--uses", type=_int_in(1, access_codes.MAX_USES), default=1,
                        help="redemptions allowed per code (default 1)")
    create.add_argument("--session", dest="session_s", metavar="DURATION",
                        type=_duration_in(access_codes.MIN_SESSION_S,
                                          access_codes.MAX_SESSION_S, "from 1m to 7d"),
                        help="session length granted (default: the plan's hard_timeout_s)")
    create.add_argument("--plan", default="", metavar="NAME",
                        help="the plan its sessions get, from [plans] in the configuration "
                             "(default: [session] default_plan)")
    create.add_argument("--note", default="", help="what the batch is for (shown in lists)")
    create.add_argument("--csv", action="store_true", help="CSV with a header line")
    listing = actions.add_parser("list", help="batches with their use so far")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    revoke = actions.add_parser("revoke", help="refuse every code of a batch from now on")
    revoke.add_argument("batch_id", metavar="BATCH_ID")


def _codes(store: Store, args: argparse.Namespace, key: bytes | None) -> int:
    if args.codes_action == "create":
        assert key is not None  # read by main() before Redis is reached
        try:
            batch, codes = store.create_code_batch(
                args.count, args.valid_for_s, args.uses, args.session_s, args.note, key,
                time.time(), plan=args.plan)
        except ValueError as error:
            raise UsageError(str(error)) from None
        _print_codes(batch, codes, args.csv)
        print(f"parvisctl: batch {batch.id}: {len(codes)} codes; they are shown only now, "
              f"keep them safe", file=sys.stderr)
        return EXIT_OK
    if args.codes_action == "list":
        return _list_batches(store.list_code_batches(), args.json)
    if store.revoke_code_batch(args.batch_id):
        print(f"batch {args.batch_id} revoked")
        return EXIT_OK
    print(f"parvisctl: no batch {args.batch_id!r} (see `parvisctl codes list`)",
          file=sys.stderr)
    return EXIT_FAILED


def _print_codes(batch: access_codes.CodeBatch, codes: list[str], as_csv: bool) -> None:
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["code", "batch", "valid_until", "uses"])
        until = datetime.fromtimestamp(batch.valid_until).astimezone().isoformat("T", "minutes")
        for code in codes:
            writer.writerow([access_codes.format_code(code), batch.id, until, batch.uses])
        return
    until = datetime.fromtimestamp(batch.valid_until).strftime("%Y-%m-%d %H:%M")
    print(f"{'CODE':<19} {'BATCH':<15} {'VALID UNTIL':<16} {'USES':>5}")
    for code in codes:
        print(f"{access_codes.format_code(code):<19} {batch.id:<15} {until:<16} {batch.uses:>5}")


def _list_batches(batches: list[access_codes.CodeBatch], as_json: bool) -> int:
    now = time.time()
    if as_json:
        print(json.dumps([dict(dataclasses.asdict(b), codes_left=b.codes_left,
                               state=b.state(now)) for b in batches], indent=2))
        return EXIT_OK
    if not batches:
        print("no code batches")
        return EXIT_OK
    print(f"{'BATCH':<15} {'CREATED':<16} {'VALID UNTIL':<16} {'STATE':<8} {'CODES':>6} "
          f"{'USED UP':>7} {'USES':>5} {'SESSION':>8} {'PLAN':<12}  NOTE")
    for b in batches:
        created = datetime.fromtimestamp(b.created_at).strftime("%Y-%m-%d %H:%M")
        until = datetime.fromtimestamp(b.valid_until).strftime("%Y-%m-%d %H:%M")
        session = _duration(b.session_s) if b.session_s is not None else "default"
        print(f"{b.id:<15} {created:<16} {until:<16} {b.state(now):<8} {b.count:>6} "
              f"{b.codes_used_up:>7} {b.uses:>5} {session:>8} {b.plan or 'default':<12}  "
              f"{b.note}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
