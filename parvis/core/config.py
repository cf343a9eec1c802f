"""The Parvis configuration: one TOML file read into frozen dataclasses, validated once.

Every error names the file, the section and key, what is wrong and what is
expected: ``FILE: [section] key: problem, expected …``. Unknown keys are errors,
so a typo never silently falls back to a default. Checks that need the outside
world (does the interface exist, does Redis answer) are done by the programs
that need them, with :func:`config_problem` to format their message the same way.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from parvis.core.addresses import AddressError, parse_mac
from parvis.core.units import parse_rate, parse_size

DEFAULT_CONFIG_PATH = Path("/etc/parvis/parvis.toml")

_GATEWAY_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.@:+-]{1,15}$")


class ConfigError(Exception):
    """A configuration problem, already formatted for the administrator."""


def config_problem(path: Path | str, section: str, key: str, problem: str, expected: str) -> str:
    """Format one configuration problem the way every Parvis program reports it."""
    where = f"[{section}] {key}" if key else f"[{section}]"
    return f"{path}: {where}: {problem}, expected {expected}"


@dataclass(frozen=True)
class GatewayConfig:
    """The gateway itself: its identity and the interfaces it controls."""

    id: str
    lan_interface: str
    wan_interface: str
    masquerade: bool = True
    # The town's time zone (IANA name): quota days start at its midnight and the
    # portal shows times in it. None = the host's own zone.
    timezone: str | None = None
    # dnsmasq's lease file: a session whose DHCP lease is released or expires ends.
    # None = no lease tracking.
    dhcp_leases_file: Path | None = None
    # The part of town this gateway serves, as council reports group it
    # (several gateways may share a zone). None = the gateway's id.
    zone: str | None = None


@dataclass(frozen=True)
class PortalConfig:
    """The portal: where unauthorised clients' web traffic is sent, and how it answers."""

    address: ipaddress.IPv4Address
    address6: ipaddress.IPv6Address | None = None
    http_port: int = 8080
    https_port: int = 8443
    # The name in the portal's certificate; splash pages and the RFC 8908 API live
    # at https://hostname:https_port/. The gateway's DNS resolves it to `address`.
    hostname: str = "portail.parvis.test"
    # The short plain-HTTP name for posters (http://wifi.<town>/), resolved to the gateway.
    poster_hostname: str = "wifi.parvis.test"
    certificate: Path = Path("/etc/parvis/tls/portal.crt")
    private_key: Path = Path("/etc/parvis/tls/portal.key")
    # A file holding the portal's secret (session cookies, CSRF tokens, signed URLs).
    secret_key_file: Path = Path("/etc/parvis/portal.secret")
    # Terms of use, privacy notice and tiles the town edits (docs/portal.md).
    content_dir: Path = Path("/etc/parvis/content")
    venue_info_url: str | None = None
    # How long an accepting resident waits for netctl before a friendly 503.
    ack_timeout_s: float = 2.0
    # Wrong access codes a client may try per 10 minutes.
    code_attempts: int = 5
    # Remote portal mode: unauthorised clients go to this central portal with
    # signed, expiring, single-use parameters (secret shared with it).
    remote_url: str | None = None
    handoff_secret_file: Path | None = None


@dataclass(frozen=True)
class RedisConfig:
    """The Redis server shared by the portal, netctl and parvisctl."""

    url: str = "unix:///run/parvis/redis.sock"
    timeout_s: float = 2.0


@dataclass(frozen=True)
class SessionConfig:
    """Session defaults: what a plan does not say, and which plan click-through gets."""

    hard_timeout_s: int = 4 * 3600
    idle_timeout_s: int = 20 * 60
    # The plan for residents who accept the terms (and codes without a plan).
    default_plan: str = "default"
    # What idle means for a device that still answers ARP: "keep" (it is still
    # there, its idle clock restarts) or "end" (no traffic is enough to end it).
    idle_when_present: str = "keep"


@dataclass(frozen=True)
class PlanConfig:
    """A named policy: rates, session limits, daily data quota."""

    name: str
    down_bps: int = 0  # 0 = not shaped
    up_bps: int = 0
    hard_timeout_s: int = 4 * 3600
    idle_timeout_s: int = 20 * 60
    daily_quota_bytes: int = 0  # 0 = no quota


