"""``parvis-admin``: serve the administration console with gunicorn on its management address.

Plain HTTP on ``[admin] address``:``port``: loopback (reached through an SSH
tunnel) or an address on the management network, never the LAN the residents
are on (docs/admin.md). Exit status 2 on a configuration problem, before
anything listens.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
from pathlib import Path
from typing import Any

import psutil

from parvis.core.config import DEFAULT_CONFIG_PATH, Config, ConfigError, config_problem, load_config
from parvis.serving import GunicornApp
from parvis.store import Store, StoreError, connect

log = logging.getLogger(__name__)

EXPECTED_ADDRESS = ("a management address or loopback (e.g. \"127.0.0.1\"), never an address "
                    "the residents' LAN can reach")


def lan_addresses(config: Config) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The portal's LAN addresses, and every address of the LAN interface on this host."""
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = {config.portal.address}
    if config.portal.address6 is not None:
        found.add(config.portal.address6)
    for entry in psutil.net_if_addrs().get(config.gateway.lan_interface, []):
        if entry.family in (socket.AF_INET, socket.AF_INET6):
            try:
                found.add(ipaddress.ip_address(entry.address.split("%", 1)[0]))
            except ValueError:
                continue
    return found


def check_address(config: Config) -> None:
    """Raise ConfigError when ``[admin] address`` could be reached from the residents' LAN."""
    address = config.admin.address
    if address.is_unspecified:
        raise ConfigError(config_problem(
            config.path, "admin", "address",
            f"{address} listens on every address, the residents' LAN included",
            EXPECTED_ADDRESS))
    if address in lan_addresses(config):
        raise ConfigError(config_problem(
            config.path, "admin", "address",
            f"{address} is an address of the residents' LAN ([portal] address, address6 or "
            f"[gateway] lan_interface {config.gateway.lan_interface})", EXPECTED_ADDRESS))


def server_options(config: Config, workers: int, threads: int) -> dict[str, Any]:
    """gunicorn settings for the console's one listener."""
    address = config.admin.address
    host = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    return {
        "bind": [f"{host}:{config.admin.port}"],
        "workers": workers,
        # Threads: an action waits up to 5 s for netctl without holding a process.
        "worker_class": "gthread",
        "threads": threads,
        "graceful_timeout": 5,
        # A 10,000-code sheet takes a few seconds to draw on a small CPU.
        "timeout": 60,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        # No proxy in front: no header may claim another scheme or client address.
        "secure_scheme_headers": {},
        "forwarded_allow_ips": "127.0.0.1",
        "proc_name": "parvis-admin",
        "control_socket_disable": True,
    }


def _warn_without_accounts(config: Config) -> None:
    """Say how to create the first account when there is none (Redis may be down: fine)."""
    try:
        store = Store(connect(config.redis.url, config.redis.timeout_s), config.gateway.id)
        if not store.admin_users():
            log.warning("no console account yet: create one with `parvisctl --config %s users "
                        "add NAME --role admin`", config.path)
        store.client.close()
    except StoreError as error:
        log.warning("Redis not reachable yet (%s): pages answer 503 until it is", error)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM; exit 2 on a configuration problem."""
    parser = argparse.ArgumentParser(prog="parvis-admin",
                                     description="Serve the Parvis administration console.")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH,
                        help="the Parvis TOML file (default %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    parser.add_argument("--threads", type=int, default=8, help="threads per process")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        check_address(config)
        from admin import create_app

        create_app(config)  # the secret and the catalogues, checked before anything listens
    except ConfigError as error:
        print(f"parvis-admin: {error}", file=sys.stderr)
        return 2
    _warn_without_accounts(config)
    log.info("console on http://%s:%d/", config.admin.address, config.admin.port)
    options = server_options(config, args.workers, args.threads)
    GunicornApp(lambda: create_app(config), options).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
