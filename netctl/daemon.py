"""The gateway daemon: applies commands, sweeps counters and expiry, reconciles the kernel.

One thread does the work (the DHCP sniffer only queues sightings, the idle
prober only probes). Each burst of commands read from the stream becomes one
nftables transaction (with the clients' HTB classes set just before it); the
state it changes and the acknowledgements are written to Redis together
afterwards, only once the kernel has accepted the batch. A command that fails
is acknowledged with its reason and never stops the loop.

Memory is the truth while netctl runs: when Redis is away, sweeps go on
(expiry, quotas, accounting), accounting records wait in the disk spool, and
everything is written back when Redis returns.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import logging
import secrets
import threading
import time
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netctl import conntrack, netlink, ruleset
from netctl.health import HealthSampler
from netctl.metrics import NetctlMetrics
from netctl.nft import Nft, NftError
from netctl.prober import IdleProber
from netctl.shaper import (
    ClientRate,
    MinorPool,
    Shaper,
    ShaperError,
    applied_rate,
    classid,
    needs_class,
)
from netctl.spool import Spool
from parvis.core import lifecycle
from parvis.core.accounting import (
    Record,
    RecordIds,
    RecordType,
    interim_due,
    interim_record,
    schedule_next_interim,
    start_record,
    stop_record,
)
from parvis.core.commands import MAX_TIMEOUT_S, Command, CommandError, Result, Verb, parse_command
from parvis.core.config import Config, PlanConfig
from parvis.core.leases import Lease, lease_event, parse_leases
from parvis.core.lifecycle import Action, Event
from parvis.core.reconcile import Plan, plan
from parvis.core.sessions import (
    Counter,
    Element,
    EndReason,
    Session,
    account,
    forget_element,
    quota_used,
    roll_quota_day,
    shift_times,
)
from parvis.core.units import format_rate, format_size
from parvis.reports.rollup import roll_up
from parvis.store import Store, StoreError, new_consumer_name

log = logging.getLogger(__name__)

MAX_IPV6_PER_CLIENT = 8  # privacy addresses rotate; keep the newest few
MAX_AUTHORIZE_AGE_S = 120  # an authorize older than this was given up by its sender
CLOCK_STEP_TOLERANCE_S = 30  # wall-clock moves larger than this (vs. monotonic) are steps
COMMAND_BURST = 2000  # most commands taken from the stream at once (one transaction)
SEEN_PRUNE_INTERVAL_S = 600
ENDED_NOTICE_TTL_S = 12 * 3600  # how long the portal can explain why a session ended

Json = dict[str, Any]


@dataclass
class Change:
    """What a burst of commands changes, kept aside until the kernel accepts it."""

    sessions: dict[str, Session | None] = field(default_factory=dict)  # MAC -> new or ended
    ended: dict[str, tuple[Session, EndReason]] = field(default_factory=dict)
    blocked: dict[str, bool] = field(default_factory=dict)
    trusted: dict[str, bool] = field(default_factory=dict)
    nft: list[Json] = field(default_factory=list)
    cut_addresses: list[str] = field(default_factory=list)
    replaced: list[Session] = field(default_factory=list)  # every session _end() touched
    started: list[Session] = field(default_factory=list)  # new sessions (start records)
    # HTB classes to set before the nft batch, and to remove once it landed.
    classes_set: list[tuple[int, ClientRate]] = field(default_factory=list)
    classes_removed: list[int] = field(default_factory=list)
    minors_allocated: list[int] = field(default_factory=list)
    # Classes changed in place before the batch: (minor, rate to restore on failure).
    classes_undo: list[tuple[int, ClientRate]] = field(default_factory=list)


class Gateway:
    """netctl's state and work for one gateway."""

    def __init__(
        self,
        config: Config,
        store: Store,
        nft: Nft,
        ipv4_neighbours: Callable[[], dict[str, str]] | None = None,
        ipv6_neighbours: Callable[[], list[tuple[str, str]]] | None = None,
        probe_macs: Callable[[list[str]], dict[str, str]] | None = None,
        cut_connections: Callable[[list[str]], object] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        shaper: Shaper | None = None,
        prober: IdleProber | None = None,
        spool: Spool | None = None,
        read_leases: Callable[[], str | None] | None = None,
        metrics: NetctlMetrics | None = None,
    ) -> None:
        self.config = config
        # Prometheus figures (netctl.metrics): aggregates only, never an address.
        self.metrics = metrics or NetctlMetrics(config)
        self.store = store
        self.nft = nft
        self.clock = clock
        self.monotonic = monotonic
        # Wall and monotonic clocks at the last sweep: a step of the wall clock
        # (NTP at boot on a gateway without a battery-backed clock) shows as a
        # difference between the two, and must not end or extend every session.
        self._clocks: tuple[float, float] | None = None
        lan = config.gateway.lan_interface
        self.ipv4_neighbours = ipv4_neighbours or (lambda: netlink.ipv4_neighbours(lan))
        self.ipv6_neighbours = ipv6_neighbours or (lambda: netlink.ipv6_neighbours(lan))
        self.probe_macs = probe_macs or (lambda ips: {})
        self.cut_connections = cut_connections or conntrack.cut_now
        # Set when Redis or the kernel failed mid-change: memory may no longer match
        # Redis, so the next pass reloads from Redis and reconciles the kernel.
        self.resync_needed = False
        # Neighbour tables read at most once per burst of commands, not once per command.
        self._burst_neighbours4: dict[str, str] | None = None
        self._burst_neighbours6: list[tuple[str, str]] | None = None
        self.sessions: dict[str, Session] = {}
        self.mac_by_ipv4: dict[str, str] = {}  # index kept in step with self.sessions
        self.blocked: set[str] = set()
        self.trusted: set[str] = set()
        self.consumer = new_consumer_name()
        self.stats: dict[str, float] = {"commands_ok": 0, "commands_failed": 0, "sweeps": 0,
                                        "sweep_ms": 0.0, "records_spooled": 0,
                                        "records_written": 0, "records_duplicate": 0}
        # Shaping: the HTB classes of shaped clients (netctl.shaper), set up on
        # first need so that a gateway without any rate has no qdisc at all.
        self.shaper = shaper
        self._shaping_ready = False
        self.minors = MinorPool()
        self.prober = prober
        self.spool = spool or Spool(
            Path(config.accounting.spool_dir) / f"{config.gateway.id}.jsonl")
        self.record_ids = RecordIds()
        self.read_leases = read_leases or _lease_file_reader(config.gateway.dhcp_leases_file)
        self._lease_missing: set[str] = set()  # MACs whose lease was missing at the last read
        self.zone = (zoneinfo.ZoneInfo(config.gateway.timezone) if config.gateway.timezone
                     else None)
        # Bytes each device used today in sessions that ended (daily quotas).
        self.usage_day = ""
        self.usage: dict[str, int] = {}
        self._usage_changed: set[str] = set()
        # Memory holds changes Redis has not got yet (it was unreachable).
        self.dirty = False
        self._outage_since: float | None = None
        # How many rules each chain must hold: a chain flushed or edited by hand shows
        # as a different count at the next sweep, and the table is rebuilt.
        self._rule_counts = {chain: len(rules) for chain, rules in ruleset.rules(config).items()}

    # --- start-up and reconcile ---------------------------------------------------------------

    @property
    def all_blocked(self) -> set[str]:
        return self.blocked | set(self.config.clients.blocked_macs)

    @property
    def all_trusted(self) -> set[str]:
        return self.trusted | set(self.config.clients.trusted_macs)

    def start(self) -> None:
        """Load state from Redis and make the kernel match it in one transaction.

        Records left in the spool (netctl stopped while Redis was away) are sent
        first; a session whose stop record is among them ended meanwhile, even
        though Redis still holds it.
        """
        self.store.ensure_group()
        self.record_ids.advance_past(self.store.last_record_id())
        self.record_ids.advance_past(self.spool.last_id())
        ended_meanwhile = {r.session_id for r in self.spool.pending()
                           if r.type is RecordType.STOP}
        self._send_records()
        sessions = self.store.sessions()
        gone = [s for s in sessions.values() if s.session_id and s.session_id in ended_meanwhile]
        if gone:
            self.store.delete_sessions(gone)
            log.info("sessions that ended while Redis was away count=%d", len(gone))
        self.sessions = {mac: s for mac, s in sessions.items() if s not in gone}
        self.mac_by_ipv4 = {s.ipv4: s.mac for s in self.sessions.values()}
        self.blocked = self.store.mac_set("blocked")
        self.trusted = self.store.mac_set("trusted")
        self.usage_day = self._day(self.clock())
        self.usage = self.store.usage(self.usage_day)
        self.minors = MinorPool(s.class_minor for s in self.sessions.values() if s.class_minor)
        self.dirty = False
        kept, added, removed = self.reconcile(rebuild_table=True)
        self._reconcile_shaping()
        self.metrics.redis_reachable(True)
        log.info("netctl started gateway=%s sessions=%d kept=%d added=%d removed=%d",
                 self.config.gateway.id, len(self.sessions), kept, added, removed)

    def reconcile(self, rebuild_table: bool) -> tuple[int, int, int]:
        """Make the kernel hold exactly the sessions' elements; returns (kept, added, removed).

        Elements already in the kernel are kept with their counters; their bytes
        counted while netctl was away are folded into the sessions first.
        """
        now = self.clock()
        actual = (self.nft.client_elements() if self.nft.table_exists() else None) or {}
        self._account_all(self.sessions.values(), actual, now)
        ended = self._end_due(now)
        records = [self._stop(session, reason, now) for session, reason in ended.values()]
        changes = plan(self.sessions.values(), actual, now)
        batch: list[Json] = []
        if rebuild_table:
            batch += ruleset.build_table(self.config, self.all_blocked, self.all_trusted,
                                         existing_sets=self.nft.set_names())
        batch += ruleset.delete_client_elements(changes.delete)
        batch += ruleset.add_client_elements(changes.add)
        try:
            self.nft.apply(batch)
        except NftError as error:
            if not rebuild_table:
                raise
            # An incompatible table (an older layout, a hand edit) cannot be
            # refreshed in place: replace it, in the same single transaction so
            # the gateway is never open, losing only counters.
            log.warning("replacing table inet parvis error=%s", error)
            actual = {}
            changes = plan(self.sessions.values(), actual, now)
            self.nft.apply(ruleset.delete_table()
                           + ruleset.build_table(self.config, self.all_blocked, self.all_trusted)
                           + ruleset.add_client_elements(changes.add))
        self._forget_recreated(element for element, _ in changes.add)
        self._release_minors(s.class_minor for s, _ in ended.values())
        self._spool(records)
        self._persist(self.sessions.values(), ended)
        self.cut_connections([a for s, _ in ended.values() for a in (s.ipv4, *s.ipv6)])
        return len(actual) - len(changes.delete), len(changes.add), len(changes.delete)

    def _reconcile_shaping(self) -> None:
        """Make the HTB classes and the shape maps match the sessions (at start)."""
        if self.shaper is None:
            return
        now = self.clock()
        shaped = [s for s in self.sessions.values()
                  if s.class_minor or self._needs_class(ClientRate(s.down_bps, s.up_bps))]
        if not shaped:
            # No qdisc at all until a client needs one: unshaped traffic pays nothing.
            self.shaper.remove_all()
            self._shaping_ready = False
            return
        self._ensure_shaping()
        kernel = self.shaper.classes()
        batch: list[Json] = []
        caps = (self.config.shaping.uplink_down_bps, self.config.shaping.uplink_up_bps)
        repairs: list[tuple[int, ClientRate]] = []
        for session in shaped:
            rate = ClientRate(session.down_bps, session.up_bps)
            if not self._needs_class(rate):
                # Shaped once, no longer (the cap was taken out of the configuration).
                target = classid(session.class_minor)
                batch += ruleset.delete_shape_elements(
                    (a, target) for a in (session.ipv4, *session.ipv6))
                self.minors.release(session.class_minor)
                session.class_minor = 0
                continue
            if not session.class_minor:
                session.class_minor = self.minors.allocate()
                batch += ruleset.add_shape_elements(self._shape_entries(session, now))
            if kernel.get(session.class_minor) != applied_rate(rate, *caps):
                repairs.append((session.class_minor, rate))
        # Classes without a session stay, parked (see _release_minors): the pool hands
        # them out again before any new minor.
        self.shaper.set_clients(repairs)
        # Maps: what the sessions need, added where missing (adding an element that is
        # there with the same class is not an error); stale entries expire on their own.
        mapped = self.nft.shape_elements()
        shaped = [s for s in shaped if s.class_minor]
        for session in shaped:
            entries = [e for e in self._shape_entries(session, now)
                       if mapped.get(e[0]) != e[1]]
            stale = [(a, mapped[a]) for a, _, _ in entries if a in mapped]
            batch += ruleset.delete_shape_elements(stale) + ruleset.add_shape_elements(entries)
        if batch:
            self.nft.apply(batch)
        self._persist(self.sessions.values(), {})

    # --- shaping --------------------------------------------------------------------------------

    def _needs_class(self, rate: ClientRate) -> bool:
        return self.shaper is not None and needs_class(
            rate, self.config.shaping.uplink_down_bps, self.config.shaping.uplink_up_bps)

    def _ensure_shaping(self) -> None:
        if self.shaper is not None and not self._shaping_ready:
            self.shaper.ensure()
            self._shaping_ready = True

    @staticmethod
    def _shape_entries(session: Session, now: float) -> list[tuple[str, str, int]]:
        """The shape map entries of a shaped session: (address, classid, timeout)."""
        if not session.class_minor:
            return []
        target = classid(session.class_minor)
        timeout_s = session.remaining_s(now)
        return [(address, target, timeout_s) for address in (session.ipv4, *session.ipv6)]

    def _apply_classes(self, change: Change) -> None:
        """Set the classes a change needs before its nft batch goes in."""
        if not change.classes_set or self.shaper is None:
            return
        self._ensure_shaping()
        self.shaper.set_clients(change.classes_set)

    def _undo_classes(self, change: Change) -> None:
        """The nft batch was refused: take back what _apply_classes did."""
        if self.shaper is None:
            return
        try:
            self.shaper.set_clients(change.classes_undo)
        except ShaperError as error:
            self.metrics.error("shaper")
            log.warning("could not undo a class change error=%s", error)
        self._release_minors(change.minors_allocated)

    def _release_minors(self, minors: Iterable[int]) -> None:
        """Give back the classes of sessions that ended or lost them (their map entries went).

        The class itself stays in the kernel, parked: nothing is classified into it
        any more, and the next shaped client takes it over with a change in place.
        Creating or deleting an HTB class walks every class of the qdisc in this
        kernel (tc_bind_tclass): at 10,000 clients each costs milliseconds, a change
        microseconds. ``parvis-netctl --flush`` removes them all.
        """
        for minor in minors:
            if minor:
                self.minors.release(minor)

    def _apply(self, change: Change) -> None:
        """Classes first, then the one nft transaction; classes undone if it is refused."""
        try:
            self._apply_classes(change)
        except ShaperError as error:
            self._undo_classes(change)
            raise NftError(f"traffic shaping refused a class: {error}", change.nft) from error
        try:
            self.nft.apply(change.nft)
        except NftError:
            self._undo_classes(change)
            raise

    # --- accounting -----------------------------------------------------------------------------

    def _record(self, make: Callable[..., Record], session: Session, now: float,
                *reason: EndReason) -> Record:
        return make(session, *reason, self.config.gateway.id, self.record_ids.next_id(now), now)

    def _stop(self, session: Session, reason: EndReason, now: float) -> Record:
        """Close a session's accounting; note why it ended for the portal and the quota."""
        self._note_usage(session, now)
        self.metrics.session_ended(reason.value)
        return self._record(stop_record, session, now, reason)

    def _spool(self, records: list[Record]) -> None:
        """Records go to disk first: from there they reach Redis exactly once."""
        if records:
            self.spool.append(records)
            self.stats["records_spooled"] += len(records)
            self.metrics.records(spooled=len(records))

    def _send_records(self) -> None:
        """Send what the spool holds to the accounting stream, then clear it."""
        pending = self.spool.pending()
        if not pending:
            return
        retention_s = self.config.accounting.retention_days * 86400
        appended = self.store.append_records(pending, retention_s)
        if appended.stale:
            # Their ids were taken by another writer: the same records under new ids.
            now = self.clock()
            again = [dataclasses.replace(r, id=self.record_ids.next_id(now))
                     for r in appended.stale]
            self.spool.append(again)
            pending += again
            log.warning("re-issued %d accounting records under new ids", len(again))
            appended = appended._replace(
                written=appended.written + self.store.append_records(again, retention_s).written)
        # Confirmed, yet kept a few seconds on disk: Redis may lose its last second
        # of writes in a power cut, and a restart then sends them again.
        self.spool.confirm(pending[-1].id)
        self.stats["records_written"] += appended.written
        self.stats["records_duplicate"] += appended.duplicates
        self.metrics.records(written=appended.written, duplicate=appended.duplicates)

    # --- days and quotas -----------------------------------------------------------------------

    def _local(self, now: float) -> datetime.datetime:
        moment = datetime.datetime.fromtimestamp(now, tz=datetime.UTC)
        return moment.astimezone(self.zone) if self.zone else moment.astimezone()

    def _day(self, now: float) -> str:
        """The town's date at ``now``: quota days start at local midnight."""
        return self._local(now).date().isoformat()

    def _next_midnight(self, now: float) -> float:
        local = self._local(now)
        tomorrow = datetime.datetime.combine(local.date() + datetime.timedelta(days=1),
                                             datetime.time(), tzinfo=local.tzinfo)
        return tomorrow.timestamp()

    def _note_usage(self, session: Session, now: float) -> None:
        if session.quota_day == self.usage_day:
            self.usage[session.mac] = quota_used(session)
            self._usage_changed.add(session.mac)

    def _new_day(self, day: str) -> None:
        self.usage_day = day
        self.usage = {}
        self._usage_changed.clear()
        for session in self.sessions.values():
            roll_quota_day(session, day)
        log.info("new quota day %s; %d sessions start it afresh", day, len(self.sessions))

    def _ended_notice(self, session: Session, reason: EndReason, now: float) -> dict[str, Any]:
        """What the portal tells the resident about a session that ended."""
        reconnect_at = (self._next_midnight(now) if reason is EndReason.QUOTA_EXCEEDED
                        else None)
        return {"reason": reason.value, "ended_at": now, "reconnect_at": reconnect_at,
                "plan": session.plan, "quota_bytes": session.quota_bytes,
                "hard_timeout_s": round(session.expires_at - session.started_at),
                "idle_timeout_s": session.idle_timeout_s}

    def held_addresses(self, addresses: list[str]) -> set[str]:
        """Those of ``addresses`` that a live session holds (any thread may ask)."""
        held = {a for a in addresses if a in self.mac_by_ipv4}
        if any(":" in a for a in addresses):
            # One pass over the sessions for the whole batch, not one per address.
            ipv6 = {a for s in list(self.sessions.values()) for a in s.ipv6}
            held |= {a for a in addresses if a in ipv6}
        return held

    def _account_all(self, sessions: Iterable[Session], readings: dict[Element, Counter],
                     now: float, missing: list[Element] | None = None) -> dict[str, Session]:
        """Fold readings into sessions; the changed ones. Bytes go to the metrics once."""
        changed: dict[str, Session] = {}
        up = down = 0
        for session in sessions:
            before_up, before_down = session.bytes_up, session.bytes_down
            if account(session, readings, now, missing):
                changed[session.mac] = session
                up += session.bytes_up - before_up
                down += session.bytes_down - before_down
        if up or down:
            self.metrics.add_bytes(up, down)
        return changed

    def _owned(self, elements: Iterable[Element]) -> list[tuple[Element, Session]]:
        """Each element with the session it belongs to (elements of no session left out)."""
        pairs: list[tuple[Element, Session]] = []
        by_address: dict[str, Session] | None = None
        for element in elements:
            if element.mac is not None:
                owner = self.sessions.get(element.mac)
            else:
                if by_address is None:  # built once per pass, not once per element
                    by_address = {a: s for s in self.sessions.values()
                                  for a in (s.ipv4, *s.ipv6)}
                owner = by_address.get(element.ip)
            if owner is not None:
                pairs.append((element, owner))
        return pairs

    def _owners(self, elements: Iterable[Element]) -> list[Session]:
        """The sessions these elements belong to (each once)."""
        return list({owner.mac: owner for _, owner in self._owned(elements)}.values())

    def _forget_recreated(self, elements: Iterable[Element]) -> list[Session]:
        """Sessions whose elements were (re-)created at zero forget their last readings."""
        owners: dict[str, Session] = {}
        for element, owner in self._owned(elements):
            forget_element(owner, element)
            owners[owner.mac] = owner
        return list(owners.values())

    # --- commands ------------------------------------------------------------------------------

    def handle_entries(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Apply a burst of stream entries as one transaction and acknowledge each."""
        if not entries:
            return
        self._burst_neighbours4 = None
        self._burst_neighbours6 = None
        now = self.clock()
        results: dict[str, Result] = {}
        verbs: dict[str, str] = {}  # entry -> verb, for the metrics
        parsed: list[tuple[str, Command]] = []
        redis_now: float | None = None  # stream ids carry Redis's clock, not ours
        for entry_id, fields in entries:
            try:
                command = parse_command(fields)
            except CommandError as error:
                results[entry_id] = Result(False, str(error))
                log.warning("refused command id=%s reason=%s", entry_id, error)
                continue
            verbs[entry_id] = command.verb.value
            if command.verb is Verb.AUTHORIZE and redis_now is None:
                redis_now = self.store.server_time()
            age_s = (redis_now or 0.0) - _entry_time(entry_id)
            if command.verb is Verb.AUTHORIZE and age_s > MAX_AUTHORIZE_AGE_S:
                # Its sender gave up long ago (netctl was down): do not open access late.
                results[entry_id] = Result(False, f"expired: sent {age_s:.0f} s ago")
                log.warning("refused command id=%s reason=expired age_s=%.0f", entry_id, age_s)
                continue
            parsed.append((entry_id, command))
        self._probe_unknown(command for _, command in parsed)
        change = Change()
        staged: list[tuple[str, Command, Result]] = []
        for entry_id, command in parsed:
            staged.append((entry_id, command, self._prepare(command, change, now)))
        self._final_readings(change, now)
        try:
            self._apply(change)
        except NftError as error:
            # One bad command must not sink the others: apply them one by one.
            log.warning("batch of %d commands refused, applying one by one error=%s",
                        len(staged), error)
            committed: list[Change] = []
            for entry_id, command, _ in staged:
                single = Change()
                result = self._prepare(command, single, now)
                if result.ok:
                    self._final_readings(single, now)
                    try:
                        self._apply(single)
                    except NftError as single_error:
                        result = Result(False, f"the firewall refused it: {single_error}")
                    else:
                        self._commit(single, now)
                        committed.append(single)
                results[entry_id] = result
            self._finish(entries, results, committed, verbs)
            return
        self._commit(change, now)
        for entry_id, _command, result in staged:
            results[entry_id] = result
        self._finish(entries, results, [change], verbs)

    def _final_readings(self, change: Change, now: float) -> None:
        """Count what the elements of the sessions a change ends hold now, before they go.

        The last sweep may be a second old: without this, what a device moved since
        would be lost with the elements (one read for the whole burst).
        """
        if not change.replaced:
            return
        readings = self.nft.client_elements() or {}
        self._account_all(change.replaced, readings, now)
        for session in change.replaced:
            successor = change.sessions.get(session.mac)
            if successor is not None and successor is not session:
                # The same device at a new address: its session goes on with these counts.
                for name in ("bytes_up", "bytes_down", "packets_up", "packets_down",
                             "last_activity_at"):
                    setattr(successor, name, getattr(session, name))

    def _probe_unknown(self, commands: Iterable[Command]) -> None:
        """ARP-probe, all at once, the addresses of a burst that no neighbour entry names."""
        wanted = [str(c.ip) for c in commands
                  if c.verb is Verb.AUTHORIZE and c.mac is None and c.ip is not None]
        if not wanted:
            return
        neighbours = self._neighbours4()
        unknown = [ip for ip in dict.fromkeys(wanted) if ip not in neighbours]
        if unknown:
            neighbours.update(self.probe_macs(unknown))

    def _neighbours4(self) -> dict[str, str]:
        if self._burst_neighbours4 is None:
            self._burst_neighbours4 = self.ipv4_neighbours()
        return self._burst_neighbours4

    def _finish(self, entries: list[tuple[str, dict[str, str]]], results: dict[str, Result],
                changes: list[Change], verbs: dict[str, str]) -> None:
        """Persist what the kernel accepted and acknowledge every entry, in one MULTI/EXEC.

        If Redis fails here, memory (which matches the kernel) is written back
        when it returns, and the entries, still pending, are read again and
        answered then (applying a command twice changes nothing the second time).
        """
        for entry_id, result in results.items():
            self.stats["commands_ok" if result.ok else "commands_failed"] += 1
            self.metrics.command(verbs.get(entry_id), result.ok)
        try:
            pipe = self.store.pipeline()
            for change in changes:
                self._persist_change(change, pipe)
            self.store.acknowledge(((entry_id, results[entry_id]) for entry_id, _ in entries),
                                   pipe)
            self.store.execute(pipe)
            self._send_records()
        except StoreError:
            self.dirty = True
            raise

    def _current(self, change: Change, mac: str) -> Session | None:
        if mac in change.sessions:
            return change.sessions[mac]
        return self.sessions.get(mac)

    def _find(self, change: Change, ip: str | None, mac: str | None) -> Session | None:
        if mac is not None:
            return self._current(change, mac)
        # The burst's own changes first (usually a handful), then the address index.
        for session in change.sessions.values():
            if session is not None and session.ipv4 == ip:
                return session
        owner = self.mac_by_ipv4.get(ip or "")
        if owner is None:
            return None
        return self._current(change, owner)

    def _is(self, change: Change, which: str, mac: str) -> bool:
        overlay = change.blocked if which == "blocked" else change.trusted
        if mac in overlay:
            return overlay[mac] or mac in (self.config.clients.blocked_macs if which == "blocked"
                                           else self.config.clients.trusted_macs)
        return mac in (self.all_blocked if which == "blocked" else self.all_trusted)

    def _end(self, change: Change, session: Session, reason: EndReason) -> None:
        change.sessions[session.mac] = None
        change.ended[session.mac] = (session, reason)
        change.replaced.append(session)
        change.nft += ruleset.delete_client_elements(session.elements())
        change.nft += self._unshape(session, change)
        change.cut_addresses += [session.ipv4, *session.ipv6]

    @staticmethod
    def _unshape(session: Session, change: Change) -> list[Json]:
        """Commands that unmap a session's addresses; its class goes once the batch landed."""
        if not session.class_minor:
            return []
        change.classes_removed.append(session.class_minor)
        target = classid(session.class_minor)
        return ruleset.delete_shape_elements((a, target) for a in (session.ipv4, *session.ipv6))

    def _prepare(self, command: Command, change: Change, now: float) -> Result:
        """Stage one command into ``change``; the Result it will get if the batch lands."""
        try:
            return self._prepare_one(command, change, now)
        except StoreError:
            raise
        except Exception as error:
            # A bug met by one command must not stop the others (nor the daemon).
            log.exception("internal error on command %s", command.describe())
            return Result(False, f"internal error ({type(error).__name__}); see netctl's log")

    def _prepare_one(self, command: Command, change: Change, now: float) -> Result:
        try:
            if command.verb is Verb.AUTHORIZE:
                return self._prepare_authorize(command, change, now)
            if command.verb in (Verb.DEAUTHORIZE, Verb.RATE, Verb.EXTEND):
                session = self._find(change, str(command.ip) if command.ip else None, command.mac)
                if session is None:
                    target = command.mac or command.ip
                    return Result(False, f"no authorised client at {target}")
                if command.verb is Verb.RATE:
                    return self._prepare_rate(command, session, change, now)
                if command.verb is Verb.EXTEND:
                    return self._prepare_extend(command, session, change, now)
                self._end(change, session, EndReason.ADMIN_RESET)
                return Result(True, f"deauthorised {session.ipv4} ({session.mac})",
                              {"ip": session.ipv4, "mac": session.mac})
            assert command.mac is not None
            return self._prepare_mac_list(command, command.mac, change)
        except netlink.NetlinkError as error:
            return Result(False, f"could not read the gateway's neighbour table: {error}")

    def _prepare_authorize(self, command: Command, change: Change, now: float) -> Result:
        assert command.ip is not None
        ip = str(command.ip)
        lan = self.config.gateway.lan_interface
        # The neighbour table, completed by this burst's ARP probes (_probe_unknown).
        known = self._neighbours4().get(ip)
        if command.mac is not None and known is not None and known != command.mac:
            return Result(False, f"address {ip} belongs to another device on the LAN")
        mac = command.mac or known
        if mac is None:
            return Result(False, f"no device answers at {ip} on {lan}")
        if self._is(change, "blocked", mac):
            return Result(False, f"device {mac} is blocked")
        existing = self._current(change, mac)
        if existing is not None and existing.ipv4 == ip:
            return Result(True, f"{ip} ({mac}) is already authorised",
                          {"ip": ip, "mac": mac, "expires_at": existing.expires_at})
        holder = self._find(change, ip, None)
        if holder is not None and holder.mac != mac:
            # The address moved to another device (DHCP reassigned it): the old session ends.
            self._end(change, holder, EndReason.LOST_CARRIER)
        if existing is not None:
            # The same device with a new address (DHCP changed it): the session goes
            # on, with its start, plan, class, quota and counts; only the addresses move.
            self._end(change, existing, EndReason.LOST_CARRIER)
            change.ended.pop(mac, None)
            change.classes_removed = [m for m in change.classes_removed
                                      if m != existing.class_minor]
            ipv6 = [a for a, m in self._safe_ipv6_neighbours() if m == mac]
            session = dataclasses.replace(
                existing, ipv4=ip, ipv6=ipv6[:MAX_IPV6_PER_CLIENT], kernel={},
                lease_expires_at=0.0, _cache=None)
        else:
            plan_config = self.config.plans.get(command.plan or self.config.session.default_plan)
            if plan_config is None:
                return Result(False, f"no plan named {command.plan!r} on this gateway "
                                     f"(known: {', '.join(sorted(self.config.plans))})")
            refusal = self._over_quota(mac, plan_config, now)
            if refusal is not None:
                return refusal
            session = self._new_session(command, plan_config, ip, mac, now)
            change.started.append(session)
            rate = ClientRate(session.down_bps, session.up_bps)
            if self._needs_class(rate):
                session.class_minor = self.minors.allocate()
                change.minors_allocated.append(session.class_minor)
                change.classes_set.append((session.class_minor, rate))
        change.sessions[mac] = session
        timeout_s = session.remaining_s(now)
        change.nft += ruleset.add_client_elements((e, timeout_s) for e in session.elements())
        change.nft += ruleset.add_shape_elements(self._shape_entries(session, now))
        return Result(True, f"authorised {ip} ({mac}) for {timeout_s} s, plan {session.plan}",
                      {"ip": ip, "mac": mac, "expires_at": session.expires_at,
                       "plan": session.plan})

    def _new_session(self, command: Command, plan_config: PlanConfig, ip: str, mac: str,
                     now: float) -> Session:
        hard = command.timeout_s or plan_config.hard_timeout_s
        ipv6 = [a for a, m in self._safe_ipv6_neighbours() if m == mac][:MAX_IPV6_PER_CLIENT]
        return Session(
            mac=mac, ipv4=ip, ipv6=ipv6, started_at=now, expires_at=now + hard,
            idle_timeout_s=plan_config.idle_timeout_s, last_activity_at=now,
            authorized_by=command.by, terms_version=command.terms_version, via=command.via,
            code_batch=command.code_batch, session_id=secrets.token_hex(8),
            plan=plan_config.name, down_bps=plan_config.down_bps, up_bps=plan_config.up_bps,
            quota_bytes=plan_config.daily_quota_bytes, quota_day=self.usage_day,
            quota_used_before=self.usage.get(mac, 0), state_since=now,
            next_interim_at=now + self.config.accounting.interim_interval_s,
        )

    def _over_quota(self, mac: str, plan_config: PlanConfig, now: float) -> Result | None:
        """The refusal for a device that already used its quota today, else None."""
        quota = plan_config.daily_quota_bytes
        used = self.usage.get(mac, 0)
        if not quota or used < quota:
            return None
        reconnect_at = self._next_midnight(now)
        when = self._local(reconnect_at).strftime("%Y-%m-%d %H:%M")
        return Result(False, f"quota: {mac} used its {format_size(quota)} for today; "
                             f"it may reconnect at {when}",
                      {"reason": EndReason.QUOTA_EXCEEDED.value, "reconnect_at": reconnect_at})

    def _prepare_rate(self, command: Command, session: Session, change: Change,
                      now: float) -> Result:
        if self.shaper is None:
            return Result(False, "traffic shaping is not available on this gateway")
        down = session.down_bps if command.down_bps is None else command.down_bps
        up = session.up_bps if command.up_bps is None else command.up_bps
        rate = ClientRate(down, up)
        updated = dataclasses.replace(session, down_bps=down, up_bps=up,
                                      kernel=dict(session.kernel))
        if self._needs_class(rate):
            if not updated.class_minor:
                updated.class_minor = self.minors.allocate()
                change.minors_allocated.append(updated.class_minor)
                change.nft += ruleset.add_shape_elements(self._shape_entries(updated, now))
            else:
                change.classes_undo.append(
                    (updated.class_minor, ClientRate(session.down_bps, session.up_bps)))
            change.classes_set.append((updated.class_minor, rate))
        elif updated.class_minor:
            change.nft += self._unshape(updated, change)
            updated.class_minor = 0
        change.sessions[session.mac] = updated
        return Result(True, f"{session.ipv4} ({session.mac}) now at {format_rate(down)} down, "
                            f"{format_rate(up)} up",
                      {"ip": session.ipv4, "mac": session.mac, "down_bps": down, "up_bps": up})

    def _prepare_extend(self, command: Command, session: Session, change: Change,
                        now: float) -> Result:
        assert command.extend_s is not None
        expires_at = min(session.expires_at + command.extend_s, now + MAX_TIMEOUT_S)
        updated = dataclasses.replace(session, expires_at=expires_at,
                                      kernel=dict(session.kernel))
        # The kernel keeps an element's timeout for its life: the elements are made
        # again with the new one. Their counters start again at zero, so first count
        # what they hold now.
        readings = self.nft.client_elements() or {}
        account(updated, readings, now)
        elements = updated.elements()
        change.nft += ruleset.delete_client_elements(elements)
        change.nft += ruleset.add_client_elements((e, updated.remaining_s(now)) for e in elements)
        for element in elements:
            forget_element(updated, element)
        if updated.class_minor:
            target = classid(updated.class_minor)
            change.nft += ruleset.delete_shape_elements(
                (a, target) for a in (updated.ipv4, *updated.ipv6))
            change.nft += ruleset.add_shape_elements(self._shape_entries(updated, now))
        change.sessions[session.mac] = updated
        left = round(expires_at - now)
        return Result(True, f"{session.ipv4} ({session.mac}) extended: {left} s left",
                      {"ip": session.ipv4, "mac": session.mac, "expires_at": expires_at})

    def _prepare_mac_list(self, command: Command, mac: str, change: Change) -> Result:
        verb = command.verb
        which = "blocked" if verb in (Verb.BLOCK, Verb.UNBLOCK) else "trusted"
        present = verb in (Verb.BLOCK, Verb.TRUST)
        configured = (self.config.clients.blocked_macs if which == "blocked"
                      else self.config.clients.trusted_macs)
        if not present and mac in configured:
            return Result(False, f"{mac} is {which} by {self.config.path} "
                                 f"([clients] {which}_macs); remove it there")
        if present and verb is Verb.TRUST and self._is(change, "blocked", mac):
            return Result(False, f"{mac} is blocked; unblock it first")
        if self._is(change, which, mac) == present:
            return Result(True, f"{mac} was already {'' if present else 'not '}{which}")
        overlay = change.blocked if which == "blocked" else change.trusted
        overlay[mac] = present
        set_name = ruleset.BLOCKED_MACS if which == "blocked" else ruleset.TRUSTED_MACS
        change.nft += ruleset.mac_set_change(set_name, mac, present)
        if verb is Verb.BLOCK:
            if self._is(change, "trusted", mac):
                change.trusted[mac] = False
                change.nft += ruleset.mac_set_change(ruleset.TRUSTED_MACS, mac, False)
            session = self._current(change, mac)
            if session is not None:
                self._end(change, session, EndReason.ADMIN_RESET)
            change.cut_addresses += self._addresses_of(mac)
        if verb is Verb.UNTRUST:
            change.cut_addresses += self._addresses_of(mac)
        return Result(True, f"{mac} {'is now' if present else 'is no longer'} {which}")

    def _addresses_of(self, mac: str) -> list[str]:
        """Addresses a MAC is known at (for cutting its connections)."""
        found = [a for a, m in self._neighbours4().items() if m == mac]
        found += [a for a, m in self._safe_ipv6_neighbours() if m == mac]
        try:
            seen = self.store.seen_one(mac) or {}
        except StoreError:
            seen = {}
        if seen.get("ipv4"):
            found.append(str(seen["ipv4"]))
        return list(dict.fromkeys(found))

    def _safe_ipv6_neighbours(self, cached: bool = True) -> list[tuple[str, str]]:
        if cached and self._burst_neighbours6 is not None:
            return self._burst_neighbours6
        try:
            neighbours = self.ipv6_neighbours()
        except netlink.NetlinkError as error:
            self.metrics.error("netlink")
            log.warning("cannot read IPv6 neighbours error=%s", error)
            neighbours = []
        self._burst_neighbours6 = neighbours
        return neighbours

    def _commit(self, change: Change, now: float) -> None:
        """The kernel accepted the batch: make the in-memory state follow."""
        for mac, session in change.sessions.items():
            self._drop_session(mac)
            if session is not None:
                self.sessions[mac] = session
                self.mac_by_ipv4[session.ipv4] = mac
                log.info("session started mac=%s ip=%s expires_in_s=%d by=%s", mac,
                         session.ipv4, round(session.expires_at - now),
                         session.authorized_by or "-")
        records = [self._record(start_record, session, now) for session in change.started]
        for session in change.started:
            self.metrics.session_started(session.plan)
        for session, reason in change.ended.values():
            _log_ended(session, reason, now)
            records.append(self._stop(session, reason, now))
        self._spool(records)
        self._release_minors(change.classes_removed)
        for mac, present in change.blocked.items():
            (self.blocked.add if present else self.blocked.discard)(mac)
            log.info("device %s mac=%s", "blocked" if present else "unblocked", mac)
        for mac, present in change.trusted.items():
            (self.trusted.add if present else self.trusted.discard)(mac)
            log.info("device %s mac=%s", "trusted" if present else "untrusted", mac)
        self._cut(change.cut_addresses)

    def _cut(self, addresses: Iterable[str]) -> None:
        addresses = [a for a in addresses if a]
        if addresses:
            self.cut_connections(addresses)

    def _persist_change(self, change: Change, pipe: Any) -> None:
        # Deletes first: a session saved by this change may reuse an address just released.
        self.store.delete_sessions(change.replaced, pipe)
        self.store.save_sessions([s for s in change.sessions.values() if s is not None], pipe)
        for session in change.started:
            self.store.forget_ended(session.ipv4, pipe)
        for mac, present in change.blocked.items():
            self.store.change_mac_set("blocked", mac, present, pipe)
        for mac, present in change.trusted.items():
            self.store.change_mac_set("trusted", mac, present, pipe)
        self._persist_endings(change.ended, pipe)

    def _persist_endings(self, ended: dict[str, tuple[Session, EndReason]], pipe: Any) -> None:
        """Tell the portal why sessions ended; keep today's usage of their devices."""
        now = self.clock()
        for session, reason in ended.values():
            self.store.note_ended(session.ipv4, self._ended_notice(session, reason, now),
                                  ENDED_NOTICE_TTL_S, pipe)
        if self._usage_changed:
            changed = {m: self.usage[m] for m in self._usage_changed if m in self.usage}
            self.store.save_usage(self.usage_day, changed, pipe)
            self._usage_changed.clear()

    def _persist(self, changed: Iterable[Session],
                 ended: dict[str, tuple[Session, EndReason]]) -> None:
        """Write sessions and records to Redis; if it is away, memory keeps them until later."""
        if self.dirty:
            return  # everything is written back at once when Redis returns
        try:
            pipe = self.store.pipeline()
            self.store.delete_sessions([session for session, _ in ended.values()], pipe)
            self.store.save_sessions(changed, pipe)
            self._persist_endings(ended, pipe)
            self.store.execute(pipe)
            self._send_records()
        except StoreError as error:
            self._note_outage(error)

    def _note_outage(self, error: StoreError) -> None:
        self.dirty = True
        self.metrics.error("store")
        self.metrics.redis_reachable(False)
        if self._outage_since is None:
            self._outage_since = self.clock()
            log.error("redis unavailable; clients keep their access, sweeps go on, accounting "
                      "waits in %s error=%s", self.spool.path, error)

    def write_back(self) -> None:
        """Redis is reachable again: write memory over it, then send the spooled records."""
        pipe = self.store.pipeline()
        self.store.replace_sessions(self.sessions.values(), pipe)
        self.store.replace_mac_set("blocked", self.blocked, pipe)
        self.store.replace_mac_set("trusted", self.trusted, pipe)
        if self.usage:
            self.store.save_usage(self.usage_day, self.usage, pipe)
        self.store.execute(pipe)
        self._usage_changed.clear()
        pending = len(self.spool.pending())
        self._send_records()
        away = self.clock() - (self._outage_since or self.clock())
        log.info("redis is back after %.0f s; wrote %d sessions and %d spooled records",
                 away, len(self.sessions), pending)
        self.dirty = False
        self._outage_since = None
        self.metrics.redis_reachable(True)

    # --- sweep ---------------------------------------------------------------------------------

    def _drop_session(self, mac: str) -> Session | None:
        """Forget a session in memory, keeping the address index in step."""
        session = self.sessions.pop(mac, None)
        if session is not None and self.mac_by_ipv4.get(session.ipv4) == mac:
            del self.mac_by_ipv4[session.ipv4]
        return session

    def _end_due(self, now: float) -> dict[str, tuple[Session, EndReason]]:
        """Sessions past their hard timeout or quota (at start, before the first sweep)."""
        ended: dict[str, tuple[Session, EndReason]] = {}
        for mac, session in list(self.sessions.items()):
            event = lifecycle.observed_event(session, now)
            if event not in (Event.HARD_TIMEOUT, Event.QUOTA_USED):
                continue
            found = lifecycle.apply(session, event, self.config.session.idle_when_present, now)
            if found is not None and found.reason is not None:
                ended[mac] = (session, found.reason)
                self._drop_session(mac)
                _log_ended(session, found.reason, now)
        return ended

    def _close(self, ended: dict[str, tuple[Session, EndReason]], now: float
               ) -> tuple[list[Json], list[Record]]:
        """Forget ended sessions; the commands that unmap them and their stop records.

        Their set elements are left to the caller (the sweep's plan deletes them).
        """
        commands: list[Json] = []
        records: list[Record] = []
        for mac, (session, reason) in ended.items():
            self._drop_session(mac)
            _log_ended(session, reason, now)
            records.append(self._stop(session, reason, now))
            if session.class_minor:
                target = classid(session.class_minor)
                commands += ruleset.delete_shape_elements(
                    (a, target) for a in (session.ipv4, *session.ipv6))
        return commands, records

    def _lease_event(self, session: Session, leases: dict[str, Lease], now: float
                     ) -> Event | None:
        event = lease_event(session, leases.get(session.ipv4), now)
        if event is None:
            self._lease_missing.discard(session.mac)
            return None
        # dnsmasq rewrites its file in place: a lease must be missing from two reads
        # in a row, so that one read in the middle of a rewrite ends nobody.
        if session.mac in self._lease_missing:
            self._lease_missing.discard(session.mac)
            return event
        self._lease_missing.add(session.mac)
        return None

    def _leases(self) -> dict[str, Lease] | None:
        try:
            text = self.read_leases()
        except OSError as error:
            self.metrics.error("leases")
            log.warning("cannot read the DHCP leases error=%s", error)
            return None
        return None if text is None else parse_leases(text)

    def sweep(self) -> None:
        """Read every counter in one call; account, learn IPv6, decide each session's fate
        (lifecycle), write interim records, repair the kernel."""
        started = time.perf_counter()
        now = self.clock()
        self._follow_clock_step(now)
        readings = self.nft.client_elements()
        if readings is None:
            log.warning("table inet parvis is missing; rebuilding it")
            self.reconcile(rebuild_table=True)
            self._reconcile_shaping()
            return
        counts = self.nft.rule_counts(self._rule_counts)
        if counts != self._rule_counts:
            changed_chains = sorted(c for c in counts if counts[c] != self._rule_counts[c])
            log.warning("firewall rules changed by hand in %s; restoring them",
                        ", ".join(changed_chains))
            self.reconcile(rebuild_table=True)
            readings = self.nft.client_elements() or {}
        read_done = time.perf_counter()
        changed: dict[str, Session] = {}
        day = self._day(now)
        if day != self.usage_day:
            self._new_day(day)
            changed.update(self.sessions)
        missing: list[Element] = []
        changed.update(self._account_all(self.sessions.values(), readings, now, missing))
        learnt = self._learn_ipv6(changed)
        leases = self._leases()
        policy = self.config.session.idle_when_present
        interval = self.config.accounting.interim_interval_s
        ended: dict[str, tuple[Session, EndReason]] = {}
        probes: list[tuple[str, str]] = []
        records: list[Record] = []
        observe = lifecycle.observed_event
        for mac, session in self.sessions.items():
            event = observe(session, now)
            if event is None and leases is not None:
                event = self._lease_event(session, leases, now)
            if event is not None:
                found = lifecycle.apply(session, event, policy, now)
                if found is not None:
                    changed[mac] = session
                    if found.reason is not None:
                        ended[mac] = (session, found.reason)
                        continue
                    if found.action is Action.PROBE:
                        probes.append((session.ipv4, mac))
            if interim_due(session, now, interval):
                records.append(self._record(interim_record, session, now))
                schedule_next_interim(session, now, interval)
                changed[mac] = session
        unmap, stops = self._close(ended, now)
        records += stops
        for mac in ended:
            changed.pop(mac, None)
        account_done = time.perf_counter()
        expected = sum(len(s.keyed_elements()) for s in self.sessions.values())
        if missing or learnt or ended or len(readings) != expected:
            changes = plan(self.sessions.values(), readings, now)
        else:
            changes = Plan()  # the kernel holds exactly the sessions' elements
        batch = ruleset.delete_client_elements(changes.delete)
        batch += ruleset.add_client_elements(changes.add)
        batch += unmap
        recreated = self._owners(element for element, _ in changes.add)
        for owner in recreated:
            # Restored or newly learnt addresses of a shaped client join its class.
            batch += ruleset.add_shape_elements(self._shape_entries(owner, now))
        if changes.add:
            log.info("adding firewall elements count=%d", len(changes.add))
        self.nft.apply(batch)
        self._release_minors(session.class_minor for session, _ in ended.values())
        for owner in self._forget_recreated(element for element, _ in changes.add):
            changed[owner.mac] = owner
        self._cut(a for session, _ in ended.values() for a in (session.ipv4, *session.ipv6))
        plan_done = time.perf_counter()
        self._spool(records)
        self._persist(changed.values(), ended)
        if probes and self.prober is not None:
            self.prober.submit(probes)
        finished = time.perf_counter()
        self.stats["sweeps"] += 1
        self.stats["sweep_ms"] = round((finished - started) * 1000, 2)
        # Where a slow sweep spends its time, in the health snapshot.
        self.stats["sweep_read_ms"] = round((read_done - started) * 1000, 2)
        self.stats["sweep_account_ms"] = round((account_done - read_done) * 1000, 2)
        self.stats["sweep_plan_ms"] = round((plan_done - account_done) * 1000, 2)
        self.stats["sweep_persist_ms"] = round((finished - plan_done) * 1000, 2)
        self.stats["sweep_changed"] = len(changed)
        self.stats["sweep_ended"] = len(ended)
        self.metrics.observe_sweep(finished - started, {
            "read": read_done - started, "account": account_done - read_done,
            "plan": plan_done - account_done, "persist": finished - plan_done},
            changed=len(changed), ended=len(ended))
        confirming = sum(1 for s in self.sessions.values() if s.state == "confirming")
        self.metrics.set_state(
            active=len(self.sessions) - confirming, confirming=confirming,
            trusted=len(self.all_trusted), blocked=len(self.all_blocked),
            shaped=len(self.minors), spool_length=len(self.spool),
            redis_reachable=not self.dirty)

    def handle_probe_answers(self, answers: list[tuple[str, str, bool]]) -> None:
        """Idle devices answered (or not): keep or end their sessions, in one transaction."""
        if not answers:
            return
        now = self.clock()
        policy = self.config.session.idle_when_present
        changed: dict[str, Session] = {}
        ended: dict[str, tuple[Session, EndReason]] = {}
        for ip, mac, present in answers:
            session = self.sessions.get(mac)
            if session is None or session.ipv4 != ip:
                continue
            found = lifecycle.apply(session, Event.PRESENT if present else Event.ABSENT,
                                    policy, now)
            if found is None:
                continue
            if found.reason is not None:
                ended[mac] = (session, found.reason)
            else:
                changed[mac] = session
                log.info("idle device still there mac=%s ip=%s; session goes on", mac, ip)
        if not ended:
            self._persist(changed.values(), {})
            return
        elements = [e for session, _ in ended.values() for e in session.elements()]
        unmap, records = self._close(ended, now)
        self.nft.apply(ruleset.delete_client_elements(elements) + unmap)
        self._release_minors(session.class_minor for session, _ in ended.values())
        self._cut(a for session, _ in ended.values() for a in (session.ipv4, *session.ipv6))
        self._spool(records)
        self._persist(changed.values(), ended)

    def _follow_clock_step(self, now: float) -> None:
        """Shift every session by a wall-clock step, so durations stay what they were."""
        mono = self.monotonic()
        previous, self._clocks = self._clocks, (now, mono)
        if previous is None:
            return
        step = (now - previous[0]) - (mono - previous[1])
        if abs(step) < CLOCK_STEP_TOLERANCE_S:
            return
        log.warning("wall clock stepped by %+.0f s; shifting %d sessions with it",
                    step, len(self.sessions))
        for session in self.sessions.values():
            shift_times(session, step)
        self._persist(self.sessions.values(), {})

    def _learn_ipv6(self, changed: dict[str, Session]) -> int:
        """Give an authorised device's IPv6 addresses (SLAAC, privacy) the same access.

        Returns how many addresses were learnt.
        """
        learnt = 0
        fresh: dict[str, list[str]] = {}  # MAC -> its addresses, freshest first
        for address, mac in self._safe_ipv6_neighbours(cached=False):
            if mac in self.sessions:
                fresh.setdefault(mac, []).append(address)
        for mac, addresses in fresh.items():
            session = self.sessions[mac]
            if all(a in session.ipv6 for a in addresses):
                continue
            # Keep the addresses in use (freshest in the neighbour table) first, then
            # the ones already granted; beyond the cap the stalest go. Stable from
            # one sweep to the next, so nothing is learnt, dropped and learnt again.
            kept = list(dict.fromkeys(addresses + session.ipv6))[:MAX_IPV6_PER_CLIENT]
            added = [a for a in kept if a not in session.ipv6]
            if not added:
                continue
            for address in added:
                log.info("IPv6 address learnt mac=%s ip6=%s", mac, address)
            # A new list, never an in-place change: Session caches its elements by identity.
            session.ipv6 = kept
            live = {key for _, key in session.keyed_elements()}
            session.kernel = {k: v for k, v in session.kernel.items() if k in live}
            changed[mac] = session
            learnt += len(added)
        return learnt

    # --- the loop ------------------------------------------------------------------------------

    def resync(self) -> None:
        """After a failure: make the kernel match the state again.

        From Redis when it holds everything; from memory when Redis is behind
        (it was away), so that nothing decided meanwhile is undone.
        """
        if self.dirty:
            self.reconcile(rebuild_table=True)
            self._reconcile_shaping()
        else:
            self.start()

    def run(self, stop: threading.Event, sampler: HealthSampler,
            drain_sightings: Callable[[], list[tuple[str, str | None, float]]] | None = None
            ) -> None:
        """Serve until ``stop`` is set; a failed pass is logged and retried, never fatal.

        Sweeps go on while Redis is away: expiry, quotas and accounting do not
        wait for it (records wait in the spool).
        """
        interval = self.config.netctl.sweep_interval_s
        health_interval = self.config.netctl.health_interval_s
        next_sweep = 0.0
        next_health = 0.0
        next_prune = 0.0
        next_store_try = 0.0
        next_rollup = 0.0
        pending_first = True
        while not stop.is_set():
            store_ok = False
            try:
                if time.monotonic() >= next_store_try:
                    if self.resync_needed:
                        self.resync()
                        self.resync_needed = False
                        pending_first = True
                    if self.dirty:
                        self.write_back()
                        pending_first = True
                    while pending_first:
                        # Commands read before a crash but never acknowledged come first.
                        pending = self.store.read_commands(self.consumer, 0, COMMAND_BURST,
                                                           pending=True)
                        self.handle_entries(pending)
                        pending_first = len(pending) == COMMAND_BURST
                    store_ok = True
            except StoreError as error:
                self._note_outage(error)
                next_store_try = time.monotonic() + 1.0
            except Exception as error:  # noqa: BLE001 - logged, then the state is rebuilt
                self._failed(error)
                stop.wait(1.0)
                continue
            try:
                now = time.monotonic()
                if now >= next_sweep and not self.resync_needed:
                    self.spool.tidy()
                    self.sweep()
                    next_sweep = now + interval
                    # Sessions are long-lived and acyclic: keep the cyclic collector
                    # from walking all of them again and again (it made sweeps at
                    # 10,000 clients half as fast again). A full collection still runs
                    # at every housekeeping pass, below.
                    gc.freeze()
                if self.prober is not None:
                    self.handle_probe_answers(self.prober.drain())
                if not store_ok:
                    stop.wait(max(0.05, min(1.0, next_sweep - time.monotonic())))
                    continue
                if now >= next_health:
                    self.store.publish_health(
                        sampler.snapshot({"sessions": len(self.sessions), **self.stats}),
                        ttl_s=max(10, round(health_interval * 3)))
                    next_health = now + health_interval
                if drain_sightings is not None:
                    sightings = drain_sightings()
                    if sightings:
                        self.store.record_seen(sightings)
                if now >= next_rollup:
                    next_rollup = now + self.config.reports.rollup_interval_s
                    self._roll_up()
                if now >= next_prune:
                    self.store.prune_seen(self.clock())
                    # Raw accounting records name MACs and IPs: they go after the
                    # retention window even on a gateway that writes no new ones.
                    self.store.trim_records(self.config.accounting.retention_days * 86400)
                    gc.unfreeze()
                    gc.collect()
                    next_prune = now + SEEN_PRUNE_INTERVAL_S
                wait_ms = int(max(1, min(next_sweep, next_health) - time.monotonic()) * 1000)
                wait_ms = max(10, min(wait_ms, 250 if self.prober is not None else 1000))
                entries = self.store.read_commands(self.consumer, wait_ms, COMMAND_BURST)
                self.handle_entries(entries)
            except StoreError as error:
                self._note_outage(error)
                pending_first = True
                next_store_try = time.monotonic() + 1.0
            except Exception as error:  # noqa: BLE001 - logged, then the state is rebuilt
                self._failed(error)
                stop.wait(1.0)

    def _roll_up(self) -> None:
        """Fold new accounting records into the council's daily aggregates."""
        try:
            roll_up(self.store, self.config, self.clock())
        except StoreError:
            raise  # Redis is away: the loop's outage handling, retried next interval
        except Exception:  # noqa: BLE001 - a report bug must not rebuild the firewall
            self.metrics.error("unexpected")
            log.exception("report roll-up failed; retrying at the next interval")

    def _failed(self, error: Exception) -> None:
        self.metrics.error("nft" if isinstance(error, NftError) else "unexpected")
        if isinstance(error, NftError):
            log.error("firewall update failed; rebuilding and retrying error=%s batch_len=%d",
                      error, len(error.batch))
        else:
            # The loop must survive anything one pass throws; the log carries the trace.
            log.exception("unexpected error in netctl's loop; rebuilding state, continuing")
        self.resync_needed = True


def _entry_time(entry_id: str) -> float:
    """When a stream entry was added, by Redis's clock (ids are milliseconds-sequence)."""
    try:
        return int(entry_id.split("-", 1)[0]) / 1000
    except ValueError:
        return float("inf")  # not a real entry id: treat as fresh


def _lease_file_reader(path: Path | None) -> Callable[[], str | None]:
    """Reads dnsmasq's lease file; None when lease tracking is off or the file is not there yet."""
    def read() -> str | None:
        if path is None:
            return None
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return None
    return read


def _log_ended(session: Session, reason: EndReason, now: float) -> None:
    log.info("session ended mac=%s ip=%s reason=%s duration_s=%d bytes_up=%d bytes_down=%d",
             session.mac, session.ipv4, reason.value, round(now - session.started_at),
             session.bytes_up, session.bytes_down)
