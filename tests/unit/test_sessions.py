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
    quota_left,
    quota_used,
    roll_quota_day,
    total_bytes,
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


# Fair use: the daily quota, and the fields that came with it.


def test_total_bytes_counts_both_directions() -> None:
    s = session()
    account(s, {UP: Counter(3, 300), DOWN: Counter(7, 7000)}, now=1010)
    assert total_bytes(s) == 7300


def test_quota_left_is_none_without_a_quota() -> None:
    assert quota_left(session(bytes_down=10**9)) is None
    assert quota_left(session(quota_bytes=0, quota_used_before=5)) is None


def test_quota_left_counts_earlier_sessions_and_not_yesterday() -> None:
    s = session(quota_bytes=10_000, quota_used_before=2_000, quota_offset=500,
                bytes_up=1_500, bytes_down=3_000)
    # 2000 earlier today + (4500 - 500) in this session since midnight.
    assert quota_used(s) == 6_000
    assert quota_left(s) == 4_000


def test_quota_left_stops_at_zero() -> None:
    s = session(quota_bytes=1_000, bytes_down=1_500)
    assert quota_used(s) == 1_500
    assert quota_left(s) == 0


def test_roll_quota_day_starts_the_count_again_at_midnight() -> None:
    s = session(quota_bytes=10_000, quota_day="2026-11-27", quota_used_before=4_000,
                bytes_up=1_000, bytes_down=2_000)
    assert quota_left(s) == 3_000
    assert roll_quota_day(s, "2026-11-28")
    assert (s.quota_day, s.quota_used_before, s.quota_offset) == ("2026-11-28", 0, 3_000)
    assert quota_used(s) == 0 and quota_left(s) == 10_000
    # The session's own totals are not touched: accounting goes on over the whole session.
    assert (s.bytes_up, s.bytes_down) == (1_000, 2_000)
    account(s, {UP: Counter(5, 500), DOWN: Counter(5, 700)}, now=1010)
    assert quota_used(s) == 1_200


def test_roll_quota_day_on_the_same_day_changes_nothing() -> None:
    s = session(quota_bytes=10_000, quota_day="2026-11-27", quota_used_before=4_000,
                quota_offset=100, bytes_down=2_000)
    assert not roll_quota_day(s, "2026-11-27")
    assert (s.quota_day, s.quota_used_before, s.quota_offset) == ("2026-11-27", 4_000, 100)
    assert quota_used(s) == 5_900


def test_roll_quota_day_twice_in_a_long_session() -> None:
    s = session(quota_bytes=10_000, quota_day="2026-11-27", bytes_down=1_000)
    roll_quota_day(s, "2026-11-28")
    s.bytes_down += 4_000
    assert quota_used(s) == 4_000
    assert roll_quota_day(s, "2026-11-29")
    assert quota_used(s) == 0 and s.quota_offset == 5_000


def test_the_new_fields_survive_the_store() -> None:
    s = session(session_id="a1b2c3d4", plan="night", down_bps=10_000_000, up_bps=2_000_000,
                class_minor=0x2a, quota_bytes=2 * 10**9, quota_day="2026-11-27",
                quota_used_before=123_456, quota_offset=789, state="confirming",
                state_since=1200.5, next_interim_at=1260.0, lease_expires_at=4600.0,
                bytes_up=1_000, bytes_down=2_000)
    restored = Session.from_json(s.to_json())
    assert restored == s
    assert (restored.plan, restored.down_bps, restored.class_minor, restored.quota_day,
            restored.state, restored.lease_expires_at) == ("night", 10_000_000, 0x2a,
                                                           "2026-11-27", "confirming", 4600.0)
    assert quota_used(restored) == quota_used(s) == 125_667


def test_a_session_stored_before_fair_use_is_read_with_defaults() -> None:
    # Written by the previous netctl: none of the fair-use fields.
    old = ('{"mac":"02:50:76:00:00:01","ipv4":"10.77.0.10","started_at":1000.0,'
           '"expires_at":4600.0,"idle_timeout_s":600,"last_activity_at":1000.0,'
           '"ipv6":["fd77::10"],"bytes_up":10,"bytes_down":20,"packets_up":1,"packets_down":2,'
           '"authorized_by":"t","terms_version":"v1","via":"accept","code_batch":"",'
           '"kernel":{"clients4_up 10.77.0.10 02:50:76:00:00:01":[1,10]}}')
    s = Session.from_json(old)
    assert (s.mac, s.ipv6, s.bytes_up, s.bytes_down, s.via) == (MAC, ["fd77::10"], 10, 20,
                                                               "accept")
    assert (s.session_id, s.plan, s.down_bps, s.up_bps, s.class_minor) == ("", "", 0, 0, 0)
    assert (s.quota_bytes, s.quota_day, s.quota_used_before, s.quota_offset) == (0, "", 0, 0)
    assert (s.state, s.state_since, s.next_interim_at, s.lease_expires_at) == ("active", 0.0,
                                                                                0.0, 0.0)
    assert quota_left(s) is None
    # And it keeps counting from where it was.
    account(s, {UP: Counter(2, 25)}, now=1100)
    assert s.bytes_up == 25
