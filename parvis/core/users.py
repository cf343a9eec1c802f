"""Console accounts: names, roles, the password policy and the lockout decisions.

Pure logic (no I/O): the store keeps accounts and failure counters in Redis,
``parvis.passwords`` hashes with argon2, the console and ``parvisctl users``
call the functions here to decide.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

# Lower-case letters, digits, dot, dash and underscore; starting with a letter.
NAME_RE = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
NAME_RULE = "2 to 32 lower-case letters, digits, '.', '-' or '_', starting with a letter"
MIN_PASSWORD_CHARS = 12
# argon2 hashes any length, but a megabyte password is only a way to burn CPU.
MAX_PASSWORD_CHARS = 256
# Wrong passwords from one source address before it is throttled, as a multiple of
# the per-account limit: one desk with several clerks mistyping is not an attack.
ADDRESS_ATTEMPTS_FACTOR = 4
# A console session lasts this long from its login, whatever happens meanwhile.
SESSION_LIFETIME_S = 8 * 3600


class Role(StrEnum):
    """What an account may do in the console."""

    ADMIN = "admin"  # everything: actions on clients, codes, content
    VIEWER = "viewer"  # council staff: read-only views and the reports


def may_act(role: Role) -> bool:
    """True when ``role`` may change anything (send commands, create codes, edit content)."""
    return role is Role.ADMIN


def parse_role(text: str) -> Role:
    """The role called ``text``; ValueError naming the choices otherwise."""
    try:
        return Role(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a role, expected one of "
                         f"{', '.join(r.value for r in Role)}") from None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an account name, or None when it can."""
    if not NAME_RE.match(name):
        return f"{name!r} is not an account name, expected {NAME_RULE}"
    return None


def password_problem(password: str, name: str = "") -> str | None:
    """Why ``password`` is refused as a new password, or None when it is acceptable.

    NIST SP 800-63B's advice: a minimum length and no composition rules; refuse
    only what is obviously guessable.
    """
    if len(password) < MIN_PASSWORD_CHARS:
        return f"the password must have at least {MIN_PASSWORD_CHARS} characters"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"the password must have at most {MAX_PASSWORD_CHARS} characters"
    if not password.isprintable():
        return "the password must not hold control characters"
    if len(set(password)) < 4:
        return "the password repeats too few different characters"
    if name and name.lower() in password.lower():
        return "the password must not contain the account name"
    return None


@dataclass(frozen=True)
class User:
    """One console account as the store keeps it (never the password itself)."""

    name: str
    role: Role
    password_hash: str
    created_at: float
    changed_at: float
    # Changes with each new password: sessions opened before then end.
    generation: str
    last_login_at: float | None = None

    def to_fields(self) -> dict[str, str]:
        """The account as a Redis hash."""
        return {"role": self.role.value, "hash": self.password_hash,
                "created_at": repr(self.created_at), "changed_at": repr(self.changed_at),
                "generation": self.generation,
                "last_login_at": "" if self.last_login_at is None else repr(self.last_login_at)}

    @classmethod
    def from_fields(cls, name: str, fields: Mapping[str, str]) -> User:
        """Read an account written by :meth:`to_fields`; ValueError if it is not one."""
        try:
            last = fields.get("last_login_at", "")
            return cls(name=name, role=parse_role(fields["role"]), password_hash=fields["hash"],
                       created_at=float(fields["created_at"]),
                       changed_at=float(fields["changed_at"]),
                       generation=fields["generation"],
                       last_login_at=float(last) if last else None)
        except KeyError as error:
            raise ValueError(f"account {name!r} lacks {error.args[0]!r}") from None


class LoginGate(StrEnum):
    """Whether a login attempt may even be checked."""

    OPEN = "open"
    ACCOUNT_LOCKED = "account-locked"
    ADDRESS_THROTTLED = "address-throttled"


def login_gate(account_failures: int, address_failures: int, attempts: int) -> LoginGate:
    """Decide before checking a password, from the failures counted in the current window.

    ``attempts`` is ``[admin] lockout_attempts``. The account counter exists for
    unknown names too, so a lockout says nothing about which accounts exist.
    """
    if address_failures >= attempts * ADDRESS_ATTEMPTS_FACTOR:
        return LoginGate.ADDRESS_THROTTLED
    if account_failures >= attempts:
        return LoginGate.ACCOUNT_LOCKED
    return LoginGate.OPEN


def locked_now(account_failures: int, attempts: int) -> bool:
    """True when this failure count (just incremented) locks the account."""
    return account_failures >= attempts
