"""The session lifecycle: every transition of both idle policies, and what the sweep observes."""

from __future__ import annotations

import pytest

from parvis.core.lifecycle import (
    CONFIRM_DEADLINE_S,
    TRANSITIONS,
    Action,
    Event,
    State,
    Step,
    apply,
    observed_event,
    step,
)
from parvis.core.sessions import ClientSet, Counter, Element, EndReason, Session, account

MAC = "02:50:76:00:00:01"
T0 = 1_000_000.0
IDLE_S = 600


def session(**overrides: object) -> Session:
    values: dict[str, object] = dict(mac=MAC, ipv4="10.77.0.10", started_at=T0,
                                     expires_at=T0 + 3600, idle_timeout_s=IDLE_S,
                                     last_activity_at=T0, state_since=T0)
    values.update(overrides)
    return Session(**values)  # type: ignore[arg-type]


UP = Element(ClientSet.UP4, "10.77.0.10", MAC)

# What each event does, written out by hand from the module's docstring and the RADIUS
# causes rather than taken from the table under test. (state, event) -> (next state, action,
# reason); a missing pair changes nothing.
_ENDS_ANYWHERE = {
    Event.HARD_TIMEOUT: EndReason.SESSION_TIMEOUT,
    Event.QUOTA_USED: EndReason.QUOTA_EXCEEDED,
    Event.LEASE_RELEASED: EndReason.USER_REQUEST,
    Event.LEASE_EXPIRED: EndReason.LOST_CARRIER,
    Event.ADMIN_RESET: EndReason.ADMIN_RESET,
    Event.ADDRESS_TAKEN: EndReason.LOST_CARRIER,
}
Expected = tuple[State | None, Action, EndReason | None]
EXPECTED: dict[str, dict[tuple[State, Event], Expected]] = {
    "keep": {
        (State.ACTIVE, Event.IDLE): (State.CONFIRMING, Action.PROBE, None),
        (State.CONFIRMING, Event.TRAFFIC): (State.ACTIVE, Action.NOTHING, None),
        (State.CONFIRMING, Event.PRESENT): (State.ACTIVE, Action.RESTART_IDLE, None),
        (State.CONFIRMING, Event.ABSENT): (None, Action.END, EndReason.IDLE_TIMEOUT),
    },
    "end": {
        (State.ACTIVE, Event.IDLE): (None, Action.END, EndReason.IDLE_TIMEOUT),
        (State.CONFIRMING, Event.IDLE): (None, Action.END, EndReason.IDLE_TIMEOUT),
        (State.CONFIRMING, Event.TRAFFIC): (State.ACTIVE, Action.NOTHING, None),
        (State.CONFIRMING, Event.PRESENT): (None, Action.END, EndReason.IDLE_TIMEOUT),
        (State.CONFIRMING, Event.ABSENT): (None, Action.END, EndReason.IDLE_TIMEOUT),
    },
}
for _table in EXPECTED.values():
    for _state in State:
        for _event, _reason in _ENDS_ANYWHERE.items():
            _table[(_state, _event)] = (None, Action.END, _reason)

CASES = [(policy, state, event) for policy in ("keep", "end") for state in State
         for event in Event]


def test_the_tables_hold_exactly_the_expected_transitions() -> None:
    assert set(TRANSITIONS) == {"keep", "end"}
    for policy, table in TRANSITIONS.items():
        assert set(table) == set(EXPECTED[policy]), policy


@pytest.mark.parametrize(("policy", "state", "event"), CASES,
                         ids=[f"{p}-{s.value}-{e.value}" for p, s, e in CASES])
