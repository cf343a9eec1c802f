"""Reading the aggregates of a period from Redis into a report (parvis.core.reports)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from parvis.core.reports import (
    Cell,
    PeriodData,
    Report,
    build_report,
    month_days,
    month_of,
    next_month_start,
    previous_month,
)
from parvis.store import Store


def months(store: Store) -> list[str]:
    """Every month with figures (``YYYY-MM``), most recent first."""
    return sorted(store.report_months(), reverse=True)


def zones(store: Store, month: str | None = None) -> list[str]:
    """The zones with figures in ``month`` (every month kept if None), sorted."""
    chosen = [month] if month is not None else store.report_months()
    return sorted({cell.zone for m in chosen for cell in store.report_cells(m)})


def load_period(store: Store, first_day: date, last_day: date, zone: str | None = None,
                concurrency: bool = True) -> PeriodData:
    """The exact aggregates of the days ``first_day`` to ``last_day``, for one zone or all.

    A period that crosses months counts a device once per month (each month's
    devices are hashed with that month's own key).
    """
    if last_day < first_day:
        raise ValueError(f"the period ends ({last_day}) before it starts ({first_day})")
    cells: list[Cell] = []
    month_start = first_day.replace(day=1)
    while month_start <= last_day:
        cells += [c for c in store.report_cells(month_of(month_start))
                  if first_day <= c.date <= last_day and (zone is None or c.zone == zone)]
        month_start = next_month_start(month_start)
    by_day: dict[str, list[Cell]] = defaultdict(list)
    by_day_zone: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    by_zone: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells:
        by_day[cell.day].append(cell)
        by_day_zone[cell.day, cell.zone].append(cell)
        by_zone[cell.zone].append(cell)
    groups: list[list[Cell]] = [cells, *by_day.values(), *by_day_zone.values(),
                                *by_zone.values()]
    counts = iter(store.count_devices(groups))
    devices = next(counts)
    return PeriodData(
        first_day=first_day, last_day=last_day, zone=zone,
        cells=store.report_cell_data(cells, concurrency=concurrency), devices=devices,
        devices_by_day={day: next(counts) for day in by_day},
        devices_by_day_zone={key: next(counts) for key in by_day_zone},
        devices_by_zone={z: next(counts) for z in by_zone})


def load_report(store: Store, month: str, zone: str | None = None, min_count: int = 5, *,
                first_day: date | None = None, last_day: date | None = None,
                today: date | None = None) -> Report:
    """The report on ``month`` (``YYYY-MM``), or on some of its days, for one zone or all.

    A month still running ends at ``today`` (default: the host's date), and then
    has no month-over-month change; a whole month is compared with the month
    before. ValueError for a malformed month or days outside it.
    """
    start, end = month_days(month)
    first = first_day or start
    last = last_day or end
    if not start <= first <= last <= end:
        raise ValueError(f"days {first} to {last}: expected days of {month}, in order")
    today = today or date.today()
    running = first <= today <= last
    if running:
        last = today
    data = load_period(store, first, last, zone)
    previous = None
    if (first, last) == (start, end) and not running:
        before = previous_month(month)
        before_start, before_end = month_days(before)
        if before in store.report_months():
            previous = load_period(store, before_start, before_end, zone, concurrency=False)
    return build_report(data, min_count, previous)
