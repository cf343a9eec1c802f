"""Council reports: daily aggregates folded from accounting records, and the report built on them.

Pure domain logic: no Redis, no files. Two halves:

* **Folding** (:func:`fold_records`): the roll-up job (parvis/reports/rollup.py)
  hands accounting records to it in stream order and writes back what it
  returns, per *cell* (a local day, a gateway, a zone), as counters to add. A
  session is counted once, from its stop record, on the local day it
  **started**: its length, its data, its plan, its code batch, the hour it
  started (the heat map). Its device is counted from its start record and
  again from its stop record, as a keyed hash added to a HyperLogLog (adding
  the same element twice changes nothing). Concurrency is kept per minute of
  the local day as +1/-1 steps, see :func:`concurrency_steps`.
* **Reporting** (:func:`build_report`): the exact aggregates of a period become
  the figures that may be shown, each count under ``min_count`` suppressed
  (None), and a plain-language summary in French or English
  (:func:`summary`).

The text of every MAC address stays in this module's arguments: what leaves
it is counters, hour numbers, plan names, code batch ids and keyed hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from parvis.core.accounting import Record, RecordType

# --- the histogram of session lengths ----------------------------------------------------------

# Bucket widths by length: 1 minute up to 2 hours, 5 minutes up to 8 hours, 30 minutes
# up to 7 days, then one open bucket. A median read from it is within one bucket
# width of the true median (a minute for typical sessions).
_LENGTH_STEPS = ((2 * 3600, 60), (8 * 3600, 300), (7 * 86400, 1800))
LENGTH_OPEN_BUCKET_S = 7 * 86400

# A month's device key lives on this long after the month ends, for the stop
# records of sessions still running at midnight and a roll-up that ran late.
DEVICE_KEY_GRACE_S = 2 * 86400
# Sessions longer than this are clipped in the concurrency steps (netctl allows 7 days).
_MAX_SPAN_DAYS = 40
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# HyperLogLog as Redis implements it: 16,384 registers, standard error 1.04/sqrt(m).
HLL_STANDARD_ERROR = 0.0081


def length_bucket(duration_s: int) -> int:
    """The lower bound, in seconds, of the histogram bucket that holds ``duration_s``."""
    duration_s = max(0, int(duration_s))
    for limit, width in _LENGTH_STEPS:
        if duration_s < limit:
            return duration_s // width * width
    return LENGTH_OPEN_BUCKET_S


def bucket_width(lower_s: int) -> int:
    """The width of the bucket starting at ``lower_s`` (0 for the open last bucket)."""
    for limit, width in _LENGTH_STEPS:
        if lower_s < limit:
            return width
    return 0


def histogram_median(histogram: Mapping[int, int]) -> float | None:
    """The median length read from a histogram {bucket lower bound: sessions}, or None if empty.

    Linear interpolation inside the bucket where the middle session falls: the
    result is within that bucket's width of the exact median.
    """
    total = sum(histogram.values())
    if total <= 0:
        return None
    middle = total / 2
    seen = 0
    for lower in sorted(histogram):
        count = histogram[lower]
        if count <= 0:
            continue
        if seen + count >= middle:
            return lower + bucket_width(lower) * (middle - seen) / count
        seen += count
    return float(max(histogram))  # unreachable: the loop crosses the middle


# --- days in the town's time zone ----------------------------------------------------------------


def local_time(moment: float, tz: tzinfo | None) -> datetime:
    """``moment`` (epoch seconds) as the town's wall clock (``tz`` None = the host's zone)."""
    return datetime.fromtimestamp(moment, tz)


def local_day(moment: float, tz: tzinfo | None) -> date:
    """The town's date at ``moment``."""
    return local_time(moment, tz).date()


def midnight(day: date, tz: tzinfo | None) -> float:
    """Epoch seconds of the local midnight that starts ``day`` (DST-aware)."""
    return datetime.combine(day, time(), tzinfo=tz).timestamp()


def month_of(day: date) -> str:
    """``YYYY-MM`` of a date."""
    return f"{day.year:04d}-{day.month:02d}"


