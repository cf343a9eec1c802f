"""Fixtures for tests that run in the network lab (root only)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from lab.topology import Lab


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A running lab with five clients, shared by the whole test session.

    Name ``pt<pid % 100000>`` (so parallel sessions and a developer's own
    ``parvis`` lab do not collide), scope ``session``, built with the defaults:
    netctl and the portal are started when their code exists. ``down()`` runs
    at the end whatever happened, also if ``up()`` failed half-way.

    Example::

        @pytest.mark.lab
        def test_client_has_address(lab: Lab) -> None:
            assert lab.client_ip(1).startswith("10.77.")
            lab.exec("c1", ["curl", "-s", "http://203.0.113.10/"], check=False)
    """
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (network namespaces)")
    instance = Lab(name=f"pt{os.getpid() % 100000}", clients=5)
    try:
        instance.up()
        yield instance
    finally:
        instance.down()
