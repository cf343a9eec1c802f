"""Fuzz the parsers that read what others wrote: commands, configuration, records, leases.

Each parser promises one kind of failure, and nothing else may escape it:
``parse_command`` raises only CommandError (and what it returns goes through
``to_json`` and back unchanged); ``parse_config`` and ``load_config`` raise only
ConfigError, whose message starts with the file's path; ``Record.from_fields``
and ``from_json`` raise only ValueError; ``parse_leases`` never raises.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from parvis.core.accounting import Record, RecordType
from parvis.core.commands import COMMAND_FIELD, Command, CommandError, Verb, parse_command
from parvis.core.config import ConfigError, load_config, parse_config
from parvis.core.leases import parse_leases
from tests.fuzz.conftest import FUZZ
from tests.fuzz.stored import JSON_VALUES

# --- commands -----------------------------------------------------------------------------

_COMMAND_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "verb": st.one_of(st.sampled_from([verb.value for verb in Verb]), JSON_VALUES),
    "ip": st.one_of(st.sampled_from(["10.77.2.10", "10.77.2.10 ", "127.0.0.1", "0.0.0.0",
                                     "255.255.255.255", "224.0.0.1", "fd77::10", "::ffff:1.2.3.4",
                                     "1.2.3", "010.077.002.010"]), st.ip_addresses().map(str),
                    JSON_VALUES),
    "mac": st.one_of(st.sampled_from(["02:00:00:00:00:10", "02-00-00-00-00-10", "020000000010",
                                      "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "02:00:00:00:00",
                                      " 02:00:00:00:00:10\n", "02:00-00:00:00:10"]), JSON_VALUES),
    "timeout_s": st.one_of(st.integers(-5, 7 * 86400 + 5), JSON_VALUES),
    "extend_s": st.one_of(st.integers(-5, 7 * 86400 + 5), JSON_VALUES),
    "down_bps": st.one_of(st.integers(-5, 100 * 10**9 + 5), JSON_VALUES),
    "up_bps": st.one_of(st.integers(-5, 100 * 10**9 + 5), JSON_VALUES),
    "via": st.one_of(st.sampled_from(["accept", "code", "admin", "handoff", "", "other"]),
                     JSON_VALUES),
}
_TEXT_FIELDS = ("by", "terms_version", "code_batch", "plan")


@st.composite
def command_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A command's JSON object: known fields with near-valid values, unknown ones now and then."""
    body: dict[str, Any] = {}
    for name, values in _COMMAND_VALUES.items():
        if name == "verb" or draw(st.integers(0, 3)) == 0:
            body[name] = draw(values)
    for name in _TEXT_FIELDS:
        if draw(st.integers(0, 4)) == 0:
            body[name] = draw(st.one_of(st.text(max_size=70), JSON_VALUES))
    if draw(st.integers(0, 9)) == 0:
        body[draw(st.text(max_size=8))] = draw(JSON_VALUES)
    return body


@st.composite
def command_entries(draw: st.DrawFn) -> dict[str, str] | dict[bytes, bytes]:
    """A stream entry's fields, as str (decoded) or bytes (raw), from JSON or garbage."""
    kind = draw(st.sampled_from(["json"] * 6 + ["text", "bytes", "deep", "huge", "nofield"]))
    if kind == "json":
        text = json.dumps(draw(command_bodies()), ensure_ascii=draw(st.booleans()))
    elif kind == "text":
        text = draw(st.text(max_size=80))
    elif kind == "deep":
        text = draw(st.sampled_from(["[", "{\"a\":"])) * draw(st.integers(1, 4000))
    elif kind == "huge":
        text = json.dumps({"verb": "block", "mac": "02:00:00:00:00:10", "by": "x" * 5000})
    else:
        text = ""
    if kind == "bytes":
        return {COMMAND_FIELD.encode(): draw(st.binary(max_size=80))}
    if kind == "nofield":
        return {draw(st.text(max_size=10)): text}
    if draw(st.booleans()):
        return {COMMAND_FIELD.encode(): text.encode("utf-8", errors="surrogatepass")}
    return {COMMAND_FIELD: text}


@settings(FUZZ, max_examples=1_000)
@given(fields=command_entries())
@example(fields={COMMAND_FIELD: "[" * 4000})
@example(fields={COMMAND_FIELD.encode(): b"\xff\xfe"})
@example(fields={COMMAND_FIELD: '{"verb":"authorize","ip":"10.77.2.10","timeout_s":1e999}'})
def test_parse_command_raises_only_command_error(
        fields: dict[str, str] | dict[bytes, bytes]) -> None:
    try:
        command = parse_command(fields)
    except CommandError as error:
        assert str(error)
        return
    assert isinstance(command, Command)
    again = parse_command({COMMAND_FIELD: command.to_json()})
    assert again == command, (command, again)


