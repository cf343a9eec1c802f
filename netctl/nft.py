"""libnftables adapter: sends JSON batches in-process, reads client sets back.

Each :meth:`Nft.apply` call is one atomic transaction: the kernel takes all of
it or none of it. The libnftables context must be created inside the network
namespace it manages (one created before entering a namespace keeps talking to
the old one), so netctl creates it after start-up, in its own namespace.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Iterable
from typing import Any

import nftables

from netctl import ruleset
from netctl.setdump import SetDumpError, SetReader, decode_key
from parvis.core.sessions import ClientSet, Counter, Element

log = logging.getLogger(__name__)

Json = dict[str, Any]


class NftError(Exception):
    """libnftables refused a batch; carries the kernel's message and the batch itself."""

    def __init__(self, message: str, batch: list[Json]) -> None:
        super().__init__(message)
        self.batch = batch


class Nft:
    """One libnftables context, in the current network namespace."""

    def __init__(self) -> None:
        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(False)
        self._reader = SetReader(ruleset.TABLE)
        # Raw kernel key -> Element per set, kept across sweeps so that a client's
        # element is decoded once, not every sweep.
        self._decoded: dict[ClientSet, dict[bytes, Element]] = {s: {} for s in ClientSet}

    def apply(self, commands: list[Json]) -> None:
        """Run ``commands`` as one atomic transaction, or raise NftError with the batch."""
        if not commands:
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("nft batch: %s", json.dumps(commands)[:4000])
        rc, _output, error = self._nft.json_cmd({"nftables": commands})
        if rc != 0:
            raise NftError(f"nftables refused the batch: {str(error).strip()}", commands)

    def query(self, commands: list[Json]) -> list[Json]:
        """Run list commands and return the objects of the JSON output."""
        rc, output, error = self._nft.json_cmd({"nftables": commands})
        if rc != 0:
            raise NftError(f"nftables refused the query: {str(error).strip()}", commands)
        if not output:
            return []
        if isinstance(output, str):
            output = json.loads(output)
        objects: list[Json] = output.get("nftables", [])
        return objects

    def table_exists(self) -> bool:
        """True when the ``inet parvis`` table is in the kernel (lists tables only)."""
        for obj in self.query([{"list": {"tables": {"family": ruleset.FAMILY}}}]):
            table = obj.get("table")
            if table and table.get("name") == ruleset.TABLE:
                return True
        return False

    def set_names(self) -> set[str]:
        """Names of the sets of the ``inet parvis`` table now in the kernel (none if absent)."""
        names = set()
        for obj in self.query([{"list": {"sets": {"family": ruleset.FAMILY}}}]):
            definition = obj.get("set")
            if definition and definition.get("table") == ruleset.TABLE:
                names.add(str(definition["name"]))
        return names

    def client_elements(self) -> dict[Element, Counter] | None:
        """Every element of the client sets with its counter; None if the sets are missing.

        Read over nfnetlink by :mod:`netctl.setdump`, not through libnftables:
        this runs every sweep, and libnftables' listing costs several times more.
        """
        readings: dict[Element, Counter] = {}
        for client_set in ClientSet:
            try:
                raw = self._reader.counters(client_set.value)
            except SetDumpError as error:
                if error.errno == errno.ENOENT:
                    return None
                raise NftError(f"reading set {client_set.value}: {error}", []) from error
            ip_length = 4 if client_set in (ClientSet.UP4, ClientSet.DOWN4) else 16
            decoded = self._decoded[client_set]
            make_counter = tuple.__new__  # Counter's fields straight from the dump's tuple
            for key, counts in raw.items():
                element = decoded.get(key)
                if element is None:
                    ip, mac = decode_key(key, ip_length, client_set.upstream)
                    element = decoded[key] = Element(client_set, ip, mac)
                readings[element] = make_counter(Counter, counts)
            if len(decoded) > 2 * len(raw) + 1024:
                # Forget elements that are gone, so the cache cannot grow without bound.
                self._decoded[client_set] = {k: decoded[k] for k in raw}
        return readings

    def shape_elements(self) -> dict[str, str]:
        """Address -> HTB classid of every entry of the shape maps (empty if absent)."""
        entries: dict[str, str] = {}
        for name in (ruleset.SHAPE4, ruleset.SHAPE6):
            try:
                objects = self.query([{"list": {"map": {
                    "family": ruleset.FAMILY, "table": ruleset.TABLE, "name": name}}}])
            except NftError:
                continue  # the map is not there (yet)
            for obj in objects:
                for key, data in (obj.get("map") or {}).get("elem", []):
                    address = key.get("elem", {}).get("val") if isinstance(key, dict) else key
                    entries[str(address)] = str(data)
        return entries

    def rule_counts(self, chains: Iterable[str]) -> dict[str, int]:
        """How many rules each of these chains of ``inet parvis`` holds (-1: chain missing).

        One libnftables call; the chains hold a few dozen rules in all, so this is
        cheap enough for every sweep (the sets, which are big, are not listed).
        """
        counts: dict[str, int] = {}
        for name in chains:
            try:
                objects = self.query([{"list": {"chain": {
                    "family": ruleset.FAMILY, "table": ruleset.TABLE, "name": name}}}])
            except NftError:
                counts[name] = -1
                continue
            counts[name] = sum(1 for obj in objects if "rule" in obj)
        return counts
