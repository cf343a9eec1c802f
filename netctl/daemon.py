"""The gateway daemon: applies commands, sweeps counters and expiry, reconciles the kernel.

One thread does the work (the DHCP sniffer only queues sightings). Each burst
of commands read from the stream becomes one nftables transaction; the state
it changes and the acknowledgements are written to Redis together afterwards,
only once the kernel has accepted the batch. A command that fails is
acknowledged with its reason and never stops the loop.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from netctl import conntrack, netlink, ruleset
from netctl.health import HealthSampler
from netctl.nft import Nft, NftError
from parvis.core.commands import Command, CommandError, Result, Verb, parse_command
from parvis.core.config import Config
from parvis.core.reconcile import Plan, plan
from parvis.core.sessions import (
    Element,
    EndReason,
    Session,
    account,
    end_reason_due,
    forget_element,
    shift_times,
)
from parvis.store import Store, StoreError, new_consumer_name

log = logging.getLogger(__name__)

MAX_IPV6_PER_CLIENT = 8  # privacy addresses rotate; keep the newest few
MAX_AUTHORIZE_AGE_S = 120  # an authorize older than this was given up by its sender
CLOCK_STEP_TOLERANCE_S = 30  # wall-clock moves larger than this (vs. monotonic) are steps
COMMAND_BURST = 2000  # most commands taken from the stream at once (one transaction)
SEEN_PRUNE_INTERVAL_S = 600

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
    ) -> None:
        self.config = config
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
                                        "sweep_ms": 0.0}

    # --- start-up and reconcile ---------------------------------------------------------------

    @property
    def all_blocked(self) -> set[str]:
        return self.blocked | set(self.config.clients.blocked_macs)

    @property
    def all_trusted(self) -> set[str]:
        return self.trusted | set(self.config.clients.trusted_macs)

    def start(self) -> None:
        """Load state from Redis and make the kernel match it in one transaction."""
        self.store.ensure_group()
        self.sessions = self.store.sessions()
        self.mac_by_ipv4 = {s.ipv4: s.mac for s in self.sessions.values()}
        self.blocked = self.store.mac_set("blocked")
        self.trusted = self.store.mac_set("trusted")
        kept, added, removed = self.reconcile(rebuild_table=True)
        log.info("netctl started gateway=%s sessions=%d kept=%d added=%d removed=%d",
                 self.config.gateway.id, len(self.sessions), kept, added, removed)

    def reconcile(self, rebuild_table: bool) -> tuple[int, int, int]:
        """Make the kernel hold exactly the sessions' elements; returns (kept, added, removed).

        Elements already in the kernel are kept with their counters; their bytes
        counted while netctl was away are folded into the sessions first.
        """
        now = self.clock()
        actual = (self.nft.client_elements() if self.nft.table_exists() else None) or {}
        for session in self.sessions.values():
            account(session, actual, now)
        ended = self._end_due(now)
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
        self._persist(self.sessions.values(), ended)
        self.cut_connections([a for s, _ in ended.values() for a in (s.ipv4, *s.ipv6)])
        return len(actual) - len(changes.delete), len(changes.add), len(changes.delete)

    def held_addresses(self, addresses: list[str]) -> set[str]:
        """Those of ``addresses`` that a live session holds (any thread may ask)."""
        held = {a for a in addresses if a in self.mac_by_ipv4}
        if any(":" in a for a in addresses):
            # One pass over the sessions for the whole batch, not one per address.
            ipv6 = {a for s in list(self.sessions.values()) for a in s.ipv6}
            held |= {a for a in addresses if a in ipv6}
        return held

    def _forget_recreated(self, elements: Iterable[Element]) -> list[Session]:
        """Sessions whose elements were (re-)created at zero forget their last readings."""
        owners: dict[str, Session] = {}
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
        parsed: list[tuple[str, Command]] = []
        redis_now: float | None = None  # stream ids carry Redis's clock, not ours
        for entry_id, fields in entries:
            try:
                command = parse_command(fields)
            except CommandError as error:
                results[entry_id] = Result(False, str(error))
                log.warning("refused command id=%s reason=%s", entry_id, error)
                continue
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
        try:
            self.nft.apply(change.nft)
        except NftError as error:
            # One bad command must not sink the others: apply them one by one.
            log.warning("batch of %d commands refused, applying one by one error=%s",
                        len(staged), error)
            committed: list[Change] = []
            for entry_id, command, _ in staged:
                single = Change()
                result = self._prepare(command, single, now)
                if result.ok:
                    try:
                        self.nft.apply(single.nft)
                    except NftError as single_error:
                        result = Result(False, f"the firewall refused it: {single_error}")
                    else:
                        self._commit(single, now)
                        committed.append(single)
                results[entry_id] = result
            self._finish(entries, results, committed)
            return
        self._commit(change, now)
        for entry_id, _command, result in staged:
            results[entry_id] = result
        self._finish(entries, results, [change])

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
                changes: list[Change]) -> None:
        """Persist what the kernel accepted and acknowledge every entry, in one MULTI/EXEC."""
        pipe = self.store.pipeline()
        for change in changes:
            self._persist_change(change, pipe)
        self.store.acknowledge(((entry_id, results[entry_id]) for entry_id, _ in entries), pipe)
        self.store.execute(pipe)
        for result in results.values():
            self.stats["commands_ok" if result.ok else "commands_failed"] += 1

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
        change.cut_addresses += [session.ipv4, *session.ipv6]

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
            if command.verb is Verb.DEAUTHORIZE:
                session = self._find(change, str(command.ip) if command.ip else None, command.mac)
                if session is None:
                    target = command.mac or command.ip
                    return Result(False, f"no authorised client at {target}")
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
        hard = command.timeout_s or self.config.session.hard_timeout_s
        ipv6 = [a for a, m in self._safe_ipv6_neighbours() if m == mac][:MAX_IPV6_PER_CLIENT]
        session = Session(
            mac=mac, ipv4=ip, ipv6=ipv6, started_at=now, expires_at=now + hard,
            idle_timeout_s=self.config.session.idle_timeout_s, last_activity_at=now,
            authorized_by=command.by, terms_version=command.terms_version, via=command.via,
            code_batch=command.code_batch,
        )
        if existing is not None:
            # The same device with a new address (DHCP changed it): the session goes
            # on, with its start, its hard timeout and its counts; only the elements move.
            self._end(change, existing, EndReason.LOST_CARRIER)
            change.ended.pop(mac, None)
            session.started_at = existing.started_at
            session.expires_at = existing.expires_at
            session.authorized_by = existing.authorized_by
            session.bytes_up, session.bytes_down = existing.bytes_up, existing.bytes_down
            session.packets_up = existing.packets_up
            session.packets_down = existing.packets_down
        change.sessions[mac] = session
        timeout_s = session.remaining_s(now)
        change.nft += ruleset.add_client_elements((e, timeout_s) for e in session.elements())
        return Result(True, f"authorised {ip} ({mac}) for {timeout_s} s",
                      {"ip": ip, "mac": mac, "expires_at": session.expires_at})

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
        for session, reason in change.ended.values():
            _log_ended(session, reason, now)
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
        for mac, present in change.blocked.items():
            self.store.change_mac_set("blocked", mac, present, pipe)
        for mac, present in change.trusted.items():
            self.store.change_mac_set("trusted", mac, present, pipe)

    def _persist(self, changed: Iterable[Session],
                 ended: dict[str, tuple[Session, EndReason]]) -> None:
        pipe = self.store.pipeline()
        self.store.delete_sessions([session for session, _ in ended.values()], pipe)
        self.store.save_sessions(changed, pipe)
        self.store.execute(pipe)

    # --- sweep ---------------------------------------------------------------------------------

    def _drop_session(self, mac: str) -> Session | None:
        """Forget a session in memory, keeping the address index in step."""
        session = self.sessions.pop(mac, None)
        if session is not None and self.mac_by_ipv4.get(session.ipv4) == mac:
            del self.mac_by_ipv4[session.ipv4]
        return session

    def _end_due(self, now: float) -> dict[str, tuple[Session, EndReason]]:
        ended: dict[str, tuple[Session, EndReason]] = {}
        for mac, session in list(self.sessions.items()):
            reason = end_reason_due(session, now)
            if reason is not None:
                ended[mac] = (session, reason)
                self._drop_session(mac)
                _log_ended(session, reason, now)
        return ended

    def sweep(self) -> None:
        """Read every counter in one call; account, learn IPv6, expire, repair the kernel."""
        started = time.perf_counter()
        now = self.clock()
        self._follow_clock_step(now)
        readings = self.nft.client_elements()
        if readings is None:
            log.warning("table inet parvis is missing; rebuilding it")
            self.reconcile(rebuild_table=True)
            return
        read_done = time.perf_counter()
        changed: dict[str, Session] = {}
        missing: list[Element] = []
        for session in self.sessions.values():
            if account(session, readings, now, missing):
                changed[session.mac] = session
        learnt = self._learn_ipv6(changed)
        ended = self._end_due(now)
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
        if changes.add:
            log.info("restoring missing firewall elements count=%d", len(changes.add))
        self.nft.apply(batch)
        for owner in self._forget_recreated(element for element, _ in changes.add):
            changed[owner.mac] = owner
        self._cut(a for session, _ in ended.values() for a in (session.ipv4, *session.ipv6))
        plan_done = time.perf_counter()
        self._persist(changed.values(), ended)
        finished = time.perf_counter()
        self.stats["sweeps"] += 1
        self.stats["sweep_ms"] = round((finished - started) * 1000, 2)
        # Where a slow sweep spends its time, in the health snapshot.
        self.stats["sweep_read_ms"] = round((read_done - started) * 1000, 2)
        self.stats["sweep_account_ms"] = round((account_done - read_done) * 1000, 2)
        self.stats["sweep_plan_ms"] = round((plan_done - account_done) * 1000, 2)
        self.stats["sweep_persist_ms"] = round((finished - plan_done) * 1000, 2)
        self.stats["sweep_changed"] = len(changed)

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

    def run(self, stop: threading.Event, sampler: HealthSampler,
            drain_sightings: Callable[[], list[tuple[str, str | None, float]]] | None = None
            ) -> None:
        """Serve until ``stop`` is set; a failed pass is logged and retried, never fatal."""
        interval = self.config.netctl.sweep_interval_s
        health_interval = self.config.netctl.health_interval_s
        next_sweep = 0.0
        next_health = 0.0
        next_prune = 0.0
        pending_first = True
        while not stop.is_set():
            try:
                if self.resync_needed:
                    self.start()
                    self.resync_needed = False
                    pending_first = True
                while pending_first:
                    # Commands read before a crash but never acknowledged come first.
                    pending = self.store.read_commands(self.consumer, 0, COMMAND_BURST,
                                                       pending=True)
                    self.handle_entries(pending)
                    pending_first = len(pending) == COMMAND_BURST
                now = time.monotonic()
                if now >= next_sweep:
                    self.sweep()
                    next_sweep = now + interval
                    # Sessions are long-lived and acyclic: keep the cyclic collector
                    # from walking all of them again and again (it made sweeps at
                    # 10,000 clients half as fast again). A full collection still runs
                    # at every housekeeping pass, below.
                    gc.freeze()
                if now >= next_health:
                    self.store.publish_health(
                        sampler.snapshot({"sessions": len(self.sessions), **self.stats}),
                        ttl_s=max(10, round(health_interval * 3)))
                    next_health = now + health_interval
                if drain_sightings is not None:
                    sightings = drain_sightings()
                    if sightings:
                        self.store.record_seen(sightings)
                if now >= next_prune:
                    self.store.prune_seen(self.clock())
                    gc.unfreeze()
                    gc.collect()
                    next_prune = now + SEEN_PRUNE_INTERVAL_S
                wait_ms = int(max(1, min(next_sweep, next_health) - time.monotonic()) * 1000)
                wait_ms = max(10, min(wait_ms, 1000))
                entries = self.store.read_commands(self.consumer, wait_ms, COMMAND_BURST)
                self.handle_entries(entries)
            except StoreError as error:
                log.error("redis unavailable, clients keep their access; retrying error=%s",
                          error)
                self.resync_needed = True
                stop.wait(1.0)
            except NftError as error:
                log.error("firewall update failed; reloading state and retrying error=%s "
                          "batch_len=%d", error, len(error.batch))
                self.resync_needed = True
                stop.wait(1.0)
            except Exception:
                # The loop must survive anything one pass throws; the log carries the trace.
                log.exception("unexpected error in netctl's loop; reloading state, continuing")
                self.resync_needed = True
                stop.wait(1.0)


def _entry_time(entry_id: str) -> float:
    """When a stream entry was added, by Redis's clock (ids are milliseconds-sequence)."""
    try:
        return int(entry_id.split("-", 1)[0]) / 1000
    except ValueError:
        return float("inf")  # not a real entry id: treat as fresh


def _log_ended(session: Session, reason: EndReason, now: float) -> None:
    log.info("session ended mac=%s ip=%s reason=%s duration_s=%d bytes_up=%d bytes_down=%d",
             session.mac, session.ipv4, reason.value, round(now - session.started_at),
             session.bytes_up, session.bytes_down)
