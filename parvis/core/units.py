"""Rates and data sizes as administrators write them: ``10M``, ``2.5Mbit``, ``2G``, ``500MB``.

Rates are bits per second and sizes are bytes, both with SI prefixes (k = 1000),
because that is how internet plans and ISPs state them.
"""

from __future__ import annotations

import math
import re

_PREFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:bit|bps|b)?(?:/s)?\s*$", re.I)
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:b|bytes?|o|octets?)?\s*$", re.I)


def parse_rate(text: str | int) -> int:
    """Bits per second from ``10M``, ``2.5Mbit``, ``500k`` or a plain number; 0 = unlimited."""
    return _parse(text, _RATE_RE, "a rate such as \"10M\" (bits/s)")


def parse_size(text: str | int) -> int:
    """Bytes from ``2G``, ``500MB``, ``750M`` or a plain number; 0 = none."""
    return _parse(text, _SIZE_RE, "a size such as \"2G\" (bytes)")


def _parse(text: str | int, pattern: re.Pattern[str], expected: str) -> int:
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not {expected}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"{text} is negative")
        return text
    match = pattern.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not {expected}")
    number, prefix = match.groups()
    scaled = float(number) * _PREFIXES[prefix.lower()]
    if not math.isfinite(scaled):  # hundreds of digits: beyond float, round() would overflow
        raise ValueError(f"{text!r} is too large")
    value = round(scaled)
    if value == 0 and float(number) != 0:
        # 0 means unlimited / no quota: never reach it by rounding.
        raise ValueError(f"{text!r} is less than 1 and not 0")
    return value


def format_rate(bps: int) -> str:
    """``10 Mbit/s``; ``unlimited`` for 0."""
    if not bps:
        return "unlimited"
    return _format(bps) + "bit/s"


def format_size(size: int) -> str:
    """``2 GB``, ``1.5 MB``, ``512 B``."""
    return _format(size) + "B"


_STEPS = (("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3))


def _format(value: int) -> str:
    for i, (prefix, factor) in enumerate(_STEPS):
        if value >= factor:
            text = f"{value / factor:.1f}".rstrip("0").rstrip(".")
            if text == "1000" and i > 0:  # 999.95 k rounds to the next prefix: 1 M
                return f"1 {_STEPS[i - 1][0]}"
            return f"{text} {prefix}"
    return f"{value} "
