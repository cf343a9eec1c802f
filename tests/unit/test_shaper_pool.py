"""The shaper's pure parts: the class minor pool, class ids and the rates a class gets."""

from __future__ import annotations

import random

import pytest

from netctl.shaper import (
    MIN_CEIL_BPS,
    MINOR_FIRST,
    MINOR_LAST,
    ClientRate,
    MinorPool,
    PoolExhausted,
    applied_rate,
    classid,
    fifo_limit,
    needs_class,
)

MBIT = 1_000_000


# --- MinorPool ----------------------------------------------------------------------------

def test_pool_hands_out_minors_from_the_first_upwards() -> None:
    pool = MinorPool()
    assert [pool.allocate() for _ in range(3)] == [MINOR_FIRST, MINOR_FIRST + 1, MINOR_FIRST + 2]
    assert len(pool) == 3 and MINOR_FIRST + 1 in pool


def test_pool_reuses_the_lowest_released_minor_first() -> None:
    pool = MinorPool()
    minors = [pool.allocate() for _ in range(10)]
    pool.release(minors[7])
    pool.release(minors[2])
    assert pool.allocate() == minors[2]
    assert pool.allocate() == minors[7]
    assert pool.allocate() == minors[-1] + 1


def test_pool_skips_minors_marked_used() -> None:
    pool = MinorPool(used=[MINOR_FIRST, MINOR_FIRST + 2])
    assert pool.allocate() == MINOR_FIRST + 1
    assert pool.allocate() == MINOR_FIRST + 3


def test_pool_skips_a_released_minor_marked_used_again() -> None:
    pool = MinorPool()
    first, second = pool.allocate(), pool.allocate()
    pool.release(first)
    pool.mark_used(first)  # e.g. read back from a session before the pool handed it out
    assert pool.allocate() == second + 1


def test_pool_release_of_a_free_minor_changes_nothing() -> None:
    pool = MinorPool()
    pool.release(MINOR_FIRST + 5)
    pool.release(MINOR_FIRST + 5)
    assert pool.allocate() == MINOR_FIRST
    first = MinorPool()
    minor = first.allocate()
    first.release(minor)
    first.release(minor)  # twice: handed out once only afterwards
    assert first.allocate() == minor
    assert first.allocate() == minor + 1


def test_pool_release_of_a_marked_minor_above_the_allocated_ones() -> None:
    pool = MinorPool(used=[0x100])
    pool.release(0x100)
    assert 0x100 not in pool
    assert pool.allocate() == MINOR_FIRST


def test_pool_exhausted_after_the_last_minor() -> None:
    pool = MinorPool(used=range(MINOR_FIRST, MINOR_LAST))
    assert pool.allocate() == MINOR_LAST
    with pytest.raises(PoolExhausted):
        pool.allocate()
    pool.release(0x1234)
    assert pool.allocate() == 0x1234


@pytest.mark.parametrize("minor", [0, 1, MINOR_FIRST - 1, MINOR_LAST + 1, 0x10000])
def test_pool_refuses_minors_out_of_range(minor: int) -> None:
    with pytest.raises(ValueError):
        MinorPool().mark_used(minor)


def test_pool_always_gives_the_lowest_free_minor() -> None:
    """Against a plain model: the lowest minor not in use, after any mix of operations."""
    rng = random.Random(4)
    pool, model = MinorPool(), set[int]()
    for _ in range(5000):
        action = rng.random()
        if action < 0.5:
            expected = next(m for m in range(MINOR_FIRST, MINOR_LAST + 1) if m not in model)
            assert pool.allocate() == expected
            model.add(expected)
        elif action < 0.85 and model:
            minor = rng.choice(sorted(model))
            pool.release(minor)
            model.discard(minor)
        else:
            minor = rng.randrange(MINOR_FIRST, MINOR_FIRST + 400)
            pool.mark_used(minor)
            model.add(minor)
        assert len(pool) == len(model)


# --- class ids and rates ------------------------------------------------------------------

@pytest.mark.parametrize(("minor", "text"), [
    (0x10, "1:10"), (0xFF, "1:ff"), (0x100, "1:100"), (0x1AB, "1:1ab"), (0xFFFE, "1:fffe"),
])
def test_classid_is_hex_like_tc_and_nft(minor: int, text: str) -> None:
    assert classid(minor) == text


@pytest.mark.parametrize("minor", [0, 1, 0xF, 0xFFFF])
def test_classid_refuses_reserved_minors(minor: int) -> None:
    with pytest.raises(ValueError):
        classid(minor)


@pytest.mark.parametrize(("rate", "down_cap", "up_cap", "needed"), [
    (ClientRate(0, 0), 0, 0, False),
    (ClientRate(10 * MBIT, 0), 0, 0, True),
    (ClientRate(0, 2 * MBIT), 0, 0, True),
    (ClientRate(0, 0), 20 * MBIT, 0, True),  # the cap holds only for classified traffic
    (ClientRate(0, 0), 0, 5 * MBIT, True),
])
def test_needs_class(rate: ClientRate, down_cap: int, up_cap: int, needed: bool) -> None:
    assert needs_class(rate, down_cap, up_cap) is needed


@pytest.mark.parametrize(("rate", "down_cap", "up_cap", "applied"), [
    (ClientRate(10 * MBIT, 2 * MBIT), 0, 0, ClientRate(10 * MBIT, 2 * MBIT)),
    (ClientRate(0, 2 * MBIT), 0, 0, ClientRate(0, 2 * MBIT)),
    (ClientRate(0, 0), 20 * MBIT, 5 * MBIT, ClientRate(20 * MBIT, 5 * MBIT)),
    (ClientRate(50 * MBIT, 0), 20 * MBIT, 0, ClientRate(50 * MBIT, 0)),  # the parent caps it
    (ClientRate(10_000_007, 1), 0, 0, ClientRate(10_000_000, MIN_CEIL_BPS)),
    (ClientRate(10 * 10**9, 100 * 10**9), 0, 0, ClientRate(0, 0)),  # 10 Gbit/s+: unlimited
])
def test_applied_rate(rate: ClientRate, down_cap: int, up_cap: int, applied: ClientRate) -> None:
    assert applied_rate(rate, down_cap, up_cap) == applied


def test_fifo_limit_is_about_100_ms_within_bounds() -> None:
    assert fifo_limit(10 * MBIT) == 82
    assert fifo_limit(2 * MBIT) == 16  # floor
    assert fifo_limit(10 * 10**9) == 1000  # ceiling
