"""dnsmasq's lease file, and what a session's lease coming and going means for it."""

from __future__ import annotations

import pytest

from parvis.core.leases import INFINITE_LEASE, Lease, lease_event, parse_leases
from parvis.core.lifecycle import Action, Event, State, step
from parvis.core.sessions import EndReason, Session

MAC = "02:50:76:00:00:0a"
OTHER_MAC = "02:50:76:00:00:0b"
IP = "10.77.0.10"
T0 = 1_764_201_600.0  # 2025-11-27 00:00 UTC

# As dnsmasq writes it: IPv4 leases (EXPIRY MAC IP HOSTNAME CLIENT-ID), then a duid line
# and the DHCPv6 leases (EXPIRY IAID IPV6 HOSTNAME CLIENT-ID; T marks a temporary address).
LEASE_FILE = f"""\
1764205200 02:50:76:00:00:0a 10.77.0.10 phone 01:02:50:76:00:00:0a
0 02:50:76:00:00:0b 10.77.0.11 * *
1764203400 02:50:76:00:00:0C 10.77.0.12 laptop-de-marie ff:00:00:00:0c:00:01:00:01:2e
duid 00:01:00:01:2e:d1:7a:3b:02:50:76:00:00:01
1764205200 1234567890 fd77::10 phone 00:01:00:01:2e:d1:7a:3b:02:50:76:00:00:0a
1764205200 T2712847316 fd77::8000:1 * 00:03:00:01:02:50:76:00:00:0b
{T0:.0f} 02:50:76:00:00:0d 10.77.0.13 printer *
"""


def session(**overrides: object) -> Session:
    values: dict[str, object] = dict(mac=MAC, ipv4=IP, started_at=T0, expires_at=T0 + 7200,
                                     idle_timeout_s=600, last_activity_at=T0)
    values.update(overrides)
    return Session(**values)  # type: ignore[arg-type]


def test_parse_a_lease_file() -> None:
    assert parse_leases(LEASE_FILE) == {
        "10.77.0.10": Lease(MAC, 1_764_205_200.0),
        "10.77.0.11": Lease(OTHER_MAC, 0.0),  # infinite
        "10.77.0.12": Lease("02:50:76:00:00:0c", 1_764_203_400.0),  # MAC in canonical form
        "10.77.0.13": Lease("02:50:76:00:00:0d", T0),
    }


def test_an_empty_lease_file_has_no_leases() -> None:
    assert parse_leases("") == {}
    assert parse_leases("\n\n") == {}


def test_a_lease_file_with_only_ipv6_leases_has_no_leases() -> None:
    assert parse_leases("duid 00:01:00:01:2e:d1:7a:3b:02:50:76:00:00:01\n"
                        "1764205200 1234567890 fd77::10 phone 00:01:00:01\n") == {}


@pytest.mark.parametrize("line", [
    "garbage",
    "1764205200 02:50:76:00:00:0a",  # no address
    "soon 02:50:76:00:00:0a 10.77.0.20 x *",  # expiry not a number
    "1764205200 not-a-mac 10.77.0.20 x *",
    "1764205200 01:00:5e:00:00:01 10.77.0.20 x *",  # multicast: no device has it
    "1764205200 20-00:11:22:33:44:55:66:77:88:99 10.77.0.20 ib *",  # not Ethernet
    "1764205200 02:50:76:00:00:0a fd77::20 x *",
])
def test_malformed_lines_are_skipped_and_the_others_kept(line: str) -> None:
    text = f"{line}\n1764205200 02:50:76:00:00:0e 10.77.0.14 ok *\n"
    assert parse_leases(text) == {"10.77.0.14": Lease("02:50:76:00:00:0e", 1_764_205_200.0)}


def test_a_lease_is_followed_while_it_is_there() -> None:
    s = session()
    assert lease_event(s, Lease(MAC, T0 + 3600), now=T0) is None
    assert s.lease_expires_at == T0 + 3600
    # Renewed: the session follows the new expiry.
    assert lease_event(s, Lease(MAC, T0 + 5400), now=T0 + 1800) is None
    assert s.lease_expires_at == T0 + 5400


def test_a_lease_released_before_its_expiry_ends_the_session_as_a_goodbye() -> None:
    s = session()
    lease_event(s, Lease(MAC, T0 + 3600), now=T0)
    assert lease_event(s, None, now=T0 + 60) is Event.LEASE_RELEASED


