"""Commands sent to a gateway over its command stream, and their results.

A command travels as one stream entry with a single field, ``command``, whose
value is a JSON object: ``{"verb": "authorize", "ip": "10.77.0.12"}``. Parsing
is strict: anything that is not exactly a known command becomes a
:class:`CommandError` whose message is sent back as the acknowledgement.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from parvis.core.addresses import AddressError, parse_client_ip, parse_mac

COMMAND_FIELD = "command"
MAX_COMMAND_BYTES = 4096
MAX_TIMEOUT_S = 7 * 86400


class Verb(StrEnum):
    """What a command asks the gateway to do."""

    AUTHORIZE = "authorize"
    DEAUTHORIZE = "deauthorize"
    BLOCK = "block"
    UNBLOCK = "unblock"
    TRUST = "trust"
    UNTRUST = "untrust"
    RATE = "rate"  # change a live session's rates
    EXTEND = "extend"  # push a live session's hard timeout back


# Which address arguments each verb takes: (needs ip, needs mac); "either" for deauthorize.
_MAC_ONLY = {Verb.BLOCK, Verb.UNBLOCK, Verb.TRUST, Verb.UNTRUST}
_KNOWN_FIELDS = {"verb", "ip", "mac", "timeout_s", "by", "terms_version", "via", "code_batch",
                 "plan", "down_bps", "up_bps", "extend_s"}
_TARGETS_SESSION = {Verb.DEAUTHORIZE, Verb.RATE, Verb.EXTEND}  # by its ip or mac
MAX_RATE_BPS = 100 * 10**9
_VIAS = {"", "accept", "code", "admin", "handoff"}


class CommandError(ValueError):
    """A command that cannot be carried out as written; the message is the reason."""


@dataclass(frozen=True)
class Command:
    """One parsed, validated command."""

    verb: Verb
    ip: ipaddress.IPv4Address | None = None
    mac: str | None = None
    timeout_s: int | None = None
    by: str = ""
    # What the resident agreed to and how: recorded with the session.
    terms_version: str = ""
    via: str = ""
    code_batch: str = ""
    # authorize: the plan granted ("" = the default plan).
    plan: str = ""
    # rate: new rates in bits/s (0 = not shaped; None = unchanged).
    down_bps: int | None = None
    up_bps: int | None = None
    # extend: seconds added to the session's hard timeout.
    extend_s: int | None = None

    def to_json(self) -> str:
        """The wire form, as :func:`parse_command` reads it."""
        body: dict[str, Any] = {"verb": self.verb.value}
        if self.ip is not None:
            body["ip"] = str(self.ip)
        if self.mac is not None:
            body["mac"] = self.mac
        if self.timeout_s is not None:
            body["timeout_s"] = self.timeout_s
        for name in ("by", "terms_version", "via", "code_batch", "plan"):
            if getattr(self, name):
                body[name] = getattr(self, name)
        for name in ("down_bps", "up_bps", "extend_s"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return json.dumps(body, separators=(",", ":"))

    def describe(self) -> str:
        """A short human description for logs and messages."""
        target = " ".join(str(x) for x in (self.ip, self.mac) if x is not None)
        return f"{self.verb.value} {target}".strip()


def parse_command(fields: Mapping[str, str] | Mapping[bytes, bytes]) -> Command:
    """Parse one stream entry's fields into a Command, or raise CommandError."""
    text = _field_text(fields)
    if len(text.encode()) > MAX_COMMAND_BYTES:
        raise CommandError(f"command is larger than {MAX_COMMAND_BYTES} bytes")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as error:
        raise CommandError(f"command is not valid JSON ({error.msg})") from None
    except RecursionError:
        raise CommandError("command is nested too deeply") from None
    if not isinstance(body, dict):
        raise CommandError("command must be a JSON object")
    unknown = sorted(set(body) - _KNOWN_FIELDS)
    if unknown:
        raise CommandError(f"unknown field {unknown[0]!r}")
    verb_text = body.get("verb")
    try:
        verb = Verb(str(verb_text)) if isinstance(verb_text, str) else None
    except ValueError:
        verb = None
    if verb is None:
        known = ", ".join(v.value for v in Verb)
        raise CommandError(f"unknown verb {verb_text!r} (known: {known})")

    ip = _optional(body, "ip", _parse_ipv4)
    mac = _optional(body, "mac", parse_mac)
    timeout_s = _optional(body, "timeout_s", _parse_timeout)
    extend_s = _optional(body, "extend_s", _parse_timeout)
    down_bps = _optional(body, "down_bps", _parse_rate)
    up_bps = _optional(body, "up_bps", _parse_rate)
    texts = {}
    for name in ("by", "terms_version", "code_batch", "plan"):
        value = body.get(name, "")
        if not isinstance(value, str) or len(value) > 64:
            raise CommandError(f"field {name!r} must be a string of at most 64 characters")
        texts[name] = value
    via = body.get("via", "")
    if not isinstance(via, str) or via not in _VIAS:
        raise CommandError(f"field 'via' must be one of {', '.join(sorted(_VIAS - {''}))}")

    if verb in _MAC_ONLY:
        if mac is None:
            raise CommandError(f"{verb.value} needs a 'mac'")
        if ip is not None or timeout_s is not None:
            raise CommandError(f"{verb.value} takes only a 'mac'")
    elif verb is Verb.AUTHORIZE:
        if ip is None:
            raise CommandError("authorize needs an 'ip' (IPv4 address of the client)")
    elif verb in _TARGETS_SESSION:
        if ip is None and mac is None:
            raise CommandError(f"{verb.value} needs an 'ip' or a 'mac'")
        if timeout_s is not None:
            raise CommandError(f"{verb.value} takes no 'timeout_s'")
    if verb is Verb.RATE and down_bps is None and up_bps is None:
        raise CommandError("rate needs 'down_bps', 'up_bps' or both")
    if verb is not Verb.RATE and (down_bps is not None or up_bps is not None):
        raise CommandError(f"{verb.value} takes no 'down_bps' or 'up_bps'")
    if verb is Verb.EXTEND and extend_s is None:
        raise CommandError("extend needs 'extend_s'")
    if verb is not Verb.EXTEND and extend_s is not None:
        raise CommandError(f"{verb.value} takes no 'extend_s'")
    if verb is not Verb.AUTHORIZE and (texts["terms_version"] or via or texts["code_batch"]
                                       or texts["plan"]):
        raise CommandError(f"{verb.value} takes no 'terms_version', 'via', 'code_batch' "
                           "or 'plan'")
    return Command(verb=verb, ip=ip, mac=mac, timeout_s=timeout_s, by=texts["by"],
                   terms_version=texts["terms_version"], via=via,
                   code_batch=texts["code_batch"], plan=texts["plan"], down_bps=down_bps,
                   up_bps=up_bps, extend_s=extend_s)


