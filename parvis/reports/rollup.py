"""The roll-up job: a gateway's accounting stream into daily aggregates, incrementally.

netctl calls :func:`roll_up` every ``[reports] rollup_interval_s``. Each call
reads the records after the gateway's cursor (``parvis:reports:cursor:<id>``)
in chunks; each chunk's aggregates and the cursor move in one MULTI/EXEC
(:meth:`parvis.store.Store.rollup_step`), so a crash, a second run or two
runs at once never count a record twice, and a record is never skipped.
Then the device keys of months that are over (plus a grace) are destroyed.
docs/reports.md says what is counted and how.
"""

from __future__ import annotations

import logging
import zoneinfo
from dataclasses import dataclass
from datetime import tzinfo

from parvis.core.accounting import Record
from parvis.core.config import Config
from parvis.core.reports import Fold, device_key_ttl_s, device_token, fold_records
from parvis.store import Store

log = logging.getLogger(__name__)

# Records per step (one read script, one MULTI/EXEC): the script holds Redis about
# 4 ms per 1,000 entries (bench/reports.py), so other clients never wait long.
ROLLUP_CHUNK = 2000


@dataclass(frozen=True)
class RollupResult:
    """What one roll-up did."""

    records: int  # entries read, interim records included
    sessions: int  # sessions counted (their stop records)
    starts: int
    chunks: int
    cursor: str | None  # the last record rolled up, None if the stream never had one
    # Records whose device was not counted: their month's key was already destroyed.
    devices_uncounted: int
    malformed: int  # entries that are not records, or not a real session's: passed over
    keys_destroyed: tuple[str, ...]  # months whose device key this run destroyed
    # Records trimmed from the stream before any roll-up read them (a roll-up stopped for
    # longer than the retention, or records older than the first roll-up).
    records_lost: int
    # False when ``max_records`` stopped it before the end of the stream.
    complete: bool


def town_timezone(config: Config) -> tzinfo | None:
    """The town's time zone from the configuration (None = the host's)."""
    return zoneinfo.ZoneInfo(config.gateway.timezone) if config.gateway.timezone else None


def roll_up(store: Store, config: Config, now: float, *, chunk: int = ROLLUP_CHUNK,
            max_records: int | None = None) -> RollupResult:
    """Roll the gateway's new accounting records into the aggregates; idempotent.

    ``store`` is the gateway's (its id names the stream and the cursor);
    ``config`` gives the zone and time zone; ``now`` (epoch seconds) decides
    which months' device keys may still be made and which must go. At most
    ``max_records`` entries are read (None: up to the stream's end).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    tz = town_timezone(config)
    zone = config.zone
    keys: dict[str, bytes | None] = {}

    def token(month: str, mac: str) -> str | None:
        if month not in keys:
            keys[month] = store.device_key(month, device_key_ttl_s(month, tz, now))
        key = keys[month]
        return None if key is None else device_token(key, mac)

    def fold(records: list[Record]) -> Fold:
        return fold_records(records, zone, tz, token)

    lost = store.note_records_lost()
    if lost:
        log.warning("accounting records were trimmed before being rolled up gateway=%s "
                    "records_lost=%d (reports miss them: was the roll-up stopped for longer "
                    "than [accounting] retention_days?)", store.keys.gateway_id, lost)
    records = sessions = starts = chunks = uncounted = malformed = 0
    cursor = store.report_cursor()
    complete = False
    while True:
        count = chunk if max_records is None else min(chunk, max_records - records)
        if count <= 0:
            break
        step = store.rollup_step(count, fold)
        records += step.read
        sessions += step.fold.stops
        starts += step.fold.starts
        uncounted += step.fold.devices_uncounted
        malformed += step.malformed + step.fold.unusable
        if step.read:
            chunks += 1
            cursor = step.cursor
        if step.read < count:
            complete = True
            break
    destroyed = []
    if complete:
        # Only once the stream is read to its end: a backlog still holding the
        # month's records keeps its key until the TTL set at creation ends it.
        for month in store.device_key_months():
            if device_key_ttl_s(month, tz, now) <= 0 and store.destroy_device_key(month):
                destroyed.append(month)
    result = RollupResult(records=records, sessions=sessions, starts=starts, chunks=chunks,
                          cursor=cursor, devices_uncounted=uncounted, malformed=malformed,
                          keys_destroyed=tuple(destroyed), records_lost=lost,
                          complete=complete)
    if records or destroyed:
        log.info("rolled up gateway=%s zone=%s records=%d sessions=%d starts=%d chunks=%d "
                 "cursor=%s keys_destroyed=%s complete=%s", store.keys.gateway_id, zone,
                 records, sessions, starts, chunks, cursor, ",".join(destroyed) or "-",
                 complete)
    if uncounted or malformed:
        log.warning("roll-up gateway=%s devices_uncounted=%d malformed=%d (a device key "
                    "already destroyed, or entries that are not records)",
                    store.keys.gateway_id, uncounted, malformed)
    return result
