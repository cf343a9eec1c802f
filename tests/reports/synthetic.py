"""Synthetic accounting for the report tests and bench/reports.py: sessions, then their records.

Realistic enough to exercise every figure: devices that come back day after
day (a popularity skew), devices whose randomised MAC changes every day,
several gateways and zones, a daily and weekly rhythm, plans, access-code
batches, sessions over midnight and over the month's end, sessions still
live, IPv4 and IPv6 addresses in the raw records (the privacy scan looks for
them). Deterministic for a given seed.
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path

from parvis.core.accounting import Record, RecordIds, RecordType
from parvis.core.config import Config, GatewayConfig, PortalConfig, ReportsConfig

TOWN_TIMEZONE = "America/Toronto"  # Plessisville, Québec
# Three gateways, two zones (accents and spaces included, as towns name them).
ZONE_OF = {"gw-a": "Centre-ville", "gw-b": "Centre-ville", "gw-c": "Parc Marie-Victorin"}

# Sessions started per local hour, relative (the rhythm of a town square).
HOURLY = (1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 2.5, 4, 4.5, 5, 6, 8, 7, 6, 6, 7, 8.5, 9, 8.5, 7, 5,
          3.5, 2)
BATCHES = ("b-20261102-3fa2", "b-20261114-91c0", "b-20261121-0d7e", "b-20261003-77aa")


def gateway_config(gateway: str, min_count: int = 5) -> Config:
    """The configuration roll_up needs for one of ZONE_OF's gateways."""
    return Config(path=Path("synthetic.toml"),
                  gateway=GatewayConfig(id=gateway, lan_interface="lan0", wan_interface="wan0",
                                        timezone=TOWN_TIMEZONE, zone=ZONE_OF[gateway]),
                  portal=PortalConfig(address=ipaddress.IPv4Address("10.77.0.1")),
                  reports=ReportsConfig(min_count=min_count))


@dataclass(frozen=True)
class SyntheticSession:
    """One session as it happened (the test's ground truth)."""

    session_id: str
    gateway: str
    mac: str
    ipv4: str
    ipv6: tuple[str, ...]
    plan: str
    via: str
    code_batch: str
    started_at: float
    ended_at: float
    bytes_up: int
    bytes_down: int


def _mac(rng: random.Random, randomised: bool) -> str:
    first = rng.randrange(256)
    # Locally administered (randomised) MACs have bit 1 of the first octet set.
    first = (first | 0x02) & 0xFE if randomised else first & 0xFC
    return ":".join(f"{b:02x}" for b in [first, *(rng.randrange(256) for _ in range(5))])