def month_days(month: str) -> tuple[date, date]:
    """The first and last day of ``YYYY-MM``; ValueError if it is not a month."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if match is None or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"{month!r} is not a month (expected YYYY-MM, e.g. 2026-11)")
    first = date(int(match[1]), int(match[2]), 1)
    return first, next_month_start(first) - timedelta(days=1)


def next_month_start(day: date) -> date:
    """The first day of the month after ``day``'s."""
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def previous_month(month: str) -> str:
    """The ``YYYY-MM`` before ``month``."""
    first, _ = month_days(month)
    return month_of(first - timedelta(days=1))


def month_end(month: str, tz: tzinfo | None) -> float:
    """Epoch seconds of the local midnight that ends ``month``."""
    _, last = month_days(month)
    return midnight(last + timedelta(days=1), tz)


def device_key_ttl_s(month: str, tz: tzinfo | None, now: float) -> int:
    """Seconds the device key of ``month`` still has to live at ``now`` (<= 0: destroy it)."""
    return math.floor(month_end(month, tz) + DEVICE_KEY_GRACE_S - now)


def device_token(key: bytes, mac: str) -> str:
    """The keyed hash of a MAC that the unique-device HyperLogLogs hold (128 bits, hex).

    Without the month's key, which is destroyed after the month, a token can be
    neither reversed nor recomputed from a MAC one suspects.
    """
    return hmac.new(key, mac.strip().lower().encode(), hashlib.sha256).hexdigest()[:32]


# --- folding records into cells ------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Cell:
    """The unit of aggregation: one local day of one gateway, reported under one zone."""

    day: str  # YYYY-MM-DD, the town's date
    gateway: str
    zone: str

    @property
    def month(self) -> str:
        """``YYYY-MM`` of the cell's day."""
        return self.day[:7]

    @property
    def date(self) -> date:
        """The cell's day as a date."""
        return date.fromisoformat(self.day)

    @property
    def member(self) -> str:
        """``<day>:<gateway>:<zone>``: its name in the month's index (no part holds a colon)."""
        return f"{self.day}:{self.gateway}:{self.zone}"

    @classmethod
    def from_member(cls, member: str) -> Cell:
        """Read :attr:`member`; ValueError if malformed."""
        parts = member.split(":", 2)
        if len(parts) != 3 or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", parts[0]):
            raise ValueError(f"report cell {member!r}: expected <day>:<gateway>:<zone>")
        return cls(parts[0], parts[1], parts[2])


@dataclass
class CellDelta:
    """What one fold adds to one cell.

    ``stats`` fields (added with HINCRBY): ``sessions``, ``duration_s``,
    ``bytes_down``, ``bytes_up``, ``len:<bucket lower bound s>``,
    ``hour:<HH>`` (sessions started in that local hour), ``plan:<name>``,
    ``via:<accept|code|handoff|other>``, ``batch:<code batch id>``.
    ``concurrency``: local minute of the day (minutes since local midnight) ->
    step. ``devices``: device tokens to add to the day's HyperLogLog.
    """

    stats: Counter[str] = field(default_factory=Counter)
    concurrency: Counter[int] = field(default_factory=Counter)
    devices: set[str] = field(default_factory=set)


@dataclass
class Fold:
    """Every cell a batch of records changes, and what was seen."""

    cells: dict[Cell, CellDelta] = field(default_factory=dict)
    starts: int = 0
    stops: int = 0
    # Records whose device could not be counted: their month's key was already destroyed.
    devices_uncounted: int = 0
    # Records with times or totals no session can have (passed over, see fold_records).
    unusable: int = 0

    def cell(self, cell: Cell) -> CellDelta:
        """The delta of ``cell``, created empty on first use."""
        delta = self.cells.get(cell)
        if delta is None:
            delta = self.cells[cell] = CellDelta()
        return delta


