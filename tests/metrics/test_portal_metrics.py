"""The portal's metrics: recorded by the app in multiprocess files, never served by the app."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from flask import Flask

import portal.metrics
from parvis.core.commands import Result
from parvis.core.config import Config, MetricsConfig
from parvis.store import Store
from portal import create_app
from tests.metrics.conftest import address_like, collect, label_values, sample
from tests.portal.conftest import CLIENT_IP, FakeNetctl, https_client
from tests.portal.helpers import csrf_token


def test_requests_are_counted_by_route_and_status(metrics_app: Flask, multiproc_dir: Path,
                                                  netctl: FakeNetctl) -> None:
    client = https_client(metrics_app)
    token = csrf_token(client)  # GET /
    assert client.post("/accepter", data={"csrf_token": token}).status_code == 303
    assert client.get("/api/captive").status_code == 200

    found = collect(multiproc_dir)

    assert sample(found, "parvis_portal_requests_total", route="splash.index",
                  status="200") == 1
    assert sample(found, "parvis_portal_requests_total", route="splash.accept",
                  status="303") == 1
    assert sample(found, "parvis_portal_requests_total", route="api.captive", status="200") == 1
    assert sample(found, "parvis_portal_request_duration_seconds_count",
                  route="splash.accept") == 1
    assert (sample(found, "parvis_portal_request_duration_seconds_sum", route="splash.index")
            or 0) > 0


def test_accept_to_online_latency_is_observed(metrics_app: Flask, multiproc_dir: Path,
                                              netctl: FakeNetctl) -> None:
    client = https_client(metrics_app)
    assert client.post("/accepter", data={"csrf_token": csrf_token(client)}).status_code == 303
    netctl.decide = lambda command: Result(False, "device 02:00:00:00:00:11 is blocked")
    other = https_client(metrics_app, "10.77.2.11")
    assert other.post("/accepter", data={"csrf_token": csrf_token(other)}).status_code == 403

    found = collect(multiproc_dir)

    assert sample(found, "parvis_portal_accept_seconds_count", via="accept", outcome="ok") == 1
    assert sample(found, "parvis_portal_accept_seconds_count", via="accept",
                  outcome="refused") == 1
    took = sample(found, "parvis_portal_accept_seconds_sum", via="accept", outcome="ok")
    # FakeNetctl polls every 100 ms: the wait for it is in the figure.
    assert took is not None and 0 < took < 5
    assert sample(found, "parvis_portal_accept_seconds_bucket", via="accept", outcome="ok",
                  le="10.0") == 1


def test_an_unanswered_accept_is_observed_at_the_timeout(metrics_app: Flask,
                                                         multiproc_dir: Path,
                                                         config: Config) -> None:
    """No netctl: the portal gives up after ack_timeout_s (0.5 s here) and answers 503."""
    client = https_client(metrics_app)
    assert client.post("/accepter", data={"csrf_token": csrf_token(client)}).status_code == 503

    found = collect(multiproc_dir)

    took = sample(found, "parvis_portal_accept_seconds_sum", via="accept", outcome="unanswered")
    assert took is not None and took >= config.portal.ack_timeout_s
    assert sample(found, "parvis_portal_requests_total", route="splash.accept",
                  status="503") == 1


def test_plain_http_requests_are_all_intercept(metrics_app: Flask, multiproc_dir: Path) -> None:
    client = metrics_app.test_client()
    client.environ_base.update({"REMOTE_ADDR": CLIENT_IP})
    for path in ("/generate_204", "/hotspot-detect.html", "/", "/metrics"):
        assert client.get(path, headers={"Host": "example.org"}).status_code == 302

    found = collect(multiproc_dir)

    assert sample(found, "parvis_portal_requests_total", route="intercept", status="302") == 4


def test_no_label_holds_a_path_or_an_address(metrics_app: Flask, multiproc_dir: Path) -> None:
    """Paths a client chose (here addresses) are ``unmatched``, never a label of their own."""
    client = https_client(metrics_app)
    for path in ("/02:50:76:00:00:01", f"/{CLIENT_IP}", "/fd77::2:144", "/wp-admin.php"):
        assert client.get(path).status_code == 404

    found = collect(multiproc_dir)

    assert [v for v in label_values(found) if address_like(v)] == []
    assert not any("wp-admin" in value for value in label_values(found))
    assert sample(found, "parvis_portal_requests_total", route="unmatched", status="404") == 4


def test_metrics_are_not_served_by_the_portal(metrics_app: Flask, multiproc_dir: Path) -> None:
    """A resident must not reach /metrics: 404 on the HTTPS pages, 302 on plain HTTP."""
    client = https_client(metrics_app)
    client.get("/")
    for path in ("/metrics", "/metrics/", "/api/metrics"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert b"parvis_portal" not in answer.data
    plain = metrics_app.test_client()
    answer = plain.get("/metrics", headers={"Host": "portail.parvis.test"})
    assert answer.status_code == 302
    assert b"parvis_portal" not in answer.data


def test_metrics_are_not_served_with_metrics_off(app: Flask) -> None:
    """The same without recording (the portal tests' own app)."""
    assert https_client(app).get("/metrics").status_code == 404


def test_nothing_is_recorded_without_the_directory(app: Flask) -> None:
    """Outside parvis-portal (no PROMETHEUS_MULTIPROC_DIR), apps install no hooks at all."""
    assert portal.metrics.EXTENSION not in app.extensions


def test_port_0_turns_recording_off(multiproc_dir: Path, config: Config, store: Store) -> None:
    off = dataclasses.replace(config, metrics=MetricsConfig(portal_port=0))
    app = create_app(off, store=store, testing=True)
    assert portal.metrics.EXTENSION not in app.extensions
    https_client(app).get("/")
    assert list(multiproc_dir.iterdir()) == []
