"""netctl's Prometheus metrics, served on ``[metrics] address``:``netctl_port`` (0 = off).

The daemon tells :class:`NetctlMetrics` what happened through a few small
methods, each called once per sweep, burst or event, never once per client:
the sweep already walks every session, so it hands over totals (bytes moved,
sessions in each state) and this module only adds them up. Nothing here reads
the sessions, the kernel or Redis.

No label ever holds a MAC or an IP address: every label value is checked
against a closed list (verbs, results, end reasons, error kinds, sweep phases,
the configuration's plan names) and anything else is counted as ``other``.

The registry is netctl's own (not prometheus_client's global one), so each
:class:`NetctlMetrics` (one per test) starts from zero.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

import parvis
from parvis.core.commands import Verb
from parvis.core.config import Config, config_problem
from parvis.core.lifecycle import State
from parvis.core.sessions import EndReason

log = logging.getLogger(__name__)

OTHER = "other"  # the label value of anything not on a metric's closed list
INVALID_VERB = "invalid"  # a command that could not be parsed has no verb
ERROR_KINDS = ("nft", "store", "shaper", "netlink", "leases", "unexpected")
SWEEP_PHASES = ("read", "account", "plan", "persist")
RECORD_OUTCOMES = ("spooled", "written", "duplicate")
# A sweep at 10,000 clients takes about 0.1 s (docs/benchmarks.md); its target is 0.25 s.
SWEEP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricsError(Exception):
    """The metrics endpoint could not start; the message names the setting to change."""


class NetctlMetrics:
    """netctl's metrics in a private registry, and the HTTP endpoint that serves them."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.registry = CollectorRegistry(auto_describe=True)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        registry = self.registry
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, CPU, open fds
        PlatformCollector(registry=registry)  # python_info
        Info("parvis_netctl_build", "Parvis version and the gateway this netctl serves.",
             registry=registry).info({"version": parvis.__version__,
                                      "gateway": config.gateway.id, "zone": config.zone})

        clients = Gauge("parvis_netctl_clients",
                        "Authorised sessions by lifecycle state (active, confirming), and "
                        "MACs on the trusted and blocked lists (configured and run-time).",
                        ["state"], registry=registry)
        self._clients = {state: clients.labels(state)
                         for state in (*(s.value for s in State), "trusted", "blocked")}
        self._shaped = Gauge("parvis_netctl_shaped_clients",
                             "Sessions with an HTB class of their own.", registry=registry)
        self._spool = Gauge("parvis_netctl_spool_records",
                            "Accounting records on disk not yet confirmed by Redis.",
                            registry=registry)
        self._redis_up = Gauge("parvis_netctl_redis_up",
                               "1 while Redis answers, 0 during an outage (memory is the truth).",
                               registry=registry)

        moved = Counter("parvis_netctl_bytes",
                        "IP bytes of authorised devices as the firewall counts them "
                        "(up: from the devices, down: to them).", ["direction"],
                        registry=registry)
        self._bytes_up = moved.labels("up")
        self._bytes_down = moved.labels("down")

        commands = Counter("parvis_netctl_commands",
                           "Commands read from the stream, by verb and result.",
                           ["verb", "result"], registry=registry)
        self._commands = {(verb, ok): commands.labels(verb, "ok" if ok else "failed")
                          for verb in (*(v.value for v in Verb), INVALID_VERB, OTHER)
                          for ok in (True, False)}

        started = Counter("parvis_netctl_sessions_started",
                          "Sessions started, by plan.", ["plan"], registry=registry)
        self._started = {plan: started.labels(plan)
                         for plan in (*config.plans, config.session.default_plan, OTHER)}
        ended = Counter("parvis_netctl_sessions_ended",
                        "Sessions ended, by RADIUS cause (Acct-Terminate-Cause).",
                        ["reason"], registry=registry)
        self._ended = {reason: ended.labels(reason)
                       for reason in (*(r.value for r in EndReason), OTHER)}

        self._sweep = Histogram("parvis_netctl_sweep_duration_seconds",
                                "Time a counter sweep takes (read, account, plan, persist).",
                                buckets=SWEEP_BUCKETS_S, registry=registry)
        phases = Gauge("parvis_netctl_sweep_phase_seconds",
                       "Time the last sweep spent in each phase.", ["phase"], registry=registry)
        self._phases = {phase: phases.labels(phase) for phase in (*SWEEP_PHASES, OTHER)}
        swept = Gauge("parvis_netctl_sweep_sessions",
                      "Sessions the last sweep changed (written to Redis) and ended.",
                      ["outcome"], registry=registry)
        self._sweep_changed = swept.labels("changed")
        self._sweep_ended = swept.labels("ended")

        errors = Counter("parvis_netctl_errors",
                         "Failures netctl survived, by adapter (nft, store, shaper, netlink, "
                         "leases) or unexpected.", ["kind"], registry=registry)
        self._errors = {kind: errors.labels(kind) for kind in (*ERROR_KINDS, OTHER)}

        records = Counter("parvis_netctl_records",
                          "Accounting records spooled to disk, written to the stream, and "
                          "found there already (duplicates, never written twice).",
                          ["outcome"], registry=registry)
        self._records = {outcome: records.labels(outcome) for outcome in RECORD_OUTCOMES}

    # --- the endpoint ---------------------------------------------------------------------------

    def start(self) -> bool:
        """Serve ``/metrics`` from a daemon thread; False when ``netctl_port`` is 0 (off).

        Raises MetricsError, naming ``[metrics] netctl_port``, when the port cannot be bound.
        """
        settings = self.config.metrics
        if settings.netctl_port == 0 or self._server is not None:
            return self._server is not None
        address = str(settings.address)
        try:
            self._server, self._thread = start_http_server(
                settings.netctl_port, addr=address, registry=self.registry)
        except OSError as error:
            raise MetricsError(config_problem(
                self.config.path, "metrics", "netctl_port",
                f"cannot listen on {_host_port(address, settings.netctl_port)} "
                f"({error.strerror or error})",
                "a free port on the management address, or 0 to turn netctl's metrics off",
            )) from None
        self._thread.name = "netctl-metrics"
        log.info("metrics served on http://%s/metrics",
                 _host_port(address, settings.netctl_port))
        return True

    def stop(self) -> None:
        """Stop serving (the metrics themselves stay usable)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None

    # --- what the daemon reports ----------------------------------------------------------------

    def observe_sweep(self, duration_s: float, phases: Mapping[str, float], changed: int,
                      ended: int) -> None:
        """One sweep: its duration, each phase's share (seconds), sessions changed and ended."""
        self._sweep.observe(duration_s)
        for phase, seconds in phases.items():
            self._phases.get(phase, self._phases[OTHER]).set(seconds)
        self._sweep_changed.set(changed)
        self._sweep_ended.set(ended)

    def add_bytes(self, up: int, down: int) -> None:
        """Bytes the sweep (or a final reading) just folded into the sessions, both ways."""
        if up > 0:
            self._bytes_up.inc(up)
        if down > 0:
            self._bytes_down.inc(down)

    def command(self, verb: str | None, ok: bool, count: int = 1) -> None:
        """``count`` commands of ``verb`` (None: unparseable) acknowledged ok or failed."""
        key = INVALID_VERB if verb is None else str(verb)
        child = self._commands.get((key, ok)) or self._commands[(OTHER, ok)]
        if count > 0:
            child.inc(count)

    def session_started(self, plan: str) -> None:
        """A session began on ``plan`` ("" is the default plan)."""
        name = plan or self.config.session.default_plan
        self._started.get(name, self._started[OTHER]).inc()

    def session_ended(self, reason: str, count: int = 1) -> None:
        """``count`` sessions ended for ``reason`` (an EndReason or its value)."""
        if count > 0:
            self._ended.get(str(reason), self._ended[OTHER]).inc(count)

    def error(self, kind: str) -> None:
        """A failure the daemon survived: nft, store, shaper, netlink, leases or unexpected."""
        self._errors.get(kind, self._errors[OTHER]).inc()

    def records(self, spooled: int = 0, written: int = 0, duplicate: int = 0) -> None:
        """Accounting records appended to the spool, written to the stream, found there."""
        for outcome, count in (("spooled", spooled), ("written", written),
                               ("duplicate", duplicate)):
            if count > 0:
                self._records[outcome].inc(count)

    def set_state(self, *, active: int, confirming: int, trusted: int, blocked: int,
                  shaped: int, spool_length: int, redis_reachable: bool) -> None:
        """The gauges, from counts the daemon already holds (once per sweep)."""
        self._clients[State.ACTIVE.value].set(active)
        self._clients[State.CONFIRMING.value].set(confirming)
        self._clients["trusted"].set(trusted)
        self._clients["blocked"].set(blocked)
        self._shaped.set(shaped)
        self._spool.set(spool_length)
        self._redis_up.set(1 if redis_reachable else 0)

    def redis_reachable(self, up: bool) -> None:
        """Redis went away (False) or answered again (True)."""
        self._redis_up.set(1 if up else 0)


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
