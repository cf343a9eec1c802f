"""``parvis-netctl``: the gateway daemon's command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import parvis
from parvis.core.config import DEFAULT_CONFIG_PATH, Config, ConfigError, config_problem, load_config

if TYPE_CHECKING:
    from netctl.nft import Nft

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

log = logging.getLogger("netctl")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parvis-netctl",
        description="Parvis gateway daemon: enforces access, counts usage, obeys commands "
                    "from Redis. SIGTERM leaves authorised clients in place.",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH,
                        help=f"configuration file (default {DEFAULT_CONFIG_PATH})")
    parser.add_argument("--flush", action="store_true",
                        help="remove the nftables table and tc qdiscs netctl created, then exit")
    parser.add_argument("--check", action="store_true",
                        help="validate the configuration (interfaces, Redis) and exit")
    parser.add_argument("--version", action="version", version=f"parvis {parvis.__version__}")
    return parser


def check_environment(config: Config) -> list[str]:
    """Problems with the world the configuration describes: interfaces and Redis."""
    from netctl.netlink import interface_index
    from parvis.store import check_reachable

    problems = []
    for key in ("lan_interface", "wan_interface"):
        name = getattr(config.gateway, key)
        if interface_index(name) is None:
            problems.append(config_problem(
                config.path, "gateway", key, f"no interface named {name!r} on this host",
                "an existing network interface (see `ip link`)"))
    reason = check_reachable(config.redis.url, config.redis.timeout_s)
    if reason is not None:
        problems.append(config_problem(
            config.path, "redis", "url", f"cannot reach {config.redis.url} ({reason})",
            "a running Redis server at that URL"))
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run the daemon; exit 2 on a configuration problem, 1 on a failure."""
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"parvis-netctl: {error}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=config.netctl.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Flushing needs neither Redis nor the interfaces: it must work on a broken host.
    if args.flush:
        return _flush(config)
    problems = check_environment(config)
    redis_only = bool(problems) and not any("_interface:" in p for p in problems)
    if problems and (args.check or not redis_only):
        for problem in problems:
            print(f"parvis-netctl: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check:
        print(f"parvis-netctl: {config.path}: configuration OK")
        return EXIT_OK
    # Redis missing is not a configuration error at boot (the gateway may come up
    # before it): _serve closes the gateway at once, then waits for Redis.
    return _serve(config)


def close_gateway(nft: Nft, config: Config) -> None:
    """Install the table at once (rules, configured MAC lists, walled garden).

    Client sets are kept as they are: authorised clients keep their access. The
    run-time blocked and trusted lists come from Redis when netctl reconciles.
    """
    from netctl import ruleset

    nft.apply(ruleset.build_table(
        config, config.clients.blocked_macs, config.clients.trusted_macs, replace_sets=False,
        existing_sets=nft.set_names()))


REDIS_RETRY_S = 2.0
REDIS_WAIT_REPORT_S = 30.0


def _wait_for_redis(config: Config, stop: threading.Event) -> bool:
    """Wait until Redis answers (True) or netctl is told to stop (False).

    The firewall is already in place: unauthorised devices are held at the
    portal, authorised ones keep their access. A gateway that boots before its
    Redis waits here instead of exiting and being restarted in a loop.
    """
    from parvis.store import check_reachable

    reason = check_reachable(config.redis.url, config.redis.timeout_s)
    if reason is None:
        return True
    log.warning("waiting for Redis at %s (%s); the firewall is in place: unauthorised "
                "devices are held at the portal, authorised ones keep their access; "
                "retrying every %.0f s", config.redis.url, reason, REDIS_RETRY_S)
    waited = 0.0
    next_report = REDIS_WAIT_REPORT_S
    while not stop.wait(REDIS_RETRY_S):
        waited += REDIS_RETRY_S
        reason = check_reachable(config.redis.url, config.redis.timeout_s)
        if reason is None:
            log.info("Redis answers after %.0f s; starting", waited)
            return True
        if waited >= next_report:
            log.warning("still waiting for Redis at %s after %.0f s (%s)",
                        config.redis.url, waited, reason)
            next_report += REDIS_WAIT_REPORT_S
    return False


def _flush(config: Config) -> int:
    from netctl import ruleset
    from netctl.nft import Nft, NftError
    from netctl.shaper import Shaper, ShaperError

    with Shaper(config.gateway.lan_interface, config.gateway.wan_interface) as shaper:
        try:
            shaper.remove_all()
        except ShaperError as error:
            log.warning("could not remove the traffic shaping: %s", error)
    nft = Nft()
    if not nft.table_exists():
        log.info("nothing to flush: table inet parvis is not there")
        return EXIT_OK
    try:
        nft.apply(ruleset.delete_table())
    except NftError as error:
        print(f"parvis-netctl: {error}", file=sys.stderr)
        return EXIT_FAILED
    log.info("flushed: table inet parvis and the shaping qdiscs removed")
    return EXIT_OK


def _serve(config: Config) -> int:
    from netctl.conntrack import ConnectionCutter
    from netctl.daemon import Gateway
    from netctl.health import HealthSampler
    from netctl.metrics import MetricsError, NetctlMetrics
    from netctl.nft import Nft, NftError
    from netctl.prober import IdleProber
    from netctl.shaper import Shaper, ShaperError
    from netctl.wire import DhcpWatcher, arp_presence, arp_probe
    from parvis.store import Store, StoreError, connect

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping on %s; clients keep their access", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    nft = Nft()
    try:
        close_gateway(nft, config)
    except NftError as error:
        log.error("could not install the firewall: %s", error)
        return EXIT_FAILED
    if not _wait_for_redis(config, stop):
        return EXIT_OK
    metrics = NetctlMetrics(config)
    try:
        metrics.start()  # nothing when [metrics] netctl_port = 0
    except MetricsError as error:
        print(f"parvis-netctl: {error}", file=sys.stderr)
        return EXIT_CONFIG
    store = Store(connect(config.redis.url, config.redis.timeout_s), config.gateway.id)
    lan = config.gateway.lan_interface
    cutter = ConnectionCutter()
    prober = IdleProber(lambda targets: arp_presence(lan, targets))
    shaper = Shaper(lan, config.gateway.wan_interface, config.shaping.uplink_down_bps,
                    config.shaping.uplink_up_bps)
    gateway = Gateway(config, store, nft, probe_macs=lambda ips: arp_probe(lan, ips),
                      cut_connections=cutter.cut, shaper=shaper, prober=prober,
                      metrics=metrics)
    cutter.authorised = gateway.held_addresses
    cutter.start()
    prober.start()
    try:
        gateway.start()
    except (StoreError, NftError, ShaperError) as error:
        log.error("could not start: %s", error)
        return EXIT_FAILED
    watcher = DhcpWatcher(config.gateway.lan_interface)
    try:
        watcher.start()
    except (OSError, RuntimeError) as error:
        log.warning("DHCP watching unavailable error=%s", error)
    sampler = HealthSampler(config.gateway.id,
                            [config.gateway.lan_interface, config.gateway.wan_interface])
    try:
        gateway.run(stop, sampler, watcher.drain)
    finally:
        watcher.stop()
        cutter.stop()
        prober.stop()
        shaper.close()
        metrics.stop()
    log.info("netctl stopped gateway=%s sessions=%d", config.gateway.id, len(gateway.sessions))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
