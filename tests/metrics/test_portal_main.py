"""``parvis-portal`` serves its workers' metrics on [metrics] portal_port, and only there."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from portal.main import main
from portal.metrics import MULTIPROC_ENV
from tests.metrics.conftest import families, sample
from tests.portal.conftest import REPO, RedisServer
from tests.portal.test_main import _free_port, _wait_port, _write_certificate, _write_config


def _with_metrics(path: Path, port: int) -> None:
    # The base configuration turns the listener off; this one turns it on.
    text = path.read_text().replace(
        "portal_port = 0", f'address = "127.0.0.1"\nportal_port = {port}')
    assert f"portal_port = {port}" in text
    path.write_text(text)


def _get(port: int, path: str, tls: Path | None = None,
         host: str = "portail.parvis.test") -> tuple[int, bytes]:
    connection: http.client.HTTPConnection
    if tls is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    else:
        context = ssl.create_default_context(cafile=str(tls))
        context.check_hostname = False  # by address; the chain is still verified
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    try:
        connection.request("GET", path, headers={"Host": host})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def test_metrics_listener_serves_the_workers_sum(tmp_path: Path,
                                                 redis_server: RedisServer) -> None:
    http_port, https_port, metrics_port = _free_port(), _free_port(), _free_port()
    path = _write_config(tmp_path, redis_server.url, http_port, https_port)
    _with_metrics(path, metrics_port)
    _write_certificate(tmp_path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(scratch)}
    env.pop(MULTIPROC_ENV, None)
    process = subprocess.Popen([sys.executable, "-m", "portal", "--config", str(path),
                                "--workers", "2", "--threads", "2"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    certificate = tmp_path / "portal.crt"
    try:
        deadline = time.monotonic() + 20
        for port in (http_port, https_port, metrics_port):
            _wait_port(port, deadline)
        (directory,) = scratch.iterdir()
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        for _ in range(4):  # new connections: both HTTPS workers may answer
            assert _get(https_port, "/", certificate)[0] == 200
        status, body = _get(https_port, "/metrics", certificate)
        assert status == 404 and b"parvis_portal" not in body
        status, body = _get(http_port, "/metrics")
        assert status == 302 and b"parvis_portal" not in body

        status, body = _get(metrics_port, "/metrics", host="127.0.0.1")
        assert status == 200
        found = families(body.decode())
        assert sample(found, "parvis_portal_requests_total", route="splash.index",
                      status="200") == 4
        assert sample(found, "parvis_portal_requests_total", route="unmatched",
                      status="404") == 1
        assert sample(found, "parvis_portal_requests_total", route="intercept",
                      status="302") == 1
        assert sample(found, "parvis_portal_request_duration_seconds_count",
                      route="splash.index") == 4

        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        assert not directory.exists()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", metrics_port), timeout=1).close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            output = process.stdout.read().decode(errors="replace")
            process.stdout.close()
            print(output)


def test_a_metrics_port_in_use_exits_2_before_anything_listens(
        tmp_path: Path, redis_server: RedisServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = _write_config(tmp_path, redis_server.url)
        _with_metrics(path, port)
        _write_certificate(tmp_path)
        assert main(["--config", str(path)]) == 2
    error = capsys.readouterr().err
    assert f"{path}: [metrics] portal_port: cannot listen on 127.0.0.1:{port}" in error
    assert list(scratch.iterdir()) == []  # the directory made for this start is gone
    assert MULTIPROC_ENV not in os.environ
