"""Fixtures for the portal's unit tests: a private redis-server, a netctl stand-in, apps.

Chained like Flask's own: ``redis_server`` (session) → ``store`` → ``app`` →
``client``. Nothing here needs root or the lab.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from parvis.core.commands import Command, CommandError, Result, parse_command
from parvis.core.config import Config, parse_config
from parvis.store import Store, connect
from portal import create_app

REPO = Path(__file__).resolve().parents[2]
CONTENT = REPO / "config" / "content"
HOSTNAME = "portail.parvis.test"
PORTAL_URL = f"https://{HOSTNAME}:8443"
CLIENT_IP = "10.77.2.10"


@dataclass(frozen=True)
class RedisServer:
    """A redis-server of this test session, reachable at ``url`` (a unix socket)."""

    url: str
    socket: Path


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server on a unix socket (session scope), stopped in teardown.

    Example: ``connect(redis_server.url)``.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    directory = tmp_path_factory.mktemp("redis")
    sock = directory / "redis.sock"
    process = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        url = f"unix://{sock}"
        while True:
            try:
                if sock.exists() and connect(url, 0.5).ping():
                    break
            except redis.RedisError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield RedisServer(url=url, socket=sock)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def make_config(tmp_path: Path, redis_url: str, **portal: object) -> Config:
    """A valid Config whose secret and content live under ``tmp_path``."""
    secret = tmp_path / "portal.secret"
    if not secret.exists():
        secret.write_text("0123456789abcdef0123456789abcdef\n")
    content = tmp_path / "content"
    if not content.exists():
        shutil.copytree(CONTENT, content)
    table: dict[str, object] = {
        "address": "10.77.0.1", "address6": "fd77::1", "hostname": HOSTNAME,
        "poster_hostname": "wifi.parvis.test", "secret_key_file": str(secret),
        "content_dir": str(content), "venue_info_url": "https://www.plessisville.quebec/",
        "ack_timeout_s": 0.5, "code_attempts": 3,
    }
    table.update(portal)
    return parse_config({
        "gateway": {"id": "gw-test", "lan_interface": "br-lan", "wan_interface": "wan0"},
        "portal": table,
        "redis": {"url": redis_url, "timeout_s": 2.0},
    }, tmp_path / "parvis.toml")


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[Store]:
    """A Store on the test Redis for gateway ``gw-test``, emptied before each test."""
    client = connect(redis_server.url)
    client.flushall()
    yield Store(client, "gw-test")
    client.close()


@pytest.fixture
def config(tmp_path: Path, redis_server: RedisServer) -> Config:
    """The portal's configuration for one test."""
    return make_config(tmp_path, redis_server.url)


@pytest.fixture
def app(config: Config, store: Store) -> Flask:
    """The portal application in testing mode, on the test Redis."""
    return create_app(config, store=store, testing=True)


class HttpsClient(FlaskClient):
    """A test client whose requests go to the HTTPS listener (``https://portail…:8443``)."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        kwargs.setdefault("base_url", PORTAL_URL)
        return super().open(*args, **kwargs)


def https_client(app: Flask, remote_addr: str = CLIENT_IP) -> FlaskClient:
    """A test client that speaks to the HTTPS listener from ``remote_addr``."""
    client = HttpsClient(app, app.response_class, use_cookies=True)
    client.environ_base.update({"REMOTE_ADDR": remote_addr})
    return client


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """An HTTPS test client from CLIENT_IP."""
    return https_client(app)


@pytest.fixture
def http_client(app: Flask) -> FlaskClient:
    """A plain-HTTP test client from CLIENT_IP (what the gateway DNATs to the interceptor)."""
    client = app.test_client()
    client.environ_base.update({"REMOTE_ADDR": CLIENT_IP})
    return client


@dataclass
class FakeNetctl:
    """Stands in for netctl: reads the gateway's stream with the real consumer group, acks.

    ``decide`` turns each command into its Result (default: ok, and a session is
    written as netctl would). ``seen`` lists the commands received.
    """

    store: Store
    decide: Callable[[Command], Result] | None = None
    seen: list[Command] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            for entry_id, fields in self.store.read_commands("fake-netctl", 100, 10):
                try:
                    command = parse_command(fields)
                except CommandError as error:  # refused as netctl refuses it
                    self.store.acknowledge([(entry_id, Result(False, str(error)))])
                    continue
                self.seen.append(command)
                result = self.decide(command) if self.decide else self.grant(command)
                self.store.acknowledge([(entry_id, result)])

    def grant(self, command: Command) -> Result:
        """What netctl does for an authorize: a session for the address, then ok."""
        from parvis.core.sessions import Session

        now = time.time()
        session = Session(mac="02:00:00:00:00:10", ipv4=str(command.ip), started_at=now,
                          expires_at=now + (command.timeout_s or 3600), idle_timeout_s=1200,
                          last_activity_at=now, terms_version=command.terms_version,
                          via=command.via, code_batch=command.code_batch, plan=command.plan)
        self.store.save_sessions([session])
        return Result(True, "authorized")

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
def netctl(redis_server: RedisServer, store: Store) -> Iterator[FakeNetctl]:
    """A netctl stand-in thread on its own connection, stopped after the test."""
    own = Store(connect(redis_server.url), "gw-test")
    own.ensure_group()
    fake = FakeNetctl(own)
    thread = threading.Thread(target=fake.run, daemon=True)
    thread.start()
    yield fake
    fake.stop()
    thread.join(5)
    own.client.close()