def concurrency_steps(started_at: float, ended_at: float,
                      tz: tzinfo | None) -> list[tuple[date, int, int]]:
    """The +1/-1 steps, (local day, minute of that day, step), of one session's presence.

    A session is present in every minute of the local day (counted from local
    midnight, so 1,500 minutes on the day DST ends) that it overlaps, and in
    at least the minute it started in. Each day it touches gets +1 at its first
    minute there (minute 0 for a day it runs into) and -1 after its last, unless
    it runs to the day's end. The peak of a day is the highest running sum of its
    steps in minute order: the most devices present in one minute.
    """
    ended_at = max(ended_at, started_at)
    day = local_day(started_at, tz)
    steps: list[tuple[date, int, int]] = []
    for _ in range(_MAX_SPAN_DAYS):
        start, end = midnight(day, tz), midnight(day + timedelta(days=1), tz)
        first = math.floor((max(started_at, start) - start) / 60)
        last = math.ceil((min(ended_at, end) - start) / 60)
        last = max(last, first + 1)
        steps.append((day, first, 1))
        if last * 60 < end - start:
            steps.append((day, last, -1))
        if ended_at <= end:
            break
        day += timedelta(days=1)
    return steps


_EPOCH_END = 4102444800.0  # 2100-01-01: later times are not a session's
_MAX_TOTAL = 2**48  # 281 TB, or 8.9 million years: far above any session's bytes or seconds


def _usable(record: Record) -> bool:
    """True when a record's times and totals are those of a real session."""
    return (0 < record.started_at < _EPOCH_END and 0 < record.at < _EPOCH_END
            and all(value < _MAX_TOTAL for value in (record.duration_s, record.bytes_down,
                                                      record.bytes_up)))


def _name(text: str) -> str:
    """A plan, via or batch name fit for a field name; anything odd becomes ``other``."""
    return text if _NAME.match(text) else "other"


def fold_records(records: Iterable[Record], zone: str, tz: tzinfo | None,
                 token: Callable[[str, str], str | None], fold: Fold | None = None) -> Fold:
    """Fold accounting records of one gateway into cell deltas (into ``fold`` if given).

    ``token(month, mac)`` is the keyed hash of a MAC with that month's device
    key, or None when the key is gone (the device is then not counted).
    Interim records change nothing: every figure comes from starts and stops.
    """
    fold = fold if fold is not None else Fold()
    for record in records:
        if record.type is RecordType.INTERIM:
            continue
        if not _usable(record):
            # Counting it could only fail (a date out of range, a total Redis cannot
            # add) and would then hold up every roll-up after it.
            fold.unusable += 1
            continue
        day = local_day(record.started_at, tz)
        cell = Cell(day.isoformat(), record.gateway, zone)
        delta = fold.cell(cell)
        device = token(month_of(day), record.mac)
        if device is None:
            fold.devices_uncounted += 1
        else:
            delta.devices.add(device)
        if record.type is RecordType.START:
            fold.starts += 1
            continue
        fold.stops += 1
        stats = delta.stats
        stats["sessions"] += 1
        stats["duration_s"] += record.duration_s
        stats["bytes_down"] += record.bytes_down
        stats["bytes_up"] += record.bytes_up
        stats[f"len:{length_bucket(record.duration_s)}"] += 1
        stats[f"hour:{local_time(record.started_at, tz).hour:02d}"] += 1
        stats[f"plan:{_name(record.plan or 'default')}"] += 1
        via = record.via if record.via in ("accept", "code", "handoff") else "other"
        stats[f"via:{via}"] += 1
        if record.code_batch:
            stats[f"batch:{_name(record.code_batch)}"] += 1
        for step_day, minute, step in concurrency_steps(record.started_at, record.at, tz):
            target = delta if step_day == day else fold.cell(
                Cell(step_day.isoformat(), record.gateway, zone))
            target.concurrency[minute] += step
    return fold


# --- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellData:
    """One cell's aggregates as stored: its counters and its concurrency steps."""

    cell: Cell
    stats: Mapping[str, int]
    concurrency: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PeriodData:
    """The exact aggregates of a period, as the loader read them (never shown as such).

    ``devices_*`` are HyperLogLog estimates of distinct devices: over the whole
    period, per day, per (day, zone) and per zone.
    """

    first_day: date
    last_day: date
    zone: str | None
    cells: Sequence[CellData]
    devices: int = 0
    devices_by_day: Mapping[str, int] = field(default_factory=dict)
    devices_by_day_zone: Mapping[tuple[str, str], int] = field(default_factory=dict)
    devices_by_zone: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Figures:
    """The figures of a day, a zone or a period; None = suppressed (fewer than min_count).

    Counts under the threshold are suppressed, and so is every figure that
    describes fewer sessions than that (their average length, their data).
    """

    sessions: int | None
    devices: int | None  # an estimate: see summary()
    avg_length_s: float | None
    median_length_s: float | None
    bytes_down: int | None
    bytes_up: int | None
    peak_clients: int | None
    sessions_via_code: int | None
    # The day of the highest peak (period figures only).
    peak_day: date | None = None


