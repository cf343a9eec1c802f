"""Access codes, pure part: alphabet, entropy, normalization, identity, durations, secrets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from parvis.core.codes import (
    ALPHABET,
    CODE_LENGTH,
    MAX_INPUT_CHARS,
    CodeBatch,
    check_batch_request,
    code_id,
    format_code,
    generate_codes,
    is_batch_id,
    load_secret,
    new_batch_id,
    normalize_code,
    parse_duration,
)

KEY = b"k" * 32


def test_codes_carry_at_least_64_bits_of_entropy() -> None:
    assert len(set(ALPHABET)) == len(ALPHABET)
    assert CODE_LENGTH * math.log2(len(ALPHABET)) >= 64


@pytest.mark.parametrize("ambiguous", "0O1IL5S2Z8B6GUVQDo01ilsz")
def test_alphabet_has_no_look_alikes(ambiguous: str) -> None:
    assert ambiguous not in ALPHABET


def test_generated_codes_are_distinct_and_from_the_alphabet() -> None:
    codes = generate_codes(500)
    assert len(set(codes)) == 500
    for code in codes:
        assert len(code) == CODE_LENGTH and set(code) <= set(ALPHABET)
        assert normalize_code(code) == code


def test_generate_refuses_a_negative_count() -> None:
    with pytest.raises(ValueError, match="count"):
        generate_codes(-1)


def test_format_groups_by_four_and_round_trips() -> None:
    code = generate_codes(1)[0]
    shown = format_code(code)
    assert shown.count("-") == 3 and all(len(g) == 4 for g in shown.split("-"))
    assert normalize_code(shown) == code


@pytest.mark.parametrize("typed", [
    "ACEF-HJKM-NPRT-WXY3", "acef-hjkm-nprt-wxy3", "ACEF HJKM NPRT WXY3",
    "  acefhjkmnprtwxy3\n", "AcEf--HjKm - NpRt\tWxY3", "A-C-E-F-H-J-K-M-N-P-R-T-W-X-Y-3",
])
def test_normalize_ignores_case_dashes_and_blanks(typed: str) -> None:
    assert normalize_code(typed) == "ACEFHJKMNPRTWXY3"


@pytest.mark.parametrize("typed", [
    "", "ACEF-HJKM-NPRT-WXY", "ACEF-HJKM-NPRT-WXY33", "ACEF-HJKM-NPRT-WXY0",
    "ACEF-HJKM-NPRT-WXYO", "ACEF_HJKM_NPRT_WXY3", "ACEF-HJKM-NPRT-WXY３",
    "A" * 10_000, " " * (MAX_INPUT_CHARS + 1) + "ACEFHJKMNPRTWXY3", "ACEFHJKMNPRTWXYß",
])
def test_normalize_refuses_what_cannot_be_a_code(typed: str) -> None:
    assert normalize_code(typed) is None


def test_code_id_is_keyed_and_ignores_how_the_code_was_typed() -> None:
    code = "ACEFHJKMNPRTWXY3"
    ident = code_id(code, KEY)
    assert len(ident) == 64 and code not in ident.upper()
    assert code_id("acef-hjkm nprt-wxy3", KEY) == ident
    assert code_id(code, b"j" * 32) != ident
    with pytest.raises(ValueError):
        code_id("nope", KEY)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("30m", 1800), ("4h", 14400), ("2d", 172800), ("1h30m", 5400),
    ("1d2h3m4s", 93784), (" 4H ", 14400), ("90m", 5400),
])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "4", "4x", "h", "-4h", "4h-", "1.5h", "30m1h", "4 h",
                                  "0m", "0h0m", "9" * 40 + "s", "4h4h"])
def test_parse_duration_refuses_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration such as|is zero"):
        parse_duration(text)


def test_batch_ids() -> None:
    batch_id = new_batch_id(1_790_000_000.0)
    assert is_batch_id(batch_id) and batch_id.startswith("b-2026")
    assert not is_batch_id("b-2026-11") and not is_batch_id("parvis:codes:batch:x")


@pytest.mark.parametrize(("args", "word"), [
    ((0, 3600, 1, None, ""), "count"), ((10_001, 3600, 1, None, ""), "count"),
    ((1, 59, 1, None, ""), "validity"), ((1, 90 * 86400 + 1, 1, None, ""), "validity"),
    ((1, 3600, 0, None, ""), "uses"), ((1, 3600, 10_001, None, ""), "uses"),
    ((1, 3600, 1, 30, ""), "session"), ((1, 3600, 1, None, "a\nb"), "note"),
])
def test_batch_limits(args: tuple[int, int, int, int | None, str], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        check_batch_request(*args)


def test_batch_state_and_codes_left() -> None:
    batch = CodeBatch(id="b-20261126-abcd", created_at=0.0, valid_until=100.0, uses=1,
                      session_s=None, note="", count=3, codes_used_up=1)
    assert batch.codes_left == 2 and batch.state(50) == "active"
    assert batch.state(100) == "expired"


def test_load_secret(tmp_path: Path) -> None:
    good = tmp_path / "secret"
    good.write_bytes(b"  " + b"x" * 44 + b"\n")
    assert load_secret(good) == b"x" * 44
    short = tmp_path / "short"
    short.write_bytes(b"x" * 31 + b"\n\n")
    with pytest.raises(ValueError, match="fewer than 32"):
        load_secret(short)
    with pytest.raises(ValueError, match="file not found"):
        load_secret(tmp_path / "missing")
    with pytest.raises(ValueError, match="is a directory"):
        load_secret(tmp_path)
