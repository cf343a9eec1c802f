"""Console accounts, pure logic: names, roles, the password policy, lockout decisions."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from admin.formats import duration_text, input_value, parse_local, rate_text
from parvis import passwords
from parvis.core.users import (
    LoginGate,
    Role,
    User,
    locked_now,
    login_gate,
    may_act,
    name_problem,
    parse_role,
    password_problem,
)


@pytest.mark.parametrize("name", ["alice", "j.tremblay", "admin_2", "ab"])
def test_good_names(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "a", "Alice", "1abc", "a b", "é", "-x", "a" * 33,
                                  "a:b", "a*"])
def test_bad_names(name: str) -> None:
    assert name_problem(name) is not None


@pytest.mark.parametrize(("password", "problem"), [
    ("short", "at least 12"), ("a" * 257, "at most 256"), ("aaaaaaaaaaaaaaaa", "too few"),
    ("tab\there and more", "control"), ("xx-alice-xx-yy", "account name"),
])
def test_weak_passwords(password: str, problem: str) -> None:
    assert problem in str(password_problem(password, "alice"))


def test_a_long_passphrase_is_fine() -> None:
    assert password_problem("correct horse battery", "alice") is None


def test_roles() -> None:
    assert may_act(Role.ADMIN) and not may_act(Role.VIEWER)
    assert parse_role("viewer") is Role.VIEWER
    with pytest.raises(ValueError, match="admin, viewer"):
        parse_role("root")


def test_login_gate() -> None:
    assert login_gate(0, 0, 5) is LoginGate.OPEN
    assert login_gate(4, 19, 5) is LoginGate.OPEN
    assert login_gate(5, 0, 5) is LoginGate.ACCOUNT_LOCKED
    assert login_gate(0, 20, 5) is LoginGate.ADDRESS_THROTTLED
    assert locked_now(5, 5) and not locked_now(4, 5)


def test_user_round_trip() -> None:
    user = User(name="alice", role=Role.ADMIN, password_hash="$argon2id$x", created_at=1.5,
                changed_at=2.5, generation="abc", last_login_at=None)
    assert User.from_fields("alice", user.to_fields()) == user
    with pytest.raises(ValueError, match="lacks 'hash'"):
        User.from_fields("alice", {"role": "admin"})


def test_password_hashes() -> None:
    hashed = passwords.hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$") and "correct" not in hashed
    assert passwords.verify_password(hashed, "correct horse battery")
    assert not passwords.verify_password(hashed, "wrong")
    assert not passwords.verify_password("not a hash", "x")
    assert not passwords.needs_rehash(hashed) and passwords.needs_rehash("not a hash")
    assert passwords.dummy_hash() == passwords.dummy_hash()


def test_local_times_in_the_towns_zone() -> None:
    toronto = zoneinfo.ZoneInfo("America/Toronto")
    epoch = parse_local("2026-07-01T09:30", toronto)
    assert epoch == dt.datetime(2026, 7, 1, 13, 30, tzinfo=dt.UTC).timestamp()
    assert input_value(epoch, toronto) == "2026-07-01T09:30"
    assert parse_local("  ", toronto) is None
    for bad in ("tomorrow", "2026-07-01T09:30+02:00", "x" * 40):
        with pytest.raises(ValueError):
            parse_local(bad, toronto)


def test_wording() -> None:
    assert duration_text(30, "fr") == "30 s"
    assert duration_text(5400, "fr") == "1 h 30"
    assert duration_text(2 * 86400 + 4 * 3600, "fr") == "2 j 4 h"
    assert duration_text(2 * 86400, "en") == "2 d"
    assert rate_text(2_500_000, "fr") == "2,5 Mbit/s" and rate_text(0, "fr") == ""
    assert rate_text(20_000_000, "en") == "20 Mbit/s"
