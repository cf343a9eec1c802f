"""What must change in the kernel so that it matches the sessions: the reconcile plan.

``plan(sessions, actual, now)`` is pure; netctl applies the result as one
nftables transaction. Elements already present are left alone, which is what
keeps their counters (and so a restart of netctl is invisible to residents).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from parvis.core.sessions import Counter, Element, Session


@dataclass
class Plan:
    """Elements to add (with their kernel timeout in seconds) and elements to delete."""

    add: list[tuple[Element, int]] = field(default_factory=list)
    delete: list[Element] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.add or self.delete)


def plan(sessions: Iterable[Session], actual: Mapping[Element, Counter], now: float) -> Plan:
    """Compute the changes that make ``actual`` hold exactly the live sessions' elements."""
    desired: dict[Element, int] = {}
    for session in sessions:
        if session.expires_at <= now:
            continue
        timeout_s = session.remaining_s(now)
        for element, _key in session.keyed_elements():
            desired[element] = timeout_s
    result = Plan()
    result.add = sorted((e, t) for e, t in desired.items() if e not in actual)
    result.delete = sorted(e for e in actual if e not in desired)
    return result
