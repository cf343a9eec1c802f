"""Redis adapter: every key Parvis uses, and the operations on them.

All keys live under ``parvis:`` and are scoped by gateway. Sessions, blocked
and trusted MACs and the command stream belong to one gateway's netctl,
which is their only writer; the portal and parvisctl send commands and read.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, ParamSpec, TypeVar

import redis

from parvis.core.accounting import Record, compare_ids, parse_id
from parvis.core.codes import (
    BATCH_RETENTION_S,
    CODE_KEY_GRACE_S,
    CodeBatch,
    Redemption,
    check_batch_request,
    code_id,
    generate_codes,
    is_batch_id,
    new_batch_id,
    normalize_code,
)
from parvis.core.commands import COMMAND_FIELD, Command, Result
from parvis.core.reports import Cell, CellData, Fold
from parvis.core.sessions import Session
from parvis.core.users import User, name_problem

COMMAND_GROUP = "netctl"
REPLY_TTL_S = 120
SEEN_RETENTION_S = 24 * 3600  # devices seen but never authorised: live state only
ENDED_TTL_S = 12 * 3600  # why a session ended, kept for the portal to explain
STREAM_MAX_LEN = 100_000
USAGE_TTL_S = 2 * 86400
# Accounting records per MULTI/EXEC: a replay after a long outage does not hold Redis long.
ACCOUNTING_CHUNK = 1000


class StoreError(Exception):
    """Redis could not be reached or refused an operation; says which key or action."""


class Appended(NamedTuple):
    """What :meth:`Store.append_records` did with a batch of records."""

    written: int
    # Refused because the stream already holds them (a replay), or already aged out.
    duplicates: int
    # Refused, yet not in the stream: their ids were taken (a second writer of the
    # stream, or a clock set back with the spool lost). Re-issue them under new ids.
    stale: tuple[Record, ...] = ()


class RollupStep(NamedTuple):
    """What :meth:`Store.rollup_step` did: records read, the cursor now, what was folded."""

    read: int
    cursor: str
    fold: Fold
    # Records that could not be read as records (passed over, cursor moved past them).
    malformed: int


@dataclass(frozen=True)
class Keys:
    """Every Redis key template, for one gateway."""

    gateway_id: str

    GATEWAYS = "parvis:gateways"  # SET of gateway ids that ever started

    @property
    def prefix(self) -> str:
        return f"parvis:gw:{self.gateway_id}"

    @property
    def commands(self) -> str:
        """STREAM of commands to this gateway's netctl (consumer group ``netctl``)."""
        return f"{self.prefix}:commands"

    def reply(self, entry_id: str) -> str:
        """LIST holding the one acknowledgement of a command, expiring after REPLY_TTL_S."""
        return f"{self.prefix}:reply:{entry_id}"

    @property
    def sessions(self) -> str:
        """HASH MAC -> Session JSON: the authorised clients."""
        return f"{self.prefix}:sessions"

    @property
    def sessions_by_ip(self) -> str:
        """HASH IPv4 address -> MAC of the session holding it (kept with ``sessions``)."""
        return f"{self.prefix}:sessions_by_ip"

    @property
    def blocked(self) -> str:
        """SET of MACs blocked at run time (the config's list comes on top)."""
        return f"{self.prefix}:blocked"

    @property
    def trusted(self) -> str:
        """SET of MACs trusted at run time (the config's list comes on top)."""
        return f"{self.prefix}:trusted"

    def usage(self, day: str) -> str:
        """HASH MAC -> bytes the device used on ``day`` (YYYY-MM-DD, the town's date) in
        sessions that ended: what a new session of the day starts its quota from.
        Expires USAGE_TTL_S after it was last written."""
        return f"{self.prefix}:usage:{day}"

    @property
    def seen(self) -> str:
        """HASH MAC -> JSON {first_seen, last_seen, ipv4}: devices seen by DHCP."""
        return f"{self.prefix}:seen"

    @property
    def health(self) -> str:
        """STRING JSON health snapshot, expiring when netctl stops publishing."""
        return f"{self.prefix}:health"

    @property
    def heartbeat(self) -> str:
        """STRING JSON {at, pid, version}, expiring when netctl stops."""
        return f"{self.prefix}:heartbeat"

    @property
    def accounting(self) -> str:
        """STREAM of accounting records (parvis.core.accounting.Record fields), entry id =
        the record's own id; trimmed to the retention window (they name MACs and IPs)."""
        return f"{self.prefix}:accounting"

    def ended(self, client_ip: str) -> str:
        """STRING JSON {reason, ended_at, reconnect_at, plan, quota_bytes, hard_timeout_s,
        idle_timeout_s}: why the last session of this IPv4 address ended, for the portal
        to tell the resident; expires after ENDED_TTL_S."""
        return f"{self.prefix}:ended:{client_ip}"

    # --- town-wide keys: access codes and hand-off nonces (not scoped by gateway) ---------

    CODE_BATCHES = "parvis:codes:batches"  # ZSET batch id scored by creation time
    CODE_BATCH_PREFIX = "parvis:codes:batch:"

    @staticmethod
    def code_batch(batch_id: str) -> str:
        """HASH of a code batch (created_at, valid_until, uses, session_s, note, count, plan,
        redemptions, used_up, revoked), expiring BATCH_RETENTION_S after valid_until."""
        return f"{Keys.CODE_BATCH_PREFIX}{batch_id}"

    @staticmethod
    def code(code_id: str) -> str:
        """HASH {batch, uses_left} of one code, named by its keyed hash (never the code),
        expiring CODE_KEY_GRACE_S after its batch's valid_until."""
        return f"parvis:codes:code:{code_id}"

    @staticmethod
    def code_failures(gateway_id: str, client_ip: str) -> str:
        """STRING counter of a client address's wrong codes on one gateway, expiring with
        its window (per gateway: towns reuse the same private addressing everywhere)."""
        return f"parvis:codes:failures:{gateway_id}:{client_ip}"

    @staticmethod
    def handoff_context(context_id: str) -> str:
        """STRING JSON {gw, ip} naming a handed-off client at the central portal; the
        browser holds only the id, and the key goes at acceptance or after its TTL."""
        return f"parvis:handoff:context:{context_id}"

    @staticmethod
    def handoff_nonce(nonce: str) -> str:
        """STRING set once when a hand-off token's nonce is used, expiring with the token."""
        return f"parvis:handoff:nonce:{nonce}"

    # --- town-wide keys: the administration console (section "users") ---------------------

    ADMIN_USERS = "parvis:admin:users"  # SET of account names

    @staticmethod
    def admin_user(name: str) -> str:
        """HASH of one console account (parvis.core.users.User.to_fields: role, argon2 hash,
        created_at, changed_at, generation, last_login_at); never a password."""
        return f"parvis:admin:user:{name}"

    @staticmethod
    def admin_failures(kind: str, subject: str) -> str:
        """STRING counter of wrong passwords for an account name (``kind`` "account", known
        or not) or a source address ("address"), expiring ``[admin] lockout_s`` after the
        last failure."""
        return f"parvis:admin:failures:{kind}:{subject}"

    @staticmethod
    def admin_session(session_id: str) -> str:
        """STRING JSON {user, generation, created_at} of a console login; the browser's
        signed cookie holds only the random id; expires SESSION_LIFETIME_S after login."""
        return f"parvis:admin:session:{session_id}"

    @staticmethod
    def code_sheet(sheet_id: str) -> str:
        """STRING: a batch's new codes, encrypted with a key only the console's answer
        carried (never in clear); taken by the first download, else gone after minutes."""
        return f"parvis:admin:codesheet:{sheet_id}"

    # --- town-wide keys: splash content edited in the console (section "content") -------

    CONTENT_TILES = "parvis:content:tiles"  # HASH tile id -> JSON (portal.content.Tile)
    # STRING: a random token rewritten with every edit (the portal's cache key).
    CONTENT_VERSION = "parvis:content:version"

    # --- town-wide keys: council reports (section "reports", docs/reports.md) ------------
    # Aggregates only: no key or value here holds a MAC or an IP address.

    REPORT_MONTHS = "parvis:reports:months"  # SET of YYYY-MM with aggregates
    REPORT_DEVICE_KEY_PREFIX = "parvis:reports:device_key:"

    @staticmethod
    def report_cells(month: str) -> str:
        """SET of the month's cells, ``<day>:<gateway>:<zone>`` (parvis.core.reports.Cell)."""
        return f"parvis:reports:cells:{month}"

    @staticmethod
    def report_day(cell: Cell) -> str:
        """HASH of a cell's counters (parvis.core.reports.CellDelta: sessions, duration_s,
        bytes_down, bytes_up, len:<s>, hour:<HH>, plan:<name>, via:<how>, batch:<id>)."""
        return f"parvis:reports:day:{cell.member}"

    @staticmethod
    def report_concurrency(cell: Cell) -> str:
        """HASH minute of the local day -> +/- step of devices present (their running sum
        is the number present in that minute)."""
        return f"parvis:reports:conc:{cell.member}"

    @staticmethod
    def report_devices(cell: Cell) -> str:
        """HYPERLOGLOG of the cell's devices, as keyed hashes (the month's device key)."""
        return f"parvis:reports:devices:{cell.member}"

    @staticmethod
    def report_device_key(month: str) -> str:
        """STRING: the month's random device key (hex), shared by every gateway; made on
        first use, destroyed DEVICE_KEY_GRACE_S after the month (it expires then at the
        latest)."""
        return f"{Keys.REPORT_DEVICE_KEY_PREFIX}{month}"

    @staticmethod
    def report_cursor(gateway_id: str) -> str:
        """HASH {id: the last accounting record of the gateway rolled up, read: entries
        rolled up in all, lost: entries trimmed before any roll-up read them}."""
        return f"parvis:reports:cursor:{gateway_id}"


