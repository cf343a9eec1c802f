"""``parvis-portal``: configuration checks (exit 2) and the two real gunicorn listeners."""

from __future__ import annotations

import datetime as dt
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from portal.main import main
from tests.portal.conftest import REPO, RedisServer

TOML = """\
[gateway]
id = "gw-test"
lan_interface = "br-lan"
wan_interface = "wan0"

[portal]
address = "127.0.0.1"
http_port = {http}
https_port = {https}
hostname = "portail.parvis.test"
certificate = "{dir}/portal.crt"
private_key = "{dir}/portal.key"
secret_key_file = "{dir}/portal.secret"
content_dir = "{content}"

[redis]
url = "{redis}"

[metrics]
# Not 9102 on the host: another run (or anything else) may hold it.
portal_port = 0
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_config(tmp_path: Path, redis_url: str, http: int = 1, https: int = 2) -> Path:
    path = tmp_path / "parvis.toml"
    path.write_text(TOML.format(http=http, https=https, dir=tmp_path, redis=redis_url,
                                content=REPO / "config" / "content"))
    (tmp_path / "portal.secret").write_text("s" * 40)
    return path


def _write_certificate(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portail.parvis.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("portail.parvis.test")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "portal.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "portal.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def test_missing_certificate_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_config(tmp_path, "unix:///nowhere.sock")
    assert main(["--config", str(path)]) == 2
    error = capsys.readouterr().err
    assert f"{path}: [portal] certificate: cannot read {tmp_path}/portal.crt" in error
    assert "expected a PEM certificate" in error


def test_mismatched_key_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_config(tmp_path, "unix:///nowhere.sock")
    _write_certificate(tmp_path)
    other = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "portal.key").write_bytes(other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    assert main(["--config", str(path)]) == 2
    assert "[portal] private_key:" in capsys.readouterr().err


@pytest.mark.parametrize(("remove", "key"), [("portal.secret", "secret_key_file")])
def test_missing_secret_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                remove: str, key: str) -> None:
    path = _write_config(tmp_path, "unix:///nowhere.sock")
    _write_certificate(tmp_path)
    (tmp_path / remove).unlink()
    assert main(["--config", str(path)]) == 2
    assert f"[portal] {key}: cannot read" in capsys.readouterr().err


def test_missing_content_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_config(tmp_path, "unix:///nowhere.sock")
    _write_certificate(tmp_path)
    path.write_text(path.read_text().replace(str(REPO / "config" / "content"), "/nonexistent"))
    assert main(["--config", str(path)]) == 2
    assert "[portal] content_dir: cannot read /nonexistent/terms.fr.md" in capsys.readouterr().err


def _wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def test_two_listeners_serve_and_stop_on_sigterm(tmp_path: Path,
                                                 redis_server: RedisServer) -> None:
    http_port, https_port = _free_port(), _free_port()
    path = _write_config(tmp_path, redis_server.url, http_port, https_port)
    _write_certificate(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "portal", "--config", str(path),
                                "--workers", "1", "--threads", "2"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        _wait_port(http_port, deadline)
        _wait_port(https_port, deadline)
        plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
        plain.request("GET", "/generate_204", headers={"Host": "connectivitycheck.gstatic.com"})
        answer = plain.getresponse()
        assert answer.status == 302
        assert answer.getheader("Location", "").startswith(
            f"https://portail.parvis.test:{https_port}/?u=")
        plain.close()
        context = ssl.create_default_context(cafile=str(tmp_path / "portal.crt"))
        context.check_hostname = False  # we connect by address; the chain is still verified
        secure = http.client.HTTPSConnection("127.0.0.1", https_port, timeout=5,
                                             context=context)
        secure.request("GET", "/api/captive", headers={"Host": "portail.parvis.test"})
        api = secure.getresponse()
        assert api.status == 200
        assert api.getheader("Content-Type") == "application/captive+json; charset=utf-8"
        api.read()
        secure.request("GET", "/", headers={"Host": "portail.parvis.test"})
        page = secure.getresponse()
        assert page.status == 200 and b"Accepter et me connecter" in page.read()
        secure.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