def make_sessions(seed: int, first_day: date, last_day: date, per_day: int,
                  gateways: Sequence[str], tz: tzinfo, weights: Sequence[float] | None = None,
                  ) -> list[SyntheticSession]:
    """About ``per_day`` sessions a day (more at weekends) from ``first_day`` to ``last_day``."""
    rng = random.Random(seed)
    residents = [_mac(rng, randomised=False) for _ in range(per_day * 2)]
    # Zipf-like popularity: a few devices nearly every day, most now and then.
    popularity = [1 / (rank + 1) ** 0.8 for rank in range(len(residents))]
    rotating = [_mac(rng, randomised=True) for _ in range(per_day)]
    weights = list(weights or [1.0] * len(gateways))
    sessions = []
    day = first_day
    number = 0
    while day <= last_day:
        start = datetime.combine(day, time(), tzinfo=tz).timestamp()
        end = datetime.combine(day + timedelta(days=1), time(), tzinfo=tz).timestamp()
        hours = math.ceil((end - start) / 3600)  # 23, 24 or 25 (DST)
        rhythm = [HOURLY[min(h, 23)] for h in range(hours)]
        # Randomised MACs that change every day: a new set each day.
        today_rotating = [_mac(rng, randomised=True) for _ in range(len(rotating))]
        count = int(per_day * (1.3 if day.weekday() >= 5 else 1.0) * rng.uniform(0.8, 1.2))
        for _ in range(count):
            number += 1
            hour = rng.choices(range(hours), rhythm)[0]
            started = start + hour * 3600 + rng.uniform(0, 3600)
            if started >= end:
                started = end - 1
            roll = rng.random()
            if roll < 0.55:
                mac = rng.choices(residents, popularity)[0]
            elif roll < 0.9:
                mac = rng.choice(today_rotating)
            else:
                mac = _mac(rng, randomised=True)  # seen once
            via_roll = rng.random()
            via, batch, plan = "accept", "", "residents"
            if via_roll < 0.12:
                via, batch, plan = "code", rng.choice(BATCHES), "event"
            elif via_roll < 0.17:
                via = "handoff"
            cap = 8 * 3600 if plan == "event" else 4 * 3600
            length = min(cap, max(5.0, rng.lognormvariate(math.log(1500), 1.0)))
            if rng.random() < 0.01:
                length = 0.0  # a session ended at once (a device that left straight away)
            ipv6: tuple[str, ...] = ()
            if rng.random() < 0.4:
                ipv6 = (f"2001:db8:77:{rng.randrange(1, 4)}:{rng.randrange(1 << 16):x}:"
                        f"{rng.randrange(1 << 16):x}:{rng.randrange(1 << 16):x}:1",)
            sessions.append(SyntheticSession(
                session_id=f"s{seed:x}{number:07x}",
                gateway=rng.choices(gateways, weights)[0], mac=mac,
                ipv4=f"10.77.{rng.randrange(2, 8)}.{rng.randrange(2, 254)}", ipv6=ipv6,
                plan=plan, via=via, code_batch=batch, started_at=round(started, 3),
                ended_at=round(started + length, 3),
                bytes_up=int(rng.lognormvariate(math.log(4e6), 1.2)),
                bytes_down=int(rng.lognormvariate(math.log(45e6), 1.3))))
        day += timedelta(days=1)
    return sessions


def make_records(sessions: Iterable[SyntheticSession], gateway: str, until: float,
                 interim_s: float = 600, ids: RecordIds | None = None) -> list[Record]:
    """The gateway's accounting records written up to ``until``, in id order.

    A start at the session's start, an interim every ``interim_s`` (bytes
    growing linearly), a stop at its end if that is before ``until``.
    """
    events: list[tuple[float, int, RecordType, SyntheticSession]] = []
    for s in sessions:
        if s.gateway != gateway or s.started_at > until:
            continue
        events.append((s.started_at, 0, RecordType.START, s))
        if interim_s > 0:
            at = s.started_at + interim_s
            while at < min(s.ended_at, until):
                events.append((at, 1, RecordType.INTERIM, s))
                at += interim_s
        if s.ended_at <= until:
            events.append((s.ended_at, 2, RecordType.STOP, s))
    events.sort(key=lambda e: (e[0], e[1], e[3].session_id))
    ids = ids or RecordIds()
    records = []
    for at, _, kind, s in events:
        length = max(0.0, s.ended_at - s.started_at)
        share = 1.0 if kind is RecordType.STOP or length == 0 else min(
            1.0, (at - s.started_at) / length)
        records.append(Record(
            id=ids.next_id(at), type=kind, session_id=s.session_id, gateway=gateway,
            mac=s.mac, ip=s.ipv4, ipv6=s.ipv6, plan=s.plan, via=s.via,
            code_batch=s.code_batch, terms_version="2026-09" if s.via != "code" else "",
            started_at=s.started_at, at=at, duration_s=max(0, int(at - s.started_at)),
            bytes_up=int(s.bytes_up * share), bytes_down=int(s.bytes_down * share),
            packets_up=int(s.bytes_up * share) // 900, packets_down=int(s.bytes_down * share)
            // 1200, cause="User-Request" if kind is RecordType.STOP else ""))
    return records