def connect(url: str, timeout_s: float = 2.0) -> redis.Redis:
    """A client for ``url`` that fails within ``timeout_s`` instead of hanging."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        decode_responses=True,
        # A command that is not UTF-8 must become a refusal, not an exception
        # raised while reading the stream (which would stall every command).
        encoding_errors="replace",
        health_check_interval=30,
    )


def check_reachable(url: str, timeout_s: float = 2.0) -> str | None:
    """None when Redis at ``url`` answers PING, else the reason it does not."""
    try:
        client = connect(url, timeout_s)
        client.ping()
        client.close()
    except (redis.RedisError, OSError, ValueError) as error:
        return str(error) or type(error).__name__
    return None


P = ParamSpec("P")
R = TypeVar("R")


def _redis_errors(method: Callable[P, R]) -> Callable[P, R]:
    """Turn any Redis or socket failure into a StoreError naming the operation."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except StoreError:
            raise
        except (redis.RedisError, OSError) as error:
            raise StoreError(f"{method.__name__}: {error}") from error

    return wrapper


class Store:
    """Parvis state in Redis for one gateway; every failure surfaces as StoreError."""

    def __init__(self, client: redis.Redis, gateway_id: str) -> None:
        # redis-py's types cannot follow decode_responses=True: every reply is str here.
        self.client: Any = client
        self.keys = Keys(gateway_id)

    def for_gateway(self, gateway_id: str) -> Store:
        """The store of another gateway on the same Redis connection (itself for its own id)."""
        if gateway_id == self.keys.gateway_id:
            return self
        return Store(self.client, gateway_id)

    # --- commands ------------------------------------------------------------------------

    @_redis_errors
    def send_command(self, command: Command) -> str:
        """Append a command to the gateway's stream; return its entry id."""
        return self._send_raw({COMMAND_FIELD: command.to_json()})

    def _send_raw(self, fields: Mapping[str, str]) -> str:
        try:
            entry_id = self.client.xadd(self.keys.commands, dict(fields),
                                        maxlen=STREAM_MAX_LEN, approximate=True)
        except redis.RedisError as error:
            raise StoreError(f"adding to {self.keys.commands}: {error}") from error
        return str(entry_id)

    @_redis_errors
    def send_raw(self, fields: Mapping[str, str]) -> str:
        """Append an entry as given (tests and fuzzing use it to send malformed commands)."""
        return self._send_raw(fields)

    @_redis_errors
    def wait_reply(self, entry_id: str, timeout_s: float) -> Result | None:
        """Block until the command's acknowledgement arrives; None after ``timeout_s``."""
        try:
            # BLPOP takes whole or fractional seconds; 0 would mean "forever".
            answer = self.client.blpop([self.keys.reply(entry_id)], timeout=max(timeout_s, 0.01))
        except redis.TimeoutError:
            return None
        except redis.RedisError as error:
            raise StoreError(f"waiting on {self.keys.reply(entry_id)}: {error}") from error
        if answer is None:
            return None
        return Result.from_json(answer[1])

    @_redis_errors
    def call(self, command: Command, timeout_s: float = 5.0) -> Result | None:
        """Send a command and wait for its acknowledgement."""
        return self.wait_reply(self.send_command(command), timeout_s)

    @_redis_errors
    def server_time(self) -> float:
        """Redis's own clock, in seconds: the clock stream entry ids are written with."""
        seconds, microseconds = self.client.time()
        return float(seconds) + float(microseconds) / 1e6

    @_redis_errors
    def ensure_group(self) -> None:
        """Create the stream and its consumer group if missing (idempotent)."""
        try:
            self.client.xgroup_create(self.keys.commands, COMMAND_GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise StoreError(f"creating group on {self.keys.commands}: {error}") from error

    def read_commands(
        self, consumer: str, block_ms: int, count: int, pending: bool = False
    ) -> list[tuple[str, dict[str, str]]]:
        """Read commands for this consumer: its own unacknowledged ones if ``pending``."""
        stream_id = "0" if pending else ">"
        try:
            reply = self.client.xreadgroup(COMMAND_GROUP, consumer, {self.keys.commands: stream_id},
                                           count=count, block=None if pending else block_ms)
        except redis.RedisError as error:
            raise StoreError(f"reading {self.keys.commands}: {error}") from error
        entries: list[tuple[str, dict[str, str]]] = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                entries.append((str(entry_id), dict(fields or {})))
        return entries

    @_redis_errors
    def acknowledge(self, results: Iterable[tuple[str, Result]], pipe: Any = None) -> None:
        """Publish each command's result and mark it done in the consumer group."""
        own = pipe is None
        pipeline = self.client.pipeline(transaction=False) if own else pipe
        ids = []
        for entry_id, result in results:
            key = self.keys.reply(entry_id)
            pipeline.rpush(key, result.to_json())
            pipeline.expire(key, REPLY_TTL_S)
            ids.append(entry_id)
        if ids:
            pipeline.xack(self.keys.commands, COMMAND_GROUP, *ids)
            # A handled command leaves the stream: entries name addresses and MACs.
            pipeline.xdel(self.keys.commands, *ids)
        if own:
            pipeline.execute()

    # --- sessions and MAC lists --------------------------------------------------------------

    @_redis_errors
    def sessions(self) -> dict[str, Session]:
        """Every session of this gateway, by MAC."""
        raw = self.client.hgetall(self.keys.sessions)
        return {mac: Session.from_json(text) for mac, text in raw.items()}

    @_redis_errors
    def save_sessions(self, sessions: Iterable[Session], pipe: Any = None) -> None:
        """Write these sessions and their address index (one HSET each)."""
        sessions = list(sessions)
        if sessions:
            target = pipe or self.client
            target.hset(self.keys.sessions, mapping={s.mac: s.to_json() for s in sessions})
            target.hset(self.keys.sessions_by_ip, mapping={s.ipv4: s.mac for s in sessions})

    @_redis_errors
    def delete_sessions(self, sessions: Iterable[Session | str], pipe: Any = None) -> None:
        """Remove these sessions (Session objects, or MACs) and their index entries."""
        sessions = list(sessions)
        if not sessions:
            return
        target = pipe or self.client
        target.hdel(self.keys.sessions, *[s if isinstance(s, str) else s.mac for s in sessions])
        addresses = [s.ipv4 for s in sessions if not isinstance(s, str)]
        if addresses:
            target.hdel(self.keys.sessions_by_ip, *addresses)

    @_redis_errors
    def replace_sessions(self, sessions: Iterable[Session], pipe: Any = None) -> None:
        """Make the sessions hash and its index hold exactly these (netctl's write-back)."""
        target = pipe or self.client
        target.delete(self.keys.sessions, self.keys.sessions_by_ip)
        self.save_sessions(sessions, target)

    @_redis_errors
    def replace_mac_set(self, which: str, macs: Iterable[str], pipe: Any = None) -> None:
        """Make the run-time ``blocked`` or ``trusted`` set hold exactly ``macs``."""
        key = self.keys.blocked if which == "blocked" else self.keys.trusted
        target = pipe or self.client
        target.delete(key)
        macs = sorted(macs)
        if macs:
            target.sadd(key, *macs)

    @_redis_errors
    def usage(self, day: str) -> dict[str, int]:
        """Bytes each device used on ``day`` (local date) in sessions that ended."""
        return {mac: int(value) for mac, value in
                self.client.hgetall(self.keys.usage(day)).items() if value.isdigit()}

    @_redis_errors
    def save_usage(self, day: str, usage: Mapping[str, int], pipe: Any = None) -> None:
        """Record devices' usage on ``day``; it expires two days later (live state only)."""
        if not usage:
            return
        target = pipe or self.client
        target.hset(self.keys.usage(day), mapping={m: str(v) for m, v in usage.items()})
        target.expire(self.keys.usage(day), USAGE_TTL_S)

    @_redis_errors
    def session_for_ip(self, ipv4: str) -> Session | None:
        """The session holding this IPv4 address, if any (what the portal asks)."""
        mac = self.client.hget(self.keys.sessions_by_ip, ipv4)
        if mac is None:
            return None
        text = self.client.hget(self.keys.sessions, mac)
        if text is None:
            return None
        session = Session.from_json(text)
        return session if session.ipv4 == ipv4 else None

    @_redis_errors
    def note_ended(self, client_ip: str, info: Mapping[str, Any], ttl_s: int = ENDED_TTL_S,
                   pipe: Any = None) -> None:
        """Record why the session of this IPv4 address ended (``Keys.ended``), for ``ttl_s``."""
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be at least 1, got {ttl_s}")
        target = pipe or self.client
        target.set(self.keys.ended(client_ip), json.dumps(dict(info), separators=(",", ":")),
                   ex=ttl_s)

    @_redis_errors
    def forget_ended(self, client_ip: str, pipe: Any = None) -> None:
        """Drop the end record of this address (a new session began on it)."""
        (pipe or self.client).delete(self.keys.ended(client_ip))

    @_redis_errors
    def ended_for_ip(self, client_ip: str) -> dict[str, Any] | None:
        """Why the last session of this address ended, or None (none kept, or unreadable)."""
        text = self.client.get(self.keys.ended(client_ip))
        if not text:
            return None
        try:
            info = json.loads(text)
        except (ValueError, RecursionError):
            return None
        return info if isinstance(info, dict) else None

    @_redis_errors
    def mac_set(self, which: str) -> set[str]:
        """The run-time ``blocked`` or ``trusted`` MACs."""
        key = self.keys.blocked if which == "blocked" else self.keys.trusted
        return set(self.client.smembers(key))

    @_redis_errors
    def change_mac_set(self, which: str, mac: str, present: bool, pipe: Any = None) -> None:
        """Add or remove a MAC of the run-time ``blocked`` or ``trusted`` set."""
        key = self.keys.blocked if which == "blocked" else self.keys.trusted
        target = pipe or self.client
        if present:
            target.sadd(key, mac)
        else:
            target.srem(key, mac)

    @_redis_errors
    def pipeline(self) -> Any:
        """A MULTI/EXEC pipeline: what one action writes lands together or not at all."""
        return self.client.pipeline(transaction=True)

    @_redis_errors
    def execute(self, pipe: Any) -> None:
        """Run a pipeline made by :meth:`pipeline`."""
        pipe.execute()

    # --- devices seen, health, heartbeat -----------------------------------------------------

    @_redis_errors
    def record_seen(self, sightings: Iterable[tuple[str, str | None, float]]) -> None:
        """Record devices seen by DHCP: (MAC, IPv4 or None, when). Keeps the first-seen time."""
        sightings = list(sightings)
        if not sightings:
            return
        macs = [mac for mac, _, _ in sightings]
        old = dict(zip(macs, self.client.hmget(self.keys.seen, macs), strict=True))
        mapping = {}
        for mac, ipv4, when in sightings:
            previous = json.loads(old[mac]) if old.get(mac) else {}
            mapping[mac] = json.dumps({
                "first_seen": previous.get("first_seen", when),
                "last_seen": when,
                "ipv4": ipv4 or previous.get("ipv4"),
            })
            old[mac] = mapping[mac]
        self.client.hset(self.keys.seen, mapping=mapping)

    @_redis_errors
    def seen_one(self, mac: str) -> dict[str, Any] | None:
        """What DHCP told of one device, or None."""
        text = self.client.hget(self.keys.seen, mac)
        return json.loads(text) if text else None

    @_redis_errors
    def seen(self) -> dict[str, dict[str, Any]]:
        """Devices seen by DHCP, by MAC."""
        return {mac: json.loads(text) for mac, text in self.client.hgetall(self.keys.seen).items()}

    @_redis_errors
    def prune_seen(self, now: float) -> int:
        """Forget devices not seen for SEEN_RETENTION_S (MACs are personal data)."""
        stale = [mac for mac, info in self.seen().items()
                 if now - float(info.get("last_seen", 0)) > SEEN_RETENTION_S]
        if stale:
            self.client.hdel(self.keys.seen, *stale)
        return len(stale)

    @_redis_errors
    def publish_health(self, snapshot: Mapping[str, Any], ttl_s: int) -> None:
        """Publish the health snapshot and the heartbeat, both expiring after ``ttl_s``."""
        beat = {"at": time.time(), "pid": snapshot.get("pid"),
                "version": snapshot.get("version"), "host": socket.gethostname()}
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.health, json.dumps(snapshot), ex=ttl_s)
        pipe.set(self.keys.heartbeat, json.dumps(beat), ex=ttl_s)
        pipe.sadd(Keys.GATEWAYS, self.keys.gateway_id)
        pipe.execute()

    @_redis_errors
    def health(self) -> dict[str, Any] | None:
        """The last health snapshot, or None if netctl is not publishing."""
        text = self.client.get(self.keys.health)
        return json.loads(text) if text else None

    @_redis_errors
    def heartbeat(self) -> dict[str, Any] | None:
        """The last heartbeat, or None if netctl is not running."""
        text = self.client.get(self.keys.heartbeat)
        return json.loads(text) if text else None

    @_redis_errors
    def gateways(self) -> list[str]:
        """Every gateway id that has published a heartbeat on this Redis."""
        return sorted(self.client.smembers(Keys.GATEWAYS))

    # --- accounting records (netctl/spool.py says why each lands exactly once) ---------------

    @_redis_errors
    def append_records(self, records: Iterable[Record], retention_s: int,
                       now: float | None = None) -> Appended:
        """Add records to the accounting stream under their own ids, in id order.

        Redis refuses an id not above the stream's top: a refused record found in
        the stream with the same fields was written before (a replay after a lost
        reply or a crash) and counts as a duplicate. Every ACCOUNTING_CHUNK records
        go in one MULTI/EXEC, so a chunk Redis refuses (out of memory, read-only)
        lands not at all: never a hole behind the top that a replay would take for
        a duplicate. Then records older than ``retention_s`` are trimmed away.
        Ids must increase (ValueError otherwise).
        """
        records = list(records)
        for before, after in zip(records, records[1:], strict=False):
            if compare_ids(before.id, after.id) >= 0:
                raise ValueError(f"record ids must increase: {after.id} after {before.id}")
        min_ms = _retention_floor_ms(retention_s, now)
        if not records:
            return Appended(0, 0)
        key = self.keys.accounting
        written, refused = 0, []
        for first in range(0, len(records), ACCOUNTING_CHUNK):
            chunk = records[first:first + ACCOUNTING_CHUNK]
            pipe = self.client.pipeline(transaction=True)
            for record in chunk:
                pipe.xadd(key, record.to_fields(), id=record.id)
            for record, result in zip(chunk, pipe.execute(raise_on_error=False), strict=True):
                if not isinstance(result, Exception):
                    written += 1
                elif "equal or smaller than the target stream top item" in str(result):
                    refused.append(record)
                else:
                    raise StoreError(f"adding record {record.id} to {key}: {result}")
        duplicates, stale = 0, []
        if refused:
            pipe = self.client.pipeline(transaction=False)
            for record in refused:
                pipe.xrange(key, record.id, record.id)
            for record, found in zip(refused, pipe.execute(), strict=True):
                if found and found[0][1] == record.to_fields():
                    duplicates += 1
                elif not found and parse_id(record.id)[0] < min_ms:
                    duplicates += 1  # written then trimmed, or not: past retention either way
                else:
                    stale.append(record)
        self.client.xtrim(key, minid=f"{min_ms}-0", approximate=False)
        return Appended(written, duplicates, tuple(stale))

    @_redis_errors
    def trim_records(self, retention_s: int, now: float | None = None) -> int:
        """Drop accounting records older than ``retention_s``; return how many went.

        append_records trims too; this is for a gateway that writes nothing for long.
        """
        floor = f"{_retention_floor_ms(retention_s, now)}-0"
        return int(self.client.xtrim(self.keys.accounting, minid=floor, approximate=False))

    @_redis_errors
    def last_record_id(self) -> str | None:
        """The highest id the accounting stream ever took (kept when trimmed), or None."""
        try:
            info = self.client.xinfo_stream(self.keys.accounting)
        except redis.ResponseError as error:
            if "no such key" in str(error).lower():
                return None
            raise
        return str(info["last-generated-id"])

    @_redis_errors
    def accounting_records(self, start: str = "-", end: str = "+",
                           count: int | None = None) -> list[Record]:
        """The accounting records with ids from ``start`` to ``end`` (inclusive), oldest first."""
        key = self.keys.accounting
        records = []
        for entry_id, entry in self.client.xrange(key, start, end, count=count):
            try:
                records.append(Record.from_fields(str(entry_id), dict(entry)))
            except ValueError as error:
                raise StoreError(f"reading {key}: {error}") from error
        return records

    # =========================================================================================
    # Access codes and hand-off nonces: town-wide, shared by every gateway (docs/codes.md).
    # Codes are stored only under their keyed hash (parvis.core.codes.code_id).
    # =========================================================================================

    # One script so that the checks and the decrement see the same state: two
    # residents typing the same single-use code at once cannot both get in.
    # The batch key derives from the code's hash, so it cannot be declared in
    # KEYS up front; fine on a single Redis server (Parvis does not use Cluster).
    _REDEEM_LUA = """
    local batch = redis.call('HGET', KEYS[1], 'batch')
    if not batch then return {'unknown'} end
    local bkey = ARGV[2] .. batch
    local info = redis.call('HMGET', bkey, 'revoked', 'valid_until', 'session_s', 'plan')
    if not info[2] then return {'unknown'} end
    if info[1] == '1' then return {'revoked', batch} end
    if tonumber(ARGV[1]) >= tonumber(info[2]) then return {'expired', batch} end
    local left = tonumber(redis.call('HGET', KEYS[1], 'uses_left'))
    if not left or left <= 0 then return {'used-up', batch} end
    left = redis.call('HINCRBY', KEYS[1], 'uses_left', -1)
    redis.call('HINCRBY', bkey, 'redemptions', 1)
    if left == 0 then redis.call('HINCRBY', bkey, 'used_up', 1) end
    return {'ok', batch, info[3] or '', info[4] or ''}
    """

    # Checked and set in one step so that revoking a batch that expires meanwhile
    # cannot leave a stub hash behind with no expiry.
    _REVOKE_LUA = """
    if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
    redis.call('HSET', KEYS[1], 'revoked', '1')
    return 1
    """

    def _script(self, source: str) -> Any:
        """The registered Lua script for ``source`` (EVALSHA, reloaded after SCRIPT FLUSH)."""
        scripts: dict[str, Any] = self.__dict__.setdefault("_scripts", {})
        if source not in scripts:
            scripts[source] = self.client.register_script(source)
        return scripts[source]

    @_redis_errors
    def create_code_batch(self, count: int, valid_for_s: int, uses: int, session_s: int | None,
                          note: str, key: bytes, now: float,
                          plan: str = "") -> tuple[CodeBatch, list[str]]:
        """Make a batch of codes; return it and its plaintext codes (shown this once only).

        ``plan`` names the plan its sessions get ("" = the default plan); the
        caller checks it against the configuration. Raises ValueError when an
        argument is out of range (parvis.core.codes limits).
        """
        check_batch_request(count, valid_for_s, uses, session_s, note, plan)
        codes = generate_codes(count)
        valid_until = now + valid_for_s
        for _attempt in range(8):
            batch = CodeBatch(id=new_batch_id(now), created_at=now, valid_until=valid_until,
                              uses=uses, session_s=session_s, note=note, count=count,
                              plan=plan)
            batch_key = Keys.code_batch(batch.id)
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    # WATCH + EXISTS: an id taken by a concurrent parvisctl means a retry,
                    # and the whole batch lands in one MULTI/EXEC or not at all.
                    pipe.watch(batch_key)
                    if pipe.exists(batch_key):
                        continue
                    pipe.multi()
                    pipe.hset(batch_key, mapping={
                        "created_at": repr(now), "valid_until": repr(valid_until),
                        "uses": uses, "session_s": "" if session_s is None else session_s,
                        "note": note, "count": count, "plan": plan,
                        "redemptions": 0, "used_up": 0, "revoked": 0})
                    pipe.expireat(batch_key, int(valid_until) + BATCH_RETENTION_S)
                    pipe.zadd(Keys.CODE_BATCHES, {batch.id: now})
                    code_expiry = int(valid_until) + CODE_KEY_GRACE_S
                    for code in codes:
                        code_key = Keys.code(code_id(code, key))
                        pipe.hset(code_key, mapping={"batch": batch.id, "uses_left": uses})
                        pipe.expireat(code_key, code_expiry)
                    pipe.execute()
                except redis.WatchError:
                    continue
            return batch, codes
        raise StoreError(f"create_code_batch: no free batch id after 8 attempts "
                         f"under {Keys.CODE_BATCH_PREFIX}")

    @_redis_errors
    def redeem_code(self, code: str, key: bytes, now: float) -> Redemption:
        """Use one use of ``code`` (as typed) atomically, or say why it is refused."""
        compact = normalize_code(code)
        if compact is None:
            return Redemption(ok=False, reason="unknown")
        answer = self._script(self._REDEEM_LUA)(
            keys=[Keys.code(code_id(compact, key))], args=[repr(now), Keys.CODE_BATCH_PREFIX])
        reason = str(answer[0])
        batch = str(answer[1]) if len(answer) > 1 else ""
        if reason != "ok":
            return Redemption(ok=False, reason=reason, batch=batch)
        session = str(answer[2]) if len(answer) > 2 else ""
        plan = str(answer[3]) if len(answer) > 3 else ""
        return Redemption(ok=True, batch=batch, session_s=int(session) if session else None,
                          plan=plan)

    @_redis_errors
    def list_code_batches(self) -> list[CodeBatch]:
        """Every batch still kept, oldest first, with its redemptions and codes used up."""
        ids = list(self.client.zrange(Keys.CODE_BATCHES, 0, -1))
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for batch_id in ids:
            pipe.hgetall(Keys.code_batch(batch_id))
        batches, gone = [], []
        for batch_id, fields in zip(ids, pipe.execute(), strict=True):
            if not fields:
                gone.append(batch_id)  # its hash expired after BATCH_RETENTION_S
                continue
            batches.append(_code_batch(batch_id, fields))
        if gone:
            self.client.zrem(Keys.CODE_BATCHES, *gone)
        return batches

    @_redis_errors
    def revoke_code_batch(self, batch_id: str) -> bool:
        """Refuse every code of a batch from now on; False if there is no such batch."""
        if not is_batch_id(batch_id):
            return False
        return bool(self._script(self._REVOKE_LUA)(keys=[Keys.code_batch(batch_id)]))

    @_redis_errors
    def code_failures(self, client_ip: str) -> int:
        """Wrong codes tried by this client address in its current window."""
        key = Keys.code_failures(self.keys.gateway_id, _canonical_ip(client_ip))
        return int(self.client.get(key) or 0)

    @_redis_errors
    def note_code_failure(self, client_ip: str, window_s: int = 600) -> int:
        """Count one wrong code for this client address; return its count in the window.

        The window starts at the first failure (a fixed window): the counter
        expires ``window_s`` later, whatever happens meanwhile.
        """
        if window_s < 1:
            raise ValueError(f"window_s must be at least 1, got {window_s}")
        failures_key = Keys.code_failures(self.keys.gateway_id, _canonical_ip(client_ip))
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(failures_key)
        pipe.expire(failures_key, window_s, nx=True)  # only the first failure sets it
        count, _ = pipe.execute()
        return int(count)

    @_redis_errors
    def claim_nonce(self, nonce: str, ttl_s: int) -> bool:
        """Mark a hand-off nonce used for ``ttl_s``; False when it already was (a replay)."""
        if not 1 <= len(nonce) <= 64 or not all(c.isascii() and (c.isalnum() or c in "-_")
                                                for c in nonce):
            raise ValueError("a nonce is 1 to 64 URL-safe base64 characters")
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be at least 1, got {ttl_s}")
        return bool(self.client.set(Keys.handoff_nonce(nonce), "1", nx=True, ex=ttl_s))


    # --- hand-off contexts (central portal) ----------------------------------------------

    @_redis_errors
    def save_handoff_context(self, gateway_id: str, ip: str, ttl_s: int,
                             accepted: bool = False) -> str:
        """Remember a verified hand-off (or, ``accepted``, one already used to accept);
        returns the id the browser's cookie carries."""
        context_id = secrets.token_urlsafe(24)
        self.client.set(Keys.handoff_context(context_id),
                        json.dumps({"gw": gateway_id, "ip": ip, "accepted": accepted}),
                        ex=ttl_s)
        return context_id

    @_redis_errors
    def handoff_context(self, context_id: str) -> dict[str, str] | None:
        """The hand-off a browser's id names, if it is still valid."""
        if not re.fullmatch(r"[A-Za-z0-9_-]{16,64}", context_id or ""):
            return None
        text = self.client.get(Keys.handoff_context(context_id))
        if not text:
            return None
        context = json.loads(text)
        return context if isinstance(context, dict) else None

    @_redis_errors
    def drop_handoff_context(self, context_id: str) -> None:
        """Forget a hand-off (at acceptance: a copied cookie cannot accept again)."""
        if re.fullmatch(r"[A-Za-z0-9_-]{16,64}", context_id or ""):
            self.client.delete(Keys.handoff_context(context_id))

    # =========================================================================================
    # The administration console: accounts, login failures, sessions, code sheets (section
    # "users"), and the splash content it edits (section "content"). Town-wide keys.
    # =========================================================================================

    @_redis_errors
    def admin_users(self) -> list[User]:
        """Every console account, by name."""
        names = sorted(self.client.smembers(Keys.ADMIN_USERS))
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(Keys.admin_user(name))
        return [User.from_fields(name, fields)
                for name, fields in zip(names, pipe.execute(), strict=True) if fields]

    @_redis_errors
    def admin_user(self, name: str) -> User | None:
        """The account called ``name``, or None (also for a name that cannot be one)."""
        if name_problem(name) is not None:
            return None
        fields = self.client.hgetall(Keys.admin_user(name))
        return User.from_fields(name, fields) if fields else None

    @_redis_errors
    def add_admin_user(self, user: User) -> bool:
        """Create an account; False when the name is taken."""
        key = Keys.admin_user(user.name)
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                if pipe.exists(key):
                    return False
                pipe.multi()
                pipe.hset(key, mapping=user.to_fields())
                pipe.sadd(Keys.ADMIN_USERS, user.name)
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    @_redis_errors
    def set_admin_password(self, name: str, password_hash: str, now: float,
                           new_generation: bool = True) -> bool:
        """Store a new hash for an existing account; False when there is none.

        ``new_generation`` ends the account's open sessions (a password change);
        false for a rehash with new parameters at login.
        """
        key = Keys.admin_user(name)
        fields = {"hash": password_hash}
        if new_generation:
            fields.update(changed_at=repr(now), generation=secrets.token_hex(8))
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                if not pipe.exists(key):
                    return False
                pipe.multi()
                pipe.hset(key, mapping=fields)
                if new_generation:
                    pipe.delete(Keys.admin_failures("account", name))
                pipe.execute()
            except redis.WatchError:
                return False
        return True

    @_redis_errors
    def note_admin_login(self, name: str, now: float) -> None:
        """Record a successful login: the time, and the account's failures forgotten."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(Keys.admin_user(name), "last_login_at", repr(now))
        pipe.delete(Keys.admin_failures("account", name))
        pipe.execute()

    @_redis_errors
    def remove_admin_user(self, name: str) -> bool:
        """Delete an account (its sessions end at their next request); False if absent."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(Keys.admin_user(name))
        pipe.srem(Keys.ADMIN_USERS, name)
        pipe.delete(Keys.admin_failures("account", name))
        deleted, _removed, _failures = pipe.execute()
        return bool(deleted)

    @_redis_errors
    def admin_failures(self, name: str, address: str) -> tuple[int, int]:
        """Wrong passwords counted in the current window for this name and this address."""
        account, source = self.client.mget([Keys.admin_failures("account", name[:64]),
                                            Keys.admin_failures("address", address)])
        return int(account or 0), int(source or 0)

    @_redis_errors
    def note_admin_failure(self, name: str, address: str, window_s: int,
                           count_account: bool = True) -> tuple[int, int]:
        """Count one wrong password for the name and the address; return both counts.

        Each counter expires ``window_s`` after its last count: failures less than
        ``window_s`` apart add up, and a lock ends ``window_s`` after the failure
        that set it. Attempts on a locked account are counted for the address only
        (``count_account`` false), so they do not keep the account locked.
        """
        if window_s < 1:
            raise ValueError(f"window_s must be at least 1, got {window_s}")
        account = Keys.admin_failures("account", name[:64])
        source = Keys.admin_failures("address", address)
        pipe = self.client.pipeline(transaction=True)
        if count_account:
            pipe.incr(account)
            pipe.expire(account, window_s)
        else:
            pipe.get(account)
            pipe.ttl(account)
        pipe.incr(source)
        pipe.expire(source, window_s)
        account_count, _, source_count, _ = pipe.execute()
        return int(account_count or 0), int(source_count)

    @_redis_errors
    def save_admin_session(self, session_id: str, info: Mapping[str, Any], ttl_s: int) -> None:
        """Open a console session for ``ttl_s``."""
        self.client.set(Keys.admin_session(session_id),
                        json.dumps(dict(info), separators=(",", ":")), ex=ttl_s)

    @_redis_errors
    def admin_session(self, session_id: str) -> dict[str, Any] | None:
        """The console session ``session_id`` names, if it is still open."""
        if not re.fullmatch(r"[A-Za-z0-9_-]{32,64}", session_id or ""):
            return None
        text = self.client.get(Keys.admin_session(session_id))
        if not text:
            return None
        try:
            info = json.loads(text)
        except ValueError:
            return None
        return info if isinstance(info, dict) else None

    @_redis_errors
    def drop_admin_session(self, session_id: str) -> None:
        """Close a console session (logout)."""
        if re.fullmatch(r"[A-Za-z0-9_-]{32,64}", session_id or ""):
            self.client.delete(Keys.admin_session(session_id))

    @_redis_errors
    def save_code_sheet(self, sheet_id: str, sealed: str, ttl_s: int) -> None:
        """Keep an encrypted code sheet for ``ttl_s`` (its key is not given to Redis)."""
        self.client.set(Keys.code_sheet(sheet_id), sealed, ex=ttl_s)

    @_redis_errors
    def take_code_sheet(self, sheet_id: str) -> str | None:
        """The encrypted code sheet, deleted in the same step (single use); None if gone."""
        if not re.fullmatch(r"[A-Za-z0-9_-]{16,64}", sheet_id or ""):
            return None
        text = self.client.getdel(Keys.code_sheet(sheet_id))
        return None if text is None else str(text)

    # --- splash content (portal/content.py reads it; docs/admin.md) ---------------------

    @_redis_errors
    def content_version(self) -> str | None:
        """The token naming the current edited content; None when nothing was ever edited."""
        version = self.client.get(Keys.CONTENT_VERSION)
        return None if version is None else str(version)

    @_redis_errors
    def content_snapshot(self) -> tuple[str | None, dict[str, str]]:
        """The version and every edited tile (id -> JSON), read together in one step."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(Keys.CONTENT_VERSION)
        pipe.hgetall(Keys.CONTENT_TILES)
        version, tiles = pipe.execute()
        return (None if version is None else str(version)), dict(tiles)

    @_redis_errors
    def save_content_tile(self, tile_id: str, body: str) -> None:
        """Create or replace an edited tile (JSON) and give the content a new version."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(Keys.CONTENT_TILES, tile_id, body)
        pipe.set(Keys.CONTENT_VERSION, secrets.token_hex(16))
        pipe.execute()

    @_redis_errors
    def delete_content_tile(self, tile_id: str) -> bool:
        """Delete an edited tile and give the content a new version; False if absent."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(Keys.CONTENT_TILES, tile_id)
        pipe.set(Keys.CONTENT_VERSION, secrets.token_hex(16))
        deleted, _ = pipe.execute()
        return bool(deleted)

    # =========================================================================================
    # Council reports: daily aggregates rolled up from each gateway's accounting stream
    # (parvis/reports/rollup.py, docs/reports.md). Town-wide keys, aggregates only.
    # =========================================================================================

    @_redis_errors
    def device_key(self, month: str, ttl_s: int) -> bytes | None:
        """The device key of ``month``, made on first use to expire ``ttl_s`` from now.

        None once ``ttl_s`` is not positive (the month is over: its key never comes
        back) or if it just expired.
        """
        if ttl_s <= 0:
            return None
        key = Keys.report_device_key(month)
        self.client.set(key, secrets.token_hex(32), nx=True, ex=ttl_s)
        value = self.client.get(key)
        return bytes.fromhex(value) if value else None

    @_redis_errors
    def device_key_months(self) -> list[str]:
        """The months whose device key still exists."""
        prefix = Keys.REPORT_DEVICE_KEY_PREFIX
        return sorted(str(key)[len(prefix):]
                      for key in self.client.scan_iter(match=f"{prefix}*", count=1000))

    @_redis_errors
    def destroy_device_key(self, month: str) -> bool:
        """Delete the device key of ``month``; False if it was already gone."""
        return bool(self.client.delete(Keys.report_device_key(month)))

    @_redis_errors
    def report_cursor(self) -> str | None:
        """The id of this gateway's last accounting record rolled up, or None."""
        value = self.client.hget(Keys.report_cursor(self.keys.gateway_id), "id")
        return str(value) if value else None

    @_redis_errors
    def note_records_lost(self) -> int:
        """Records trimmed from the stream unread by the roll-up since the last call.

        Counted once: they are added to the cursor's ``lost`` field.
        """
        try:
            info = self.client.xinfo_stream(self.keys.accounting)
        except redis.ResponseError as error:
            if "no such key" in str(error).lower():
                return 0
            raise
        gone = int(info.get("entries-added", 0)) - int(info.get("length", 0))
        cursor_key = Keys.report_cursor(self.keys.gateway_id)
        read, lost = self.client.hmget(cursor_key, "read", "lost")
        new = gone - int(read or 0) - int(lost or 0)
        if new > 0:
            self.client.hincrby(cursor_key, "lost", new)
        return max(0, new)

    # Reads up to ARGV[2] entries after ARGV[1] and returns {how many, the last id, the
    # entries that are not interim records}: interim records (most of the stream) never
    # cross the socket, which makes a roll-up several times faster than reading them.
    _ROLLUP_READ_LUA = """
    local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
    local kept = {}
    for _, entry in ipairs(entries) do
        local fields, interim = entry[2], false
        for i = 1, #fields, 2 do
            if fields[i] == 'type' then interim = fields[i + 1] == 'interim' break end
        end
        if not interim then kept[#kept + 1] = entry end
    end
    if #entries == 0 then return {0, '', kept} end
    return {#entries, entries[#entries][1], kept}
    """

    @_redis_errors
    def rollup_step(self, count: int, fold: Callable[[list[Record]], Fold]) -> RollupStep:
        """Roll up the next ``count`` records after this gateway's cursor, exactly once.

        Reads them (interim records are left in Redis: no figure needs them),
        has ``fold`` turn the others into cell deltas, then writes the deltas and
        moves the cursor in one MULTI/EXEC, under WATCH of the cursor: a roll-up
        that runs twice, or two at once, never counts a record twice.
        """
        cursor_key = Keys.report_cursor(self.keys.gateway_id)
        for _attempt in range(5):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(cursor_key)
                    cursor = str(pipe.hget(cursor_key, "id") or "0-0")
                    read, last, entries = pipe.eval(self._ROLLUP_READ_LUA, 1,
                                                    self.keys.accounting, f"({cursor}", count)
                    if not read:
                        pipe.unwatch()
                        return RollupStep(0, cursor, Fold(), 0)
                    records, malformed = [], 0
                    for entry_id, flat in entries:
                        entry = dict(zip(flat[::2], flat[1::2], strict=True))
                        try:
                            records.append(Record.from_fields(str(entry_id), entry))
                        except ValueError:
                            malformed += 1  # a record no roll-up can read: pass over it
                    done = fold(records)
                    pipe.multi()
                    self._write_fold(pipe, done)
                    pipe.hset(cursor_key, "id", str(last))
                    pipe.hincrby(cursor_key, "read", int(read))
                    pipe.execute()
                    return RollupStep(int(read), str(last), done, malformed)
                except redis.WatchError:
                    continue
        raise StoreError(f"rollup_step: {cursor_key} kept changing (another roll-up running?)")

    def _write_fold(self, pipe: Any, fold: Fold) -> None:
        months = set()
        for cell, delta in fold.cells.items():
            for name, value in delta.stats.items():
                if value:
                    pipe.hincrby(Keys.report_day(cell), name, value)
            for minute, step in delta.concurrency.items():
                if step:
                    pipe.hincrby(Keys.report_concurrency(cell), str(minute), step)
            if delta.devices:
                pipe.pfadd(Keys.report_devices(cell), *sorted(delta.devices))
            pipe.sadd(Keys.report_cells(cell.month), cell.member)
            months.add(cell.month)
        if months:
            pipe.sadd(Keys.REPORT_MONTHS, *sorted(months))

    @_redis_errors
    def report_months(self) -> list[str]:
        """Every month with aggregates, oldest first."""
        return sorted(self.client.smembers(Keys.REPORT_MONTHS))

    @_redis_errors
    def report_cells(self, month: str) -> list[Cell]:
        """The cells of ``month`` (every day, gateway and zone with aggregates)."""
        cells = []
        for member in self.client.smembers(Keys.report_cells(month)):
            try:
                cells.append(Cell.from_member(str(member)))
            except ValueError:
                continue
        return sorted(cells)

    @_redis_errors
    def report_cell_data(self, cells: Sequence[Cell],
                         concurrency: bool = True) -> list[CellData]:
        """The counters (and, if asked, concurrency steps) of each cell."""
        pipe = self.client.pipeline(transaction=False)
        for cell in cells:
            pipe.hgetall(Keys.report_day(cell))
            if concurrency:
                pipe.hgetall(Keys.report_concurrency(cell))
        replies = iter(pipe.execute())
        out = []
        for cell in cells:
            stats = {name: int(value) for name, value in next(replies).items()}
            steps = ({int(minute): int(step) for minute, step in next(replies).items()}
                     if concurrency else {})
            out.append(CellData(cell, stats, steps))
        return out

    @_redis_errors
    def count_devices(self, groups: Sequence[Sequence[Cell]]) -> list[int]:
        """Estimated distinct devices over each group of cells (PFCOUNT of their union)."""
        pipe = self.client.pipeline(transaction=False)
        for group in groups:
            if group:
                pipe.pfcount(*[Keys.report_devices(cell) for cell in group])
        counts = iter(pipe.execute())
        return [int(next(counts)) if group else 0 for group in groups]


