"""The objects every view shares, kept in ``app.extensions["parvis"]``."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flask import current_app

from parvis.core.config import Config, ConfigError, config_problem
from parvis.store import Store
from portal.urls import UrlSigner

# As parvis.core.codes and parvis.core.handoff require (both key HMACs with these files).
MIN_SECRET_BYTES = 32


@dataclass
class PortalState:
    """Configuration, the store and the signing keys of one portal application."""

    config: Config
    store: Store
    secret: bytes
    signer: UrlSigner
    handoff_secret: bytes | None = None
    clock: Callable[[], float] = time.time

    @property
    def portal_url(self) -> str:
        """The splash page's absolute URL (``user-portal-url``)."""
        portal = self.config.portal
        port = "" if portal.https_port == 443 else f":{portal.https_port}"
        return f"https://{portal.hostname}{port}/"

    @property
    def own_hosts(self) -> set[str]:
        """Names and addresses that are the portal itself (never a "continue" target)."""
        portal = self.config.portal
        hosts = {portal.hostname, portal.poster_hostname, str(portal.address)}
        if portal.address6 is not None:
            hosts.add(str(portal.address6))
        return hosts

    def store_for(self, gateway_id: str) -> Store:
        """The store of another gateway on the same Redis (remote portal mode)."""
        return self.store.for_gateway(gateway_id)


def state() -> PortalState:
    """The current application's PortalState."""
    value = current_app.extensions["parvis"]
    assert isinstance(value, PortalState)
    return value


def read_secret(config: Config, key: str, path: Path) -> bytes:
    """Read a secret file; raise ConfigError naming the key when missing, unreadable or short."""
    expected = f"a readable file holding {MIN_SECRET_BYTES} random bytes or more"
    try:
        secret = path.read_bytes().strip()
    except OSError as error:
        raise ConfigError(config_problem(config.path, "portal", key,
                                         f"cannot read {path} ({error.strerror or error})",
                                         expected)) from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(config_problem(config.path, "portal", key,
                                         f"{path} holds only {len(secret)} bytes", expected))
    return secret


def check_content_dir(config: Config) -> None:
    """Raise ConfigError unless content_dir holds readable terms and privacy files."""
    directory = config.portal.content_dir
    expected = ("a readable directory with terms.fr.md, terms.en.md, privacy.fr.md and "
                "privacy.en.md (see config/content/)")
    for name in ("terms.fr.md", "terms.en.md", "privacy.fr.md", "privacy.en.md"):
        path = directory / name
        try:
            with path.open("rb"):
                pass
        except OSError as error:
            raise ConfigError(config_problem(config.path, "portal", "content_dir",
                                             f"cannot read {path} ({error.strerror or error})",
                                             expected)) from None


def client_ipv4(remote_addr: str | None) -> str | None:
    """The client's IPv4 address from the connection (IPv4-mapped IPv6 unwrapped), or None."""
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        return str(mapped) if mapped is not None else None
    return str(address)