@dataclass(frozen=True)
class DayRow:
    """The figures of one day, for one zone (or every zone of the report: ``zone`` None)."""

    day: date
    zone: str | None
    figures: Figures


@dataclass(frozen=True)
class Change:
    """Month over month, in percent; None when either month's figure is suppressed or absent."""

    previous_month: str
    sessions_pct: float | None
    devices_pct: float | None
    data_pct: float | None


@dataclass(frozen=True)
class Report:
    """A report on a period (a calendar month, or days within one), ready to render."""

    first_day: date
    last_day: date
    month: str | None  # "YYYY-MM" when the period is a whole calendar month
    zone: str | None  # None = every zone
    zones: tuple[str, ...]  # the zones with figures in the period
    min_count: int
    totals: Figures
    days: tuple[DayRow, ...]  # one per day of the period, zones together
    rows: tuple[DayRow, ...]  # one per day and zone
    zone_totals: tuple[tuple[str, Figures], ...]
    # Sessions started, [weekday: 0 = Monday][local hour], summed over the period.
    heatmap: tuple[tuple[int | None, ...], ...]
    plans: tuple[tuple[str, int | None], ...]
    code_batches: tuple[tuple[str, int | None], ...]
    change: Change | None  # None when the period is not a month or no earlier month is kept

    @property
    def has_data(self) -> bool:
        """False when nothing at all was recorded in the period."""
        return bool(self.zones)


@dataclass
class _Tally:
    """Exact sums over some cells (private: never leaves this module unsuppressed)."""

    sessions: int = 0
    duration_s: int = 0
    bytes_down: int = 0
    bytes_up: int = 0
    via_code: int = 0
    lengths: Counter[int] = field(default_factory=Counter)
    steps: dict[str, Counter[int]] = field(default_factory=dict)  # day -> minute -> step

    def add(self, data: CellData) -> None:
        stats = data.stats
        self.sessions += stats.get("sessions", 0)
        self.duration_s += stats.get("duration_s", 0)
        self.bytes_down += stats.get("bytes_down", 0)
        self.bytes_up += stats.get("bytes_up", 0)
        self.via_code += stats.get("via:code", 0)
        for name, value in stats.items():
            if name.startswith("len:"):
                self.lengths[int(name[4:])] += value
        if data.concurrency:
            self.steps.setdefault(data.cell.day, Counter()).update(data.concurrency)

    def peaks(self) -> dict[str, int]:
        """The highest number of devices present in one minute, per day."""
        out = {}
        for day, steps in self.steps.items():
            level = peak = 0
            for minute in sorted(steps):
                level += steps[minute]
                peak = max(peak, level)
            out[day] = peak
        return out


def _count(value: int, min_count: int) -> int | None:
    return value if value >= min_count else None


def _figures(tally: _Tally, devices: int, min_count: int, with_peak_day: bool = False) -> Figures:
    shown = tally.sessions >= min_count
    peaks = tally.peaks()
    peak = max(peaks.values(), default=0)
    peak_day = None
    if with_peak_day and peak >= min_count:
        peak_day = date.fromisoformat(min(day for day, value in peaks.items() if value == peak))
    return Figures(
        sessions=_count(tally.sessions, min_count),
        devices=_count(devices, min_count),
        avg_length_s=tally.duration_s / tally.sessions if shown else None,
        median_length_s=histogram_median(tally.lengths) if shown else None,
        bytes_down=tally.bytes_down if shown else None,
        bytes_up=tally.bytes_up if shown else None,
        peak_clients=_count(peak, min_count),
        sessions_via_code=_count(tally.via_code, min_count),
        peak_day=peak_day)


def _pct(now: int, before: int, min_count: int) -> float | None:
    if now < min_count or before < min_count:
        return None
    return (now - before) * 100 / before