def test_every_state_and_event_through_apply(policy: str, state: State, event: Event) -> None:
    s = session(state=state.value, state_since=T0, last_activity_at=T0 - 700)
    now = T0 + 30
    found = apply(s, event, policy, now)
    expected = EXPECTED[policy].get((state, event))
    if expected is None:
        assert found is None
        assert (s.state, s.state_since, s.last_activity_at) == (state.value, T0, T0 - 700)
        return
    next_state, action, reason = expected
    assert found == Step(next_state, action, reason)
    if next_state is None:
        # Ending is the caller's job: the session is left as it was.
        assert (s.state, s.state_since) == (state.value, T0)
    else:
        assert s.state == next_state.value
        assert s.state_since == (T0 if next_state is state else now)
    assert s.last_activity_at == (now if action is Action.RESTART_IDLE else T0 - 700)


def test_step_does_not_change_the_session() -> None:
    s = session(last_activity_at=T0 - 700)
    assert step(s, Event.IDLE, "keep") == Step(State.CONFIRMING, Action.PROBE)
    assert (s.state, s.state_since) == ("active", T0)


def test_step_reads_the_state_as_stored() -> None:
    # Sessions come back from JSON with the state as a plain string.
    s = Session.from_json(session(state="confirming").to_json())
    assert step(s, Event.PRESENT, "keep") == Step(State.ACTIVE, Action.RESTART_IDLE)


# observed_event: what the sweep sees, the most decisive first.


def test_a_fresh_session_shows_nothing() -> None:
    assert observed_event(session(), T0) is None
    assert observed_event(session(), T0 + 60) is None


def test_idle_from_the_idle_timeout_on() -> None:
    s = session()
    assert observed_event(s, T0 + IDLE_S - 0.5) is None
    assert observed_event(s, T0 + IDLE_S) is Event.IDLE
    assert observed_event(s, T0 + IDLE_S + 100) is Event.IDLE


def test_an_idle_timeout_of_zero_is_never_idle() -> None:
    s = session(idle_timeout_s=0, expires_at=T0 + 86400)
    assert observed_event(s, T0 + 86399) is None


def test_hard_timeout_at_the_expiry() -> None:
    s = session(idle_timeout_s=0)
    assert observed_event(s, T0 + 3599.9) is None
    assert observed_event(s, T0 + 3600) is Event.HARD_TIMEOUT


def test_hard_timeout_beats_quota_beats_idle() -> None:
    s = session(quota_bytes=1000, bytes_down=5000, last_activity_at=T0)
    assert observed_event(s, T0 + 3600) is Event.HARD_TIMEOUT  # also over quota and idle
    assert observed_event(s, T0 + IDLE_S) is Event.QUOTA_USED  # also idle
    s.quota_bytes = 0
    assert observed_event(s, T0 + IDLE_S) is Event.IDLE


def test_quota_counts_both_directions_up_to_the_byte() -> None:
    s = session(quota_bytes=1000, bytes_up=400, bytes_down=599)
    assert observed_event(s, T0 + 1) is None
    s.bytes_down += 1
    assert observed_event(s, T0 + 1) is Event.QUOTA_USED


def test_quota_counts_what_the_device_used_earlier_today() -> None:
    s = session(quota_bytes=1000, quota_used_before=700, bytes_up=299)
    assert observed_event(s, T0 + 1) is None
    s.bytes_up += 1
    assert observed_event(s, T0 + 1) is Event.QUOTA_USED


def test_quota_does_not_count_bytes_from_before_the_day_began() -> None:
    # 5000 bytes yesterday (the offset), 999 today: under a 1000-byte quota.
    s = session(quota_bytes=1000, quota_offset=5000, bytes_down=5999)
    assert observed_event(s, T0 + 1) is None
    s.bytes_down += 1
    assert observed_event(s, T0 + 1) is Event.QUOTA_USED


def test_no_quota_means_no_limit() -> None:
    assert observed_event(session(quota_bytes=0, bytes_down=10**12), T0 + 1) is None


def confirming(**overrides: object) -> Session:
    """A session that went idle and was probed at T0 + 700."""
    values: dict[str, object] = dict(state="confirming", state_since=T0 + 700,
                                     last_activity_at=T0)
    values.update(overrides)
    return session(**values)


