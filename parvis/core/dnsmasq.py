"""The gateway's dnsmasq lines that Parvis needs, derived from the configuration.

The administrator keeps dnsmasq's own settings (DHCP ranges, upstream
servers); these lines add what Parvis depends on, so that nothing is typed
twice: ``parvisctl dnsmasq`` prints them, and the lab uses the same function.
"""

from __future__ import annotations

from parvis.core.config import Config

GARDEN_NAMES4 = "garden_names4"
GARDEN_NAMES6 = "garden_names6"


def api_url(config: Config) -> str:
    """The RFC 8908 API's URI, as announced by DHCP (RFC 8910)."""
    portal = config.portal
    port = "" if portal.https_port == 443 else f":{portal.https_port}"
    return f"https://{portal.hostname}{port}/api/captive"


def portal_lines(config: Config) -> list[str]:
    """dnsmasq configuration lines: the portal's names, RFC 8910, the walled garden by name."""
    portal = config.portal
    lines = [
        "# Parvis: generated from " + str(config.path) + " (parvisctl dnsmasq)",
        "# The portal's name: an A record only, so devices reach the portal over IPv4,",
        "# the address netctl knows them by (local= answers AAAA itself, with no data).",
        f"local=/{portal.hostname}/",
        f"host-record={portal.hostname},{portal.address}",
        "# The poster address always leads to the portal.",
        f"address=/{portal.poster_hostname}/{portal.address}",
    ]
    if portal.address6 is not None:
        lines.append(f"address=/{portal.poster_hostname}/{portal.address6}")
    lines += [
        "# RFC 8910: the captive-portal API in DHCPv4 option 114 and DHCPv6 option 103.",
        f'dhcp-option=114,"{api_url(config)}"',
        f'dhcp-option=option6:103,"{api_url(config)}"',
    ]
    if config.walled_garden.names:
        lines.append("# The walled garden by name: addresses clients resolve go to netctl's sets.")
        lines += [f"nftset=/{name}/4#inet#parvis#{GARDEN_NAMES4},6#inet#parvis#{GARDEN_NAMES6}"
                  for name in config.walled_garden.names]
    return lines
