"""``parvisctl users``: the administration console's accounts (docs/admin.md).

``add NAME --role admin|viewer``, ``passwd NAME``, ``remove NAME``, ``list``.
Passwords are typed twice at the terminal (getpass, not echoed), or read as
one line from standard input with ``--password-stdin`` for scripts. Only
their argon2id hash is stored.
"""

from __future__ import annotations

import argparse
import getpass
import json
import secrets
import sys
import time
from datetime import datetime
from typing import Any, TextIO

from parvis import passwords
from parvis.core.users import Role, User, name_problem, parse_role, password_problem
from parvis.store import Store

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class PasswordError(Exception):
    """No acceptable password was given; the message says why."""


def add_parser(sub: Any) -> None:
    """The ``users`` sub-command and its actions, on parvisctl's sub-parsers."""
    users = sub.add_parser("users", help="accounts of the administration console")
    actions = users.add_subparsers(dest="users_action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="create an account (asks for its password)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=[r.value for r in Role],
                     help="admin: everything; viewer: read-only views and reports")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input (one line)")
    passwd = actions.add_parser("passwd", help="set a new password (ends the account's "
                                               "sessions and lifts its lock)")
    passwd.add_argument("name", metavar="NAME")
    passwd.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input (one line)")
    remove = actions.add_parser("remove", help="delete an account (ends its sessions)")
    remove.add_argument("name", metavar="NAME")
    listing = actions.add_parser("list", help="accounts, roles, last login")
    listing.add_argument("--json", action="store_true", help="machine-readable output")


def read_password(name: str, from_stdin: bool, stdin: TextIO | None = None) -> str:
    """The new password, typed twice at the terminal or one line from stdin; checked."""
    if from_stdin:
        line = (stdin or sys.stdin).readline()
        password = line[:-1] if line.endswith("\n") else line
    else:
        password = getpass.getpass(f"New password for {name}: ")
        if getpass.getpass("Again: ") != password:
            raise PasswordError("the two passwords differ")
    problem = password_problem(password, name)
    if problem is not None:
        raise PasswordError(problem)
    return password


def run(store: Store, args: argparse.Namespace, stdin: TextIO | None = None) -> int:
    """Carry out one ``parvisctl users`` action."""
    action = args.users_action
    if action == "list":
        return _list(store.admin_users(), args.json)
    name = args.name
    problem = name_problem(name)
    if problem is not None:
        print(f"parvisctl: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if action == "remove":
        if store.remove_admin_user(name):
            print(f"account {name} removed")
            return EXIT_OK
        print(f"parvisctl: no account {name!r} (see `parvisctl users list`)", file=sys.stderr)
        return EXIT_FAILED
    if action == "passwd" and store.admin_user(name) is None:
        print(f"parvisctl: no account {name!r} (see `parvisctl users list`)", file=sys.stderr)
        return EXIT_FAILED
    if action == "add" and store.admin_user(name) is not None:
        print(f"parvisctl: account {name!r} exists (change its password with "
              f"`parvisctl users passwd {name}`)", file=sys.stderr)
        return EXIT_FAILED
    try:
        password = read_password(name, args.password_stdin, stdin)
    except PasswordError as error:
        print(f"parvisctl: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (EOFError, KeyboardInterrupt):
        print("\nparvisctl: no password given", file=sys.stderr)
        return EXIT_USAGE
    now = time.time()
    hashed = passwords.hash_password(password)
    if action == "add":
        user = User(name=name, role=parse_role(args.role), password_hash=hashed,
                    created_at=now, changed_at=now, generation=secrets.token_hex(8))
        if not store.add_admin_user(user):
            print(f"parvisctl: account {name!r} exists", file=sys.stderr)
            return EXIT_FAILED
        print(f"account {name} created ({user.role.value})")
        return EXIT_OK
    if not store.set_admin_password(name, hashed, now):
        print(f"parvisctl: no account {name!r}", file=sys.stderr)
        return EXIT_FAILED
    print(f"password of {name} changed; its open sessions have ended")
    return EXIT_OK


def _list(users: list[User], as_json: bool) -> int:
    if as_json:
        print(json.dumps([{"name": u.name, "role": u.role.value, "created_at": u.created_at,
                           "changed_at": u.changed_at, "last_login_at": u.last_login_at}
                          for u in users], indent=2))
        return EXIT_OK
    if not users:
        print("no accounts (create one with `parvisctl users add NAME --role admin`)")
        return EXIT_OK
    print(f"{'NAME':<32} {'ROLE':<7} {'CREATED':<16} {'PASSWORD SET':<16} LAST LOGIN")
    for u in users:
        print(f"{u.name:<32} {u.role.value:<7} {_when(u.created_at):<16} "
              f"{_when(u.changed_at):<16} {_when(u.last_login_at) if u.last_login_at else '-'}")
    return EXIT_OK


def _when(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch or 0).strftime("%Y-%m-%d %H:%M")
