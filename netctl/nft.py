"""libnftables adapter: sends JSON batches in-process, reads client sets back.

Each :meth:`Nft.apply` call is one atomic transaction: the kernel takes all of
it or none of it. The libnftables context must be created inside the network
namespace it manages (one created before entering a namespace keeps talking to
the old one), so netctl creates it after start-up, in its own namespace.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

import nftables

from netctl import ruleset
from parvis.core.addresses import AddressError, parse_mac
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
        """True when the ``inet parvis`` table is in the kernel."""
        try:
            self.query([{"list": {"table": {"family": ruleset.FAMILY, "name": ruleset.TABLE}}}])
        except NftError:
            return False
        return True

    def client_elements(self) -> dict[Element, Counter]:
        """Every element of the client sets with its counter reading."""
        readings: dict[Element, Counter] = {}
        names = {s.value for s in ClientSet}
        for obj in self.query(ruleset.list_table()):
            definition = obj.get("set")
            if not definition or definition.get("name") not in names:
                continue
            client_set = ClientSet(definition["name"])
            for item in definition.get("elem", []):
                element, counter = _parse_element(client_set, item)
                if element is not None:
                    readings[element] = counter
        return readings

    def ruleset_text(self) -> str:
        """The table as nft prints it (for diagnostics)."""
        self._nft.set_json_output(False)
        try:
            rc, output, _ = self._nft.cmd(f"list table {ruleset.FAMILY} {ruleset.TABLE}")
        finally:
            self._nft.set_json_output(True)
        return str(output) if rc == 0 else ""


def _parse_element(client_set: ClientSet, item: Any) -> tuple[Element | None, Counter]:
    body: Any = item.get("elem", item) if isinstance(item, dict) else item
    value: Any = body.get("val") if isinstance(body, dict) else body
    counter_json = body.get("counter", {}) if isinstance(body, dict) else {}
    counter = Counter(int(counter_json.get("packets", 0)), int(counter_json.get("bytes", 0)))
    try:
        if isinstance(value, dict) and "concat" in value:
            ip, mac = value["concat"]
            return Element(client_set, str(ipaddress.ip_address(ip)), parse_mac(mac)), counter
        return Element(client_set, str(ipaddress.ip_address(value))), counter
    except (ValueError, AddressError, TypeError):
        log.warning("unexpected element %r in set %s", item, client_set.value)
        return None, counter