def _field_text(fields: Mapping[str, str] | Mapping[bytes, bytes]) -> str:
    for key, value in fields.items():
        name = key.decode(errors="replace") if isinstance(key, bytes) else key
        if name == COMMAND_FIELD:
            if isinstance(value, bytes):
                try:
                    return value.decode()
                except UnicodeDecodeError:
                    raise CommandError("command is not UTF-8") from None
            return value
    raise CommandError(f"entry has no {COMMAND_FIELD!r} field")


def _optional(body: Mapping[str, Any], key: str, parse: Any) -> Any:
    if key not in body or body[key] is None:
        return None
    try:
        return parse(body[key])
    except (AddressError, ValueError, TypeError) as error:
        raise CommandError(f"field {key!r}: {error}") from None


def _parse_ipv4(value: object) -> ipaddress.IPv4Address:
    address = parse_client_ip(value)
    if not isinstance(address, ipaddress.IPv4Address):
        raise AddressError(f"{value!r} is not an IPv4 address (IPv6 follows the device's MAC)")
    return address


def _parse_timeout(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not a whole number of seconds")
    if not 1 <= value <= MAX_TIMEOUT_S:
        raise ValueError(f"{value} is not between 1 and {MAX_TIMEOUT_S} seconds")
    return value


def _parse_rate(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not a whole number of bits per second")
    if not 0 <= value <= MAX_RATE_BPS:
        raise ValueError(f"{value} is not between 0 and {MAX_RATE_BPS} bits/s")
    return value


@dataclass(frozen=True)
class Result:
    """The acknowledgement of one command."""

    ok: bool
    message: str
    data: Mapping[str, Any] | None = None

    def to_json(self) -> str:
        """The wire form read by :meth:`from_json`."""
        body: dict[str, Any] = {"ok": self.ok}
        body["message" if self.ok else "error"] = self.message
        if self.data:
            body["data"] = dict(self.data)
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Result:
        """Read an acknowledgement written by :meth:`to_json`."""
        body = json.loads(text)
        ok = bool(body.get("ok"))
        return cls(ok=ok, message=str(body.get("message" if ok else "error", "")),
                   data=body.get("data"))