def test_a_lease_that_ran_out_and_left_the_file() -> None:
    s = session()
    lease_event(s, Lease(MAC, T0 + 3600), now=T0)
    assert lease_event(s, None, now=T0 + 3600) is Event.LEASE_EXPIRED
    assert lease_event(s, None, now=T0 + 4000) is Event.LEASE_EXPIRED


def test_a_lease_that_ran_out_but_is_still_in_the_file() -> None:
    # dnsmasq removes expired leases lazily: the line can outlive its expiry.
    s = session()
    lease_event(s, Lease(MAC, T0 + 3600), now=T0)
    assert lease_event(s, Lease(MAC, T0 + 3600), now=T0 + 3599) is None
    assert lease_event(s, Lease(MAC, T0 + 3600), now=T0 + 3600) is Event.LEASE_EXPIRED


def test_an_infinite_lease_is_held_until_released() -> None:
    s = session()
    assert lease_event(s, Lease(MAC, 0.0), now=T0) is None
    assert s.lease_expires_at == INFINITE_LEASE
    assert INFINITE_LEASE > T0 + 50 * 365 * 86400
    assert lease_event(s, Lease(MAC, 0.0), now=T0 + 30 * 86400) is None
    assert lease_event(s, None, now=T0 + 30 * 86400) is Event.LEASE_RELEASED


def test_a_session_that_never_had_a_lease_is_not_ended_by_leases() -> None:
    # A device with a fixed address: no lease, ever.
    s = session()
    assert lease_event(s, None, now=T0 + 60) is None
    assert lease_event(s, Lease(OTHER_MAC, T0 + 3600), now=T0 + 60) is None
    assert s.lease_expires_at == 0.0


def test_a_stale_lease_line_does_not_tie_a_session() -> None:
    s = session()
    assert lease_event(s, Lease(MAC, T0 - 10), now=T0) is None
    assert s.lease_expires_at == 0.0
    assert lease_event(s, None, now=T0 + 60) is None


def test_a_lease_taken_by_another_device_ends_the_session() -> None:
    s = session()
    lease_event(s, Lease(MAC, T0 + 3600), now=T0)
    before_expiry = lease_event(s, Lease(OTHER_MAC, T0 + 7200), now=T0 + 600)
    assert before_expiry is not None
    assert step(s, before_expiry, "keep") is not None
    after_expiry = lease_event(s, Lease(OTHER_MAC, T0 + 7200), now=T0 + 3700)
    assert after_expiry is not None


def test_a_lease_taken_by_another_device_is_reported_as_address_taken() -> None:
    # The address now belongs to someone else: that is what ADDRESS_TAKEN is for; it is not
    # the device saying goodbye (which RADIUS would record as User-Request).
    s = session()
    lease_event(s, Lease(MAC, T0 + 3600), now=T0)
    assert lease_event(s, Lease(OTHER_MAC, T0 + 7200), now=T0 + 600) is Event.ADDRESS_TAKEN
    assert lease_event(s, Lease(OTHER_MAC, T0 + 7200), now=T0 + 3700) is Event.ADDRESS_TAKEN


@pytest.mark.parametrize("policy", ["keep", "end"])
@pytest.mark.parametrize(("gone_at", "reason"), [(T0 + 60, EndReason.USER_REQUEST),
                                                 (T0 + 3600, EndReason.LOST_CARRIER)])
def test_the_lease_going_away_ends_the_session_in_either_state(
        policy: str, gone_at: float, reason: EndReason) -> None:
    for state in State:
        s = session(state=state.value)
        lease_event(s, Lease(MAC, T0 + 3600), now=T0)
        event = lease_event(s, None, now=gone_at)
        assert event is not None
        found = step(s, event, policy)
        assert found is not None
        assert (found.state, found.action, found.reason) == (None, Action.END, reason)


def test_following_a_session_through_the_lease_file() -> None:
    s = session(ipv4="10.77.0.12", mac="02:50:76:00:00:0c")
    leases = parse_leases(LEASE_FILE)
    assert lease_event(s, leases.get(s.ipv4), now=T0) is None
    assert s.lease_expires_at == 1_764_203_400.0
    released = "\n".join(line for line in LEASE_FILE.splitlines() if " 10.77.0.12 " not in line)
    leases = parse_leases(released)
    assert "10.77.0.12" not in leases and "10.77.0.10" in leases
    assert lease_event(s, leases.get(s.ipv4), now=T0 + 60) is Event.LEASE_RELEASED
