"""Fixtures for the metrics tests: the portal tests' real Redis and netctl stand-in, and
a multiprocess directory like the one ``parvis-portal`` makes.

The Redis fixtures are the portal's own (tests/portal/conftest.py), imported here
so that both directories share one definition.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

import portal.metrics
from parvis.core.config import Config
from parvis.store import Store
from portal import create_app
from tests.portal.conftest import app, config, netctl, redis_server, store

__all__ = ["app", "config", "netctl", "redis_server", "store"]

MAC_RE = re.compile(r"(?i)\b[0-9a-f]{1,2}([:-][0-9a-f]{1,2}){5}\b")
IPV4_RE = re.compile(r"\b\d{1,3}(\.\d{1,3}){3}\b")
IPV6_RE = re.compile(r"(?i)\b[0-9a-f]{0,4}(:[0-9a-f]{0,4}){2,7}\b")


def address_like(value: str) -> bool:
    """Whether a label value looks like a MAC, an IPv4 or an IPv6 address."""
    return bool(MAC_RE.search(value) or IPV4_RE.search(value) or
                (":" in value and IPV6_RE.search(value)))


def families(text: str) -> dict[str, Metric]:
    """Parse an exposition text into metric families by name."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(found: dict[str, Metric], name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly these labels (None: absent)."""
    for family in found.values():
        for item in family.samples:
            if item.name == name and item.labels == labels:
                return float(item.value)
    return None


def label_values(found: dict[str, Metric]) -> list[str]:
    """Every label value of every sample."""
    return [value for family in found.values() for item in family.samples
            for value in item.labels.values()]


@pytest.fixture
def multiproc_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private PROMETHEUS_MULTIPROC_DIR for one test, as ``parvis-portal`` sets it.

    prometheus_client's value class and the portal's recorder are put back after
    the test, so later tests in this process record in memory again.
    """
    directory = tmp_path / "metrics"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv(portal.metrics.MULTIPROC_ENV, str(directory))
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # restored at teardown
    monkeypatch.setattr(portal.metrics, "_recorder", None)
    yield directory
    values.close_all_multiprocess_files()  # type: ignore[no-untyped-call]


def collect(directory: Path) -> dict[str, Metric]:
    """What the portal's metrics listener would serve: the sum of the directory's files."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return families(generate_latest(registry).decode())


@pytest.fixture
def metrics_app(multiproc_dir: Path, config: Config, store: Store) -> Flask:
    """The portal application with metrics on (built once the directory is set)."""
    return create_app(config, store=store, testing=True)
