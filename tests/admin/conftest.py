"""Fixtures for the console's tests: the portal tests' Redis and netctl stand-in, reused.

Chained like Flask's own: ``redis_server`` (session) → ``store`` → ``admin_app``
→ ``client``; ``accounts`` creates an administrator and a viewer. Nothing here
needs root or the lab.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from admin import create_app
from parvis import passwords
from parvis.core.config import Config, parse_config
from parvis.core.users import Role, User
from parvis.store import Store
from tests.portal import conftest as portal_fixtures
from tests.portal.conftest import CONTENT, RedisServer

# The portal tests' fixtures, shared: one private redis-server, a Store emptied
# before each test, and the netctl stand-in that answers commands.
redis_server = portal_fixtures.redis_server
store = portal_fixtures.store
netctl = portal_fixtures.netctl

ADMIN, ADMIN_PASSWORD = "alice", "correct horse battery"
VIEWER, VIEWER_PASSWORD = "victor", "council staple 2026"
GATEWAY = "gw-test"
SECRET = b"0123456789abcdef0123456789abcdef"


def admin_config(tmp_path: Path, redis_url: str, **admin: object) -> Config:
    """A valid Config with plans, a portal secret and content under ``tmp_path``."""
    secret = tmp_path / "portal.secret"
    if not secret.exists():
        secret.write_bytes(SECRET + b"\n")
    content = tmp_path / "content"
    if not content.exists():
        shutil.copytree(CONTENT, content)
    table: dict[str, object] = {"address": "127.0.0.1", "port": 8090, "lockout_attempts": 3,
                                "lockout_s": 60}
    table.update(admin)
    return parse_config({
        "gateway": {"id": GATEWAY, "lan_interface": "br-lan", "wan_interface": "wan0",
                    "timezone": "America/Toronto"},
        "portal": {"address": "10.77.0.1", "address6": "fd77::1",
                   "hostname": "portail.parvis.test", "poster_hostname": "wifi.parvis.test",
                   "secret_key_file": str(secret), "content_dir": str(content),
                   "ack_timeout_s": 0.5},
        "redis": {"url": redis_url, "timeout_s": 2.0},
        "session": {"default_plan": "residents"},
        "plans": {"residents": {"down": "10M", "up": "2M", "daily_quota": "2G"},
                  "event": {"down": "20M", "up": "5M", "hard_timeout_s": 7200}},
        "admin": table,
    }, tmp_path / "parvis.toml")


@pytest.fixture
def config(tmp_path: Path, redis_server: RedisServer) -> Config:
    """The console's configuration for one test."""
    return admin_config(tmp_path, redis_server.url)


@pytest.fixture
def admin_app(config: Config, store: Store) -> Flask:
    """The console in testing mode, on the test Redis."""
    return create_app(config, store=store, testing=True)


@pytest.fixture
def client(admin_app: Flask) -> FlaskClient:
    """A browser on the console, from 127.0.0.1."""
    return admin_app.test_client()


def make_user(store: Store, name: str, password: str, role: Role) -> User:
    """Create an account as ``parvisctl users add`` does."""
    user = User(name=name, role=role, password_hash=passwords.hash_password(password),
                created_at=1.0, changed_at=1.0, generation="g1")
    assert store.add_admin_user(user)
    return user


@pytest.fixture
def accounts(store: Store) -> dict[str, User]:
    """An administrator (alice) and a viewer (victor)."""
    return {ADMIN: make_user(store, ADMIN, ADMIN_PASSWORD, Role.ADMIN),
            VIEWER: make_user(store, VIEWER, VIEWER_PASSWORD, Role.VIEWER)}


def csrf_token(client: FlaskClient, path: str = "/connexion") -> str:
    """The CSRF token of the first form on ``path`` (a GET through the same client)."""
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, name: str, password: str, next_path: str = "") -> TestResponse:
    """Post the login form as a browser would (token from the form)."""
    data = {"csrf_token": csrf_token(client), "name": name, "password": password}
    if next_path:
        data["next"] = next_path
    return client.post("/connexion", data=data)


@pytest.fixture
def as_admin(client: FlaskClient, accounts: dict[str, User]) -> FlaskClient:
    """``client`` logged in as the administrator."""
    assert login(client, ADMIN, ADMIN_PASSWORD).status_code == 303
    return client


@pytest.fixture
def as_viewer(client: FlaskClient, accounts: dict[str, User]) -> FlaskClient:
    """``client`` logged in as the viewer."""
    assert login(client, VIEWER, VIEWER_PASSWORD).status_code == 303
    return client


def post_form(client: FlaskClient, path: str, data: dict[str, str],
              form_page: str = "/") -> TestResponse:
    """POST ``data`` with a CSRF token taken from ``form_page``."""
    return client.post(path, data={"csrf_token": csrf_token(client, form_page), **data})

