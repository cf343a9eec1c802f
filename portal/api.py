"""RFC 8908 Captive Portal API at ``/api/captive`` (the URI DHCP option 114 announces).

Answers for the requesting client, identified by its source address, within
Android's limits: UTF-8 JSON of at most 4096 bytes, ``user-portal-url``
always present when captive, ``Cache-Control: private``. A live session adds
``seconds-remaining`` and, when its plan has a daily quota, ``bytes-remaining``
(today's data left; both are non-negative integers, as RFC 8908 says).
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask import Blueprint, Response, request

from parvis.core.sessions import quota_left
from portal.state import client_ipv4, state

bp = Blueprint("api", __name__)

MEDIA_TYPE = "application/captive+json"
MAX_BODY_BYTES = 4096


def _answer(body: dict[str, Any], status: int = 200) -> Response:
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert len(text) <= MAX_BODY_BYTES, "RFC 8908 answer larger than Android reads"
    response = Response(text, status=status, content_type=f"{MEDIA_TYPE}; charset=utf-8")
    response.headers["Cache-Control"] = "private"
    return response


@bp.get("/api/captive")
def captive() -> Response:
    """``captive`` and the session's time and data left for the client asking."""
    st = state()
    ip = client_ipv4(request.remote_addr)
    if ip is None:
        # Sessions are indexed by IPv4; over IPv6 the state is unknown. No valid
        # JSON makes a client keep its last answer or fall back to its probes,
        # which is better than a wrong "captive" for a device that is online.
        response = Response(json.dumps({"error": "ipv4-only"}), status=503,
                            mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response
    live = st.store.session_for_ip(ip)
    body: dict[str, Any] = {"captive": live is None, "user-portal-url": st.portal_url}
    if st.config.portal.venue_info_url:
        body["venue-info-url"] = st.config.portal.venue_info_url
    if live is not None:
        body["seconds-remaining"] = max(0, math.floor(live.expires_at - st.clock()))
        bytes_left = quota_left(live)
        if bytes_left is not None:
            body["bytes-remaining"] = bytes_left
        body["can-extend-session"] = False
    return _answer(body)