def build_report(data: PeriodData, min_count: int, previous: PeriodData | None = None) -> Report:
    """The report on ``data``'s period, with every count under ``min_count`` suppressed.

    ``previous``: the month before, for the month-over-month change (only
    when ``data`` covers a whole calendar month; its concurrency is not needed).
    """
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    cells = [c for c in data.cells
             if data.first_day <= c.cell.date <= data.last_day
             and (data.zone is None or c.cell.zone == data.zone)]
    total = _Tally()
    by_day: dict[str, _Tally] = {}
    by_day_zone: dict[tuple[str, str], _Tally] = {}
    by_zone: dict[str, _Tally] = {}
    heat: Counter[tuple[int, int]] = Counter()
    plans: Counter[str] = Counter()
    batches: Counter[str] = Counter()
    for c in cells:
        key, zone = c.cell.day, c.cell.zone
        for tally in (total, by_day.setdefault(key, _Tally()),
                      by_day_zone.setdefault((key, zone), _Tally()),
                      by_zone.setdefault(zone, _Tally())):
            tally.add(c)
        weekday = c.cell.date.weekday()
        for name, value in c.stats.items():
            kind, _, rest = name.partition(":")
            if kind == "hour":
                heat[weekday, int(rest)] += value
            elif kind == "plan":
                plans[rest] += value
            elif kind == "batch":
                batches[rest] += value
    zones = tuple(sorted(by_zone))
    days = []
    rows = []
    day = data.first_day
    while day <= data.last_day:
        key = day.isoformat()
        days.append(DayRow(day, data.zone, _figures(
            by_day.get(key, _Tally()), data.devices_by_day.get(key, 0), min_count)))
        for zone in zones:
            rows.append(DayRow(day, zone, _figures(
                by_day_zone.get((key, zone), _Tally()),
                data.devices_by_day_zone.get((key, zone), 0), min_count)))
        day += timedelta(days=1)
    month = month_of(data.first_day)
    whole_month = (data.first_day, data.last_day) == month_days(month)
    change = None
    if whole_month and previous is not None:
        before = _Tally()
        for c in previous.cells:
            if data.zone is None or c.cell.zone == data.zone:
                before.add(CellData(c.cell, c.stats))
        change = Change(
            previous_month=month_of(previous.first_day),
            sessions_pct=_pct(total.sessions, before.sessions, min_count),
            devices_pct=_pct(data.devices, previous.devices, min_count),
            data_pct=(_pct(total.bytes_down + total.bytes_up,
                           before.bytes_down + before.bytes_up, 1)
                      if min(total.sessions, before.sessions) >= min_count else None))
    return Report(
        first_day=data.first_day, last_day=data.last_day,
        month=month if whole_month else None, zone=data.zone, zones=zones,
        min_count=min_count,
        totals=_figures(total, data.devices, min_count, with_peak_day=True),
        days=tuple(days), rows=tuple(rows),
        zone_totals=tuple((z, _figures(by_zone[z], data.devices_by_zone.get(z, 0), min_count,
                                       with_peak_day=True)) for z in zones),
        heatmap=tuple(tuple(_count(heat[w, h], min_count) for h in range(24))
                      for w in range(7)),
        plans=tuple((name, _count(value, min_count))
                    for name, value in sorted(plans.items(), key=lambda i: (-i[1], i[0]))),
        code_batches=tuple((name, _count(value, min_count))
                           for name, value in sorted(batches.items())),
        change=change)


# --- words and numbers, in French and English ----------------------------------------------------

LANGUAGES = ("fr", "en")
NBSP = "\u00a0"  # French puts one between thousands, before %, inside « »

