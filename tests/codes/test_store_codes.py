"""Access codes and hand-off nonces in a real Redis: hashed storage, atomic redemption."""

from __future__ import annotations

import threading
import time

import pytest

from parvis.core.codes import code_id, format_code
from parvis.store import Keys, Store
from tests.codes.conftest import SECRET


def all_redis_text(store: Store) -> str:
    """Every key and every value in Redis, as one string (hashes, sets, strings)."""
    parts: list[str] = []
    for key in store.client.scan_iter(count=1000):
        parts.append(key)
        kind = store.client.type(key)
        if kind == "hash":
            for field, value in store.client.hgetall(key).items():
                parts += [field, value]
        elif kind == "zset":
            parts += store.client.zrange(key, 0, -1)
        elif kind == "string":
            parts.append(store.client.get(key))
        else:
            raise AssertionError(f"unexpected {kind} at {key}")
    return "\n".join(parts).upper()


def test_a_batch_stores_no_plaintext_code(store: Store) -> None:
    now = time.time()
    batch, codes = store.create_code_batch(200, 3600, 1, 7200, "fête du village", SECRET, now)
    assert len(codes) == 200 and batch.count == 200
    dump = all_redis_text(store)
    for code in codes:
        assert code not in dump and format_code(code) not in dump
    assert code_id(codes[0], SECRET).upper() in dump  # what is stored instead
    assert len(list(store.client.scan_iter("parvis:codes:code:*"))) == 200


def test_keys_expire_after_the_batch(store: Store) -> None:
    now = time.time()
    batch, codes = store.create_code_batch(1, 3600, 1, None, "", SECRET, now)
    code_ttl = store.client.ttl(Keys.code(code_id(codes[0], SECRET)))
    batch_ttl = store.client.ttl(Keys.code_batch(batch.id))
    assert 3600 + 86400 - 5 <= code_ttl <= 3600 + 86400 + 1
    assert batch_ttl > code_ttl


def test_redemption_outcomes(store: Store) -> None:
    now = time.time()
    batch, codes = store.create_code_batch(2, 3600, 2, 5400, "", SECRET, now)
    first = store.redeem_code(format_code(codes[0]).lower(), SECRET, now + 1)
    assert first.ok and first.batch == batch.id and first.session_s == 5400
    assert store.redeem_code(codes[0], SECRET, now + 2).ok
    used = store.redeem_code(codes[0], SECRET, now + 3)
    assert (used.ok, used.reason, used.batch) == (False, "used-up", batch.id)
    assert store.redeem_code("ACEF-HJKM-NPRT-WXY3", SECRET, now).reason == "unknown"
    assert store.redeem_code("not a code", SECRET, now).reason == "unknown"
    assert store.redeem_code(codes[1], b"another-secret" * 3, now).reason == "unknown"
    [listed] = store.list_code_batches()
    assert (listed.redemptions, listed.codes_used_up, listed.codes_left) == (2, 1, 1)
    assert listed.session_s == 5400 and listed.uses == 2


def test_default_session_is_none(store: Store) -> None:
    now = time.time()
    _, codes = store.create_code_batch(1, 3600, 1, None, "", SECRET, now)
    redemption = store.redeem_code(codes[0], SECRET, now)
    assert redemption.ok and redemption.session_s is None


def test_expiry_by_time(store: Store) -> None:
    now = time.time()
    batch, codes = store.create_code_batch(1, 600, 1, None, "", SECRET, now)
    late = store.redeem_code(codes[0], SECRET, now + 600)
    assert (late.ok, late.reason, late.batch) == (False, "expired", batch.id)
    assert store.redeem_code(codes[0], SECRET, now + 599).ok  # the failed try used nothing


def test_revoke(store: Store) -> None:
    now = time.time()
    batch, codes = store.create_code_batch(3, 3600, 1, None, "", SECRET, now)
    assert store.redeem_code(codes[0], SECRET, now).ok
    assert store.revoke_code_batch(batch.id)
    assert store.revoke_code_batch(batch.id)  # idempotent
    assert store.redeem_code(codes[1], SECRET, now).reason == "revoked"
    assert store.redeem_code(codes[0], SECRET, now).reason == "revoked"
    [listed] = store.list_code_batches()
    assert listed.revoked and listed.state(now) == "revoked"
    assert not store.revoke_code_batch("b-20000101-0000")
    assert not store.revoke_code_batch("../../etc")
    assert store.client.exists(Keys.code_batch("b-20000101-0000")) == 0


