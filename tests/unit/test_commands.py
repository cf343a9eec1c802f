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