MONTHS = {
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
           "septembre", "octobre", "novembre", "décembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}
WEEKDAYS = {
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}


def check_lang(lang: str) -> str:
    """``lang`` if supported; ValueError otherwise."""
    if lang not in LANGUAGES:
        raise ValueError(f"language {lang!r}: expected one of {', '.join(LANGUAGES)}")
    return lang


def format_number(value: float, lang: str, decimals: int = 0) -> str:
    """``1 234,5`` in French (no-break spaces), ``1,234.5`` in English."""
    text = f"{value:,.{decimals}f}"
    if lang == "fr":
        text = text.replace(",", NBSP).replace(".", ",")
    return text


def format_count(value: int | None, lang: str, min_count: int) -> str:
    """A count, or ``< 5`` when it is suppressed."""
    if value is None:
        return f"<{NBSP}{min_count}"
    return format_number(value, lang)


def format_bytes(value: int | None, lang: str) -> str:
    """Decimal units (1 Go = 10⁹ octets): ``12,3 Go`` / ``12.3 GB``; "–" when suppressed."""
    if value is None:
        return "–"
    units = ("o", "ko", "Mo", "Go", "To") if lang == "fr" else ("B", "kB", "MB", "GB", "TB")
    scaled, unit = float(value), 0
    while scaled >= 1000 and unit < len(units) - 1:
        scaled /= 1000
        unit += 1
    return f"{format_number(scaled, lang, 0 if unit == 0 else 1)}{NBSP}{units[unit]}"


def format_duration(seconds: float | None, lang: str) -> str:
    """``38 min``, ``1 h 05 min``; "–" when suppressed."""
    if seconds is None:
        return "–"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes}{NBSP}min"
    return f"{minutes // 60}{NBSP}h{NBSP}{minutes % 60:02d}{NBSP}min"


def format_change(pct: float | None, lang: str) -> str:
    """``+12 %`` / ``+12%``; "–" when it cannot be shown."""
    if pct is None:
        return "–"
    sign = "+" if round(pct) >= 0 else "-"
    return f"{sign}{format_number(abs(round(pct)), lang)}{NBSP + '%' if lang == 'fr' else '%'}"


def month_name(month: str, lang: str) -> str:
    """``novembre 2026`` / ``November 2026``."""
    first, _ = month_days(month)
    return f"{MONTHS[lang][first.month - 1]} {first.year}"


def format_day(day: date, lang: str, weekday: bool = False) -> str:
    """``14 novembre 2026`` / ``November 14, 2026`` (with the weekday if asked)."""
    if lang == "fr":
        number = "1er" if day.day == 1 else str(day.day)
        text = f"{number} {MONTHS['fr'][day.month - 1]} {day.year}"
        return f"{WEEKDAYS['fr'][day.weekday()]} {text}" if weekday else text
    text = f"{MONTHS['en'][day.month - 1]} {day.day}, {day.year}"
    return f"{WEEKDAYS['en'][day.weekday()]}, {text}" if weekday else text


def period_name(report: Report, lang: str) -> str:
    """``novembre 2026``, or ``du 1er au 15 novembre 2026`` for a range of days."""
    if report.month is not None:
        return month_name(report.month, lang)
    first, last = format_day(report.first_day, lang), format_day(report.last_day, lang)
    return f"du {first} au {last}" if lang == "fr" else f"from {first} to {last}"


def zone_name(zone: str, lang: str) -> str:
    """A zone in quotes: ``« Centre-ville »`` / ``“Centre-ville”``."""
    return f"«{NBSP}{zone}{NBSP}»" if lang == "fr" else f"“{zone}”"


def estimate_note(lang: str) -> str:
    """Why unique devices are an estimate (always printed beside the figure)."""
    if lang == "fr":
        return (f"Le nombre d’appareils est une estimation{NBSP}: la plupart des téléphones "
                f"et ordinateurs présentent une adresse MAC aléatoire, qui peut changer d’un "
                f"jour ou d’un réseau à l’autre, si bien qu’un même appareil peut être compté "
                f"plus d’une fois{NBSP}; le comptage lui-même (HyperLogLog) a une marge "
                f"d’environ 1{NBSP}%. Aucune adresse n’est conservée dans les rapports.")
    return ("The number of devices is an estimate: most phones and computers present a "
            "randomised MAC address, which may change from one day or network to the next, "
            "so one device may be counted more than once; the count itself (HyperLogLog) has "
            "a margin of about 1%. No address is kept in the reports.")


