"""Session accounting, expiry and the reconcile plan: pure logic, no kernel."""

from __future__ import annotations

from parvis.core.reconcile import plan
from parvis.core.sessions import (
    ClientSet,
    Counter,
    Element,
    EndReason,
    Session,
    account,
    end_reason_due,
)

MAC = "02:50:76:00:00:01"


def session(**overrides: object) -> Session:
    values: dict[str, object] = dict(mac=MAC, ipv4="10.77.0.10", started_at=1000.0,
                                     expires_at=1000.0 + 3600, idle_timeout_s=600,
                                     last_activity_at=1000.0)
    values.update(overrides)
    return Session(**values)  # type: ignore[arg-type]


UP = Element(ClientSet.UP4, "10.77.0.10", MAC)
DOWN = Element(ClientSet.DOWN4, "10.77.0.10")


def test_elements_cover_both_directions_and_families() -> None:
    s = session(ipv6=["fd77::10"])
    assert s.elements() == [UP, DOWN, Element(ClientSet.UP6, "fd77::10", MAC),
                            Element(ClientSet.DOWN6, "fd77::10")]


def test_account_counts_only_new_bytes_and_survives_recreated_elements() -> None:
    s = session()
    assert account(s, {UP: Counter(10, 1000), DOWN: Counter(20, 5000)}, now=1010)
    assert (s.bytes_up, s.bytes_down, s.packets_up, s.packets_down) == (1000, 5000, 10, 20)
    assert s.last_activity_at == 1010
    # The same readings again: nothing new.
    assert not account(s, {UP: Counter(10, 1000), DOWN: Counter(20, 5000)}, now=1020)
    assert s.bytes_up == 1000 and s.last_activity_at == 1010
    # Grew by 500 up.
    account(s, {UP: Counter(15, 1500), DOWN: Counter(20, 5000)}, now=1030)
    assert s.bytes_up == 1500
    # The element was re-created (counter restarted at 0, now 300): all 300 are new.
    account(s, {UP: Counter(3, 300), DOWN: Counter(20, 5000)}, now=1040)
    assert s.bytes_up == 1800


def test_restart_counts_bytes_seen_while_away() -> None:
    s = session()
    account(s, {UP: Counter(1, 100)}, now=1001)
    restored = Session.from_json(s.to_json())
    account(restored, {UP: Counter(5, 900)}, now=1100)
    assert restored.bytes_up == 900


def test_download_alone_is_not_activity() -> None:
    s = session()
    account(s, {DOWN: Counter(1, 100)}, now=1500)
    assert s.last_activity_at == 1000


def test_end_reasons() -> None:
    s = session()
    assert end_reason_due(s, 1100) is None
    assert end_reason_due(s, 1600) is EndReason.IDLE_TIMEOUT
    assert end_reason_due(s, 4600) is EndReason.SESSION_TIMEOUT
    assert end_reason_due(session(idle_timeout_s=0), 4000) is None


def test_plan_adds_missing_deletes_stray_and_keeps_present() -> None:
    s = session()
    stray = Element(ClientSet.DOWN4, "10.77.0.99")
    result = plan([s], {UP: Counter(1, 1), stray: Counter()}, now=1100)
    assert result.add == [(DOWN, 3500)]
    assert result.delete == [stray]


def test_plan_drops_expired_sessions() -> None:
    result = plan([session(expires_at=1050)], {UP: Counter()}, now=1100)
    assert result.add == [] and result.delete == [UP]