def test_a_single_use_code_lets_exactly_one_of_20_threads_in(store: Store) -> None:
    now = time.time()
    _, [code] = store.create_code_batch(1, 3600, 1, None, "", SECRET, now)
    start = threading.Barrier(20)
    outcomes: list[str] = []
    lock = threading.Lock()

    def redeem() -> None:
        start.wait()
        redemption = store.redeem_code(code, SECRET, now)
        with lock:
            outcomes.append("ok" if redemption.ok else redemption.reason)

    threads = [threading.Thread(target=redeem) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["ok"] + ["used-up"] * 19
    [listed] = store.list_code_batches()
    assert (listed.redemptions, listed.codes_used_up) == (1, 1)


def test_list_is_oldest_first_and_forgets_expired_batches(store: Store) -> None:
    now = time.time()
    old, _ = store.create_code_batch(1, 3600, 1, None, "old", SECRET, now - 10)
    new, _ = store.create_code_batch(1, 3600, 1, None, "new", SECRET, now)
    assert [b.id for b in store.list_code_batches()] == [old.id, new.id]
    store.client.delete(Keys.code_batch(old.id))  # as when BATCH_RETENTION_S has passed
    assert [b.id for b in store.list_code_batches()] == [new.id]
    assert store.client.zrange(Keys.CODE_BATCHES, 0, -1) == [new.id]


def test_out_of_range_batches_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="count"):
        store.create_code_batch(0, 3600, 1, None, "", SECRET, time.time())
    assert store.list_code_batches() == []


def test_failure_counter_and_its_window(store: Store) -> None:
    assert store.code_failures("10.77.0.12") == 0
    assert [store.note_code_failure("10.77.0.12", window_s=1) for _ in range(3)] == [1, 2, 3]
    assert store.code_failures("10.77.0.12") == 3
    assert store.code_failures("10.77.0.13") == 0
    assert 0 < store.client.pttl(Keys.code_failures(store.keys.gateway_id, "10.77.0.12")) <= 1000
    assert store.note_code_failure("FD77:0::5") == 1
    assert store.code_failures("fd77::5") == 1
    time.sleep(1.2)
    assert store.code_failures("10.77.0.12") == 0
    with pytest.raises(ValueError):
        store.note_code_failure("10.77.0.12:evil")


def test_later_failures_do_not_extend_the_window(store: Store) -> None:
    store.note_code_failure("10.77.0.20", window_s=600)
    store.client.expire(Keys.code_failures(store.keys.gateway_id, "10.77.0.20"), 100)
    store.note_code_failure("10.77.0.20", window_s=600)
    assert store.client.ttl(Keys.code_failures(store.keys.gateway_id, "10.77.0.20")) <= 100


def test_nonce_is_claimed_once(store: Store) -> None:
    assert store.claim_nonce("abcDEF-_123", 60)
    assert not store.claim_nonce("abcDEF-_123", 60)
    assert store.claim_nonce("other", 60)
    assert 0 < store.client.ttl(Keys.handoff_nonce("abcDEF-_123")) <= 60
    with pytest.raises(ValueError):
        store.claim_nonce("a:b", 60)
    with pytest.raises(ValueError):
        store.claim_nonce("x" * 65, 60)


def test_a_batch_keeps_its_plan_and_redemption_returns_it(store: Store) -> None:
    now = time.time()
    batch, codes = store.create_code_batch(2, 3600, 1, None, "", SECRET, now, plan="event")
    assert batch.plan == "event"
    redemption = store.redeem_code(codes[0], SECRET, now + 1)
    assert redemption.ok and redemption.plan == "event" and redemption.session_s is None
    [listed] = store.list_code_batches()
    assert listed.plan == "event"
    # A batch made before plans existed has no plan field: the default plan ("").
    store.client.hdel(Keys.code_batch(batch.id), "plan")
    old = store.redeem_code(codes[1], SECRET, now + 2)
    assert old.ok and old.plan == "" and store.list_code_batches()[0].plan == ""


def test_refusals_carry_no_plan(store: Store) -> None:
    now = time.time()
    batch, codes = store.create_code_batch(1, 3600, 1, None, "", SECRET, now, plan="event")
    store.revoke_code_batch(batch.id)
    refused = store.redeem_code(codes[0], SECRET, now)
    assert (refused.ok, refused.reason, refused.plan) == (False, "revoked", "")


@pytest.mark.parametrize("plan", ["x" * 65, "two\nlines", " event", "event "])
def test_malformed_plan_is_refused(store: Store, plan: str) -> None:
    with pytest.raises(ValueError, match="plan"):
        store.create_code_batch(1, 3600, 1, None, "", SECRET, time.time(), plan=plan)
    assert store.list_code_batches() == []
