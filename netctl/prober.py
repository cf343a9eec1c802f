"""Asks idle devices whether they are still there, off netctl's loop.

An ARP probe waits up to a second for answers; the loop that applies commands
must not. The sweep submits the sessions it found idle, a worker thread probes
them all at once, and the loop drains the answers at its next pass.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Probe = Callable[[list[tuple[str, str]]], set[str]]  # (ip, mac) pairs -> ips that answered


class IdleProber:
    """A worker thread that probes (address, MAC) pairs and reports who answered."""

    def __init__(self, probe: Probe) -> None:
        self._probe = probe
        self._requests: queue.Queue[list[tuple[str, str]] | None] = queue.Queue()
        self._answers: queue.Queue[tuple[str, str, bool]] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="idle-prober", daemon=True)

    def start(self) -> None:
        """Start the worker."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker (after the probe in progress, if any)."""
        self._requests.put(None)
        self._thread.join(timeout=5)

    def submit(self, targets: list[tuple[str, str]]) -> None:
        """Probe these (address, MAC) pairs; answers come back through :meth:`drain`."""
        if targets:
            self._requests.put(list(targets))

    def drain(self) -> list[tuple[str, str, bool]]:
        """Answers so far: (address, MAC, present)."""
        answers = []
        while True:
            try:
                answers.append(self._answers.get_nowait())
            except queue.Empty:
                return answers

    def _work(self) -> None:
        while True:
            batch = self._requests.get()
            if batch is None:
                return
            # Everything queued meanwhile goes in the same probe.
            while True:
                try:
                    more = self._requests.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    return
                batch += more
            targets = list(dict.fromkeys(batch))
            try:
                present = self._probe(targets)
            except Exception as error:  # noqa: BLE001 - any failure means "do not know"
                # Not knowing is not absence: a probe that cannot run must not end
                # sessions. They stay; idle is counted again from now.
                log.warning("idle probe failed; keeping %d sessions error=%s", len(targets), error)
                present = {ip for ip, _ in targets}
            for ip, mac in targets:
                self._answers.put((ip, mac, ip in present))
