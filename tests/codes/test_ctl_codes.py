"""``parvisctl codes`` end to end, as a subprocess against the session's Redis."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parvis.core.codes import normalize_code
from parvis.store import Store
from tests.codes.conftest import SECRET

ROOT = Path(__file__).resolve().parents[2]


def parvisctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parvis.ctl", "--config", str(config),
                           "codes", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_create_csv_then_redeem_list_and_revoke(config_file: Path, store: Store) -> None:
    done = parvisctl(config_file, "create", "--count", "3", "--valid-for", "4h", "--uses", "2",
                     "--session", "1h30m", "--note", "marché de Noël", "--csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert rows[0] == ["code", "batch", "valid_until", "uses"]
    assert len(rows) == 4 and {row[1] for row in rows[1:]} == {rows[1][1]}
    batch_id = rows[1][1]
    assert all(normalize_code(row[0]) for row in rows[1:]) and rows[1][3] == "2"
    assert "shown only now" in done.stderr

    # The portal, reading the same secret file, recognises the codes.
    redemption = store.redeem_code(rows[1][0], SECRET, time.time())
    assert redemption.ok and redemption.batch == batch_id and redemption.session_s == 5400

    listed = parvisctl(config_file, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [batch] = json.loads(listed.stdout)
    assert (batch["id"], batch["count"], batch["redemptions"], batch["state"],
            batch["note"]) == (batch_id, 3, 1, "active", "marché de Noël")
    table = parvisctl(config_file, "list")
    assert table.returncode == 0 and batch_id in table.stdout and "active" in table.stdout

    revoked = parvisctl(config_file, "revoke", batch_id)
    assert revoked.returncode == 0, revoked.stderr
    assert store.redeem_code(rows[2][0], SECRET, time.time()).reason == "revoked"
    assert "revoked" in parvisctl(config_file, "list").stdout


def test_create_prints_a_table_by_default(config_file: Path, store: Store) -> None:
    done = parvisctl(config_file, "create", "--count", "2", "--valid-for", "30m")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["CODE", "BATCH", "VALID", "UNTIL", "USES"]
    assert len(lines) == 3 and normalize_code(lines[1].split()[0])


def test_revoke_of_an_unknown_batch_fails(config_file: Path, store: Store) -> None:
    done = parvisctl(config_file, "revoke", "b-20000101-0000")
    assert done.returncode == 1 and "no batch" in done.stderr


def test_empty_list(config_file: Path, store: Store) -> None:
    done = parvisctl(config_file, "list")
    assert (done.returncode, done.stdout.strip()) == (0, "no code batches")


@pytest.mark.parametrize("args", [
    ["create", "--count", "0", "--valid-for", "4h"],
    ["create", "--count", "10001", "--valid-for", "4h"],
    ["create", "--count", "1", "--valid-for", "30s"],
    ["create", "--count", "1", "--valid-for", "91d"],
    ["create", "--count", "1", "--valid-for", "4 hours"],
    ["create", "--count", "1", "--valid-for", "4h", "--uses", "0"],
    ["create", "--count", "1", "--valid-for", "4h", "--uses", "10001"],
    ["create", "--count", "1"],
    ["create", "--count", "1", "--valid-for", "4h", "--note", "two\nlines"],
    [],
])
def test_usage_errors_exit_2(config_file: Path, store: Store, args: list[str]) -> None:
    done = parvisctl(config_file, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert store.list_code_batches() == []


@pytest.mark.parametrize("content", [None, b"short\n"])
def test_missing_or_short_secret_exits_2(config_file: Path, secret_file: Path, store: Store,
                                          content: bytes | None) -> None:
    if content is None:
        secret_file.unlink()
    else:
        secret_file.write_bytes(content)
    done = parvisctl(config_file, "create", "--count", "1", "--valid-for", "4h")
    assert done.returncode == 2
    assert f"{config_file}: [portal] secret_key_file: " in done.stderr
    assert ", expected a file holding at least 32 random bytes" in done.stderr
    assert done.stdout == ""


PLANS = ('\n[session]\ndefault_plan = "residents"\n\n[plans.residents]\ndaily_quota = "2G"\n\n'
         '[plans.event]\ndown = "20M"\nhard_timeout_s = 28800\n')


def test_create_with_a_plan_then_list_and_redeem(config_file: Path, store: Store) -> None:
    config_file.write_text(config_file.read_text() + PLANS)
    done = parvisctl(config_file, "create", "--count", "1", "--valid-for", "4h",
                     "--plan", "event", "--csv")
    assert done.returncode == 0, done.stderr
    code, batch_id = list(csv.reader(io.StringIO(done.stdout)))[1][:2]
    redemption = store.redeem_code(code, SECRET, time.time())
    assert redemption.ok and redemption.plan == "event" and redemption.batch == batch_id

    [batch] = json.loads(parvisctl(config_file, "list", "--json").stdout)
    assert batch["plan"] == "event"
    table = parvisctl(config_file, "list").stdout.splitlines()
    assert table[0].split()[-2:] == ["PLAN", "NOTE"]
    assert table[1].split()[-1] == "event"


def test_create_without_a_plan_lists_the_default(config_file: Path, store: Store) -> None:
    assert parvisctl(config_file, "create", "--count", "1", "--valid-for", "4h").returncode == 0
    assert json.loads(parvisctl(config_file, "list", "--json").stdout)[0]["plan"] == ""
    assert parvisctl(config_file, "list").stdout.splitlines()[1].split()[-1] == "default"


def test_unknown_plan_is_a_usage_error_naming_the_known_ones(
        config_file: Path, store: Store) -> None:
    config_file.write_text(config_file.read_text() + PLANS)
    done = parvisctl(config_file, "create", "--count", "1", "--valid-for", "4h",
                     "--plan", "vip")
    assert done.returncode == 2 and done.stdout == ""
    assert "--plan 'vip' is not a plan of" in done.stderr
    assert "(known plans: event, residents)" in done.stderr
    assert store.list_code_batches() == []