@dataclass(frozen=True)
class ShapingConfig:
    """The gateway's own uplink, shared fairly among active clients when capped."""

    uplink_down_bps: int = 0  # 0 = no cap
    uplink_up_bps: int = 0


@dataclass(frozen=True)
class AccountingConfig:
    """RADIUS-style accounting records (start, interim, stop) and their spool."""

    interim_interval_s: int = 60
    # Records not yet confirmed in Redis wait here (written before they are sent).
    spool_dir: Path = Path("/var/lib/parvis/spool")
    # Raw records (they hold MAC and IP addresses) are trimmed after this many days.
    retention_days: int = 30


@dataclass(frozen=True)
class WalledGardenConfig:
    """Destinations reachable before login."""

    cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Names whose addresses the gateway's dnsmasq adds to the walled-garden sets
    # as clients resolve them (dnsmasq's nftset= directive); subdomains included.
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClientsConfig:
    """Devices treated specially whatever the sessions say."""

    trusted_macs: tuple[str, ...] = ()
    blocked_macs: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetctlConfig:
    """How the gateway daemon paces its work."""

    sweep_interval_s: float = 2.0
    health_interval_s: float = 5.0
    log_level: str = "INFO"


@dataclass(frozen=True)
class AdminConfig:
    """The administration console: a listener the client LAN cannot reach."""

    # The management address (or loopback) it listens on; never a LAN address.
    address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address("127.0.0.1")
    port: int = 8090
    # Wrong passwords for one account before it is locked, and for how long.
    lockout_attempts: int = 5
    lockout_s: int = 900


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus endpoints, on the management side only (0 = off)."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address("127.0.0.1")
    netctl_port: int = 9101
    portal_port: int = 9102


