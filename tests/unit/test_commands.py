"""Command parsing: strict, with a reason for every refusal."""

from __future__ import annotations

import json

import pytest

from parvis.core.commands import Command, CommandError, Result, Verb, parse_command


def entry(body: object) -> dict[str, str]:
    return {"command": body if isinstance(body, str) else json.dumps(body)}


def test_round_trip() -> None:
    command = parse_command(entry({"verb": "authorize", "ip": "10.77.0.12",
                                   "mac": "02-50-76-00-00-0A", "timeout_s": 60, "by": "t"}))
    assert command.verb is Verb.AUTHORIZE
    assert str(command.ip) == "10.77.0.12"
    assert command.mac == "02:50:76:00:00:0a"
    assert parse_command({"command": command.to_json()}) == command


def test_terms_and_method_travel_with_an_authorization() -> None:
    command = parse_command(entry({"verb": "authorize", "ip": "10.77.0.12",
                                   "terms_version": "a1b2c3", "via": "code",
                                   "code_batch": "b-2026-11"}))
    assert (command.terms_version, command.via, command.code_batch) == ("a1b2c3", "code",
                                                                        "b-2026-11")
    assert parse_command({"command": command.to_json()}) == command


def test_bytes_fields_are_accepted() -> None:
    command = parse_command({b"command": b'{"verb":"block","mac":"02:00:00:00:00:01"}'})
    assert command == Command(Verb.BLOCK, mac="02:00:00:00:00:01")


BAD = [
    ({"other": "x"}, "no 'command' field"),
    (entry("{not json"), "not valid JSON"),
    (entry([1, 2]), "must be a JSON object"),
    (entry({"verb": "reboot"}), "unknown verb 'reboot'"),
    (entry({"verb": 3}), "unknown verb 3"),
    (entry({"verb": "authorize"}), "authorize needs an 'ip'"),
    (entry({"verb": "authorize", "ip": "10.77.0.999"}), "field 'ip'"),
    (entry({"verb": "authorize", "ip": "fd77::5"}), "not an IPv4 address"),
    (entry({"verb": "authorize", "ip": "224.0.0.1"}), "cannot be a client's address"),
    (entry({"verb": "authorize", "ip": "10.77.0.5", "mac": "nope"}), "field 'mac'"),
    (entry({"verb": "authorize", "ip": "10.77.0.5", "timeout_s": -1}), "field 'timeout_s'"),
    (entry({"verb": "authorize", "ip": "10.77.0.5", "timeout_s": True}), "field 'timeout_s'"),
    (entry({"verb": "block"}), "block needs a 'mac'"),
    (entry({"verb": "block", "mac": "02:00:00:00:00:01", "ip": "10.77.0.5"}), "takes only"),
    (entry({"verb": "deauthorize"}), "needs an 'ip' or a 'mac'"),
    (entry({"verb": "trust", "mac": "01:00:5e:00:00:01"}), "multicast"),
    (entry({"verb": "untrust", "mac": "02:00:00:00:00:01", "extra": 1}), "unknown field 'extra'"),
    (entry("x" * 5000), "larger than"),
    (entry({"verb": "authorize", "ip": "10.77.0.5", "via": "magic"}), "field 'via'"),
    (entry({"verb": "block", "mac": "02:00:00:00:00:01", "via": "accept"}), "takes no"),
    (entry({"verb": "authorize", "ip": "10.77.0.5", "terms_version": "v" * 65}), "at most 64"),
]


