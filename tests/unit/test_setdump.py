"""Parsing nfnetlink set dumps, on bytes captured from this kernel (nft 1.0.6, Linux 6.x)."""

from __future__ import annotations

import pytest

from netctl.setdump import SetDumpError, decode_key, parse_messages

# `parvis-lab` gateway, set clients4_down holding 10.77.2.144 with 69 packets, 2,003,762 bytes;
# then an empty part and the NLMSG_DONE that end the dump. Sequence number 1 (port id 0x4a02).
CAPTURED = bytes.fromhex(
    "8c0000000c0a020001000000024a0000010000030b000100706172766973000012000200636c69656e7473345f"
    "646f776e00000058000300540001000c000100080001000a4d02902c0007000c000100636f756e746572001c00"
    "02000c00010000000000001e93320c00020000000000000000450c0004000000000000dbba000c000500000000"
    "0000db97d0"
    "380000000c0a020001000000024a0000010000030b000100706172766973000012000200636c69656e74733"
    "45f646f776e00000004000300140000000300020001000000024a000000000000"
)
SEQ = 1


def test_counters_and_key_are_read_from_a_real_dump() -> None:
    into: dict[bytes, tuple[int, int]] = {}
    assert parse_messages(CAPTURED[:0x8C], SEQ, into) is False  # data, not yet done
    assert into == {bytes.fromhex("0a4d0290"): (69, 2_003_762)}
    assert decode_key(bytes.fromhex("0a4d0290"), 4, False) == ("10.77.2.144", None)


def test_the_done_message_ends_the_dump() -> None:
    into: dict[bytes, tuple[int, int]] = {}
    assert parse_messages(CAPTURED, SEQ, into) is True
    assert len(into) == 1


def test_messages_of_another_request_are_ignored() -> None:
    into: dict[bytes, tuple[int, int]] = {}
    assert parse_messages(CAPTURED, SEQ + 1, into) is False
    assert into == {}


def test_concatenated_keys_decode_with_padding() -> None:
    key = bytes.fromhex("0a4d0290" "025076000001" "0000")
    assert decode_key(key, 4, True) == ("10.77.2.144", "02:50:76:00:00:01")
    key6 = bytes.fromhex("fd77" + "00" * 12 + "0005" + "025076000001" + "0000")
    assert decode_key(key6, 16, True) == ("fd77::5", "02:50:76:00:00:01")


def test_a_kernel_error_is_raised() -> None:
    # NLMSG_ERROR carrying -ENOENT (2) for sequence 7.
    error = bytes.fromhex("24000000020000000700000000000000" "feffffff") + bytes(16)
    with pytest.raises(SetDumpError) as caught:
        parse_messages(error, 7, {})
    assert caught.value.errno == 2
