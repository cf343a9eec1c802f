"""The resident's original URL: carried signed through the splash page, offered only if safe.

The interceptor signs the URL it caught together with the client's address
(itsdangerous, the portal's secret, ten minutes); the splash page never
trusts an unsigned one, nor one signed for another client: anybody can make
the interceptor sign any URL (the Host header is the client's own words), so
a token must not be usable as a link sent to someone else. Even then the URL
is offered as "continue" only when it is an absolute http(s) address of
another site.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from itsdangerous import BadData, URLSafeTimedSerializer

MAX_ORIGINAL_URL = 1024
ORIGINAL_URL_MAX_AGE_S = 10 * 60
_SALT = "parvis-original-url"
# Letters, digits, dots and dashes: a DNS name (no percent-encoding, no IDN tricks).
_HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$")


class UrlSigner:
    """Signs and checks original URLs with the portal's secret."""

    def __init__(self, secret: bytes) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)

    def sign(self, url: str, client: str | None) -> str:
        """The token carried in the splash page's ``u`` parameter, for this client only."""
        return self._serializer.dumps([client or "", url])

    def unsign(self, token: str | None, client: str | None,
               max_age_s: int = ORIGINAL_URL_MAX_AGE_S) -> str | None:
        """The URL inside a valid, fresh token signed for ``client``; None for anything else."""
        if not token or len(token) > 4 * MAX_ORIGINAL_URL:
            return None
        try:
            value = self._serializer.loads(token, max_age=max_age_s)
        except BadData:
            return None
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, str) for v in value) or value[0] != (client or "")):
            return None
        url: str = value[1]
        return url


def original_url(host: str, full_path: str) -> str | None:
    """The http:// URL a caught request asked for, or None if too long to carry."""
    url = f"http://{host}{full_path}"
    if url.endswith("?"):
        url = url[:-1]
    return url if len(url) <= MAX_ORIGINAL_URL else None


def safe_continue_url(url: str | None, own_hosts: set[str]) -> str | None:
    """``url`` if it may be offered as a "continue" link, else None.

    Only absolute http/https URLs with a plain host name or address that is
    not the portal's own: no scheme-relative ``//evil``, no ``https:evil``,
    no ``javascript:``, no backslashes, control characters, user-info or
    percent-encoded hosts.
    """
    if not url or len(url) > MAX_ORIGINAL_URL:
        return None
    if any(ord(c) < 0x21 or ord(c) == 0x7F or c == "\\" for c in url):
        return None
    if not url.isascii() or not re.match(r"^https?://", url, re.IGNORECASE):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or "@" in parts.netloc:
        return None
    host = (parts.hostname or "").lower()
    if not host or (port is not None and not 0 < port < 65536):
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
        if not _HOST_RE.match(host):
            return None
    own = {name.lower().rstrip(".") for name in own_hosts}
    if host.rstrip(".") in own or (address is not None and str(address) in own):
        return None
    return url
