"""Signed hand-off tokens from a gateway to a central (remote) portal.

In remote portal mode the gateway sends an unauthorised client to the central
portal with its gateway id, client address, MAC and original URL. Anyone can
type a URL, so those parameters travel as one token::

    base64url(canonical JSON of params + exp + nonce) "." base64url(HMAC-SHA256)

signed with the secret the gateway shares with the central portal. The token
expires ``ttl_s`` after signing (at most 5 minutes) and carries a random
nonce; single use is enforced by the store (``Store.claim_nonce``), since this
module does no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import secrets
from collections.abc import Mapping

MAX_TOKEN_CHARS = 4096
MAX_TTL_S = 300
# A token may claim to expire a little later than MAX_TTL_S from now: the
# gateway's and the portal's clocks are not exactly in step.
CLOCK_SKEW_S = 30
MIN_SECRET_BYTES = 32
RESERVED = ("exp", "nonce")
# Domain separation: a MAC made here can never pass for another use of the secret.
_CONTEXT = b"parvis-handoff-v1."

# HandoffError reasons.
MALFORMED = "malformed"
BAD_SIGNATURE = "bad-signature"
EXPIRED = "expired"
TOO_LONG = "too-long"


class HandoffError(Exception):
    """A hand-off token that must be refused; ``reason`` says why (for logs, not residents)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # urlsafe_b64decode silently drops characters outside the alphabet: refuse them first.
    if not text or not all(c.isascii() and (c.isalnum() or c in "-_") for c in text):
        raise HandoffError(MALFORMED)
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise HandoffError(MALFORMED) from None
    # The last character's unused bits are free: without this check two
    # spellings of one signature would both pass, and "any changed byte is
    # refused" would not hold.
    if _b64encode(data) != text:
        raise HandoffError(MALFORMED)
    return data


def _mac(payload: str, secret: bytes) -> bytes:
    return hmac.new(secret, _CONTEXT + payload.encode("ascii"), hashlib.sha256).digest()


def _check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the hand-off secret must be at least {MIN_SECRET_BYTES} bytes")


def sign(params: Mapping[str, str], secret: bytes, now: float, ttl_s: int = 120) -> str:
    """A URL-safe token carrying ``params``, expiring ``ttl_s`` after ``now``, single-use."""
    _check_secret(secret)
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be from 1 to {MAX_TTL_S}, got {ttl_s}")
    for name, value in params.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ValueError(f"hand-off parameters are strings, got {name!r}: {value!r}")
        if name in RESERVED:
            raise ValueError(f"{name!r} is set by sign() itself")
    body = dict(params)
    body["exp"] = str(math.floor(now) + ttl_s)
    body["nonce"] = secrets.token_urlsafe(16)
    # Canonical: sorted keys, no blanks, ASCII only; the MAC covers these exact bytes.
    payload = _b64encode(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                    ensure_ascii=True).encode("ascii"))
    token = f"{payload}.{_b64encode(_mac(payload, secret))}"
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"the token would be {len(token)} characters, more than "
                         f"{MAX_TOKEN_CHARS}: shorten the parameters (the original URL)")
    return token


def verify(token: str, secret: bytes, now: float) -> dict[str, str]:
    """The parameters of a genuine, unexpired token (with ``exp`` and ``nonce``).

    Raises HandoffError("too-long" | "malformed" | "bad-signature" | "expired").
    The caller must then claim the nonce to refuse a replay.
    """
    _check_secret(secret)
    if len(token) > MAX_TOKEN_CHARS:
        raise HandoffError(TOO_LONG)
    payload, dot, signature = token.partition(".")
    if not dot:
        raise HandoffError(MALFORMED)
    given = _b64decode(signature)
    _b64decode(payload)  # refuse a payload that is not base64url before computing anything
    # The signature is checked before the payload is parsed: nothing an attacker
    # wrote reaches the JSON decoder.
    if not hmac.compare_digest(given, _mac(payload, secret)):
        raise HandoffError(BAD_SIGNATURE)
    try:
        body = json.loads(_b64decode(payload))
    except ValueError:
        raise HandoffError(MALFORMED) from None
    if not isinstance(body, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in body.items()):
        raise HandoffError(MALFORMED)
    exp_text, nonce = body.get("exp", ""), body.get("nonce", "")
    if not exp_text.isascii() or not exp_text.isdigit() or not nonce:
        raise HandoffError(MALFORMED)
    exp = int(exp_text)
    if now >= exp or exp > now + MAX_TTL_S + CLOCK_SKEW_S:
        raise HandoffError(EXPIRED)
    return dict(body)


def nonce_ttl_s(params: Mapping[str, str], now: float) -> int:
    """How long a verified token's nonce must stay claimed: until it expires, plus a margin."""
    return max(1, int(params["exp"]) - math.floor(now) + CLOCK_SKEW_S)
