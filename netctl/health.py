"""Host health (psutil): CPU, memory, per-interface bytes and rates, uptime."""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

import parvis


class HealthSampler:
    """Takes health snapshots; rates are computed between two consecutive snapshots."""

    def __init__(self, gateway_id: str, interfaces: list[str]) -> None:
        self.gateway_id = gateway_id
        self.interfaces = interfaces
        self.started_at = time.time()
        self._process = psutil.Process(os.getpid())
        self._last: tuple[float, dict[str, Any]] | None = None
        psutil.cpu_percent(None)  # the first call only starts the measurement

    def snapshot(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """A JSON-ready health snapshot."""
        now = time.time()
        counters = psutil.net_io_counters(pernic=True)
        memory = psutil.virtual_memory()
        interfaces: dict[str, Any] = {}
        for name in self.interfaces:
            stats = counters.get(name)
            if stats is None:
                interfaces[name] = {"present": False}
                continue
            entry: dict[str, Any] = {
                "present": True,
                "bytes_recv": stats.bytes_recv,
                "bytes_sent": stats.bytes_sent,
                "packets_recv": stats.packets_recv,
                "packets_sent": stats.packets_sent,
                "errors": stats.errin + stats.errout,
                "drops": stats.dropin + stats.dropout,
            }
            if self._last is not None:
                last_time, last = self._last
                previous = last.get(name)
                elapsed = now - last_time
                if previous is not None and previous.get("present") and elapsed > 0:
                    entry["rx_bit_s"] = round(
                        max(0, stats.bytes_recv - previous["bytes_recv"]) * 8 / elapsed)
                    entry["tx_bit_s"] = round(
                        max(0, stats.bytes_sent - previous["bytes_sent"]) * 8 / elapsed)
            interfaces[name] = entry
        self._last = (now, interfaces)
        snapshot: dict[str, Any] = {
            "gateway": self.gateway_id,
            "at": now,
            "version": parvis.__version__,
            "pid": os.getpid(),
            "cpu_percent": psutil.cpu_percent(None),
            "load_average": list(os.getloadavg()),
            "memory_total_bytes": memory.total,
            "memory_used_bytes": memory.total - memory.available,
            "memory_percent": memory.percent,
            "netctl_rss_bytes": self._process.memory_info().rss,
            "uptime_s": round(now - psutil.boot_time()),
            "netctl_uptime_s": round(now - self.started_at),
            "interfaces": interfaces,
        }
        if extra:
            snapshot.update(extra)
        return snapshot
