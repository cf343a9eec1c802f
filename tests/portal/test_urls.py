"""The original URL: signed by the interceptor, offered back only when safe."""

from __future__ import annotations

import pytest

from portal.urls import UrlSigner, original_url, safe_continue_url

OWN = {"portail.parvis.test", "wifi.parvis.test", "10.77.0.1", "fd77::1"}


@pytest.mark.parametrize("url", [
    "http://example.com/", "https://www.plessisville.quebec/loisirs?x=1",
    "http://10.0.0.5:8080/a", "http://[2001:db8::1]/", "HTTP://Example.com/%2F%2Fok",
])
def test_safe_urls_are_offered(url: str) -> None:
    assert safe_continue_url(url, OWN) == url


@pytest.mark.parametrize("url", [
    "//evil.test", "//evil.test/path", "https:evil.test", "https:/evil.test", "javascript:alert(1)",
    "JavaScript:alert(1)", "data:text/html,x", "http://portail.parvis.test/x",
    "https://PORTAIL.parvis.test./", "http://wifi.parvis.test/", "http://10.77.0.1:8080/",
    "http://[fd77::1]/", "%2F%2Fevil.test", "http%3A%2F%2Fevil.test", "http://%65vil.test/",
    "http:\\\\evil.test", "http://evil.test\\@good.test/", "/\\evil.test", "\\\\evil.test",
    "http://user@evil.test/", "http://good.test@evil.test/", "http://evil.test\t/",
    "http://evil.test\r\nLocation: x", "http://évil.test/", " http://evil.test/",
    "http://evil.test:99999/", "http:///evil.test", "ftp://evil.test/", "", "http://",
])
def test_unsafe_urls_are_refused(url: str) -> None:
    assert safe_continue_url(url, OWN) is None


def test_signed_url_round_trips_and_tampering_is_refused() -> None:
    signer = UrlSigner(b"k" * 32)
    token = signer.sign("http://example.com/", "10.77.2.144")
    assert signer.unsign(token, "10.77.2.144") == "http://example.com/"
    assert signer.unsign(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
                         "10.77.2.144") is None
    assert UrlSigner(b"x" * 32).unsign(token, "10.77.2.144") is None
    assert signer.unsign("http://example.com/", "10.77.2.144") is None
    assert signer.unsign(None, "10.77.2.144") is None
    assert signer.unsign(token, "10.77.2.144", max_age_s=-1) is None


def test_a_signed_url_works_only_for_the_client_it_was_signed_for() -> None:
    # Anyone can make the interceptor sign any URL: the token must not be a link
    # that works when sent to somebody else (a phishing aid under the town's name).
    signer = UrlSigner(b"k" * 32)
    token = signer.sign("http://paypa1-login.example/signin", "10.77.2.145")
    assert signer.unsign(token, "10.77.2.144") is None
    assert signer.unsign(token, None) is None
    assert signer.unsign(token, "10.77.2.145") == "http://paypa1-login.example/signin"


def test_original_url_is_length_capped() -> None:
    assert original_url("example.com", "/a?b=c") == "http://example.com/a?b=c"
    assert original_url("example.com", "/a?") == "http://example.com/a"
    assert original_url("example.com", "/" + "a" * 2000) is None
