"""Fixtures for the access-code tests: a real, private Redis server and a config file."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from parvis.store import Store, connect

SECRET = b"0123456789abcdef0123456789abcdef-codes-test"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Session: a redis-server of our own on a Unix socket, no TCP, no persistence.

    Yields its URL (``unix:///…/redis.sock``); the server is stopped at the end
    of the session whatever happened.
    """
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    workdir = tmp_path_factory.mktemp("redis")
    socket_path = workdir / "redis.sock"
    process = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(socket_path),
         "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--logfile", str(workdir / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"unix://{socket_path}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client = redis.Redis.from_url(url, socket_timeout=1)
                client.ping()
                client.close()
                break
            except (redis.ConnectionError, FileNotFoundError) as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start (see {workdir}/redis.log)") from error
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def store(redis_url: str) -> Iterator[Store]:
    """Function: a Store on the session's Redis, emptied before the test."""
    client = connect(redis_url)
    client.flushall()
    yield Store(client, "gw-test")
    client.close()


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """Function: the portal's secret file (SECRET with a trailing newline)."""
    path = tmp_path / "portal.secret"
    path.write_bytes(SECRET + b"\n")
    return path


@pytest.fixture
def config_file(tmp_path: Path, redis_url: str, secret_file: Path) -> Path:
    """Function: a minimal Parvis config pointing at the session's Redis and secret file."""
    path = tmp_path / "parvis.toml"
    path.write_text(
        '[gateway]\nid = "gw-test"\nlan_interface = "lan0"\nwan_interface = "wan0"\n\n'
        f'[portal]\naddress = "10.77.0.1"\nsecret_key_file = "{secret_file}"\n\n'
        f'[redis]\nurl = "{redis_url}"\n')
    return path
