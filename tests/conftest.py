"""Session-wide guards: a test session must leave the host as it found it.

When run as root, the session records the host's nftables ruleset first and
fails at the end (as an error in the teardown of the last test) if:

- the host's ``nft list ruleset`` changed (everything belongs in namespaces);
- a network namespace of this session's labs is left (names ``pt<pid>…-``);
- a process started by one of this session's labs still runs (it carries
  ``PARVIS_LAB=pt<pid>…`` in its environment, or is redis-server serving a
  socket under ``/run/parvis-lab/pt<pid>…``);
- an ``/etc/netns/pt<pid>…`` or ``/run/parvis-lab/pt<pid>…`` directory is left.

Labs made by tests must be named ``pt{os.getpid() % 100000}`` plus at most a
short lower-case suffix (the ``lab`` fixture's lab is exactly the prefix).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SESSION_LAB_PREFIX = f"pt{os.getpid() % 100000}"
_SESSION_NAME = re.compile(rf"^{SESSION_LAB_PREFIX}[a-z]{{0,3}}$")


def _host_ruleset() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def _session_names(names: list[str]) -> list[str]:
    """The names (namespace or directory) that belong to this session's labs."""
    return sorted(name for name in names if _SESSION_NAME.match(name.split("-", 1)[0]))


def _listing(path: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(path)) if path.is_dir() else []


def _session_processes() -> list[str]:
    """'pid command' of every live process started by one of this session's labs."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            stat = Path(f"/proc/{entry.name}/stat").read_bytes()
        except OSError:
            continue
        if stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z":
            continue  # exited, waiting for a parent to reap it
        marked = any(
            item.startswith(b"PARVIS_LAB=")
            and _SESSION_NAME.match(item[len(b"PARVIS_LAB="):].decode(errors="replace"))
            for item in environ
        )
        redis_of_session = cmdline.startswith(b"redis-server") and re.search(
            rf"/run/parvis-lab/{SESSION_LAB_PREFIX}[a-z]{{0,3}}/".encode(), cmdline
        )
        if marked or redis_of_session:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name} {command}")
    return found


@pytest.fixture(scope="session", autouse=True)
def host_left_clean() -> Iterator[None]:
    """Session guard (autouse): fail if the session changed the host's ruleset or left lab debris.

    Does nothing unless root with ``nft`` installed (unit tests as a normal user).
    """
    if os.geteuid() != 0 or shutil.which("nft") is None:
        yield
        return
    before = _host_ruleset()
    yield
    problems = []
    if _host_ruleset() != before:
        problems.append("the host's nftables ruleset changed during the session "
                        "(`nft list ruleset` differs): something ran outside a namespace")
    namespaces = _session_names(_listing(Path("/run/netns")))
    if namespaces:
        problems.append(f"namespaces left behind: {', '.join(namespaces)}")
    processes = _session_processes()
    if processes:
        problems.append("lab processes still running:\n  " + "\n  ".join(processes))
    for root in (Path("/etc/netns"), Path("/run/parvis-lab")):
        leftover = _session_names(_listing(root))
        if leftover:
            problems.append(f"directories left in {root}: {', '.join(leftover)}")
    if problems:
        pytest.fail("host not left clean:\n" + "\n".join(problems), pytrace=False)
