"""Bad configuration: every program exits 2 naming the file, the key and what is expected.

Run for real: parvis-netctl inside the lab's gateway namespace (where lan0 and
wan0 exist), against the lab's Redis, so "missing interface" and "unreachable
Redis" are checked against the real world, not a stub.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from lab.topology import Lab

pytestmark = pytest.mark.lab


def write_toml(path: Path, data: dict[str, Any]) -> None:
    path.write_text(tomli_w.dumps(data))


def lab_config(lab: Lab) -> dict[str, dict[str, Any]]:
    with lab.config_path.open("rb") as handle:
        return tomllib.load(handle)


CASES: list[tuple[str, str, str, object, str]] = [
    # (name, section, key, value, expected message after "FILE: ")
    ("unknown key", "gateway", "lan_iface", "lan0",
     "[gateway] lan_iface: unknown key, expected one of dhcp_leases_file, id, lan_interface, "
     "masquerade, timezone, wan_interface"),
    ("wrong type", "session", "hard_timeout_s", "4h",
     "[session] hard_timeout_s: wrong type (got string '4h'), expected a whole number from 60 to "
     "604800"),
    ("missing interface", "gateway", "lan_interface", "wlan9",
     "[gateway] lan_interface: no interface named 'wlan9' on this host, expected an existing "
     "network interface (see `ip link`)"),
    ("unreachable redis", "redis", "url", "unix:///run/parvis-lab/no-such/redis.sock",
     "[redis] url: cannot reach unix:///run/parvis-lab/no-such/redis.sock ("),
    ("bad address", "portal", "address", "10.77.0.256",
     "[portal] address: '10.77.0.256' is not valid"),
]


@pytest.mark.parametrize(("section", "key", "value", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_netctl_exits_2_naming_file_key_and_expectation(
        lab: Lab, tmp_path: Path, section: str, key: str, value: object, expected: str) -> None:
    data = lab_config(lab)
    data.setdefault(section, {})[key] = value
    path = tmp_path / "parvis.toml"
    write_toml(path, data)
    result = lab.exec("gw", [sys.executable, "-m", "netctl.main", "--config", str(path),
                             "--check"], check=False)
    assert result.returncode == 2, result
    assert f"parvis-netctl: {path}: {expected}" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_lab_config_passes_the_same_checks(lab: Lab) -> None:
    result = lab.exec("gw", [sys.executable, "-m", "netctl.main", "--config",
                             str(lab.config_path), "--check"], check=False)
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout


def test_a_missing_file_and_invalid_toml_exit_2(lab: Lab, tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    result = lab.exec("gw", [sys.executable, "-m", "netctl.main", "--config", str(missing)],
                      check=False)
    assert result.returncode == 2 and f"{missing}: file not found" in result.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[gateway]\nid = \n")
    result = lab.exec("gw", [sys.executable, "-m", "netctl.main", "--config", str(broken)],
                      check=False)
    assert result.returncode == 2 and f"{broken}: not valid TOML" in result.stderr


def test_parvisctl_exits_2_on_a_bad_config_or_unreachable_redis(lab: Lab, tmp_path: Path) -> None:
    data = lab_config(lab)
    data["redis"]["url"] = "unix:///run/parvis-lab/no-such/redis.sock"
    path = tmp_path / "parvis.toml"
    write_toml(path, data)
    result = subprocess.run([sys.executable, "-m", "parvis.ctl", "--config", str(path), "status"],
                            capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode == 2
    assert f"{path}: [redis] url: cannot reach" in result.stderr
    data = lab_config(lab)
    data["clients"] = {"blocked_macs": ["not-a-mac"]}
    write_toml(path, data)
    result = subprocess.run([sys.executable, "-m", "parvis.ctl", "--config", str(path), "clients"],
                            capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode == 2
    assert f"{path}: [clients] blocked_macs: 'not-a-mac' is not a MAC address" in result.stderr
