"""The plain-HTTP listener: every caught request is sent to the HTTPS splash page.

The gateway DNATs an unauthorised client's TCP/80 here (and the poster name
and the gateway's own addresses always land here). Whatever the method, path
or Host, the answer is a ``302`` with ``Cache-Control: no-store`` and a tiny
body: the OS notices the portal, and a browser follows. The URL the resident
asked for travels signed, so the splash page can offer it back.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, request
from markupsafe import escape

from parvis.core.handoff import sign
from portal.state import PortalState, client_ipv4, state
from portal.urls import original_url

log = logging.getLogger(__name__)

bp = Blueprint("intercept", __name__)

HANDOFF_TTL_S = 120


@bp.before_app_request
def intercept_plain_http() -> Response | None:
    """Answer every plain-HTTP request with the redirect; HTTPS requests go on to the views."""
    if request.scheme == "https":
        return None
    st = state()
    caught = _caught_url(st)
    location = None
    client_ip = client_ipv4(request.remote_addr)
    if st.config.portal.remote_url and client_ip is not None:
        location = handoff_location(st, client_ip, caught)
    if location is None:
        # Bound to the address the request came from (IPv4 on the portal's own name).
        query = (urlencode({"u": st.signer.sign(caught, client_ip or request.remote_addr)})
                 if caught else "")
        location = st.portal_url + (f"?{query}" if query else "")
    return redirect_response(location)


def _caught_url(st: PortalState) -> str | None:
    """The URL the client asked for, unless it was the portal itself (poster name, address)."""
    host = request.headers.get("Host", "")
    try:
        name = (urlsplit(f"//{host}").hostname or "").rstrip(".")
    except ValueError:
        return None
    if not name or name in st.own_hosts:
        return None
    return original_url(host, request.full_path)


def handoff_location(st: PortalState, client_ip: str, caught: str | None) -> str | None:
    """The central portal's URL with a signed, expiring, single-use token; None if unusable."""
    remote = st.config.portal.remote_url
    if remote is None or st.handoff_secret is None:
        return None
    # sign() adds the expiry and the single-use nonce; netctl finds the MAC itself.
    params = {"gateway": st.config.gateway.id, "ip": client_ip, "url": caught or ""}
    try:
        token = sign(params, st.handoff_secret, st.clock(), ttl_s=HANDOFF_TTL_S)
    except ValueError as error:
        log.warning("hand-off token not made, serving locally: problem=%s", error)
        return None
    return remote + ("&" if "?" in remote else "?") + urlencode({"h": token})


def redirect_response(location: str) -> Response:
    """A 302 that no cache keeps, with a tiny bilingual body for clients that show it."""
    link = escape(location)
    body = ('<!doctype html><html lang="fr"><meta charset="utf-8"><title>Wi-Fi</title>'
            f'<p><a href="{link}">Portail Wi-Fi</a> · '
            f'<a href="{link}" lang="en">Wi-Fi portal</a></p></html>\n')
    response = Response(body, status=302, mimetype="text/html")
    response.headers["Location"] = location
    response.headers["Cache-Control"] = "no-store"
    return response