def test_confirming_waits_for_the_answer_then_counts_it_absent() -> None:
    s = confirming()
    assert observed_event(s, T0 + 700) is None
    assert observed_event(s, T0 + 700 + CONFIRM_DEADLINE_S - 0.1) is None
    assert observed_event(s, T0 + 700 + CONFIRM_DEADLINE_S) is Event.ABSENT


def test_confirming_is_never_idle() -> None:
    s = confirming(last_activity_at=T0 - 10 * IDLE_S)
    assert observed_event(s, T0 + 701) is None


def test_bytes_after_the_probe_are_traffic() -> None:
    s = confirming(last_activity_at=T0 + 703)
    assert observed_event(s, T0 + 705) is Event.TRAFFIC
    # Even once the deadline has passed: the device is there.
    assert observed_event(s, T0 + 700 + 3 * CONFIRM_DEADLINE_S) is Event.TRAFFIC


def test_bytes_before_the_probe_are_not_traffic() -> None:
    s = confirming(last_activity_at=T0 + 699)
    assert observed_event(s, T0 + 705) is None


def test_hard_timeout_and_quota_beat_confirming() -> None:
    s = confirming(last_activity_at=T0 + 703, quota_bytes=10, bytes_up=10)
    assert observed_event(s, T0 + 705) is Event.QUOTA_USED
    assert observed_event(s, T0 + 3600) is Event.HARD_TIMEOUT


# Whole stories, with the counters folded in as netctl does.


def sweep(s: Session, policy: str, now: float) -> Step | None:
    event = observed_event(s, now)
    return None if event is None else apply(s, event, policy, now)


def test_keep_a_device_that_answers_and_restart_its_idle_clock() -> None:
    s = session()
    account(s, {UP: Counter(1, 100)}, now=T0)
    probe_at = T0 + IDLE_S
    assert sweep(s, "keep", probe_at) == Step(State.CONFIRMING, Action.PROBE)
    assert (s.state, s.state_since) == ("confirming", probe_at)
    assert sweep(s, "keep", probe_at + 2) is None  # waiting for the answer
    answered_at = probe_at + 3
    assert apply(s, Event.PRESENT, "keep", answered_at) == Step(State.ACTIVE,
                                                                 Action.RESTART_IDLE)
    assert (s.state, s.state_since, s.last_activity_at) == ("active", answered_at, answered_at)
    assert sweep(s, "keep", answered_at + IDLE_S - 1) is None
    assert sweep(s, "keep", answered_at + IDLE_S) == Step(State.CONFIRMING, Action.PROBE)


def test_keep_a_device_that_sends_bytes_while_confirming() -> None:
    s = session()
    account(s, {UP: Counter(1, 100)}, now=T0)
    probe_at = T0 + IDLE_S
    sweep(s, "keep", probe_at)
    account(s, {UP: Counter(2, 250)}, now=probe_at + 4)
    assert sweep(s, "keep", probe_at + 5) == Step(State.ACTIVE)
    assert (s.state, s.state_since, s.last_activity_at) == ("active", probe_at + 5,
                                                             probe_at + 4)
    assert sweep(s, "keep", probe_at + 4 + IDLE_S - 1) is None


def test_end_a_device_that_never_answers() -> None:
    s = session()
    probe_at = T0 + IDLE_S
    sweep(s, "keep", probe_at)
    # Download alone is not the device being there.
    account(s, {Element(ClientSet.DOWN4, "10.77.0.10"): Counter(3, 3000)},
            now=probe_at + 1)
    assert sweep(s, "keep", probe_at + CONFIRM_DEADLINE_S - 1) is None
    assert sweep(s, "keep", probe_at + CONFIRM_DEADLINE_S) == Step(
        None, Action.END, EndReason.IDLE_TIMEOUT)


def test_end_policy_ends_at_the_idle_timeout() -> None:
    s = session()
    assert sweep(s, "end", T0 + IDLE_S - 1) is None
    assert sweep(s, "end", T0 + IDLE_S) == Step(None, Action.END, EndReason.IDLE_TIMEOUT)
    assert s.state == "active"