def new_consumer_name() -> str:
    """A consumer name for this netctl: stable per host so a restart reclaims its pending work."""
    return f"netctl@{socket.gethostname()}"


def _retention_floor_ms(retention_s: int, now: float | None) -> int:
    """The stream id milliseconds below which accounting records are past retention."""
    if retention_s < 1:
        raise ValueError(f"retention_s must be at least 1, got {retention_s}")
    return max(0, int(((time.time() if now is None else now) - retention_s) * 1000))


# --- access codes: helpers of the section above ---------------------------------------------


def _canonical_ip(client_ip: str) -> str:
    """One spelling per address, so ``fd77::5`` and ``FD77:0::5`` share a failure counter."""
    return ipaddress.ip_address(client_ip).compressed


def _code_batch(batch_id: str, fields: Mapping[str, str]) -> CodeBatch:
    """A CodeBatch from its Redis hash."""
    session = fields.get("session_s", "")
    return CodeBatch(
        id=batch_id, created_at=float(fields["created_at"]),
        valid_until=float(fields["valid_until"]), uses=int(fields["uses"]),
        session_s=int(session) if session else None, note=fields.get("note", ""),
        count=int(fields["count"]), redemptions=int(fields.get("redemptions", 0)),
        codes_used_up=int(fields.get("used_up", 0)), revoked=fields.get("revoked") == "1",
        plan=fields.get("plan", ""))
