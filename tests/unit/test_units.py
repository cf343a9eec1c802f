"""Rates and sizes as administrators write them: SI prefixes, bits for rates, bytes for sizes."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from parvis.core.units import format_rate, format_size, parse_rate, parse_size

RATES = [
    ("10M", 10_000_000),
    ("10m", 10_000_000),
    ("2.5Mbit", 2_500_000),
    ("500k", 500_000),
    ("500K", 500_000),
    ("64kbit", 64_000),
    ("10 Mbit/s", 10_000_000),
    ("10Mbit/s", 10_000_000),
    ("10Mbps", 10_000_000),
    ("1G", 1_000_000_000),
    ("1.5T", 1_500_000_000_000),
    ("100", 100),
    ("100bit", 100),
    ("100 bit/s", 100),
    ("  7  ", 7),
    ("0", 0),
    ("0M", 0),
    ("0.25M", 250_000),
]


@pytest.mark.parametrize(("text", "bps"), RATES, ids=[r[0] for r in RATES])
def test_parse_rate(text: str, bps: int) -> None:
    assert parse_rate(text) == bps


SIZES = [
    ("2G", 2_000_000_000),
    ("2GB", 2_000_000_000),
    ("750MB", 750_000_000),
    ("750M", 750_000_000),
    ("750 mb", 750_000_000),
    ("1.5GB", 1_500_000_000),
    ("3kB", 3_000),
    ("1TB", 10**12),
    ("512", 512),
    ("512 B", 512),
    ("1 byte", 1),
    ("10 bytes", 10),
    ("5o", 5),
    ("5 octets", 5),
    ("2 Go", 2_000_000_000),
    ("0", 0),
]


@pytest.mark.parametrize(("text", "size"), SIZES, ids=[s[0] for s in SIZES])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_prefixes_are_si_not_binary() -> None:
    assert parse_size("1k") == 1000
    assert parse_rate("1M") == 1000 * 1000
    with pytest.raises(ValueError):
        parse_size("1KiB")
    with pytest.raises(ValueError):
        parse_rate("1Mibit")


@pytest.mark.parametrize("value", [0, 1, 1500, 10**9, 25 * 10**9])
def test_plain_integers_are_taken_as_they_are(value: int) -> None:
    assert parse_rate(value) == value
    assert parse_size(value) == value


@pytest.mark.parametrize("value", [-1, -10**9])
def test_negative_integers_are_refused(value: int) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_rate(value)
    with pytest.raises(ValueError, match="negative"):
        parse_size(value)


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_not_numbers(value: bool) -> None:
    # TOML's `down = true` must not become a rate of 1 bit/s (bool is an int in Python).
    with pytest.raises(ValueError, match="is not a rate"):
        parse_rate(value)
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(value)


BAD_RATES = ["", "   ", "M", "fast", "-5", "-5M", "1e6", ".5M", "5.M", "1,5M", "10 M bit",
             "10x", "10M10", "10Mbit/h", "10MiB", "2 bytes", "10 Mo"]


@pytest.mark.parametrize("text", BAD_RATES)
def test_junk_rates_are_refused_with_what_was_expected(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{text!r} is not a rate such as")):
        parse_rate(text)


BAD_SIZES = ["", "G", "lots", "-1G", "-1", "2Gbit", "2 GiB", "2G/s", "1.2.3M", "0x10", "2 GB B"]


@pytest.mark.parametrize("text", BAD_SIZES)
def test_junk_sizes_are_refused_with_what_was_expected(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{text!r} is not a size such as")):
        parse_size(text)


TINY = [("0.4", parse_rate), ("0.0000001M", parse_rate), ("0.4", parse_size),
        ("0.0000000001G", parse_size)]


@pytest.mark.parametrize(("text", "parse"), TINY,
                         ids=[f"{p.__name__}-{t}" for t, p in TINY])
def test_a_nonzero_amount_never_parses_as_zero(text: str,
                                               parse: Callable[[str], int]) -> None:
    # 0 means "unlimited" (rates) and "no quota" (sizes): a tiny but nonzero value that
    # rounds to it would silently lift the limit the administrator meant to set.
    try:
        value = parse(text)
    except ValueError:
        return
    assert value != 0, f"{text!r} parsed as 0 (unlimited / no quota)"


FORMATTED_RATES = [
    (10_000_000, "10 Mbit/s"),
    (2_500_000, "2.5 Mbit/s"),
    (500_000, "500 kbit/s"),
    (1_000, "1 kbit/s"),
    (999, "999 bit/s"),
    (1, "1 bit/s"),
    (10**9, "1 Gbit/s"),
    (10**12, "1 Tbit/s"),
    (1_234_567, "1.2 Mbit/s"),
    (0, "unlimited"),
]


@pytest.mark.parametrize(("bps", "text"), FORMATTED_RATES, ids=[f[1] for f in FORMATTED_RATES])
def test_format_rate(bps: int, text: str) -> None:
    assert format_rate(bps) == text


FORMATTED_SIZES = [
    (2 * 10**9, "2 GB"),
    (1_500_000, "1.5 MB"),
    (750 * 10**6, "750 MB"),
    (512, "512 B"),
    (0, "0 B"),
    (3 * 10**12, "3 TB"),
    (12_345, "12.3 kB"),
]


@pytest.mark.parametrize(("size", "text"), FORMATTED_SIZES, ids=[f[1] for f in FORMATTED_SIZES])
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


ROUND = [1, 999, 1_000, 64_000, 500_000, 2_500_000, 10**7, 10**9, 25 * 10**9,
         1_500_000_000_000, 40 * 10**12]


@pytest.mark.parametrize("value", ROUND)
def test_what_is_formatted_parses_back(value: int) -> None:
    assert parse_rate(format_rate(value)) == value
    assert parse_size(format_size(value)) == value


def test_formatting_keeps_one_decimal_so_round_trips_are_close() -> None:
    for value in (1_234_567, 987_654_321, 45_678, 3_333_333_333):
        assert abs(parse_rate(format_rate(value)) - value) <= value * 0.05
        assert abs(parse_size(format_size(value)) - value) <= value * 0.05


@pytest.mark.parametrize("value", [999_950, 999_999_999])
def test_formatting_moves_to_the_next_prefix_after_rounding(value: int) -> None:
    # "1000 kbit/s" reads wrong: a number that rounds up to 1000 belongs to the next prefix.
    for text in (format_rate(value), format_size(value)):
        number = float(text.split()[0])
        assert number < 1000, text
