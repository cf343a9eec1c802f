"""Hand-off tokens for remote portal mode: signed, expiring, refused when touched."""

from __future__ import annotations

import base64
import json

import pytest

from parvis.core.handoff import (
    MAX_TOKEN_CHARS,
    MAX_TTL_S,
    HandoffError,
    nonce_ttl_s,
    sign,
    verify,
)

SECRET = b"s" * 32
NOW = 1_790_000_000.0
PARAMS = {"gw": "plessisville-1", "ip": "10.77.0.12", "mac": "02:50:76:00:00:0a",
          "url": "http://example.com/a?b=c&d=é"}


def reason(token: str, secret: bytes = SECRET, now: float = NOW) -> str:
    with pytest.raises(HandoffError) as caught:
        verify(token, secret, now)
    return caught.value.reason


def test_round_trip_adds_exp_and_a_fresh_nonce() -> None:
    token = sign(PARAMS, SECRET, NOW)
    got = verify(token, SECRET, NOW + 1)
    assert {k: got[k] for k in PARAMS} == PARAMS
    assert got["exp"] == str(int(NOW) + 120)
    assert len(got["nonce"]) >= 16
    assert verify(sign(PARAMS, SECRET, NOW), SECRET, NOW)["nonce"] != got["nonce"]
    assert all(c.isalnum() or c in "-_." for c in token)  # URL-safe as is


def test_any_changed_character_is_refused() -> None:
    token = sign(PARAMS, SECRET, NOW)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    for index, char in enumerate(token):
        other = alphabet[(alphabet.index(char) + 1) % len(alphabet)]
        tampered = token[:index] + other + token[index + 1:]
        assert reason(tampered) in {"bad-signature", "malformed"}, index


def test_a_forged_payload_with_a_copied_signature_is_refused() -> None:
    token = sign(PARAMS, SECRET, NOW)
    payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["mac"] = "02:00:00:00:00:01"
    forged = base64.urlsafe_b64encode(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).rstrip(b"=").decode()
    assert reason(f"{forged}.{signature}") == "bad-signature"


def test_expiry() -> None:
    token = sign(PARAMS, SECRET, NOW, ttl_s=60)
    assert verify(token, SECRET, NOW + 59)
    assert reason(token, now=NOW + 60) == "expired"
    assert reason(token, now=NOW + 10_000) == "expired"


def test_a_token_from_too_far_in_the_future_is_refused() -> None:
    token = sign(PARAMS, SECRET, NOW + 3600)
    assert reason(token) == "expired"


def test_wrong_secret() -> None:
    assert reason(sign(PARAMS, SECRET, NOW), secret=b"t" * 32) == "bad-signature"


def test_oversized_and_malformed_tokens() -> None:
    token = sign(PARAMS, SECRET, NOW)
    assert reason("A" * (MAX_TOKEN_CHARS + 1)) == "too-long"
    assert reason(token + "A" * MAX_TOKEN_CHARS) == "too-long"
    for bad in ["", ".", "abc", "abc.", ".abc", "a b.c", "abc.d=", token.replace(".", ".."),
                token + ".x", "é" * 10 + "." + "é"]:
        assert reason(bad) in {"malformed", "bad-signature"}, bad


def test_sign_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="exp"):
        sign({"exp": "1"}, SECRET, NOW)
    with pytest.raises(ValueError, match="nonce"):
        sign({"nonce": "1"}, SECRET, NOW)
    with pytest.raises(ValueError, match="ttl_s"):
        sign(PARAMS, SECRET, NOW, ttl_s=MAX_TTL_S + 1)
    with pytest.raises(ValueError, match="at least 32"):
        sign(PARAMS, b"short", NOW)
    with pytest.raises(ValueError, match="shorten"):
        sign({"url": "x" * MAX_TOKEN_CHARS}, SECRET, NOW)


def test_nonce_ttl_covers_the_tokens_life() -> None:
    params = verify(sign(PARAMS, SECRET, NOW, ttl_s=120), SECRET, NOW + 20)
    assert nonce_ttl_s(params, NOW + 20) >= 100
