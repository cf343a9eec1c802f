"""Fixtures for the fuzz tests: the portal and console tests' own Redis, netctl and configs.

Reused, not copied: ``redis_server`` (session), ``store`` (emptied before each
test) and the ``netctl`` stand-in come from ``tests/portal/conftest.py``, the
console's ``accounts`` (an administrator and a viewer) from
``tests/admin/conftest.py``; the configurations from their ``make_config`` and
``admin_config``. At the end of the run one line counts the requests sent to
each application (``tests.fuzz.web.TALLY``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from _pytest.terminal import TerminalReporter
from hypothesis import HealthCheck, settings

from tests.admin import conftest as admin_fixtures
from tests.fuzz.web import STATUSES, TALLY
from tests.portal import conftest as portal_fixtures

redis_server = portal_fixtures.redis_server
store = portal_fixtures.store
netctl = portal_fixtures.netctl
accounts = admin_fixtures.accounts

# Every fuzz test: the same examples on every run (CI reproduces a failure), no time
# limit per example (a request waits for Redis or netctl), fixtures shared by the
# examples of one test (each request carries its own cookies, so none leaks into the next).
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.large_base_example],
)

_STARTED = time.monotonic()


@pytest.fixture(scope="session", autouse=True)
def fuzz_clock() -> Iterator[None]:
    """Session fixture (autouse): when the fuzz tests started, for the summary line."""
    global _STARTED
    _STARTED = time.monotonic()
    yield


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    """One line: how many requests each application answered, and in how long."""
    if TALLY:
        counts = ", ".join(f"{name} {count:,}" for name, count in sorted(TALLY.items()))
        terminalreporter.write_line(
            f"fuzz: requests sent: {counts} (total {sum(TALLY.values()):,}) "
            f"in {time.monotonic() - _STARTED:.1f} s")
        for name in sorted(TALLY):
            statuses = sorted((status, count) for (target, status), count in STATUSES.items()
                              if target == name)
            terminalreporter.write_line(
                f"fuzz: {name}: " + ", ".join(f"{status}×{count}" for status, count in statuses))
