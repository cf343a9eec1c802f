"""How a session lives and ends, written as a table of transitions.

A session is ``active`` until something happens to it. The sweep turns what it
observes into :class:`Event` values (:func:`observed_event`), netctl's other
inputs add their own (a probe answered, a lease went away, an administrator),
and :data:`TRANSITIONS` says what each event does in each state: the next
state, the RADIUS cause if the session ends, and what netctl must do.

Idle is not trusted on its own: a phone asleep in a pocket sends nothing for
long stretches yet is still there. With ``idle_when_present = "keep"`` an idle
session is first *confirmed*: netctl probes the device (ARP); one that answers
keeps its session and its idle clock restarts, one that does not has left and
its session ends at once. With ``"end"`` idleness alone ends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from parvis.core.sessions import EndReason, Session, quota_used

# A probe not answered within this long counts as not answered (netctl's prober
# may have died with the answer; the device must not stay in limbo).
CONFIRM_DEADLINE_S = 10.0


class State(StrEnum):
    """Where a live session stands."""

    ACTIVE = "active"
    CONFIRMING = "confirming"  # idle: probing whether the device is still there


class Event(StrEnum):
    """Something that happened to a session."""

    HARD_TIMEOUT = "hard-timeout"
    QUOTA_USED = "quota-used"
    IDLE = "idle"
    TRAFFIC = "traffic"  # bytes again while confirming
    PRESENT = "present"  # the device answered the probe
    ABSENT = "absent"  # it did not, or not in time
    LEASE_RELEASED = "lease-released"  # DHCP release: the device said goodbye
    LEASE_EXPIRED = "lease-expired"  # the lease ran out: the device is gone
    ADMIN_RESET = "admin-reset"
    ADDRESS_TAKEN = "address-taken"  # DHCP gave its address to another device


class Action(StrEnum):
    """What netctl does on a transition."""

    NOTHING = "nothing"
    PROBE = "probe"  # ask the device whether it is still there
    RESTART_IDLE = "restart-idle"  # it is: idle is counted again from now
    END = "end"  # remove its access, close its accounting, tell the portal why


@dataclass(frozen=True)
class Step:
    """One transition: the state after it (None when the session ends), the cause, the action."""

    state: State | None
    action: Action = Action.NOTHING
    reason: EndReason | None = None


def _end(reason: EndReason) -> Step:
    return Step(None, Action.END, reason)


# Events that end a session whatever state it is in.
_ENDINGS: Mapping[Event, EndReason] = {
    Event.HARD_TIMEOUT: EndReason.SESSION_TIMEOUT,
    Event.QUOTA_USED: EndReason.QUOTA_EXCEEDED,
    Event.LEASE_RELEASED: EndReason.USER_REQUEST,
    Event.LEASE_EXPIRED: EndReason.LOST_CARRIER,
    Event.ADMIN_RESET: EndReason.ADMIN_RESET,
    Event.ADDRESS_TAKEN: EndReason.LOST_CARRIER,
}

_COMMON: dict[tuple[State, Event], Step] = {
    (state, event): _end(reason) for state in State for event, reason in _ENDINGS.items()
}

# idle_when_present = "keep": idle is confirmed by a probe first.
KEEP_PRESENT: Mapping[tuple[State, Event], Step] = {
    **_COMMON,
    (State.ACTIVE, Event.IDLE): Step(State.CONFIRMING, Action.PROBE),
    (State.CONFIRMING, Event.TRAFFIC): Step(State.ACTIVE),
    (State.CONFIRMING, Event.PRESENT): Step(State.ACTIVE, Action.RESTART_IDLE),
    (State.CONFIRMING, Event.ABSENT): _end(EndReason.IDLE_TIMEOUT),
}

# idle_when_present = "end": no traffic for the idle timeout is enough.
END_WHEN_IDLE: Mapping[tuple[State, Event], Step] = {
    **_COMMON,
    (State.ACTIVE, Event.IDLE): _end(EndReason.IDLE_TIMEOUT),
    # A session confirming when the policy changed (netctl restarted with a new config).
    (State.CONFIRMING, Event.IDLE): _end(EndReason.IDLE_TIMEOUT),
    (State.CONFIRMING, Event.TRAFFIC): Step(State.ACTIVE),
    (State.CONFIRMING, Event.PRESENT): _end(EndReason.IDLE_TIMEOUT),
    (State.CONFIRMING, Event.ABSENT): _end(EndReason.IDLE_TIMEOUT),
}

TRANSITIONS: Mapping[str, Mapping[tuple[State, Event], Step]] = {
    "keep": KEEP_PRESENT,
    "end": END_WHEN_IDLE,
}


def step(session: Session, event: Event, idle_when_present: str) -> Step | None:
    """The transition ``event`` makes from the session's state; None when it changes nothing."""
    return TRANSITIONS[idle_when_present].get((State(session.state), event))


def apply(session: Session, event: Event, idle_when_present: str, now: float) -> Step | None:
    """Take the transition in place (state, idle clock) and return it; None if none applies.

    Ending is left to the caller, which owns the firewall and the records.
    """
    found = step(session, event, idle_when_present)
    if found is None:
        return None
    if found.state is not None and found.state.value != session.state:
        session.state = found.state.value
        session.state_since = now
    if found.action is Action.RESTART_IDLE:
        session.last_activity_at = now
    return found


def observed_event(session: Session, now: float) -> Event | None:
    """What the sweep sees for this session now, the most decisive first; None if nothing.

    Called for every session at every sweep, so it is a handful of comparisons.
    """
    if now >= session.expires_at:
        return Event.HARD_TIMEOUT
    if session.quota_bytes and quota_used(session) >= session.quota_bytes:
        return Event.QUOTA_USED
    idle_for = now - session.last_activity_at
    if session.state == State.CONFIRMING:
        if idle_for < now - session.state_since:
            return Event.TRAFFIC  # bytes counted since the probe went out
        if now - session.state_since >= CONFIRM_DEADLINE_S:
            return Event.ABSENT
        return None
    if session.idle_timeout_s and idle_for >= session.idle_timeout_s:
        return Event.IDLE
    return None