@dataclass(frozen=True)
class ReportsConfig:
    """Council reports: aggregates only."""

    # Counts below this are shown as "fewer than N" (never the exact small number).
    min_count: int = 5
    # Seconds between roll-ups of the accounting stream into daily aggregates.
    rollup_interval_s: int = 300


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    path: Path
    gateway: GatewayConfig
    portal: PortalConfig
    redis: RedisConfig = field(default_factory=RedisConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    walled_garden: WalledGardenConfig = field(default_factory=WalledGardenConfig)
    clients: ClientsConfig = field(default_factory=ClientsConfig)
    netctl: NetctlConfig = field(default_factory=NetctlConfig)
    plans: Mapping[str, PlanConfig] = field(default_factory=dict)
    shaping: ShapingConfig = field(default_factory=ShapingConfig)
    accounting: AccountingConfig = field(default_factory=AccountingConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)

    @property
    def zone(self) -> str:
        """The zone this gateway's figures are reported under."""
        return self.gateway.zone or self.gateway.id

    def plan(self, name: str | None = None) -> PlanConfig:
        """The plan called ``name`` (the default plan for None or ""); KeyError if unknown."""
        return self.plans[name or self.session.default_plan]


T = TypeVar("T")


class _Section:
    """Reads the keys of one TOML table, collecting the first problem found."""

    def __init__(self, path: Path, name: str, table: Mapping[str, Any], known: set[str]) -> None:
        self.path = path
        self.name = name
        self.table = table
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(
                config_problem(
                    path, name, unknown[0], "unknown key", f"one of {', '.join(sorted(known))}"
                )
            )

    def fail(self, key: str, problem: str, expected: str) -> ConfigError:
        return ConfigError(config_problem(self.path, self.name, key, problem, expected))

    def get(
        self,
        key: str,
        kind: type[T] | tuple[type, ...],
        expected: str,
        default: T | None = None,
        required: bool = False,
    ) -> T:
        if key not in self.table:
            if required:
                raise self.fail(key, "missing", expected)
            return default  # type: ignore[return-value]
        value = self.table[key]
        # bool is an int in Python; a TOML `true` is never a valid number here.
        if isinstance(value, bool) and kind is not bool:
            raise self.fail(key, f"wrong type (got boolean {value!r})", expected)
        if not isinstance(value, kind):
            raise self.fail(key, f"wrong type (got {_toml_type(value)} {value!r})", expected)
        return value  # type: ignore[return-value]

    def number(
        self, key: str, default: float, low: float, high: float, integer: bool = False
    ) -> float:
        kinds: tuple[type, ...] = (int,) if integer else (int, float)
        word = "a whole number" if integer else "a number"
        expected = f"{word} from {_fmt(low)} to {_fmt(high)}"
        value = self.get(key, kinds, expected, default)
        if not low <= value <= high:
            raise self.fail(key, f"{value!r} is out of range", expected)
        return value

    def parsed(self, key: str, parse: Callable[[str], T], expected: str, default: T) -> T:
        if key not in self.table:
            return default
        text = self.get(key, str, expected)
        try:
            return parse(text)
        except ValueError as error:
            raise self.fail(key, f"{text!r} is not valid ({error})", expected) from None


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _toml_type(value: object) -> str:
    return {
        str: "string",
        int: "integer",
        float: "float",
        bool: "boolean",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)


def load_config(path: Path | str) -> Config:
    """Read and validate the TOML file at ``path``; raise ConfigError on any problem."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found, expected a Parvis TOML configuration "
                          f"(see config/parvis.example.toml)") from None
    except PermissionError:
        raise ConfigError(
            f"{path}: permission denied, expected a file this user can read") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
    except (ValueError, RecursionError) as error:
        # tomllib's TOMLDecodeError, and what it lets through: bytes that are not UTF-8
        # (UnicodeDecodeError), an integer of thousands of digits, arrays nested too deep.
        raise ConfigError(f"{path}: not valid TOML ({error}), expected TOML syntax") from None
    return parse_config(data, path)


def parse_config(data: Mapping[str, Any], path: Path | str = "<config>") -> Config:
    """Validate an already-decoded TOML document; raise ConfigError on the first problem."""
    path = Path(path)
    sections = {"gateway", "portal", "redis", "session", "walled_garden", "clients", "netctl",
                "plans", "shaping", "accounting", "admin", "metrics", "reports"}
    for name in sorted(data):
        if name not in sections:
            raise ConfigError(config_problem(path, name, "", "unknown section",
                                             f"one of {', '.join(sorted(sections))}"))
        if not isinstance(data[name], dict):
            raise ConfigError(config_problem(path, name, "", f"is a {_toml_type(data[name])}",
                                             "a table ([" + name + "])"))
    for required in ("gateway", "portal"):
        if required not in data:
            raise ConfigError(config_problem(path, required, "", "section missing",
                                             f"a [{required}] table"))

    def table(name: str) -> Mapping[str, Any]:
        value = data.get(name, {})
        assert isinstance(value, dict)
        return value

    session = _session(_Section(path, "session", table("session"),
                                {"hard_timeout_s", "idle_timeout_s", "default_plan",
                                 "idle_when_present"}))
    plans = _plans(path, table("plans"), session)
    return Config(
        path=path,
        gateway=_gateway(_Section(path, "gateway", table("gateway"),
                                  {"id", "lan_interface", "wan_interface", "masquerade",
                                   "timezone", "dhcp_leases_file", "zone"})),
        portal=_portal(_Section(path, "portal", table("portal"), {
            "address", "address6", "http_port", "https_port", "hostname", "poster_hostname",
            "certificate", "private_key", "secret_key_file", "content_dir", "venue_info_url",
            "ack_timeout_s", "code_attempts", "remote_url", "handoff_secret_file"})),
        redis=_redis(_Section(path, "redis", table("redis"), {"url", "timeout_s"})),
        session=session,
        plans=plans,
        shaping=_shaping(_Section(path, "shaping", table("shaping"),
                                  {"uplink_down", "uplink_up"})),
        accounting=_accounting(_Section(path, "accounting", table("accounting"),
                                        {"interim_interval_s", "spool_dir", "retention_days"})),
        admin=_admin(_Section(path, "admin", table("admin"),
                              {"address", "port", "lockout_attempts", "lockout_s"})),
        metrics=_metrics(_Section(path, "metrics", table("metrics"),
                                  {"address", "netctl_port", "portal_port"})),
        reports=_reports(_Section(path, "reports", table("reports"),
                                  {"min_count", "rollup_interval_s"})),
        walled_garden=_walled_garden(_Section(path, "walled_garden", table("walled_garden"),
                                              {"cidrs", "names"})),
        clients=_clients(_Section(path, "clients", table("clients"),
                                  {"trusted_macs", "blocked_macs"})),
        netctl=_netctl(_Section(path, "netctl", table("netctl"),
                                {"sweep_interval_s", "health_interval_s", "log_level"})),
    )


def _interface(section: _Section, key: str) -> str:
    expected = "an interface name of 1 to 15 characters (e.g. \"br-lan\")"
    name = section.get(key, str, expected, required=True)
    if not _IFNAME_RE.fullmatch(name):
        raise section.fail(key, f"{name!r} is not an interface name", expected)
    return name


def _gateway(s: _Section) -> GatewayConfig:
    expected_id = "1 to 32 lower-case letters, digits or dashes (e.g. \"plessisville-1\")"
    gateway_id = s.get("id", str, expected_id, required=True)
    if not _GATEWAY_ID_RE.fullmatch(gateway_id):
        raise s.fail("id", f"{gateway_id!r} is not a valid gateway id", expected_id)
    lan = _interface(s, "lan_interface")
    wan = _interface(s, "wan_interface")
    if lan == wan:
        raise s.fail("wan_interface", f"{wan!r} is also the LAN interface",
                     "an interface other than lan_interface")
    timezone = s.get("timezone", str, "an IANA time zone (e.g. \"America/Toronto\")", None)
    if timezone is not None:
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise s.fail("timezone", f"{timezone!r} is not a known time zone",
                         "an IANA time zone (e.g. \"America/Toronto\")") from None
    return GatewayConfig(
        id=gateway_id,
        lan_interface=lan,
        wan_interface=wan,
        masquerade=s.get("masquerade", bool, "true or false", True),
        timezone=timezone,
        dhcp_leases_file=_path(s, "dhcp_leases_file", None),
        zone=_zone(s),
    )


def _zone(s: _Section) -> str | None:
    expected = "1 to 40 letters, digits, spaces or dashes (e.g. \"centre-ville\")"
    zone = s.get("zone", str, expected, None)
    if zone is not None and not re.fullmatch(r"[^\W_][\w -]{0,39}", zone):
        raise s.fail("zone", f"{zone!r} is not a zone name", expected)
    return zone


def _portal(s: _Section) -> PortalConfig:
    expected4 = "an IPv4 address (e.g. \"10.77.0.1\")"
    address = s.parsed("address", ipaddress.IPv4Address, expected4, None)
    if address is None:
        raise s.fail("address", "missing", expected4)
    address6 = s.parsed("address6", ipaddress.IPv6Address,
                        "an IPv6 address (e.g. \"fd77::1\")", None)
    http_port = int(s.number("http_port", 8080, 1, 65535, integer=True))
    https_port = int(s.number("https_port", 8443, 1, 65535, integer=True))
    if http_port == https_port:
        raise s.fail("https_port", f"{https_port} is also http_port", "a different port")
    defaults = PortalConfig(address=address)
    remote_url = _url(s, "remote_url")
    handoff = _path(s, "handoff_secret_file", None)
    if remote_url is not None and handoff is None:
        raise s.fail("handoff_secret_file", "missing (remote_url is set)",
                     "the path of the secret shared with the central portal")
    return PortalConfig(
        address=address, address6=address6, http_port=http_port, https_port=https_port,
        hostname=_hostname(s, "hostname", defaults.hostname),
        poster_hostname=_hostname(s, "poster_hostname", defaults.poster_hostname),
        certificate=_path(s, "certificate", defaults.certificate) or defaults.certificate,
        private_key=_path(s, "private_key", defaults.private_key) or defaults.private_key,
        secret_key_file=(_path(s, "secret_key_file", defaults.secret_key_file)
                         or defaults.secret_key_file),
        content_dir=_path(s, "content_dir", defaults.content_dir) or defaults.content_dir,
        venue_info_url=_url(s, "venue_info_url"),
        ack_timeout_s=s.number("ack_timeout_s", 2.0, 0.2, 30),
        code_attempts=int(s.number("code_attempts", 5, 1, 1000, integer=True)),
        remote_url=remote_url,
        handoff_secret_file=handoff,
    )


_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}$")


def _hostname(s: _Section, key: str, default: str) -> str:
    expected = "a fully qualified DNS name (e.g. \"portail.plessisville.ca\")"
    name = s.get(key, str, expected, default).lower()
    if not _HOSTNAME_RE.fullmatch(name):
        raise s.fail(key, f"{name!r} is not a DNS name", expected)
    return name


def _path(s: _Section, key: str, default: Path | None) -> Path | None:
    expected = "an absolute file path"
    if key not in s.table:
        return default
    text = s.get(key, str, expected)
    if not text.startswith("/"):
        raise s.fail(key, f"{text!r} is not an absolute path", expected)
    return Path(text)


def _url(s: _Section, key: str) -> str | None:
    expected = "an https:// or http:// URL"
    if key not in s.table:
        return None
    text = s.get(key, str, expected)
    if not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", text):
        raise s.fail(key, f"{text!r} is not a web address", expected)
    return text


def _redis(s: _Section) -> RedisConfig:
    expected = "a redis://, rediss:// or unix:// URL"
    url = s.get("url", str, expected, RedisConfig.url)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise s.fail("url", f"{url!r} is not a Redis URL", expected)
    return RedisConfig(url=url, timeout_s=s.number("timeout_s", 2.0, 0.1, 60))


def _session(s: _Section) -> SessionConfig:
    hard = int(s.number("hard_timeout_s", SessionConfig.hard_timeout_s, 60, 7 * 86400,
                        integer=True))
    idle = int(s.number("idle_timeout_s", SessionConfig.idle_timeout_s, 0, 7 * 86400,
                        integer=True))
    default_plan = s.get("default_plan", str, "the name of a [plans.NAME] table",
                         SessionConfig.default_plan)
    presence = s.get("idle_when_present", str, "\"keep\" or \"end\"", "keep")
    if presence not in ("keep", "end"):
        raise s.fail("idle_when_present", f"{presence!r} is not a choice", "\"keep\" or \"end\"")
    return SessionConfig(hard_timeout_s=hard, idle_timeout_s=idle, default_plan=default_plan,
                         idle_when_present=presence)


RATE_EXPECTED = "a rate such as \"10M\" (bits/s; 0 = not shaped)"
_PLAN_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_PLAN_KEYS = {"down", "up", "hard_timeout_s", "idle_timeout_s", "daily_quota"}


def _plans(path: Path, table: Mapping[str, Any], session: SessionConfig) -> dict[str, PlanConfig]:
    """``[plans.NAME]`` tables; without any, one plan named by default_plan from [session]."""
    plans: dict[str, PlanConfig] = {}
    for name, body in table.items():
        where = f"plans.{name}"
        if not _PLAN_NAME_RE.fullmatch(name):
            raise ConfigError(config_problem(path, where, "", "not a valid plan name",
                                             "1 to 32 lower-case letters, digits, - or _"))
        if not isinstance(body, dict):
            raise ConfigError(config_problem(path, where, "", f"is a {_toml_type(body)}",
                                             f"a table ([{where}])"))
        s = _Section(path, where, body, _PLAN_KEYS)
        plans[name] = PlanConfig(
            name=name,
            down_bps=_amount(s, "down", parse_rate, RATE_EXPECTED),
            up_bps=_amount(s, "up", parse_rate, RATE_EXPECTED),
            hard_timeout_s=int(s.number("hard_timeout_s", session.hard_timeout_s, 60, 7 * 86400,
                                        integer=True)),
            idle_timeout_s=int(s.number("idle_timeout_s", session.idle_timeout_s, 0, 7 * 86400,
                                        integer=True)),
            daily_quota_bytes=_amount(s, "daily_quota", parse_size,
                                      "a size such as \"2G\" (bytes; 0 = no quota)"),
        )
    if not plans:
        plans[session.default_plan] = PlanConfig(
            name=session.default_plan, hard_timeout_s=session.hard_timeout_s,
            idle_timeout_s=session.idle_timeout_s)
    if session.default_plan not in plans:
        raise ConfigError(config_problem(
            path, "session", "default_plan", f"{session.default_plan!r} is not a plan",
            f"one of {', '.join(sorted(plans))}"))
    return plans


def _amount(s: _Section, key: str, parse: Callable[[str | int], int], expected: str) -> int:
    if key not in s.table:
        return 0
    value = s.table[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise s.fail(key, f"wrong type (got {_toml_type(value)} {value!r})", expected)
    try:
        return parse(value)
    except ValueError as error:
        raise s.fail(key, str(error), expected) from None


def _shaping(s: _Section) -> ShapingConfig:
    return ShapingConfig(
        uplink_down_bps=_amount(s, "uplink_down", parse_rate,
                                "a rate such as \"100M\" (bits/s; 0 = no cap)"),
        uplink_up_bps=_amount(s, "uplink_up", parse_rate,
                              "a rate such as \"20M\" (bits/s; 0 = no cap)"),
    )


def _accounting(s: _Section) -> AccountingConfig:
    defaults = AccountingConfig()
    return AccountingConfig(
        interim_interval_s=int(s.number("interim_interval_s", 60, 1, 86400, integer=True)),
        spool_dir=_path(s, "spool_dir", defaults.spool_dir) or defaults.spool_dir,
        retention_days=int(s.number("retention_days", 30, 1, 3660, integer=True)),
    )


def _walled_garden(s: _Section) -> WalledGardenConfig:
    expected = "a list of CIDRs (e.g. [\"203.0.113.0/24\", \"2001:db8::/48\"])"
    items = s.get("cidrs", list, expected, [])
    cidrs: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in items:
        if not isinstance(item, str):
            raise s.fail("cidrs", f"wrong type (got {_toml_type(item)} {item!r} in the list)",
                         expected)
        try:
            cidrs.append(ipaddress.ip_network(item, strict=True))
        except ValueError as error:
            raise s.fail("cidrs", f"{item!r} is not a network ({error})", expected) from None
    expected_names = "a list of DNS names (e.g. [\"plessisville.quebec\"])"
    names = []
    for item in s.get("names", list, expected_names, []):
        if not isinstance(item, str) or not _HOSTNAME_RE.fullmatch(item.lower()):
            raise s.fail("names", f"{item!r} is not a DNS name", expected_names)
        names.append(item.lower())
    return WalledGardenConfig(cidrs=tuple(cidrs), names=tuple(dict.fromkeys(names)))


def _mac_list(s: _Section, key: str) -> tuple[str, ...]:
    expected = "a list of MAC addresses (e.g. [\"02:00:5e:10:00:01\"])"
    items = s.get(key, list, expected, [])
    macs = []
    for item in items:
        try:
            macs.append(parse_mac(item))
        except AddressError as error:
            raise s.fail(key, str(error), expected) from None
    return tuple(dict.fromkeys(macs))


def _clients(s: _Section) -> ClientsConfig:
    trusted = _mac_list(s, "trusted_macs")
    blocked = _mac_list(s, "blocked_macs")
    both = sorted(set(trusted) & set(blocked))
    if both:
        raise s.fail("blocked_macs", f"{both[0]} is also in trusted_macs",
                     "each MAC in at most one of the two lists")
    return ClientsConfig(trusted_macs=trusted, blocked_macs=blocked)


def _netctl(s: _Section) -> NetctlConfig:
    levels = ("DEBUG", "INFO", "WARNING", "ERROR")
    level = s.get("log_level", str, f"one of {', '.join(levels)}", "INFO")
    if level.upper() not in levels:
        raise s.fail("log_level", f"{level!r} is not a log level", f"one of {', '.join(levels)}")
    return NetctlConfig(
        sweep_interval_s=s.number("sweep_interval_s", 2.0, 0.2, 300),
        health_interval_s=s.number("health_interval_s", 5.0, 1, 300),
        log_level=level.upper(),
    )


def _management_address(s: _Section, default: ipaddress.IPv4Address | ipaddress.IPv6Address
                        ) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    expected = "an IP address on the management side (e.g. \"127.0.0.1\")"
    return s.parsed("address", ipaddress.ip_address, expected, default)


def _admin(s: _Section) -> AdminConfig:
    defaults = AdminConfig()
    return AdminConfig(
        address=_management_address(s, defaults.address),
        port=int(s.number("port", defaults.port, 1, 65535, integer=True)),
        lockout_attempts=int(s.number("lockout_attempts", 5, 1, 100, integer=True)),
        lockout_s=int(s.number("lockout_s", 900, 1, 86400, integer=True)),
    )


def _metrics(s: _Section) -> MetricsConfig:
    defaults = MetricsConfig()
    return MetricsConfig(
        address=_management_address(s, defaults.address),
        netctl_port=int(s.number("netctl_port", defaults.netctl_port, 0, 65535, integer=True)),
        portal_port=int(s.number("portal_port", defaults.portal_port, 0, 65535, integer=True)),
    )


def _reports(s: _Section) -> ReportsConfig:
    return ReportsConfig(
        min_count=int(s.number("min_count", 5, 1, 1000, integer=True)),
        rollup_interval_s=int(s.number("rollup_interval_s", 300, 10, 86400, integer=True)),
    )
