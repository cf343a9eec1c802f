"""The objects every console view shares, kept in ``app.extensions["parvis_admin"]``."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app, g

from parvis.core.config import Config
from parvis.core.users import User
from parvis.store import Store
from portal.ended import town_zone


@dataclass
class AdminState:
    """Configuration, the store and the clock of one console application."""

    config: Config
    store: Store
    clock: Callable[[], float] = time.time

    @property
    def zone(self) -> dt.tzinfo | None:
        """The town's time zone (None: the host's), for every time shown or typed."""
        return town_zone(self.config.gateway.timezone)

    def store_for(self, gateway_id: str) -> Store:
        """The store of one gateway on the town's Redis."""
        return self.store.for_gateway(gateway_id)


def state() -> AdminState:
    """The current application's AdminState."""
    value = current_app.extensions["parvis_admin"]
    assert isinstance(value, AdminState)
    return value


def current_user() -> User | None:
    """The account logged in on this request, if any (set before each request)."""
    user = g.get("user")
    return user if isinstance(user, User) else None
