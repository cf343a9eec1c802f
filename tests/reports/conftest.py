"""Fixtures for the report tests: the access-code tests' private Redis, reused as is.

``redis_url`` (session: a redis-server of our own on a Unix socket), ``store``
(function: a Store on it, emptied first) and ``config_file`` come from
tests/codes/conftest.py.
"""

from tests.codes.conftest import config_file, redis_url, secret_file, store

__all__ = ["config_file", "redis_url", "secret_file", "store"]
