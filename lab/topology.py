"""The Parvis network lab: a gateway, a stand-in internet and N clients in namespaces.

One :class:`Lab` builds, inspects and removes everything; the ``parvis-lab``
CLI, the pytest fixtures and the benchmarks all use it. Layout (docs/lab.md
has the picture)::

    <name>-c1 eth0 ─┐                                   <name>-up
    <name>-c2 eth0 ─┼─ c<i> ── lan0 (bridge) │ wan0 ───── up0
    <name>-cN eth0 ─┘          <name>-gw                 203.0.113.0/24, 192.0.2.0/24,
                                                         2001:db8:203::/48 all local

Everything the lab starts carries ``PARVIS_LAB=<name>`` in its environment, so
:meth:`Lab.down` finds it again even when the state directory is gone (after
a crash), on top of killing whatever still runs in the lab's namespaces.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import redis
import tomli_w

from lab import tls
from parvis.core.config import load_config
from parvis.core.dnsmasq import portal_lines

# --- Addresses and names (fixed: tests, docs and benchmarks rely on them) ---------------

LAN_INTERFACE = "lan0"
WAN_INTERFACE = "wan0"
UPSTREAM_INTERFACE = "up0"
CLIENT_INTERFACE = "eth0"

LAN_NET4 = "10.77.0.0/16"
LAN_NET6 = "fd77::/64"
LAN_GATEWAY4 = "10.77.0.1"
LAN_GATEWAY6 = "fd77::1"
LAN_BRIDGE_MAC = "02:50:76:ff:00:01"
DHCP_FIRST = "10.77.0.10"
DHCP_LAST = "10.77.3.250"
DHCP_LEASE = "12h"
POSTER_NAME = "wifi.lab.test"
# The portal's name: in its certificate, resolved by the gateway to LAN_GATEWAY4/6.
PORTAL_NAME = "portail.lab.test"

WAN_GATEWAY4 = "198.51.100.2"  # the gateway's wan0
WAN_GATEWAY6 = "2001:db8:ff::2"
UPSTREAM4 = "198.51.100.1"  # the stand-in internet's up0, the gateway's default route
UPSTREAM6 = "2001:db8:ff::1"
WAN_MAC = "02:50:76:fe:00:02"
UPSTREAM_MAC = "02:50:76:fe:00:01"
# The management network: the administrators' workstation (namespace adm) and
# the gateway's management address, where the console and /metrics listen.
# Not the LAN: residents cannot reach it.
MGMT_INTERFACE = "mgmt0"
MGMT_GATEWAY4 = "10.78.0.1"
MGMT_STATION4 = "10.78.0.2"
ADMIN_PORT = 8090
ADMIN_URL = f"http://{MGMT_GATEWAY4}:{ADMIN_PORT}/"
NETCTL_METRICS_PORT = 9101
PORTAL_METRICS_PORT = 9102

# Ranges made local to the stand-in internet with AnyIP routes: any address answers.
INTERNET_LOCAL4 = ("203.0.113.0/24", "192.0.2.0/24")
INTERNET_LOCAL6 = ("2001:db8:203::/48",)
INTERNET_WEB4 = "203.0.113.10"
INTERNET_WEB6 = "2001:db8:203::10"
INTERNET_DNS4 = "203.0.113.53"
INTERNET_DNS6 = "2001:db8:203::53"
GARDEN4 = "203.0.113.80"
GARDEN6 = "2001:db8:203::80"
GARDEN_NAME = "garden.test"
# A subdomain of the walled-garden name whose address is in no configured CIDR:
# reachable before login only because the gateway's dnsmasq adds it to the
# walled-garden name sets when a client resolves it.
GARDEN_SUBNAME = "agenda.garden.test"
GARDEN_SUB4 = "203.0.113.81"
GARDEN_SUB6 = "2001:db8:203::81"
# The walled garden's names in the generated configuration (subdomains included).
GARDEN_NAMES = (GARDEN_NAME,)
# A name whose TXT record is as big as a DNS tunnel's answers (the stand-in internet's DNS).
TUNNEL_TXT_NAME = "tunnel.example"
# What Windows' NCSI expects for dns.msftncsi.com.
NCSI_NAME = "dns.msftncsi.com"
NCSI4 = "131.107.255.255"
NCSI6 = "fd3e:4f5a:5b81::1"

GATEWAY_ID = "lab"
PORTAL_HTTP_PORT = 8080
PORTAL_HTTPS_PORT = 8443
PORTAL_URL = f"https://{PORTAL_NAME}:{PORTAL_HTTPS_PORT}/"
# The RFC 8908 API, announced in DHCPv4 option 114 and DHCPv6 option 103 (RFC 8910).
CAPPORT_API_URL = f"https://{PORTAL_NAME}:{PORTAL_HTTPS_PORT}/api/captive"
VENUE_INFO_URL = f"https://{GARDEN_NAME}/"
# The repository's town content (terms, privacy notice, tiles), written with the portal.
REPO_CONTENT_DIR = Path(__file__).resolve().parent.parent / "config" / "content"
HEARTBEAT_KEY = f"parvis:gw:{GATEWAY_ID}:heartbeat"
IPERF_PORT = 5201
TCP_ECHO_PORTS = (443, 8081)
UDP_ECHO_PORTS = (443, 7777)

DEFAULT_NAME = "parvis"
DEFAULT_CLIENTS = 3
DEFAULT_STATE_ROOT = Path("/run/parvis-lab")
# The DHCP range holds about a thousand addresses.
MAX_CLIENTS = 1000
LAB_ENV = "PARVIS_LAB"
REQUIRED_TOOLS = ("ip", "dnsmasq", "redis-server", "dhclient", "iperf3")

NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")
REPO_ROOT = Path(__file__).resolve().parent.parent
DHCLIENT_SCRIPT = Path(__file__).resolve().parent / "dhclient-script"

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,23}$")
_NODE_RE = re.compile(r"^(gw|up|adm|c[1-9][0-9]*)$")


class LabError(Exception):
    """A problem building or using the lab, worded for the person at the terminal."""


def check_environment() -> None:
    """Raise LabError unless we are root and every external tool is installed."""
    if os.geteuid() != 0:
        raise LabError("parvis-lab must run as root: it creates network namespaces "
                       "(try: sudo parvis-lab …)")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise LabError(f"missing tool(s): {', '.join(missing)} — install them "
                       "(Debian: iproute2 dnsmasq-base redis-server isc-dhcp-client iperf3)")


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may hold spaces.
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _ancestors() -> set[int]:
    """This process and its ancestors: never killed by down(), even from inside a lab."""
    pids = set()
    pid = os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                stat = handle.read()
            pid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def _mentions(pid: int, marker: str, state_dir: Path) -> bool:
    """Whether a process is the lab's: marker in its environment, or redis on our socket.

    redis-server rewrites its process title over the memory that
    /proc/<pid>/environ shows, so the marker is lost there; its new title
    names the socket, which lies in the state directory.
    """
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = handle.read()
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return False  # gone, or a kernel thread
    if f"{LAB_ENV}={marker}".encode() in environ.split(b"\0"):
        return True
    return cmdline.startswith(b"redis-server") and f"{state_dir}/".encode() in cmdline


def lab_pids(marker: str, state_dir: Path | None = None) -> set[int]:
    """Pids of the lab's processes: ``PARVIS_LAB=<marker>`` in their environment.

    With ``state_dir``, also the redis-server serving a socket in it (see _mentions).
    """
    state = state_dir if state_dir is not None else DEFAULT_STATE_ROOT / marker
    return {int(entry.name) for entry in os.scandir("/proc")
            if entry.name.isdigit() and _mentions(int(entry.name), marker, state)}


def namespace_pids(namespaces: Iterable[str]) -> set[int]:
    """Pids of processes living in any of the named network namespaces (like ip netns pids)."""
    inodes = set()
    for name in namespaces:
        with contextlib.suppress(OSError):
            st = os.stat(NETNS_DIR / name)
            inodes.add((st.st_dev, st.st_ino))
    found: set[int] = set()
    if not inodes:
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in inodes:
            found.add(int(entry.name))
    return found


def _tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, indented, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"    ({path} unreadable)"
    return "\n".join(f"    {line}" for line in text) or f"    ({path} is empty)"


class Lab:
    """One lab instance, named so several can coexist (tests use ``pt<pid>``).

    Nothing is created by the constructor; :meth:`up` builds, :meth:`down`
    removes (safe in any state), :meth:`status` reports.
    """

    def __init__(
        self,
        name: str = DEFAULT_NAME,
        clients: int = DEFAULT_CLIENTS,
        state_root: Path = DEFAULT_STATE_ROOT,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if not _NAME_RE.match(name):
            raise LabError(f"lab name {name!r} is not valid: use 1 to 24 lower-case letters, "
                           "digits, dashes or underscores, starting with a letter or digit")
        if not 1 <= clients <= MAX_CLIENTS:
            raise LabError(f"{clients} clients is out of range: use 1 to {MAX_CLIENTS}")
        self.name = name
        self.clients = clients
        self.state_dir: Path = Path(state_root) / name
        self.config_path: Path = self.state_dir / "parvis.toml"
        self.redis_socket: Path = self.state_dir / "redis.sock"
        self.redis_url: str = f"unix://{self.redis_socket}"
        self._meta_path = self.state_dir / "lab.json"
        self._progress = progress if progress is not None else self._stderr
        # Popen objects of processes this Lab object started, reaped in down()
        # so a long-lived caller (pytest) is not left with zombies.
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        # Sections and keys that replace the lab's defaults (see reconfigure()).
        self.config_overrides: dict[str, Any] = {}

    # --- naming --------------------------------------------------------------------

    def ns(self, node: str) -> str:
        """The namespace of a node: ``"c1"`` -> ``"<name>-c1"``; also ``"gw"`` and ``"up"``."""
        if not _NODE_RE.match(node):
            raise LabError(f"unknown node {node!r}: expected gw, up, adm or c1…c{self.clients}")
        if node.startswith("c") and int(node[1:]) > self.clients:
            raise LabError(f"unknown node {node!r}: this lab has clients c1…c{self.clients}")
        return f"{self.name}-{node}"

    def nodes(self) -> list[str]:
        """Every node: gw, up, adm (the administrators' side), then the clients in order."""
        return ["gw", "up", "adm", *(f"c{i}" for i in range(1, self.clients + 1))]

    @staticmethod
    def client_mac(i: int) -> str:
        """The fixed, locally administered MAC of client i (02:50:76:00:<hi>:<lo>)."""
        if not 1 <= i <= 0xFFFF:
            raise LabError(f"client number {i} is out of range")
        return f"02:50:76:00:{i >> 8:02x}:{i & 0xFF:02x}"

    def _pid_file(self, proc: str) -> Path:
        return self.state_dir / f"{proc}.pid"

    def _log_file(self, proc: str) -> Path:
        return self.state_dir / f"{proc}.log"

    def _namespace_pattern(self) -> re.Pattern[str]:
        return re.compile(rf"^{re.escape(self.name)}-(gw|up|adm|c[0-9]+)$")

    def existing_namespaces(self) -> list[str]:
        """This lab's namespaces that exist now (whatever the client count was)."""
        if not NETNS_DIR.is_dir():
            return []
        pattern = self._namespace_pattern()
        return sorted(entry.name for entry in os.scandir(NETNS_DIR) if pattern.match(entry.name))

    # --- running commands ----------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[LAB_ENV] = self.name
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _host(self, argv: list[str], input: str | None = None) -> None:
        """Run a command in the host namespace; raise LabError with its stderr if it fails."""
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=120,
                                check=False)
        if result.returncode != 0:
            shown = " ".join(argv)
            detail = (result.stderr or result.stdout).strip()
            raise LabError(f"{shown} failed (exit {result.returncode}): {detail}")

    def _batch(self, node: str | None, lines: list[str]) -> None:
        """Run many ``ip`` commands in one process (``ip -batch``), in a node or the host."""
        argv = ["ip", "-n", self.ns(node), "-batch", "-"] if node else ["ip", "-batch", "-"]
        self._host(argv, input="\n".join(lines) + "\n")

    def exec(
        self,
        node: str,
        argv: list[str],
        check: bool = True,
        timeout: float = 30,
        input: str | None = None,  # noqa: A002 (mirrors subprocess.run)
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside a node's namespace and return its output (text).

        With ``check`` a non-zero exit raises subprocess.CalledProcessError.
        """
        return subprocess.run(
            ["ip", "netns", "exec", self.ns(node), *argv],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            env=self._env(),
        )

    def popen(self, node: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``argv`` inside a node's namespace (text mode unless told otherwise).

        The process carries the lab's marker, so :meth:`down` stops it too.
        """
        kwargs.setdefault("text", True)
        kwargs.setdefault("env", self._env())
        return cast(
            "subprocess.Popen[str]",
            subprocess.Popen(["ip", "netns", "exec", self.ns(node), *argv], **kwargs),
        )

    def _spawn(self, proc: str, node: str | None, argv: list[str], pid_file: bool = True,
               extra_env: dict[str, str] | None = None) -> int:
        """Start a long-running process detached from us, logging to ``<state>/<proc>.log``.

        It gets its own session (it survives the CLI exiting and a Ctrl-C at the
        terminal), stdin from /dev/null, and its pid in ``<state>/<proc>.pid``.
        """
        full = ["ip", "netns", "exec", self.ns(node), *argv] if node else argv
        with open(self._log_file(proc), "ab") as log:
            child = subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**self._env(), **(extra_env or {})},
                cwd=REPO_ROOT,
            )
        previous = self._children.get(proc)
        if previous is not None and previous.poll() is None:
            # An earlier process of that name still unreaped: keep it for _reap and down().
            self._children[f"{proc}#{previous.pid}"] = previous
        self._children[proc] = child
        if pid_file:
            self._pid_file(proc).write_text(f"{child.pid}\n")
        meta = self._meta()
        processes = cast(dict[str, Any], meta.setdefault("processes", {}))
        processes[proc] = {"node": node or "host", "pid": child.pid}
        self._save_meta(meta)
        return child.pid

    def _proc_pid(self, proc: str) -> int | None:
        """The pid of a lab process if it runs (pid file first, then the lab's record)."""
        pid = _read_pid(self._pid_file(proc))
        if pid is None:
            record = cast(dict[str, Any], self._meta().get("processes", {})).get(proc)
            pid = int(record["pid"]) if isinstance(record, dict) else None
        self._reap()
        return pid if pid is not None and _pid_alive(pid) else None

    def _reap(self) -> None:
        for child in self._children.values():
            child.poll()

    def _wait_ready(self, node: str, targets: list[str], what: str, timeout: float = 10) -> None:
        result = self.exec(node, [sys.executable, "-m", "lab.readiness", "--timeout",
                                  str(timeout), *targets], check=False, timeout=timeout + 10)
        if result.returncode != 0:
            raise LabError(f"{what} did not come up: {result.stderr.strip()}")

    # --- state ---------------------------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        try:
            data = json.loads(self._meta_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_meta(self, meta: dict[str, Any]) -> None:
        tmp = self._meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        tmp.replace(self._meta_path)

    def problems(self) -> list[str]:
        """What is wrong with the lab as it stands ([] for a healthy, complete lab)."""
        meta = self._meta()
        if not meta:
            return ["not built"] if not self.existing_namespaces() else ["state file missing"]
        found: list[str] = []
        if not meta.get("complete"):
            found.append("build did not finish")
        if meta.get("clients") != self.clients:
            found.append(f"built with {meta.get('clients')} clients, not {self.clients}")
        present = set(self.existing_namespaces())
        found += [f"namespace {self.ns(n)} missing" for n in self.nodes()
                  if self.ns(n) not in present]
        for proc in cast(dict[str, Any], meta.get("processes", {})):
            if self._proc_pid(proc) is None:
                found.append(f"{proc} is not running")
        return found

    def status(self) -> dict[str, object]:
        """A JSON-able report: health, namespaces, processes, clients' addresses."""
        meta = self._meta()
        processes: dict[str, object] = {}
        for proc, record in cast(dict[str, Any], meta.get("processes", {})).items():
            pid = self._proc_pid(proc)
            processes[proc] = {"node": record.get("node"), "pid": pid, "running": pid is not None,
                               "log": str(self._log_file(proc))}
        present = set(self.existing_namespaces())
        clients: list[dict[str, object]] = []
        live = [i for i in range(1, self.clients + 1) if self.ns(f"c{i}") in present]
        addresses = self._client_addresses(live)
        for i in range(1, self.clients + 1):
            ip4, ip6 = addresses.get(i, (None, None))
            clients.append({"node": f"c{i}", "namespace": self.ns(f"c{i}"),
                            "mac": self.client_mac(i), "ip4": ip4, "ip6": ip6})
        problems = self.problems()
        return {
            "name": self.name,
            "healthy": not problems,
            "problems": problems,
            "state_dir": str(self.state_dir),
            "config": str(self.config_path),
            "redis_url": self.redis_url,
            "namespaces": {self.ns(n): self.ns(n) in present for n in self.nodes()},
            "processes": processes,
            "clients": clients,
        }

    # --- addresses -----------------------------------------------------------------

    def _addresses_of(self, i: int) -> tuple[str | None, str | None]:
        """Client i's DHCP IPv4 address and SLAAC fd77:: address, as eth0 holds them now."""
        result = subprocess.run(["ip", "-n", self.ns(f"c{i}"), "-j", "addr", "show", "dev",
                                 CLIENT_INTERFACE], capture_output=True, text=True, check=False,
                                timeout=30)
        if result.returncode != 0:
            return None, None
        ip4 = ip6 = None
        lan4 = ipaddress.ip_network(LAN_NET4)
        lan6 = ipaddress.ip_network(LAN_NET6)
        for link in json.loads(result.stdout or "[]"):
            for addr in link.get("addr_info", []):
                local = ipaddress.ip_address(addr.get("local", "::"))
                if addr.get("tentative") or addr.get("dadfailed"):
                    continue
                if local.version == 4 and local in lan4 and ip4 is None:
                    ip4 = str(local)
                elif local.version == 6 and local in lan6 and ip6 is None:
                    ip6 = str(local)
        return ip4, ip6

    def _client_addresses(self, indices: list[int]) -> dict[int, tuple[str | None, str | None]]:
        if not indices:
            return {}
        with ThreadPoolExecutor(max_workers=min(32, len(indices))) as pool:
            return dict(zip(indices, pool.map(self._addresses_of, indices), strict=True))

    def client_dhcp_option(self, i: int, name: str) -> str | None:
        """An option of client i's current DHCPv4 lease, by dhclient's name (None if absent).

        Reads the last lease in ``dhclient-c<i>.leases``: ``client_dhcp_option(1,
        "captive-portal-uri")`` is the RFC 8910 option 114 the gateway sent.
        Quoted values come back unquoted.
        """
        try:
            text = (self.state_dir / f"dhclient-c{i}.leases").read_text(errors="replace")
        except OSError:
            return None
        leases = re.findall(r"lease\s*\{(.*?)\n\}", text, flags=re.S)
        if not leases:
            return None
        pattern = re.compile(rf"^\s*option\s+{re.escape(name)}\s+(.*?);\s*$", re.M)
        match = pattern.search(leases[-1])
        if match is None:
            return None
        value = match.group(1)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return value

    def client_ip(self, i: int) -> str:
        """Client i's IPv4 address from its eth0 (LabError if it has none)."""
        ip4 = self._addresses_of(i)[0]
        if ip4 is None:
            raise LabError(f"c{i} has no IPv4 address in {LAN_NET4}")
        return ip4

    def client_ip6(self, i: int) -> str:
        """Client i's SLAAC address in fd77::/64 (LabError if it has none)."""
        ip6 = self._addresses_of(i)[1]
        if ip6 is None:
            raise LabError(f"c{i} has no IPv6 address in {LAN_NET6}")
        return ip6

    # --- building ------------------------------------------------------------------

    @staticmethod
    def _stderr(message: str) -> None:
        print(f"parvis-lab: {message}", file=sys.stderr, flush=True)

    def up(self, netctl: bool = True, portal: bool = True) -> None:
        """Build the lab, or do nothing if it is already up and healthy.

        A half-built lab (a crash, a Ctrl-C, a client count that changed) is
        torn down and rebuilt. ``netctl``/``portal`` false leave those out (tests
        then start netctl themselves); when their code does not exist yet they
        are skipped with a warning.
        """
        check_environment()
        problems = self.problems()
        if not problems:
            self._progress(f"lab {self.name!r} is already up")
            return
        if problems != ["not built"]:
            self._progress(f"lab {self.name!r} is half-built ({'; '.join(problems)}): "
                           "tearing it down first")
            self.down()
        started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._save_meta({"name": self.name, "clients": self.clients, "complete": False,
                         "processes": {}})
        self._progress(f"making the lab CA and a certificate for {PORTAL_NAME}…")
        tls.make_pki(self.state_dir, self.name, PORTAL_NAME, (LAN_GATEWAY4, LAN_GATEWAY6))
        self._write_config()
        self._create_namespaces()
        self._create_links()
        self._start_redis()
        self._start_internet()
        self._start_gateway_dns()
        if portal:
            self.start_portal()
            self.start_admin()
        if netctl:
            if self._netctl_code_exists():
                self.start_netctl()
            else:
                self._progress("WARNING: netctl/main.py does not exist yet: netctl not started")
        self._start_clients()
        meta = self._meta()
        meta["complete"] = True
        meta["built_in_s"] = round(time.monotonic() - started, 2)
        self._save_meta(meta)
        self._progress(f"lab {self.name!r} up in {time.monotonic() - started:.1f} s")

    def _content_dir(self) -> Path:
        """The town content the portal shows: the repository's, else a minimal stand-in.

        ``config/content`` is written with the portal; until it holds the terms
        the lab writes a placeholder into the state directory.
        """
        if (REPO_CONTENT_DIR / "terms.fr.md").is_file():
            return REPO_CONTENT_DIR
        content = self.state_dir / "content"
        content.mkdir(exist_ok=True)
        placeholders = {
            "terms.fr.md": "# Conditions d'utilisation (laboratoire)\n\nVersion lab-1.\n",
            "terms.en.md": "# Terms of use (lab)\n\nVersion lab-1.\n",
            "privacy.fr.md": "# Avis de confidentialité (laboratoire)\n",
            "privacy.en.md": "# Privacy notice (lab)\n",
        }
        for name, text in placeholders.items():
            (content / name).write_text(text)
        return content

    def _write_secret(self) -> Path:
        """32 random bytes, base64, in a 0600 file: the portal's secret key."""
        path = self.state_dir / "portal.secret"
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(os.urandom(32)).decode() + "\n")
        return path

    def config_data(self) -> dict[str, Any]:
        """The lab's configuration as TOML data, with :attr:`config_overrides` merged in."""
        tls_files = tls.paths(self.state_dir)
        data: dict[str, Any] = {
            "gateway": {
                "id": GATEWAY_ID, "lan_interface": LAN_INTERFACE,
                "wan_interface": WAN_INTERFACE, "masquerade": True,
                "timezone": "America/Toronto", "zone": "centre-ville",
                "dhcp_leases_file": str(self.state_dir / "dnsmasq-gw.leases"),
            },
            "portal": {
                "address": LAN_GATEWAY4, "address6": LAN_GATEWAY6,
                "http_port": PORTAL_HTTP_PORT, "https_port": PORTAL_HTTPS_PORT,
                "hostname": PORTAL_NAME, "poster_hostname": POSTER_NAME,
                # Issued by the lab's own CA (ca.crt here), which the clients trust.
                "certificate": str(tls_files.cert), "private_key": str(tls_files.key),
                "secret_key_file": str(self.state_dir / "portal.secret"),
                "content_dir": str(self._content_dir()),
                "venue_info_url": VENUE_INFO_URL, "ack_timeout_s": 2.0,
            },
            "redis": {"url": self.redis_url, "timeout_s": 2.0},
            "session": {"hard_timeout_s": 14400, "idle_timeout_s": 1200,
                        "default_plan": "residents", "idle_when_present": "keep"},
            "plans": {
                "residents": {"down": "10M", "up": "2M", "hard_timeout_s": 14400,
                              "idle_timeout_s": 1200, "daily_quota": "2G"},
                "event": {"down": "20M", "up": "5M", "hard_timeout_s": 28800,
                          "idle_timeout_s": 1800, "daily_quota": "5G"},
            },
            "shaping": {"uplink_down": "0", "uplink_up": "0"},
            "accounting": {"interim_interval_s": 60,
                           "spool_dir": str(self.state_dir / "spool"),
                           "retention_days": 30},
            "walled_garden": {"cidrs": [f"{GARDEN4}/32", f"{GARDEN6}/128"],
                              "names": list(GARDEN_NAMES)},
            "clients": {"trusted_macs": [], "blocked_macs": []},
            "netctl": {"sweep_interval_s": 1.0, "health_interval_s": 2.0, "log_level": "INFO"},
            "admin": {"address": MGMT_GATEWAY4, "port": ADMIN_PORT},
            "metrics": {"address": MGMT_GATEWAY4, "netctl_port": NETCTL_METRICS_PORT,
                        "portal_port": PORTAL_METRICS_PORT},
            "reports": {"min_count": 5, "rollup_interval_s": 60},
        }
        for section, values in self.config_overrides.items():
            if isinstance(values, dict) and isinstance(data.get(section), dict):
                data[section] = {**data[section], **values}
            else:
                data[section] = values
        return data

    def _write_config(self, new_secret: bool = True) -> None:
        if new_secret:
            self._write_secret()
        self.config_path.write_text(
            f"# Generated by parvis-lab for lab {self.name!r}; rewritten by every "
            "`parvis-lab up`.\n" + tomli_w.dumps(self.config_data()))

    def reconfigure(self, overrides: dict[str, Any]) -> None:
        """Rewrite the configuration with ``overrides`` (section -> keys) and restart netctl.

        ``{}`` brings the lab's own configuration back. Sessions survive the
        restart, as they do any restart of netctl.
        """
        self.config_overrides = overrides
        running = self.netctl_pid() is not None
        if running:
            self.stop_netctl(signal.SIGTERM)
        self._write_config(new_secret=False)
        if running:
            self.start_netctl()

    def _create_namespaces(self) -> None:
        self._progress(f"creating namespaces {self.ns('gw')}, {self.ns('up')}, "
                       f"{self.ns('c1')}…{self.ns(f'c{self.clients}')}…")
        # resolv.conf first: `ip netns exec` bind-mounts /etc/netns/<ns>/* over
        # /etc, and a process started before the file exists would see the host's.
        resolvers = {"gw": INTERNET_DNS4, "up": "127.0.0.1"}
        # One /etc/ssl replacement trusting the lab CA, shared by gw and the
        # clients through a symlink (the bind mount follows it): a copy of the
        # system bundle per client would cost 200 KB each.
        trust = self.state_dir / "netns-etc"
        tls.write_client_trust(trust, tls.paths(self.state_dir).ca_cert)
        for node in self.nodes():
            directory = ETC_NETNS / self.ns(node)
            directory.mkdir(parents=True, exist_ok=True)
            server = resolvers.get(node, LAN_GATEWAY4)
            (directory / "resolv.conf").write_text(
                f"# parvis-lab {self.name}: {node}\nnameserver {server}\n")
            if node != "up":
                ssl_link = directory / "ssl"
                if ssl_link.is_symlink():
                    ssl_link.unlink()
                elif ssl_link.exists():
                    shutil.rmtree(ssl_link)
                ssl_link.symlink_to(trust / "ssl")
        self._batch(None, [f"netns add {self.ns(node)}" for node in self.nodes()])

    def _sysctl(self, node: str, settings: dict[str, str]) -> None:
        # Written through /proc/sys inside the namespace: no dependency on procps.
        script = "; ".join(
            f"echo {value} > /proc/sys/{key.replace('.', '/')}" for key, value in settings.items())
        self.exec(node, ["sh", "-ec", script])

    def _create_links(self) -> None:
        self._progress("creating links (bridge lan0, wan0/up0, one veth per client)…")
        no_dad = {"net.ipv6.conf.default.accept_dad": "0", "net.ipv6.conf.all.accept_dad": "0"}
        # Before the links exist, so they are created with DAD off (addresses usable at once).
        # keep_addr_on_down: a link that bounces keeps its static IPv6 addresses (fd77::1),
        # as it keeps its IPv4 ones; without it the portal's IPv6 address would be gone.
        self._sysctl("gw", {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1",
                            "net.ipv6.conf.default.keep_addr_on_down": "1",
                            "net.ipv6.conf.all.keep_addr_on_down": "1", **no_dad})
        # IPv6 refuses a source address (IPV6_PKTINFO, as dnsmasq and the UDP echo
        # use to answer from the address asked) that is only an AnyIP route, unless
        # non-local binding is allowed; IPv4 accepts it as it is.
        self._sysctl("up", {**no_dad, "net.ipv6.ip_nonlocal_bind": "1"})
        gw = [
            "link set lo up",
            f"link add {LAN_INTERFACE} address {LAN_BRIDGE_MAC} type bridge stp_state 0 "
            # Snooping would need an MLD querier to forward RAs and ND reliably.
            "mcast_snooping 0",
            f"link add {WAN_INTERFACE} address {WAN_MAC} type veth peer name "
            f"{UPSTREAM_INTERFACE} address {UPSTREAM_MAC} netns {self.ns('up')}",
        ]
        for i in range(1, self.clients + 1):
            gw.append(f"link add c{i} type veth peer name {CLIENT_INTERFACE} "
                      f"address {self.client_mac(i)} netns {self.ns(f'c{i}')}")
            gw.append(f"link set c{i} master {LAN_INTERFACE} up")
        gw += [
            f"addr add {LAN_GATEWAY4}/16 dev {LAN_INTERFACE}",
            f"addr add {LAN_GATEWAY6}/64 dev {LAN_INTERFACE} nodad",
            f"link set {LAN_INTERFACE} up",
            f"addr add {WAN_GATEWAY4}/24 dev {WAN_INTERFACE}",
            f"addr add {WAN_GATEWAY6}/64 dev {WAN_INTERFACE} nodad",
            f"link set {WAN_INTERFACE} up",
            f"route add default via {UPSTREAM4} dev {WAN_INTERFACE}",
            f"route add ::/0 via {UPSTREAM6} dev {WAN_INTERFACE}",
        ]
        self._batch("gw", gw)
        # Packets of at most one MTU from the clients and the stand-in internet, as a
        # Wi-Fi client and the real internet send them: veth would otherwise hand the
        # gateway 64 KiB segments, and shaping by the packet would be coarse.
        for i in range(1, self.clients + 1):
            self._batch(f"c{i}", [f"link set {CLIENT_INTERFACE} gso_max_segs 1"])
        up = [
            "link set lo up",
            f"link set {UPSTREAM_INTERFACE} gso_max_segs 1",
            f"addr add {UPSTREAM4}/24 dev {UPSTREAM_INTERFACE}",
            f"addr add {UPSTREAM6}/64 dev {UPSTREAM_INTERFACE} nodad",
            f"link set {UPSTREAM_INTERFACE} up",
            # Return routes to the LAN, so the lab works before netctl masquerades
            # (and with masquerade = false); with masquerade the internet sees
            # only 198.51.100.2 / 2001:db8:ff::2, which is what tests check.
            f"route add {LAN_NET4} via {WAN_GATEWAY4} dev {UPSTREAM_INTERFACE}",
            f"route add {LAN_NET6} via {WAN_GATEWAY6} dev {UPSTREAM_INTERFACE}",
        ]
        up += [f"route add local {net} dev lo" for net in INTERNET_LOCAL4 + INTERNET_LOCAL6]
        self._batch("up", up)
        self._batch("gw", [
            f"link add {MGMT_INTERFACE} type veth peer name {CLIENT_INTERFACE} "
            f"netns {self.ns('adm')}",
            f"addr add {MGMT_GATEWAY4}/24 dev {MGMT_INTERFACE}",
            f"link set {MGMT_INTERFACE} up",
        ])
        self._batch("adm", [
            "link set lo up",
            f"addr add {MGMT_STATION4}/24 dev {CLIENT_INTERFACE}",
            f"link set {CLIENT_INTERFACE} up",
        ])

    def _start_redis(self) -> None:
        self._progress("starting redis-server on " + str(self.redis_socket) + "…")
        conf = self.state_dir / "redis.conf"
        conf.write_text(f"""\
# parvis-lab {self.name}: reachable only through the unix socket.
port 0
unixsocket {self.redis_socket}
unixsocketperm 700
daemonize no
dir {self.state_dir}
appendonly yes
save ""
logfile ""
""")
        self._spawn("redis", None, ["redis-server", str(conf)])
        client = redis.Redis(unix_socket_path=str(self.redis_socket), socket_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                if self._proc_pid("redis") is None:
                    raise LabError("redis-server exited:\n" + _tail(self._log_file("redis")))
                if time.monotonic() > deadline:
                    raise LabError("redis-server does not answer PING after 10 s:\n"
                                   + _tail(self._log_file("redis")))
                time.sleep(0.05)
        finally:
            client.close()

    def _dnsmasq(self, proc: str, node: str, lines: list[str]) -> None:
        conf = self.state_dir / f"{proc}.conf"
        conf.write_text(f"# parvis-lab {self.name}: {proc}\n" + "\n".join(lines) + "\n")
        self._spawn(proc, node, ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}",
                                 f"--pid-file={self._pid_file(proc)}"])

    def _start_internet(self) -> None:
        self._progress("starting the stand-in internet in " + self.ns("up")
                       + " (dnsmasq, HTTP/TCP/UDP, iperf3)…")
        self._dnsmasq("dnsmasq-up", "up", [
            "no-resolv",
            "no-hosts",
            # Any interface: the answers must also come from the AnyIP addresses
            # (and without an interface option dnsmasq only serves local subnets).
            "interface=*",
            "log-facility=-",
            "log-queries",
            f"address=/#/{INTERNET_WEB4}",
            f"address=/#/{INTERNET_WEB6}",
            f"address=/{NCSI_NAME}/{NCSI4}",
            f"address=/{NCSI_NAME}/{NCSI6}",
            f"address=/{GARDEN_NAME}/{GARDEN4}",
            f"address=/{GARDEN_NAME}/{GARDEN6}",
            f"address=/{GARDEN_SUBNAME}/{GARDEN_SUB4}",
            f"address=/{GARDEN_SUBNAME}/{GARDEN_SUB6}",
            # What a DNS tunnel's server answers: TXT records filling a UDP answer (~1 KB).
            *(f'txt-record={TUNNEL_TXT_NAME},"{"t" * 240}{i:02d}"' for i in range(4)),
        ])
        self._spawn("internet", "up", [sys.executable, "-m", "lab.internet"])
        self._spawn("iperf3", "up", ["iperf3", "-s", "-p", str(IPERF_PORT)])
        self._wait_ready("up", [
            f"dns:{INTERNET_DNS4}", f"dns:[{INTERNET_DNS6}]",
            f"tcp:{INTERNET_WEB4}:80", f"tcp:[{INTERNET_WEB6}]:80",
            *(f"tcp:{INTERNET_WEB4}:{port}" for port in TCP_ECHO_PORTS),
            f"tcp:{UPSTREAM4}:{IPERF_PORT}",
        ], "the stand-in internet")

    def _start_gateway_dns(self) -> None:
        self._progress("starting dnsmasq on the gateway (DHCP, RA, DNS forwarding)…")
        self._dnsmasq("dnsmasq-gw", "gw", [
            f"interface={LAN_INTERFACE}",
            "bind-dynamic",
            "no-resolv",
            "no-hosts",
            f"server={INTERNET_DNS4}",
            f"server={INTERNET_DNS6}",
            # The portal's names, RFC 8910 and the walled garden by name, exactly as
            # `parvisctl dnsmasq` prints them for a real gateway from the same config.
            *(line for line in portal_lines(load_config(self.config_path))
              if not line.startswith("#")),
            f"dhcp-range={DHCP_FIRST},{DHCP_LAST},255.255.0.0,{DHCP_LEASE}",
            f"dhcp-range=::,constructor:{LAN_INTERFACE},ra-stateless",
            "enable-ra",
            f"dhcp-option=option:router,{LAN_GATEWAY4}",
            f"dhcp-option=option:dns-server,{LAN_GATEWAY4}",
            "dhcp-authoritative",
            # The default 1000 is about the size of the range; the range is the limit.
            "dhcp-lease-max=4096",
            # dnsmasq would ping each address before offering it: seconds per client.
            "no-ping",
            f"dhcp-leasefile={self.state_dir / 'dnsmasq-gw.leases'}",
            "log-facility=-",
            "log-dhcp",
            "log-queries",
        ])
        self._wait_ready("gw", [f"dns:{LAN_GATEWAY4}"], "the gateway's dnsmasq")

    @staticmethod
    def _portal_code_exists() -> bool:
        return (REPO_ROOT / "portal" / "__main__.py").exists()

    @staticmethod
    def _netctl_code_exists() -> bool:
        return (REPO_ROOT / "netctl" / "main.py").exists()

    def start_portal(self, timeout: float = 20) -> None:
        """Start the portal (``python -m portal``) in gw and wait for its HTTP and HTTPS ports.

        Skipped with a warning if the portal's code is absent; LabError with the
        end of ``portal.log`` if it exits or does not listen within ``timeout``.
        """
        if not self._portal_code_exists():
            self._progress("WARNING: portal/__main__.py does not exist yet: portal not started")
            return
        self._progress(f"starting the portal on {LAN_GATEWAY4}:{PORTAL_HTTP_PORT} (HTTP) and "
                       f"{PORTAL_NAME}:{PORTAL_HTTPS_PORT} (HTTPS)…")
        # PARVIS_CONFIG too, for an application factory that gunicorn workers import.
        self._spawn("portal", "gw", [sys.executable, "-m", "portal", "--config",
                                     str(self.config_path)],
                    extra_env={"PARVIS_CONFIG": str(self.config_path)})
        ports = (PORTAL_HTTP_PORT, PORTAL_HTTPS_PORT)
        pending = list(ports)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc_pid("portal") is None:
                raise LabError("the portal exited:\n" + _tail(self._log_file("portal")))
            result = self.exec("gw", [sys.executable, "-m", "lab.readiness", "--timeout", "1",
                                      *(f"tcp:{LAN_GATEWAY4}:{port}" for port in pending)],
                               check=False)
            if result.returncode == 0:
                return
            pending = [port for port in pending if f":{port}" in result.stderr] or pending
            if time.monotonic() > deadline:
                raise LabError(
                    f"the portal runs but does not listen on {LAN_GATEWAY4} port(s) "
                    f"{', '.join(map(str, pending))} after {timeout:g} s; portal.log:\n"
                    + _tail(self._log_file("portal")))

    @property
    def admin_password_file(self) -> Path:
        """Where the lab keeps the password of its console account ``admin`` (0600)."""
        return self.state_dir / "admin.password"

    def start_admin(self, timeout: float = 20) -> None:
        """Start the administration console in gw on the management address, with an
        account ``admin`` whose password is in :attr:`admin_password_file`."""
        if not (REPO_ROOT / "admin" / "main.py").is_file():
            return
        password_file = self.admin_password_file
        if not password_file.exists():
            password = base64.urlsafe_b64encode(os.urandom(18)).decode()
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(password + "\n")
            added = subprocess.run(
                [sys.executable, "-m", "parvis.ctl", "--config", str(self.config_path), "users",
                 "add", "admin", "--role", "admin", "--password-stdin"],
                input=password + "\n", capture_output=True, text=True, check=False,
                env=self._env(), cwd=REPO_ROOT)
            if added.returncode != 0:
                password_file.unlink(missing_ok=True)
                raise LabError(f"could not create the console account: {added.stderr.strip()}")
        self._progress(f"starting the administration console on {ADMIN_URL} (management side)…")
        self._spawn("admin", "gw", [sys.executable, "-m", "admin", "--config",
                                    str(self.config_path)])
        deadline = time.monotonic() + timeout
        while True:
            if self._proc_pid("admin") is None:
                raise LabError("the console exited:\n" + _tail(self._log_file("admin")))
            result = self.exec("adm", [sys.executable, "-m", "lab.readiness", "--timeout", "1",
                                       f"tcp:{MGMT_GATEWAY4}:{ADMIN_PORT}"], check=False)
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise LabError(f"the console does not listen on {MGMT_GATEWAY4}:{ADMIN_PORT} "
                               f"after {timeout:g} s; admin.log:\n"
                               + _tail(self._log_file("admin")))

    def _netctl_argv(self) -> list[str]:
        script = Path(sys.executable).parent / "parvis-netctl"
        if script.exists():
            return [str(script), "--config", str(self.config_path)]
        # Not installed as a console script (no `pip install -e`): call the entry point.
        return [sys.executable, "-c", "import sys; from netctl.main import main; sys.exit(main())",
                "--config", str(self.config_path)]

    def _redis(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.redis_socket), socket_timeout=2)

    def start_netctl(self, timeout: float = 10) -> None:
        """Start netctl in gw and wait until its heartbeat shows in Redis."""
        if not self._netctl_code_exists():
            raise LabError("netctl/main.py does not exist yet")
        if self.netctl_pid() is not None:
            raise LabError(f"netctl already runs (pid {self.netctl_pid()})")
        self._progress("starting netctl in " + self.ns("gw") + "…")
        client = self._redis()
        try:
            # A heartbeat left by an earlier netctl must not count for this one.
            client.delete(HEARTBEAT_KEY)
            self._spawn("netctl", "gw", self._netctl_argv())
            deadline = time.monotonic() + timeout
            while not client.exists(HEARTBEAT_KEY):
                if self.netctl_pid() is None:
                    raise LabError("netctl exited:\n" + _tail(self._log_file("netctl")))
                if time.monotonic() > deadline:
                    raise LabError(f"netctl wrote no heartbeat ({HEARTBEAT_KEY}) in "
                                   f"{timeout:g} s:\n" + _tail(self._log_file("netctl")))
                time.sleep(0.1)
        finally:
            client.close()

    def stop_netctl(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to netctl; for TERM/INT/KILL wait (10 s, then KILL) until it is gone.

        Stopped netctl no longer counts as missing in :meth:`problems`.
        """
        pid = self.netctl_pid()
        if pid is None:
            return
        os.kill(pid, sig)
        if sig not in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
            return
        deadline = time.monotonic() + 10
        while self.netctl_pid() is not None:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
            time.sleep(0.05)
        meta = self._meta()
        cast(dict[str, Any], meta.get("processes", {})).pop("netctl", None)
        self._save_meta(meta)
        self._pid_file("netctl").unlink(missing_ok=True)
        child = self._children.pop("netctl", None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)

    def netctl_pid(self) -> int | None:
        """netctl's pid if it runs."""
        return self._proc_pid("netctl")

    def stop_redis(self) -> None:
        """Stop the lab's Redis (SIGTERM: it finishes its append-only file) and wait for it."""
        pid = self._proc_pid("redis")
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while self._proc_pid("redis") is not None:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        child = self._children.pop("redis", None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)

    def start_redis(self) -> None:
        """Start the lab's Redis again on the same socket and files (sessions come back from
        its append-only file)."""
        if self._proc_pid("redis") is None:
            self._start_redis()

    def restart_dhcp(self, i: int) -> None:
        """Start client i's DHCP client again (after a test released its lease)."""
        proc = f"dhclient-c{i}"
        pid = self._proc_pid(proc)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while self._proc_pid(proc) is not None and time.monotonic() < deadline:
                time.sleep(0.02)
        child = self._children.pop(proc, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)
        self._start_clients([i])

    def client_counters(self, i: int) -> dict[str, int]:
        """Client i's own interface counters: rx/tx bytes and packets as the kernel counts them
        (Ethernet frames: 14 bytes of header each on top of the IP packet)."""
        result = self.exec(f"c{i}", ["ip", "-s", "-j", "link", "show", CLIENT_INTERFACE])
        stats = json.loads(result.stdout)[0]["stats64"]
        return {"rx_bytes": int(stats["rx"]["bytes"]), "rx_packets": int(stats["rx"]["packets"]),
                "tx_bytes": int(stats["tx"]["bytes"]), "tx_packets": int(stats["tx"]["packets"])}

    def _dhclient_command(self, i: int) -> list[str]:
        script = DHCLIENT_SCRIPT
        if not os.access(script, os.X_OK):
            # An install that lost the mode bit: use an executable copy.
            script = self.state_dir / "dhclient-script"
            shutil.copyfile(DHCLIENT_SCRIPT, script)
            script.chmod(0o755)
        conf = self.state_dir / f"dhclient-c{i}.conf"
        # Our own dhclient.conf: the host's would send the host's name for every client.
        # Option 114 (RFC 8910) is asked for and lands in the lease file, where
        # client_dhcp_option() reads it.
        conf.write_text("option captive-portal-uri code 114 = text;\n"
                        f'send host-name "lab-c{i}";\n'
                        "request subnet-mask, broadcast-address, routers, domain-name, "
                        "domain-name-servers, domain-search, interface-mtu, "
                        "captive-portal-uri;\n")
        dev = CLIENT_INTERFACE
        prep = "; ".join([
            # DAD off and no solicitation delay: usable IPv6 addresses at once.
            f"echo 0 > /proc/sys/net/ipv6/conf/{dev}/accept_dad",
            f"echo 0 > /proc/sys/net/ipv6/conf/{dev}/router_solicitation_delay",
            "ip link set lo up",
            f"ip link set {dev} up",
        ])
        dhclient = (f"exec dhclient -4 -d -sf {script} -cf {conf} "
                    f"-pf {self._pid_file(f'dhclient-c{i}')} "
                    f"-lf {self.state_dir / f'dhclient-c{i}.leases'} {dev}")
        return ["sh", "-ec", f"{prep}; {dhclient}"]

    def _start_clients(self, indices: list[int] | None = None) -> None:
        indices = indices or list(range(1, self.clients + 1))
        self._progress(f"starting dhclient on {len(indices)} client(s)…")
        for i in indices:
            # dhclient writes its own pid file (-pf); writing it too would race
            # with dhclient's check for an older instance.
            self._spawn(f"dhclient-c{i}", f"c{i}", self._dhclient_command(i), pid_file=False)
        if len(indices) <= 10:
            for i in indices:
                self._progress(f"waiting for DHCP on c{i}…")
        else:
            self._progress(f"waiting for DHCP and SLAAC on {len(indices)} clients…")
        pending = set(indices)
        timeout = 30 + 0.25 * len(indices)
        deadline = time.monotonic() + timeout
        last_report = time.monotonic()
        while pending:
            ready = self._client_addresses(sorted(pending))
            for i, (ip4, ip6) in ready.items():
                if ip4 is not None and ip6 is not None:
                    pending.discard(i)
                    if len(indices) <= 10:
                        self._progress(f"c{i}: {ip4} {ip6}")
            if not pending:
                break
            dead = [i for i in pending if self._proc_pid(f"dhclient-c{i}") is None]
            if dead:
                i = dead[0]
                raise LabError(f"dhclient on c{i} exited:\n"
                               + _tail(self._log_file(f"dhclient-c{i}")))
            now = time.monotonic()
            if now > deadline:
                shown = ", ".join(f"c{i}" for i in sorted(pending)[:10])
                first = min(pending)
                raise LabError(
                    f"{len(pending)} client(s) without an IPv4 lease and an fd77:: address "
                    f"after {timeout:.0f} s ({shown}); dhclient-c{first}.log:\n"
                    + _tail(self._log_file(f"dhclient-c{first}"))
                    + "\n  dnsmasq-gw.log:\n" + _tail(self._log_file("dnsmasq-gw")))
            if now - last_report > 3 and len(indices) > 10:
                self._progress(f"  {len(indices) - len(pending)}/{len(indices)} clients ready")
                last_report = now
            time.sleep(0.2)

    # --- tearing down --------------------------------------------------------------

    def down(self) -> None:
        """Remove everything of this lab; safe in any state, also after a crash.

        Kills every process in the lab's namespaces and every process carrying
        the lab's marker (redis lives in the host namespace), then deletes the
        namespaces, the /etc/netns/<ns> directories and the state directory.
        """
        namespaces = self.existing_namespaces()
        spared = _ancestors()
        pids = namespace_pids(namespaces) | lab_pids(self.name, self.state_dir)
        if self.state_dir.is_dir():
            for pid_file in self.state_dir.glob("*.pid"):
                pid = _read_pid(pid_file)
                # Only if it still looks like ours: pids get reused after a reboot.
                if pid is not None and _mentions(pid, self.name, self.state_dir):
                    pids.add(pid)
        self._terminate(pids - spared)
        if namespaces:
            self._batch(None, [f"netns del {ns}" for ns in namespaces])
        pattern = self._namespace_pattern()
        if ETC_NETNS.is_dir():
            for entry in os.scandir(ETC_NETNS):
                if pattern.match(entry.name):
                    shutil.rmtree(entry.path, ignore_errors=True)
            with contextlib.suppress(OSError):
                ETC_NETNS.rmdir()  # only if no other lab (or anyone else) uses it
        shutil.rmtree(self.state_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.state_dir.parent.rmdir()

    def _terminate(self, pids: set[int]) -> None:
        """TERM, wait up to 5 s, then KILL; reap the ones that are our children."""
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            alive = {pid for pid in pids if _pid_alive(pid)}
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while alive and time.monotonic() < deadline:
                self._reap()
                alive = {pid for pid in alive if _pid_alive(pid)}
                time.sleep(0.02)
            if not alive:
                break
        for child in self._children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)
        self._children.clear()