@pytest.mark.parametrize(("fields", "reason"), BAD, ids=[b[1] for b in BAD])
def test_malformed_commands_are_refused_with_a_reason(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(CommandError, match=reason):
        parse_command(fields)


def test_result_wire_form() -> None:
    assert Result.from_json(Result(False, "nope").to_json()) == Result(False, "nope")
    ok = Result.from_json(Result(True, "done", {"ip": "10.0.0.1"}).to_json())
    assert ok.ok and ok.data == {"ip": "10.0.0.1"}


# Fair use: plans on authorize, rate and extend on a live session.


def round_trip(command: Command) -> Command:
    return parse_command({"command": command.to_json()})


def test_rate_changes_both_directions() -> None:
    command = parse_command(entry({"verb": "rate", "ip": "10.77.0.12", "down_bps": 10_000_000,
                                   "up_bps": 2_000_000, "by": "admin"}))
    assert command == Command(Verb.RATE, ip=command.ip, down_bps=10_000_000, up_bps=2_000_000,
                              by="admin")
    assert str(command.ip) == "10.77.0.12"
    assert round_trip(command) == command


def test_rate_leaves_a_direction_it_does_not_name_unchanged() -> None:
    command = parse_command(entry({"verb": "rate", "mac": "02:50:76:00:00:0A",
                                   "up_bps": 1_000_000}))
    assert (command.mac, command.down_bps, command.up_bps) == ("02:50:76:00:00:0a", None,
                                                               1_000_000)
    assert "down_bps" not in json.loads(command.to_json())
    assert round_trip(command) == command


def test_rate_zero_removes_shaping_and_survives_the_wire() -> None:
    # 0 (not shaped) is not None (unchanged): the wire form must keep it.
    command = Command(Verb.RATE, mac="02:50:76:00:00:0a", down_bps=0, up_bps=0)
    assert json.loads(command.to_json())["down_bps"] == 0
    assert round_trip(command) == command


def test_rate_accepts_the_fastest_links() -> None:
    command = parse_command(entry({"verb": "rate", "ip": "10.77.0.12",
                                   "down_bps": 40 * 10**9, "up_bps": 1}))
    assert (command.down_bps, command.up_bps) == (40 * 10**9, 1)


def test_extend_pushes_the_hard_timeout_back() -> None:
    command = parse_command(entry({"verb": "extend", "ip": "10.77.0.12", "extend_s": 3600,
                                   "by": "admin"}))
    assert (command.verb, command.extend_s, command.timeout_s) == (Verb.EXTEND, 3600, None)
    assert round_trip(command) == command
    by_mac = Command(Verb.EXTEND, mac="02:50:76:00:00:0a", extend_s=7 * 86400)
    assert round_trip(by_mac) == by_mac


def test_authorize_carries_its_plan() -> None:
    command = parse_command(entry({"verb": "authorize", "ip": "10.77.0.12", "plan": "night",
                                   "via": "code", "timeout_s": 600}))
    assert command.plan == "night"
    assert json.loads(command.to_json())["plan"] == "night"
    assert round_trip(command) == command


def test_the_default_plan_is_not_written() -> None:
    command = parse_command(entry({"verb": "authorize", "ip": "10.77.0.12"}))
    assert command.plan == ""
    assert set(json.loads(command.to_json())) == {"verb", "ip"}


RATE_IP = {"verb": "rate", "ip": "10.77.0.12"}
EXTEND_IP = {"verb": "extend", "ip": "10.77.0.12"}
AUTH_IP = {"verb": "authorize", "ip": "10.77.0.12"}
MAC_A = "02:50:76:00:00:0a"
WEEK_S = 7 * 86400  # the longest a session lasts (config's hard_timeout_s allows no more)
BAD_FAIR_USE = [
    (entry(RATE_IP), "rate needs 'down_bps', 'up_bps' or both"),
    (entry({**RATE_IP, "down_bps": None, "up_bps": None}), "rate needs 'down_bps'"),
    (entry({"verb": "rate", "down_bps": 1000}), "rate needs an 'ip' or a 'mac'"),
    (entry({**RATE_IP, "down_bps": 1000, "timeout_s": 60}), "rate takes no 'timeout_s'"),
    (entry({**RATE_IP, "down_bps": -1}), "field 'down_bps'"),
    (entry({**RATE_IP, "up_bps": 10**12}), "field 'up_bps'"),
    (entry({**RATE_IP, "down_bps": True}), "field 'down_bps'"),
    (entry({**RATE_IP, "down_bps": 1.5e6}), "field 'down_bps'"),
    (entry({**RATE_IP, "down_bps": "10M"}), "field 'down_bps'"),
    (entry({**RATE_IP, "down_bps": 1000, "extend_s": 60}), "rate takes no 'extend_s'"),
    (entry({**RATE_IP, "down_bps": 1000, "plan": "night"}), "rate takes no .*'plan'"),
    (entry(EXTEND_IP), "extend needs 'extend_s'"),
    (entry({**EXTEND_IP, "extend_s": None}), "extend needs 'extend_s'"),
    (entry({"verb": "extend", "extend_s": 60}), "extend needs an 'ip' or a 'mac'"),
    (entry({**EXTEND_IP, "extend_s": 0}), "field 'extend_s'"),
    (entry({**EXTEND_IP, "extend_s": WEEK_S + 1}), "field 'extend_s'"),
    (entry({**EXTEND_IP, "extend_s": "1h"}), "field 'extend_s'"),
    (entry({**EXTEND_IP, "extend_s": False}), "field 'extend_s'"),
    (entry({**EXTEND_IP, "extend_s": 60, "timeout_s": 60}), "extend takes no 'timeout_s'"),
    (entry({**EXTEND_IP, "extend_s": 60, "up_bps": 1000}), "extend takes no 'down_bps'"),
    (entry({**EXTEND_IP, "extend_s": 60, "plan": "night"}), "extend takes no .*'plan'"),
    (entry({**AUTH_IP, "down_bps": 1000}), "authorize takes no 'down_bps'"),
    (entry({**AUTH_IP, "extend_s": 60}), "authorize takes no 'extend_s'"),
    (entry({**AUTH_IP, "plan": 3}), "field 'plan' must be a string"),
    (entry({**AUTH_IP, "plan": "p" * 65}), "field 'plan'.* at most 64"),
    (entry({"verb": "deauthorize", "ip": "10.77.0.12", "down_bps": 0}), "takes no 'down_bps'"),
    (entry({"verb": "deauthorize", "ip": "10.77.0.12", "plan": "x"}), "takes no .*'plan'"),
    (entry({"verb": "block", "mac": MAC_A, "up_bps": 1000}), "block takes no 'down_bps'"),
    (entry({"verb": "trust", "mac": MAC_A, "extend_s": 60}), "trust takes no 'extend_s'"),
    (entry({"verb": "unblock", "mac": MAC_A, "plan": "x"}), "unblock takes no .*'plan'"),
]


@pytest.mark.parametrize(("fields", "reason"), BAD_FAIR_USE, ids=[b[1] for b in BAD_FAIR_USE])
def test_malformed_fair_use_commands_are_refused_with_a_reason(fields: dict[str, str],
                                                               reason: str) -> None:
    with pytest.raises(CommandError, match=reason):
        parse_command(fields)


@pytest.mark.parametrize("via", [[], {}, ["code"], 3, None])
def test_a_via_that_is_not_a_string_is_refused_not_a_crash(via: object) -> None:
    # Anything that is not exactly a known command must be a CommandError: netctl only
    # catches that one, so another exception would fail the whole batch of commands.
    with pytest.raises(CommandError, match="field 'via'"):
        parse_command(entry({**AUTH_IP, "via": via}))
