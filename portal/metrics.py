"""The portal's Prometheus metrics: requests by route and status, latencies, accept → online.

gunicorn serves the portal from several worker processes under two arbiters.
Each worker records into prometheus_client's multiprocess files, in a private
directory (``PROMETHEUS_MULTIPROC_DIR``, 0700) that ``parvis-portal`` makes
afresh at each start and removes at exit; ``parvis-portal``'s own parent
process sums those files and serves them on ``[metrics] address``:``portal_port``
(:class:`MetricsListener`). Never on the portal's own listeners: a resident
must not reach ``/metrics`` (the portal answers it 404, the interceptor 302).

Labels never hold what a client sent: the route is the Flask endpoint that
answered (``splash.accept``), never the path; plain-HTTP requests are all
``intercept``; a path no view matches is ``unmatched``.

Recording is on only in an app built while ``PROMETHEUS_MULTIPROC_DIR`` is set
and ``portal_port`` is not 0: tests and other hosts of :func:`portal.create_app`
pay nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from flask import Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app, values
from prometheus_client.multiprocess import MultiProcessCollector

from parvis.core.commands import Result
from parvis.core.config import Config, ConfigError, config_problem

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
EXTENSION = "parvis_metrics"
UNMATCHED = "unmatched"  # no view matched the path (a 404 or 405)
INTERCEPT = "intercept"  # the plain-HTTP listener answers everything with its redirect
VIAS = ("accept", "code", "handoff")
# netctl acknowledges an authorize within tens of milliseconds; [portal] ack_timeout_s
# (a few seconds) bounds the wait.
ACCEPT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)


class PortalMetrics:
    """The worker's metric objects (one set per process, written to its multiprocess files)."""

    def __init__(self) -> None:
        # registry=None: in multiprocess mode the files are what is collected.
        self.requests = Counter("parvis_portal_requests",
                                "Requests answered, by route (Flask endpoint) and status.",
                                ["route", "status"], registry=None)
        self.duration = Histogram("parvis_portal_request_duration_seconds",
                                  "Time from a request's arrival to its answer, by route.",
                                  ["route"], registry=None)
        self.accept = Histogram("parvis_portal_accept_seconds",
                                "Time from an accept (or code) POST arriving to netctl's "
                                "acknowledgement, by how the resident got in and the answer "
                                "(ok, refused, unanswered).", ["via", "outcome"],
                                buckets=ACCEPT_BUCKETS_S, registry=None)


_recorder: PortalMetrics | None = None
_recorder_lock = threading.Lock()


def recorder() -> PortalMetrics:
    """This process's metrics, made on first use (in the worker, after gunicorn's fork)."""
    global _recorder
    if _recorder is not None:
        return _recorder
    with _recorder_lock:
        if _recorder is None:
            # prometheus_client picks its value class when it is first imported: if
            # something imported it before PROMETHEUS_MULTIPROC_DIR was set, the
            # values would stay in this process's memory, never reaching the files.
            if not getattr(values.ValueClass, "_multiprocess", False):
                values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
            _recorder = PortalMetrics()
        return _recorder


def enabled(config: Config) -> bool:
    """Whether apps built now record metrics (parvis-portal with a metrics port)."""
    return config.metrics.portal_port != 0 and bool(os.environ.get(MULTIPROC_ENV))


def install(app: Flask, config: Config) -> None:
    """Time and count every request of ``app``, when metrics are enabled.

    Call before any other ``before_request`` function (the interceptor's answers
    end the chain): the clock then starts when the request arrives.
    """
    if not enabled(config):
        return
    app.extensions[EXTENSION] = True
    app.before_request(_start_clock)
    # Registered first, so it runs last: it sees the status the client gets.
    app.after_request(_count)


def _start_clock() -> None:
    g.parvis_arrived = time.perf_counter()


def _route() -> str:
    if request.scheme != "https":
        return INTERCEPT
    return request.endpoint or UNMATCHED


def _count(response: Response) -> Response:
    arrived = g.get("parvis_arrived")
    metrics = recorder()
    route = _route()
    metrics.requests.labels(route, str(response.status_code)).inc()
    if arrived is not None:
        metrics.duration.labels(route).observe(time.perf_counter() - arrived)
    return response


def authorize_answered(via: str, result: Result | None) -> None:
    """netctl answered an authorize (``result`` None: not within ack_timeout_s)."""
    if not current_app.extensions.get(EXTENSION):
        return
    arrived = g.get("parvis_arrived")
    if arrived is None:
        return
    outcome = "unanswered" if result is None else "ok" if result.ok else "refused"
    recorder().accept.labels(via if via in VIAS else "other", outcome).observe(
        time.perf_counter() - arrived)


# --- parvis-portal's parent process --------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged."""


class MetricsListener:
    """The multiprocess directory and the ``/metrics`` endpoint that sums it.

    Made (directory created, port bound) before the gunicorn arbiters are
    forked, so a port in use is reported before anything serves; each arbiter
    then closes its inherited copy of the socket (:meth:`close_in_child`), and
    :meth:`start` serves from a thread of the parent.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.directory = Path(tempfile.mkdtemp(prefix="parvis-portal-metrics-"))  # 0700, empty
        self._previous_env = os.environ.get(MULTIPROC_ENV)
        os.environ[MULTIPROC_ENV] = str(self.directory)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def where(self) -> str:
        """``address:port`` of the endpoint (IPv6 in brackets)."""
        address, port = str(self.config.metrics.address), self.config.metrics.portal_port
        return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"

    def bind(self) -> None:
        """Bind ``[metrics] address:portal_port``; ConfigError naming the key if it cannot."""
        settings = self.config.metrics
        address = str(settings.address)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.directory))  # type: ignore[no-untyped-call]
        server_class = _Server6 if ":" in address else _Server
        try:
            self._server = make_server(address, settings.portal_port, make_wsgi_app(registry),
                                       server_class=server_class, handler_class=_QuietHandler)
        except OSError as error:
            raise ConfigError(config_problem(
                self.config.path, "metrics", "portal_port",
                f"cannot listen on {self.where} ({error.strerror or error})",
                "a free port on the management address, or 0 to turn the portal's metrics off",
            )) from None

    def close_in_child(self) -> None:
        """In a forked arbiter: let go of the parent's listening socket."""
        if self._server is not None:
            self._server.socket.close()

    def start(self) -> None:
        """Serve from a daemon thread of this (the parent) process."""
        if self._server is None:
            return
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="portal-metrics", daemon=True)
        self._thread.start()
        log.info("metrics served on http://%s/metrics", self.where)

    def close(self) -> None:
        """Stop serving, remove the directory, restore the environment."""
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(5)
            self._server.server_close()
            self._server = self._thread = None
        shutil.rmtree(self.directory, ignore_errors=True)
        if self._previous_env is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = self._previous_env