def summary(report: Report, lang: str = "fr") -> str:
    """A few plain sentences on the report, for the council (French by default)."""
    check_lang(lang)
    t = report.totals
    fr = lang == "fr"
    period = period_name(report, lang)
    where = ""
    if report.zone is not None:
        where = (f" dans le secteur {zone_name(report.zone, lang)}" if fr
                 else f" in the {zone_name(report.zone, lang)} area")
    opening = (f"{'En' if report.month else 'Du'} {period.removeprefix('du ')}" if fr
               else f"{'In' if report.month else 'From'} {period.removeprefix('from ')}")
    if not report.has_data:
        return (f"{opening}, aucune session n’a été enregistrée sur le Wi-Fi public{where}."
                if fr else f"{opening}, no session was recorded on the public Wi-Fi{where}.")
    sentences = []
    if t.sessions is None:
        count = format_count(None, lang, report.min_count)
        return (f"{opening}, {count.replace('<', 'moins de')} sessions ont été ouvertes sur "
                f"le Wi-Fi public{where}{NBSP}; les autres chiffres sont masqués pour protéger "
                f"la vie privée." if fr else
                f"{opening}, {count.replace('<', 'fewer than')} sessions were opened on the "
                f"public Wi-Fi{where}; the other figures are withheld to protect privacy.")
    change = report.change
    compared = ""
    if change is not None and change.sessions_pct is not None:
        earlier = month_name(change.previous_month, lang)
        compared = (f" ({format_change(change.sessions_pct, lang)} par rapport à {earlier})"
                    if fr else
                    f" ({format_change(change.sessions_pct, lang)} compared with {earlier})")
    devices = format_count(t.devices, lang, report.min_count)
    if fr:
        devices = devices.replace("<", "moins de")
        sentences.append(f"{opening}, {format_number(t.sessions, lang)} sessions ont été "
                         f"ouvertes sur le Wi-Fi public{where}{compared}, par environ "
                         f"{devices} appareils différents*.")
        sentences.append(f"Une session a duré {format_duration(t.avg_length_s, lang)} en "
                         f"moyenne (médiane{NBSP}: {format_duration(t.median_length_s, lang)}).")
        sentences.append(f"Les appareils ont reçu {format_bytes(t.bytes_down, lang)} et "
                         f"envoyé {format_bytes(t.bytes_up, lang)}.")
        if t.peak_clients is not None and t.peak_day is not None:
            sentences.append(f"Au plus fort, {format_number(t.peak_clients, lang)} appareils "
                             f"étaient connectés en même temps (le "
                             f"{format_day(t.peak_day, lang, weekday=True)}).")
    else:
        devices = devices.replace("<", "fewer than")
        sentences.append(f"{opening}, {format_number(t.sessions, lang)} sessions were opened "
                         f"on the public Wi-Fi{where}{compared}, by about {devices} different "
                         f"devices*.")
        sentences.append(f"A session lasted {format_duration(t.avg_length_s, lang)} on "
                         f"average (median: {format_duration(t.median_length_s, lang)}).")
        sentences.append(f"Devices received {format_bytes(t.bytes_down, lang)} and sent "
                         f"{format_bytes(t.bytes_up, lang)}.")
        if t.peak_clients is not None and t.peak_day is not None:
            sentences.append(f"At the busiest moment, {format_number(t.peak_clients, lang)} "
                             f"devices were connected at once (on "
                             f"{format_day(t.peak_day, lang, weekday=True)}).")
    busiest = _busiest(report)
    if busiest is not None:
        weekday, hour = busiest
        name = WEEKDAYS[lang][weekday]
        sentences.append(f"Le moment le plus fréquenté de la semaine{NBSP}: le {name} entre "
                         f"{hour}{NBSP}h et {hour + 1}{NBSP}h." if fr else
                         f"The busiest time of the week: {name}s between {hour}:00 and "
                         f"{hour + 1}:00.")
    sentences.append(
        f"*{NBSP}Estimation{NBSP}: avec les adresses MAC aléatoires des téléphones, un même "
        f"appareil peut compter plus d’une fois." if fr else
        f"*{NBSP}An estimate: phones’ randomised MAC addresses make some devices count more "
        f"than once.")
    return " ".join(sentences)


def _busiest(report: Report) -> tuple[int, int] | None:
    """(weekday, hour) of the heat map's highest shown cell, or None."""
    best: tuple[int, int, int] | None = None
    for weekday, row in enumerate(report.heatmap):
        for hour, value in enumerate(row):
            if value is not None and (best is None or value > best[0]):
                best = (value, weekday, hour)
    return None if best is None else (best[1], best[2])
