"""``parvis-portal --config FILE``: serve the portal with two gunicorn servers.

gunicorn applies one TLS setting to all the addresses an arbiter binds, so the
plain-HTTP interceptor and the HTTPS pages are two arbiters, each in its own
child process. SIGTERM (or SIGINT) to this parent stops both cleanly; if one
dies, the other is stopped too and the parent exits non-zero so systemd
restarts the pair. A configuration problem exits 2 before anything listens.

With ``[metrics] portal_port`` set, the workers record into a private
directory made for this start, and this parent serves their sum on
``[metrics] address`` (portal/metrics.py), apart from the residents' listeners.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import multiprocessing.connection
import signal
import ssl
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from parvis.core.config import DEFAULT_CONFIG_PATH, Config, ConfigError, config_problem, load_config
from parvis.serving import GunicornApp
from portal.metrics import MetricsListener

log = logging.getLogger(__name__)

STOP_WAIT_S = 10.0


def check_tls(config: Config) -> None:
    """Raise ConfigError unless the certificate and key are readable and belong together."""
    portal = config.portal
    for key, path, what in (("certificate", portal.certificate, "a PEM certificate"),
                            ("private_key", portal.private_key, "a PEM private key")):
        try:
            with path.open("rb"):
                pass
        except OSError as error:
            raise ConfigError(config_problem(
                config.path, "portal", key, f"cannot read {path} ({error.strerror or error})",
                f"{what} for {portal.hostname} readable by this user")) from None
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            portal.certificate, portal.private_key)
    except (ssl.SSLError, ValueError) as error:
        raise ConfigError(config_problem(
            config.path, "portal", "private_key",
            f"{portal.private_key} and {portal.certificate} are not a usable pair ({error})",
            "the PEM key of that certificate")) from None


def server_options(config: Config, tls: bool, workers: int, threads: int) -> dict[str, Any]:
    """gunicorn settings for the plain-HTTP (``tls`` false) or the HTTPS listener."""
    portal = config.portal
    port = portal.https_port if tls else portal.http_port
    binds = [f"{portal.address}:{port}"]
    if portal.address6 is not None:
        binds.append(f"[{portal.address6}]:{port}")
    options: dict[str, Any] = {
        "bind": binds,
        "workers": workers,
        # Threads: an accept waits up to ack_timeout_s for netctl without holding a worker.
        "worker_class": "gthread",
        "threads": threads,
        "graceful_timeout": 5,
        "timeout": 30,
        # No access log: it would keep every resident's address and URLs.
        "accesslog": None,
        "errorlog": "-",
        # Warnings and errors only: at info, gunicorn logs every client address
        # whose captive sheet closed a TLS connection early (most of them).
        "loglevel": "warning",
        # Clients face gunicorn directly: no header may claim another scheme or address.
        "secure_scheme_headers": {},
        "forwarded_allow_ips": "127.0.0.1",
        "proc_name": f"parvis-portal-{'https' if tls else 'http'}",
        # gunicorn's runtime control socket would sit in the user's home (shared by
        # every instance, and absent under systemd's ProtectHome): not used here.
        "control_socket_disable": True,
    }
    if tls:
        options["certfile"] = str(portal.certificate)
        options["keyfile"] = str(portal.private_key)
    return options


def _serve(config: Config, tls: bool, workers: int, threads: int,
           metrics: MetricsListener | None = None) -> None:
    """Child process: run one arbiter until it is told to stop."""
    from portal import create_app

    if metrics is not None:
        metrics.close_in_child()  # the parent's /metrics socket is not the arbiter's
    GunicornApp(lambda: create_app(config), server_options(config, tls, workers, threads)).run()


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM; exit 2 on a configuration problem, 1 if a server died."""
    parser = argparse.ArgumentParser(prog="parvis-portal",
                                     description="Serve the Parvis captive portal.")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH,
                        help="the Parvis TOML file (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="processes per listener")
    parser.add_argument("--threads", type=int, default=16, help="threads per process")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    metrics: MetricsListener | None = None
    try:
        try:
            config = load_config(args.config)
            check_tls(config)
            if config.metrics.portal_port:
                # Before the first app is made: the workers find the directory in their
                # environment, and a port in use is reported before anything listens.
                metrics = MetricsListener(config)
                metrics.bind()
            from portal import create_app

            create_app(config)  # the secret and the content, checked before anything listens
        except ConfigError as error:
            print(f"parvis-portal: {error}", file=sys.stderr)
            return 2
        return _run(config, args.workers, args.threads, metrics)
    finally:
        if metrics is not None:
            metrics.close()  # the directory goes; the arbiters, forked, never close it


def _run(config: Config, workers: int, threads: int, metrics: MetricsListener | None) -> int:
    """Fork the two arbiters and watch them until SIGTERM or until one dies."""
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_serve, args=(config, tls, workers, threads, metrics),
                                name=f"parvis-portal-{'https' if tls else 'http'}")
                for tls in (False, True)]
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    for child in children:
        child.start()
    if metrics is not None:
        metrics.start()  # a thread, started after the forks (a fork copies no thread)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping and all(child.is_alive() for child in children):
            multiprocessing.connection.wait([child.sentinel for child in children], timeout=0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: gunicorn's graceful stop
        for child in children:
            child.join(STOP_WAIT_S)
            if child.is_alive():
                child.kill()
                child.join()
    if stopping:
        log.info("portal stopped")
        return 0
    dead = [f"{child.name} (exit {child.exitcode})" for child in children
            if child.exitcode not in (0, -signal.SIGTERM)]
    log.error("a portal server stopped on its own: %s", ", ".join(dead) or "unknown")
    return 1


if __name__ == "__main__":
    sys.exit(main())
