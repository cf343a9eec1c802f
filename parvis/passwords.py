"""Password hashing with argon2id (argon2-cffi): the only module that touches it.

The parameters are argon2-cffi's defaults, RFC 9106's second recommended
profile (argon2id, 3 passes, 64 MiB, 4 lanes): about 50 ms on a gateway-class
CPU. Hashes carry their parameters, so raising them later rehashes each
account at its next login (:func:`needs_rehash`).
"""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (PHC string form, salt included)."""
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; False for any mismatch or bad hash."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than today's."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@functools.cache
def dummy_hash() -> str:
    """A hash of a random password nobody knows, with today's parameters.

    Verified against for unknown account names, so that a wrong name costs the
    same time as a wrong password and the answer time reveals no account.
    """
    return hash_password(secrets.token_urlsafe(24))
