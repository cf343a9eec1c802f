"""A hand-off token verified, its nonce claimed, and a replay refused (core + store)."""

from __future__ import annotations

import time

from parvis.core.handoff import nonce_ttl_s, sign, verify
from parvis.store import Store

SECRET = b"h" * 32


def test_a_token_is_accepted_once(store: Store) -> None:
    now = time.time()
    token = sign({"gw": "gw-test", "ip": "10.77.0.12"}, SECRET, now)
    params = verify(token, SECRET, now + 1)
    assert store.claim_nonce(params["nonce"], nonce_ttl_s(params, now + 1))
    replayed = verify(token, SECRET, now + 2)  # still genuine and unexpired ...
    assert not store.claim_nonce(replayed["nonce"], nonce_ttl_s(replayed, now + 2))  # ... used