# --- configuration ------------------------------------------------------------------------

CONFIG_PATH = Path("/etc/parvis/fuzz.toml")
_BASE: dict[str, dict[str, Any]] = {
    "gateway": {"id": "gw-test", "lan_interface": "br-lan", "wan_interface": "wan0"},
    "portal": {"address": "10.77.0.1"},
}
# Every section and key the configuration knows (docs/configuration.md), and values of each
# type that are near what those keys take.
_KEYS = {
    "gateway": ("id", "lan_interface", "wan_interface", "masquerade", "timezone",
                "dhcp_leases_file", "zone"),
    "portal": ("address", "address6", "http_port", "https_port", "hostname", "poster_hostname",
               "certificate", "private_key", "secret_key_file", "content_dir", "venue_info_url",
               "ack_timeout_s", "code_attempts", "remote_url", "handoff_secret_file"),
    "redis": ("url", "timeout_s"),
    "session": ("hard_timeout_s", "idle_timeout_s", "default_plan", "idle_when_present"),
    "walled_garden": ("cidrs", "names"),
    "clients": ("trusted_macs", "blocked_macs"),
    "netctl": ("sweep_interval_s", "health_interval_s", "log_level"),
    "shaping": ("uplink_down", "uplink_up"),
    "accounting": ("interim_interval_s", "spool_dir", "retention_days"),
    "admin": ("address", "port", "lockout_attempts", "lockout_s"),
    "metrics": ("address", "netctl_port", "portal_port"),
    "reports": ("min_count", "rollup_interval_s"),
}
_PLAN_KEYS = ("down", "up", "hard_timeout_s", "idle_timeout_s", "daily_quota")
_STRINGS = (
    "", " ", "gw-test", "GW", "gw-test\n", "br-lan", "wan0", "a" * 16, "10.77.0.1", "fd77::1",
    "::", "0.0.0.0", "127.0.0.1", "10.77.0.0/16", "10.77.0.1/16", "portail.plessisville.ca",
    "-bad-.ca", "/etc/parvis/x", "relative/path", "/\x00", "https://example.org/", "ftp://x",
    "redis://localhost", "unix:///run/redis.sock", "America/Toronto", "Mars/Olympus",
    "../../etc/passwd", "a" * 300, "10M", "2.5Mbit", "0", "9" * 400, "1e999", "-1", "2G",
    "500 MB", "keep", "end", "DEBUG", "verbose", "02:00:00:00:00:10", "ff:ff:ff:ff:ff:ff",
    "default", "residents", "é", "\ud7ff", "1" * 5000,
)
TOML_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.sampled_from(_STRINGS), st.text(max_size=12), st.integers(),
              st.sampled_from([0, 1, 65535, 65536, -1, 2**63, 10**400, 7 * 86400 + 1]),
              st.floats(), st.booleans()),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=5,
)


@st.composite
def config_tables(draw: st.DrawFn) -> dict[str, Any]:
    """A decoded TOML document: a valid base, then sections and keys added, changed, removed."""
    data: dict[str, Any] = {name: dict(table) for name, table in _BASE.items()}
    for _ in range(draw(st.integers(0, 6))):
        section = draw(st.sampled_from(sorted(_KEYS) + ["plans", "bogus"]))
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            continue
        if section == "plans":
            name = draw(st.sampled_from(["residents", "default", "Bad Name", "x" * 40, ""]))
            plan = table.setdefault(name, {})
            if isinstance(plan, dict):
                plan[draw(st.sampled_from(_PLAN_KEYS + ("bogus",)))] = draw(TOML_VALUES)
            continue
        key = draw(st.sampled_from(_KEYS.get(section, ("key",)) + ("bogus",)))
        if draw(st.integers(0, 9)) == 0:
            table.pop(key, None)
        else:
            table[key] = draw(TOML_VALUES)
    if draw(st.integers(0, 19)) == 0:
        data[draw(st.sampled_from(sorted(data)))] = draw(TOML_VALUES)
    return data


@settings(FUZZ, max_examples=1_000)
@given(data=config_tables())
@example(data={**_BASE, "plans": {"residents": {"down": "9" * 400}},
               "session": {"default_plan": "residents"}})
@example(data={**_BASE, "shaping": {"uplink_up": "9" * 400 + "T"}})
def test_parse_config_raises_only_config_error_naming_the_file(data: dict[str, Any]) -> None:
    try:
        parse_config(data, CONFIG_PATH)
    except ConfigError as error:
        assert str(error).startswith(f"{CONFIG_PATH}: "), str(error)


