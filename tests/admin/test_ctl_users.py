"""``parvisctl users``: add, passwd, remove, list; passwords from the terminal or stdin."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import tomli_w
from flask.testing import FlaskClient

from parvis import passwords
from parvis.ctl import main
from parvis.store import Keys, Store
from tests.admin.conftest import login
from tests.portal.conftest import RedisServer

PASSWORD = "a long enough passphrase"


@pytest.fixture
def config_file(tmp_path: Path, redis_server: RedisServer, store: Store) -> Path:
    path = tmp_path / "parvis.toml"
    secret = tmp_path / "portal.secret"
    secret.write_text("s" * 40)
    path.write_text(tomli_w.dumps({
        "gateway": {"id": "gw-test", "lan_interface": "br-lan", "wan_interface": "wan0"},
        "portal": {"address": "10.77.0.1", "secret_key_file": str(secret)},
        "redis": {"url": redis_server.url}}))
    return path


def users(config: Path, monkeypatch: pytest.MonkeyPatch, *args: str,
          stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(["--config", str(config), "users", *args])


def test_add_then_log_in(config_file: Path, monkeypatch: pytest.MonkeyPatch, store: Store,
                         client: FlaskClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert users(config_file, monkeypatch, "add", "alice", "--role", "admin",
                 "--password-stdin", stdin=PASSWORD + "\n") == 0
    assert "account alice created (admin)" in capsys.readouterr().out
    user = store.admin_user("alice")
    assert user is not None and user.role.value == "admin"
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in str(
        store.client.hgetall(Keys.admin_user("alice")))
    assert login(client, "alice", PASSWORD).status_code == 303


def test_add_refuses_a_taken_name_a_bad_name_and_a_weak_password(
        config_file: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert users(config_file, monkeypatch, "add", "alice", "--role", "viewer",
                 "--password-stdin", stdin=PASSWORD) == 0
    assert users(config_file, monkeypatch, "add", "alice", "--role", "viewer",
                 "--password-stdin", stdin=PASSWORD) == 1
    assert "exists" in capsys.readouterr().err
    assert users(config_file, monkeypatch, "add", "Bob Smith", "--role", "viewer",
                 "--password-stdin", stdin=PASSWORD) == 2
    assert "is not an account name" in capsys.readouterr().err
    assert users(config_file, monkeypatch, "add", "bob", "--role", "viewer",
                 "--password-stdin", stdin="short\n") == 2
    assert "at least 12 characters" in capsys.readouterr().err
    assert users(config_file, monkeypatch, "add", "bob", "--role", "viewer",
                 "--password-stdin", stdin="my name is bob, ok\n") == 2
    assert "account name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        users(config_file, monkeypatch, "add", "bob", "--role", "root")


def test_passwords_typed_twice_at_the_terminal(config_file: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               store: Store,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    typed = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(typed))
    assert users(config_file, monkeypatch, "add", "carol", "--role", "viewer") == 2
    assert "the two passwords differ" in capsys.readouterr().err
    assert store.admin_user("carol") is None
    typed = iter([PASSWORD, PASSWORD])
    assert users(config_file, monkeypatch, "add", "carol", "--role", "viewer") == 0


def test_passwd_changes_the_hash_and_ends_sessions(config_file: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   store: Store) -> None:
    users(config_file, monkeypatch, "add", "alice", "--role", "admin", "--password-stdin",
          stdin=PASSWORD)
    before = store.admin_user("alice")
    assert before is not None
    store.note_admin_failure("alice", "127.0.0.1", 60)
    assert users(config_file, monkeypatch, "passwd", "alice", "--password-stdin",
                 stdin="another long passphrase\n") == 0
    after = store.admin_user("alice")
    assert after is not None and after.generation != before.generation
    assert passwords.verify_password(after.password_hash, "another long passphrase")
    assert not passwords.verify_password(after.password_hash, PASSWORD)
    assert store.admin_failures("alice", "127.0.0.2") == (0, 0)  # the lock is lifted
    assert users(config_file, monkeypatch, "passwd", "nobody", "--password-stdin",
                 stdin=PASSWORD) == 1


def test_remove_and_list(config_file: Path, monkeypatch: pytest.MonkeyPatch, store: Store,
                         capsys: pytest.CaptureFixture[str]) -> None:
    assert users(config_file, monkeypatch, "list") == 0
    assert "no accounts" in capsys.readouterr().out
    users(config_file, monkeypatch, "add", "alice", "--role", "admin", "--password-stdin",
          stdin=PASSWORD)
    users(config_file, monkeypatch, "add", "victor", "--role", "viewer", "--password-stdin",
          stdin=PASSWORD)
    capsys.readouterr()
    assert users(config_file, monkeypatch, "list") == 0
    table = capsys.readouterr().out
    assert "alice" in table and "viewer" in table and "$argon2" not in table
    assert users(config_file, monkeypatch, "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(u["name"], u["role"]) for u in listed] == [("alice", "admin"), ("victor", "viewer")]
    assert users(config_file, monkeypatch, "remove", "victor") == 0
    assert store.admin_user("victor") is None
    assert store.client.smembers(Keys.ADMIN_USERS) == {"alice"}
    assert users(config_file, monkeypatch, "remove", "victor") == 1
