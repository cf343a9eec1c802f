"""``parvis-admin``: it never listens on the residents' LAN, and serves with gunicorn."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from admin.main import check_address, main, server_options
from parvis.core.config import ConfigError, parse_config
from parvis.store import Store
from tests.portal.conftest import CONTENT, REPO, RedisServer


def _table(tmp_path: Path, redis_url: str, address: str, port: int = 8090,
           lan: str = "br-lan") -> dict[str, object]:
    secret = tmp_path / "portal.secret"
    secret.write_text("s" * 40)
    return {"gateway": {"id": "gw-test", "lan_interface": lan, "wan_interface": "wan0"},
            "portal": {"address": "10.77.0.1", "address6": "fd77::1",
                       "secret_key_file": str(secret), "content_dir": str(CONTENT)},
            "redis": {"url": redis_url}, "admin": {"address": address, "port": port}}


@pytest.mark.parametrize("address", ["10.77.0.1", "fd77::1", "0.0.0.0", "::"])
def test_lan_or_wildcard_addresses_are_refused(tmp_path: Path, address: str) -> None:
    config = parse_config(_table(tmp_path, "unix:///x.sock", address), tmp_path / "p.toml")
    with pytest.raises(ConfigError, match=r"\[admin\] address: .*expected a management"):
        check_address(config)


def test_an_address_of_the_lan_interface_is_refused(tmp_path: Path) -> None:
    config = parse_config(_table(tmp_path, "unix:///x.sock", "127.0.0.1", lan="lo"),
                          tmp_path / "p.toml")
    with pytest.raises(ConfigError, match="lan_interface lo"):
        check_address(config)


def test_loopback_and_management_addresses_are_fine(tmp_path: Path) -> None:
    for address in ("127.0.0.1", "::1", "192.0.2.10"):
        config = parse_config(_table(tmp_path, "unix:///x.sock", address), tmp_path / "p.toml")
        check_address(config)
    config = parse_config(_table(tmp_path, "unix:///x.sock", "::1", 9000), tmp_path / "p.toml")
    assert server_options(config, 1, 4)["bind"] == ["[::1]:9000"]


def test_main_exits_2_before_listening(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "parvis.toml"
    path.write_text(tomli_w.dumps(_table(tmp_path, "unix:///x.sock", "10.77.0.1")))
    assert main(["--config", str(path)]) == 2
    assert f"parvis-admin: {path}: [admin] address: 10.77.0.1" in capsys.readouterr().err
    path.write_text(tomli_w.dumps(_table(tmp_path, "unix:///x.sock", "127.0.0.1")))
    (tmp_path / "portal.secret").unlink()
    assert main(["--config", str(path)]) == 2
    assert "[portal] secret_key_file: cannot read" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serves_on_its_address_and_stops_on_sigterm(tmp_path: Path, redis_server: RedisServer,
                                                    store: Store) -> None:
    """(``store`` empties Redis: no account yet, so the start-up says how to make one.)"""
    port = _free_port()
    path = tmp_path / "parvis.toml"
    path.write_text(tomli_w.dumps(_table(tmp_path, redis_server.url, "127.0.0.1", port)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "admin", "--config", str(path),
                                "--threads", "2"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "not listening"
                time.sleep(0.05)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/connexion")
        answer = connection.getresponse()
        assert answer.status == 200 and b"Connexion" in answer.read()
        connection.request("GET", "/")
        answer = connection.getresponse()
        assert answer.status == 303 and answer.getheader("Location") == "/connexion?next=/"
        answer.read()
        connection.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        output = process.stdout.read().decode() if process.stdout else ""
        assert "no console account yet" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
