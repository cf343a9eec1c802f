"""The connection cutter: addresses authorised again before their turn keep their connections."""

from __future__ import annotations

from pathlib import Path

from netctl.conntrack import ConnectionCutter, cut_now


def recording_binary(tmp_path: Path, status: int = 0,
                     stderr: str = "conntrack v1.4.7 (conntrack-tools): 0 flow entries have "
                                   "been deleted.") -> tuple[str, Path]:
    record = tmp_path / "calls"
    script = tmp_path / "conntrack"
    script.write_text(f'#!/bin/sh\necho "$@" >> {record}\necho "{stderr}" >&2\nexit {status}\n')
    script.chmod(0o755)
    return str(script), record


def test_cut_now_deletes_by_source_and_family(tmp_path: Path) -> None:
    binary, record = recording_binary(tmp_path, status=1)  # 1: "no entry", not a failure
    assert cut_now(["10.77.0.5", "fd77::5"], binary) == 0
    assert record.read_text().splitlines() == ["-D -f ipv4 -s 10.77.0.5",
                                               "-D -f ipv6 -s fd77::5"]


def test_exit_1_without_its_no_entry_message_is_a_failure(tmp_path: Path) -> None:
    # What conntrack(8) prints without CAP_NET_ADMIN: also exit 1.
    binary, _record = recording_binary(
        tmp_path, status=1,
        stderr="conntrack v1.4.7 (conntrack-tools): Operation failed: Operation not permitted")
    assert cut_now(["10.77.0.5"], binary) == 1


def test_a_failing_run_is_counted(tmp_path: Path) -> None:
    binary, _record = recording_binary(tmp_path, status=2)
    assert cut_now(["10.77.0.5"], binary) == 1


def test_re_authorised_addresses_are_skipped(tmp_path: Path) -> None:
    binary, record = recording_binary(tmp_path)
    cutter = ConnectionCutter(authorised=lambda addresses: {"10.77.0.6"} & set(addresses))
    cutter.binary = binary
    cutter.start()
    try:
        cutter.cut(["10.77.0.5", "10.77.0.6"])
        assert cutter.wait_idle(5)
    finally:
        cutter.stop()
    assert record.read_text().splitlines() == ["-D -f ipv4 -s 10.77.0.5"]