_TOML_SNIPPETS = (
    b"[gateway]\nid = \"gw-test\"\nlan_interface = \"br-lan\"\nwan_interface = \"wan0\"\n",
    b"[portal]\naddress = \"10.77.0.1\"\n", b"[plans.residents]\ndown = \"10M\"\n",
    b"a = ", b"[", b"]", b"\"", b"'''", b"= 1", b"x = 1979-05-27T07:32:00Z\n", b"\\u00e9",
    b"x = [1, 2,\n", b"x = {a = 1}\n", b"\n", b"#", b"\x00", b"\xef\xbb\xbf", b"\xe9",
)


@st.composite
def config_files(draw: st.DrawFn) -> bytes:
    """A configuration file's bytes: TOML pieces, mangled, or anything."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    pieces = draw(st.lists(st.one_of(st.sampled_from(_TOML_SNIPPETS), st.binary(max_size=8)),
                           max_size=8))
    return b"".join(pieces)


def test_load_config_raises_only_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "parvis.toml"

    @settings(FUZZ, max_examples=600)
    @given(content=config_files())
    @example(content=b"[portal]\nhostname = \"portail.plessisville.ca\"\n\xe9\n")  # latin-1
    @example(content=b"a = " + b"[" * 5000)  # nested deeper than tomllib's recursion
    @example(content=b"a = 1" + b"0" * 5000)  # more digits than Python converts
    def run(content: bytes) -> None:
        path.write_bytes(content)
        try:
            load_config(path)
        except ConfigError as error:
            assert str(error).startswith(f"{path}: "), str(error)

    run()


# --- accounting records and leases -------------------------------------------------------

_RECORD = Record(id="1764222000000-0", type=RecordType.START, session_id="s-1", gateway="gw-test",
                 mac="02:00:00:00:00:10", ip="10.77.2.10", ipv6=("fd77::10",), plan="residents",
                 via="accept", code_batch="", terms_version="1ec607ef84e0",
                 started_at=1764222000.0, at=1764222000.0, duration_s=0, bytes_up=0,
                 bytes_down=0, packets_up=0, packets_down=0)
_NUMBERS = ("0", "1", "-1", "1.5", "nan", "inf", "-inf", "1e999", "1_000", "٣", " 7 ", "",
            "0x10", "9" * 30, "1" * 5000)


@st.composite
def record_entries(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A record's id and stream fields: a sound record's, with fields changed or removed."""
    fields: dict[str, Any] = dict(_RECORD.to_fields())
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(sorted(fields) + ["extra"]))
        choice = draw(st.integers(0, 5))
        if choice == 0:
            fields.pop(name, None)
        elif choice == 1:
            fields[name] = draw(JSON_VALUES)
        elif choice == 2:
            fields[name] = draw(st.sampled_from(_NUMBERS))
        else:
            fields[name] = draw(st.text(max_size=20))
    record_id = draw(st.one_of(st.sampled_from([
        "1764222000000-0", "0-0", "0-1", "1-0", "-1-0", "18446744073709551616-0", "1", "a-b",
        "1-2-3", "٣-1", ""]), st.text(max_size=12)))
    return record_id, fields


@settings(FUZZ, max_examples=800)
@given(entry=record_entries())
def test_record_from_fields_raises_only_value_error(entry: tuple[str, dict[str, Any]]) -> None:
    record_id, fields = entry
    try:
        record = Record.from_fields(record_id, fields)
    except ValueError:
        return
    assert Record.from_fields(record.id, record.to_fields()).to_fields() == record.to_fields()


@settings(FUZZ, max_examples=800)
@given(text=st.one_of(
    record_entries().map(lambda entry: json.dumps({"id": entry[0], **entry[1]})),
    st.text(max_size=60), st.binary(max_size=60), JSON_VALUES.map(json.dumps)))
@example(text="[" * 5000)
@example(text=b"\xff")
def test_record_from_json_raises_only_value_error(text: str | bytes) -> None:
    try:
        record = Record.from_json(text)
    except ValueError:
        return
    assert Record.from_json(record.to_json()).to_json() == record.to_json()


_LEASE_PIECES = ("1764222000", "0", "-1", "nan", "02:00:00:00:00:10", "02-00-00-00-00-10",
                 "10.77.2.10", "fd77::10", "host", "*", "01:02:00:00:00:00:10", "duid",
                 "00:01:00:01:2c:1f", "\t", " ", "\n", "\r\n", "\x00", "\u2028", "\x85")


@settings(FUZZ, max_examples=1_000)
@given(text=st.one_of(
    st.lists(st.one_of(st.sampled_from(_LEASE_PIECES), st.text(string.printable, max_size=6)),
             max_size=30).map(" ".join),
    st.text(max_size=200)))
def test_parse_leases_never_raises(text: str) -> None:
    leases = parse_leases(text)
    for address, lease in leases.items():
        assert ":" not in address and lease.mac.count(":") == 5
