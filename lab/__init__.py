"""The Parvis network lab: namespaces, a stand-in internet and DHCP clients (docs/lab.md)."""

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
    Lab,
    LabError,
)

__all__ = [
    "GARDEN4",
    "GARDEN6",
    "GATEWAY_ID",
    "INTERNET_DNS4",
    "INTERNET_DNS6",
    "INTERNET_WEB4",
    "INTERNET_WEB6",
    "LAN_GATEWAY4",
    "LAN_GATEWAY6",
    "Lab",
    "LabError",
]
