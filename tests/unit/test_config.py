"""Configuration validation: each kind of mistake names the file, the key and what is expected."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest

from parvis.core.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "parvis.example.toml"


def base() -> dict[str, dict[str, object]]:
    return {
        "gateway": {"id": "gw-1", "lan_interface": "lan0", "wan_interface": "wan0"},
        "portal": {"address": "10.77.0.1"},
    }


def test_example_config_is_valid_and_covers_every_key() -> None:
    config = load_config(EXAMPLE)
    assert config.gateway.id == "plessisville-1"
    assert config.portal.address6 == ipaddress.IPv6Address("fd77::1")
    assert config.session.hard_timeout_s == 14400
    # Every key the loader knows appears in the example, so the example documents them all.
    text = EXAMPLE.read_text()
    data = tomllib.loads(text)
    for section in ("gateway", "portal", "redis", "session", "walled_garden", "clients", "netctl",
                    "plans", "shaping", "accounting", "admin", "metrics", "reports"):
        assert section in data, section
    assert set(data["plans"]["residents"]) == {"down", "up", "hard_timeout_s", "idle_timeout_s",
                                               "daily_quota"}
    assert set(data["accounting"]) == {"interim_interval_s", "spool_dir", "retention_days"}
    assert set(data["session"]) == {"hard_timeout_s", "idle_timeout_s", "default_plan",
                                    "idle_when_present"}
    assert set(data["gateway"]) == {"id", "lan_interface", "wan_interface", "masquerade",
                                    "timezone", "dhcp_leases_file", "zone"}
    assert config.zone == "centre-ville"
    assert set(data["admin"]) == {"address", "port", "lockout_attempts", "lockout_s"}
    assert config.plan().name == "residents"
    assert set(data["netctl"]) == {"sweep_interval_s", "health_interval_s", "log_level"}
    assert set(data["portal"]) | {"remote_url", "handoff_secret_file"} == {
        "address", "address6", "http_port", "https_port", "hostname", "poster_hostname",
        "certificate", "private_key", "secret_key_file", "content_dir", "venue_info_url",
        "ack_timeout_s", "code_attempts", "remote_url", "handoff_secret_file"}
    # The two remote-mode keys are shown commented out, with their meaning.
    assert "# remote_url = " in text and "# handoff_secret_file = " in text


def test_defaults_fill_optional_sections() -> None:
    config = parse_config(base(), "x.toml")
    assert config.redis.url == "unix:///run/parvis/redis.sock"
    assert config.session.idle_timeout_s == 1200
    assert config.walled_garden.cidrs == ()


CASES = [
    # (section, key, value or None to delete, expected fragment)
    ("gateway", "colour", "blue", "[gateway] colour: unknown key, expected one of"),
    ("gateway", "id", 7, "[gateway] id: wrong type (got integer 7), expected 1 to 32"),
    ("gateway", "id", "Town Hall", "[gateway] id: 'Town Hall' is not a valid gateway id"),
    ("gateway", "lan_interface", None, "[gateway] lan_interface: missing, expected an interface"),
    ("gateway", "wan_interface", "lan0", "[gateway] wan_interface: 'lan0' is also the LAN"),
    ("gateway", "masquerade", "yes", "[gateway] masquerade: wrong type (got string 'yes'), "
                                     "expected true or false"),
    ("portal", "address", "10.77.0.300", "[portal] address: '10.77.0.300' is not valid"),
    ("portal", "address", None, "[portal] address: missing, expected an IPv4 address"),
    ("portal", "http_port", 70000, "[portal] http_port: 70000 is out of range, expected a whole "
                                   "number from 1 to 65535"),
    ("portal", "http_port", "80", "[portal] http_port: wrong type (got string '80')"),
    ("portal", "http_port", True, "[portal] http_port: wrong type (got boolean True)"),
    ("redis", "url", "localhost:6379", "[redis] url: 'localhost:6379' is not a Redis URL, "
                                       "expected a redis://"),
    ("session", "hard_timeout_s", 10, "[session] hard_timeout_s: 10 is out of range"),
    ("session", "idle_timeout_s", 1.5, "[session] idle_timeout_s: wrong type (got float 1.5)"),
    ("walled_garden", "cidrs", "203.0.113.0/24", "[walled_garden] cidrs: wrong type (got string"),
    ("walled_garden", "cidrs", ["203.0.113.1/24"], "[walled_garden] cidrs: '203.0.113.1/24' is "
                                                   "not a network"),
    ("clients", "trusted_macs", ["zz:zz"], "[clients] trusted_macs: 'zz:zz' is not a MAC"),
    ("clients", "blocked_macs", ["ff:ff:ff:ff:ff:ff"], "[clients] blocked_macs: 'ff:ff:ff:ff:ff:ff'"
                                                       " is a multicast or broadcast MAC"),
    ("netctl", "log_level", "LOUD", "[netctl] log_level: 'LOUD' is not a log level"),
    ("portal", "hostname", "portal_1", "[portal] hostname: 'portal_1' is not a DNS name"),
    ("portal", "certificate", "tls/portal.crt", "[portal] certificate: 'tls/portal.crt' is not an "
                                                "absolute path"),
    ("portal", "remote_url", "ftp://x", "[portal] remote_url: 'ftp://x' is not a web address"),
    ("portal", "remote_url", "https://central.test/", "[portal] handoff_secret_file: missing "
                                                      "(remote_url is set)"),
    ("netctl", "sweep_interval_s", 0, "[netctl] sweep_interval_s: 0 is out of range"),
    ("gateway", "timezone", "Mars/Olympus", "[gateway] timezone: 'Mars/Olympus' is not a known "
                                            "time zone, expected an IANA time zone"),
    ("gateway", "dhcp_leases_file", "leases", "[gateway] dhcp_leases_file: 'leases' is not an "
                                              "absolute path"),
    ("session", "idle_when_present", "maybe", "[session] idle_when_present: 'maybe' is not a "
                                              "choice, expected \"keep\" or \"end\""),
    ("shaping", "uplink_down", "fast", "[shaping] uplink_down: 'fast' is not a rate such as"),
    ("shaping", "uplink_up", -5, "[shaping] uplink_up: -5 is negative"),
    ("accounting", "interim_interval_s", 0, "[accounting] interim_interval_s: 0 is out of range"),
    ("accounting", "spool_dir", "spool", "[accounting] spool_dir: 'spool' is not an absolute"),
    ("gateway", "zone", "<script>", "[gateway] zone: '<script>' is not a zone name"),
    # A trailing newline is not part of a valid name (re's $ would let it through).
    ("gateway", "id", "gw-1\n", "[gateway] id: 'gw-1\\n' is not a valid gateway id"),
    ("gateway", "lan_interface", "lan0\n", "[gateway] lan_interface: 'lan0\\n' is not an "
                                          "interface name"),
    ("admin", "address", "localhost", "[admin] address: 'localhost' is not valid"),
    ("admin", "lockout_attempts", 0, "[admin] lockout_attempts: 0 is out of range"),
    ("metrics", "netctl_port", 70000, "[metrics] netctl_port: 70000 is out of range"),
    ("reports", "min_count", 0, "[reports] min_count: 0 is out of range"),
]


@pytest.mark.parametrize(("section", "key", "value", "expected"), CASES,
                         ids=[f"{c[0]}.{c[1]}={c[2]!r}" for c in CASES])
def test_each_mistake_is_named(section: str, key: str, value: object, expected: str) -> None:
    data = base()
    data.setdefault(section, {})
    if value is None:
        data[section].pop(key, None)
    else:
        data[section][key] = value
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "/etc/parvis/parvis.toml")
    message = str(caught.value)
    assert message.startswith("/etc/parvis/parvis.toml: ")
    assert expected in message


PLAN_CASES = [
    ({"residents": {"down": "ten"}}, "[plans.residents] down: 'ten' is not a rate such as"),
    ({"residents": {"daily_quota": "2 gallons"}}, "[plans.residents] daily_quota: '2 gallons' is "
                                                  "not a size such as"),
    ({"residents": {"colour": 1}}, "[plans.residents] colour: unknown key, expected one of"),
    ({"residents": {"hard_timeout_s": 5}}, "[plans.residents] hard_timeout_s: 5 is out of range"),
    ({"Residents!": {}}, "[plans.Residents!]: not a valid plan name"),
    ({"residents": 3}, "[plans.residents]: is a integer, expected a table ([plans.residents])"),
    ({"residents": {}}, "[session] default_plan: 'default' is not a plan, expected one of "
                        "residents"),
]


@pytest.mark.parametrize(("plans", "expected"), PLAN_CASES, ids=[c[1][:40] for c in PLAN_CASES])
def test_each_plan_mistake_is_named(plans: dict[str, object], expected: str) -> None:
    data = {**base(), "plans": plans}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "/etc/parvis/parvis.toml")
    assert expected in str(caught.value)


def test_plans_read_rates_sizes_and_inherit_session_limits() -> None:
    data = {**base(), "session": {"default_plan": "residents", "idle_timeout_s": 900},
            "plans": {"residents": {"down": "10M", "up": "2.5Mbit", "daily_quota": "2G",
                                    "hard_timeout_s": 14400},
                      "event": {"down": 20_000_000, "up": "5M", "daily_quota": "750MB"}}}
    config = parse_config(data)
    residents = config.plan()
    assert (residents.down_bps, residents.up_bps) == (10_000_000, 2_500_000)
    assert residents.daily_quota_bytes == 2_000_000_000
    assert residents.idle_timeout_s == 900  # from [session]
    event = config.plan("event")
    assert (event.down_bps, event.daily_quota_bytes) == (20_000_000, 750_000_000)
    with pytest.raises(KeyError):
        config.plan("gold")


def test_without_plans_the_default_plan_is_the_session_section() -> None:
    config = parse_config({**base(), "session": {"hard_timeout_s": 3600}})
    plan = config.plan()
    assert plan.name == "default"
    assert (plan.hard_timeout_s, plan.down_bps, plan.daily_quota_bytes) == (3600, 0, 0)


def test_unknown_section_and_missing_section() -> None:
    with pytest.raises(ConfigError, match=r"x.toml: \[radius\]: unknown section"):
        parse_config({**base(), "radius": {}}, "x.toml")
    with pytest.raises(ConfigError, match=r"x.toml: \[portal\]: section missing"):
        parse_config({"gateway": base()["gateway"]}, "x.toml")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\nid = 1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML .*expected TOML syntax"):
        load_config(bad)


def test_macs_are_normalised_and_deduplicated() -> None:
    data = base()
    data["clients"] = {"trusted_macs": ["02-50-76-00-00-01", "02:50:76:00:00:01", "025076000002"]}
    config = parse_config(data)
    assert config.clients.trusted_macs == ("02:50:76:00:00:01", "02:50:76:00:00:02")


def test_same_mac_trusted_and_blocked_is_refused() -> None:
    data = base()
    data["clients"] = {"trusted_macs": ["02:50:76:00:00:01"], "blocked_macs": ["02:50:76:00:00:01"]}
    with pytest.raises(ConfigError, match="also in trusted_macs"):
        parse_config(data)


def test_dnsmasq_lines_follow_the_configuration() -> None:
    from parvis.core.dnsmasq import api_url, portal_lines

    config = load_config(EXAMPLE)
    lines = portal_lines(config)
    assert api_url(config) == "https://portail.plessisville.ca:8443/api/captive"
    assert "local=/portail.plessisville.ca/" in lines
    assert "host-record=portail.plessisville.ca,10.77.0.1" in lines
    assert 'dhcp-option=114,"https://portail.plessisville.ca:8443/api/captive"' in lines
    assert ("nftset=/plessisville.quebec/4#inet#parvis#garden_names4,"
            "6#inet#parvis#garden_names6") in lines
    # No AAAA for the portal's name: nothing maps it to an IPv6 address.
    assert not any(line.startswith("address=/portail.plessisville.ca/") for line in lines)
