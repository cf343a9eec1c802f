"""The systemd units' sandbox: each hardening directive stays, and so does each exposure score.

Each unit file in ``systemd/`` is parsed here (sections, repeated keys, line
continuations) and its hardening compared with what docs/systemd.md explains,
so that dropping or loosening a directive fails a test. Where the machine has
``systemd-analyze`` (systemd 250 or later, for ``--offline``), the units are
also verified and their exposure score checked against the table of
docs/systemd.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS_DIR = REPO / "systemd"
SYSTEMD_DOC = REPO / "docs" / "systemd.md"
DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"

SERVICES = ("parvis-netctl.service", "parvis-portal.service", "parvis-admin.service",
            "parvis-redis.service")

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """Sections of a unit file, each key with all its assignments in order."""
    sections: Unit = {}
    section: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue  # systemd skips comment lines inside a continuation too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            section = sections.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"{path.name}: {line!r} before any section"
        key, equals, value = line.partition("=")
        assert equals, f"{path.name}: {line!r} is not key=value"
        section.setdefault(key.strip(), []).append(" ".join(value.split()))
    assert not pending, f"{path.name}: ends inside a continued line"
    return sections


def service(name: str) -> dict[str, list[str]]:
    """The [Service] section of a unit in systemd/."""
    return parse_unit(UNITS_DIR / name)["Service"]


def last(section: dict[str, list[str]], key: str) -> str | None:
    """A single-valued setting as systemd reads it: the last assignment wins."""
    values = section.get(key)
    return values[-1] if values else None


def words(section: dict[str, list[str]], key: str) -> set[str]:
    """A list setting as systemd reads it: assignments add up, an empty one resets."""
    result: set[str] = set()
    for value in section.get(key, []):
        result = set() if not value else result | set(value.split())
    return result


# Every service, whatever it does: docs/systemd.md says why each is there.
COMMON = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateMounts": "yes",
    "PrivateIPC": "yes",
    "RemoveIPC": "yes",
    "UMask": "0077",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallErrorNumber": "EPERM",
    "NoExecPaths": "/",
}

SPECIFIC: dict[str, dict[str, str | None]] = {
    "parvis-netctl.service": {
        "DynamicUser": "yes", "User": "parvis-netctl", "SupplementaryGroups": "parvis",
        "StateDirectory": "parvis/spool", "StateDirectoryMode": "0700",
        "LogNamespace": "parvis",
        # psutil and scapy read /proc/stat, /proc/meminfo, /proc/net/*.
        "ProcSubset": None,
        "PrivateNetwork": None, "PrivateUsers": None,
    },
    "parvis-portal.service": {
        "DynamicUser": "yes", "User": "parvis-portal", "SupplementaryGroups": "parvis",
        "ProcSubset": "pid",
        "IPAddressDeny": None,
    },
    "parvis-admin.service": {
        "DynamicUser": "yes", "User": "parvis-admin", "SupplementaryGroups": "parvis",
        "ProcSubset": "pid",
    },
    "parvis-redis.service": {
        "User": "redis", "Group": "parvis",
        "RuntimeDirectory": "parvis", "RuntimeDirectoryMode": "0750",
        "StateDirectory": "parvis/redis", "StateDirectoryMode": "0750",
        "PrivateNetwork": "yes", "PrivateUsers": "yes", "ProcSubset": "pid",
    },
}

CAPABILITIES = {
    "parvis-netctl.service": {"CAP_NET_ADMIN", "CAP_NET_RAW"},
    "parvis-portal.service": set(),
    "parvis-admin.service": set(),
    "parvis-redis.service": set(),
}

ADDRESS_FAMILIES = {
    "parvis-netctl.service": {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"},
    "parvis-portal.service": {"AF_UNIX", "AF_INET", "AF_INET6"},
    "parvis-admin.service": {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"},
    "parvis-redis.service": {"AF_UNIX"},
}

# (IPAddressAllow, IPAddressDeny); the portal answers the whole LAN, so none.
IP_ACCESS: dict[str, tuple[set[str], set[str]]] = {
    "parvis-netctl.service": ({"localhost"}, {"any"}),
    "parvis-portal.service": (set(), set()),
    "parvis-admin.service": ({"localhost"}, {"any"}),
    "parvis-redis.service": (set(), {"any"}),
}

EXEC_PATHS = {
    "parvis-netctl.service": {"/usr", "/opt/parvis/venv"},
    "parvis-portal.service": {"/usr", "/opt/parvis/venv"},
    "parvis-admin.service": {"/usr", "/opt/parvis/venv"},
    "parvis-redis.service": {"/usr/bin/redis-server", "/usr/lib", "/lib"},
}


def test_every_unit_in_systemd_is_checked_here() -> None:
    assert sorted(path.name for path in UNITS_DIR.glob("*.service")) == sorted(SERVICES)


@pytest.mark.parametrize("name", SERVICES)
def test_unit_parses_with_its_three_sections(name: str) -> None:
    assert {"Unit", "Service", "Install"} <= set(parse_unit(UNITS_DIR / name))


@pytest.mark.parametrize("name", SERVICES)
def test_common_sandbox_settings(name: str) -> None:
    section = service(name)
    found = {key: last(section, key) for key in COMMON}
    assert found == COMMON


@pytest.mark.parametrize("name", SERVICES)
def test_unit_specific_settings(name: str) -> None:
    section = service(name)
    expected = SPECIFIC[name]
    assert {key: last(section, key) for key in expected} == expected


@pytest.mark.parametrize("name", SERVICES)
def test_capabilities_are_exactly_what_the_program_needs(name: str) -> None:
    section = service(name)
    assert "CapabilityBoundingSet" in section, "an absent bounding set keeps every capability"
    assert words(section, "CapabilityBoundingSet") == CAPABILITIES[name]
    assert words(section, "AmbientCapabilities") == CAPABILITIES[name]


@pytest.mark.parametrize("name", SERVICES)
def test_address_families_are_an_allow_list(name: str) -> None:
    families = words(service(name), "RestrictAddressFamilies")
    assert not any(family.startswith("~") for family in families)
    assert families == ADDRESS_FAMILIES[name]


@pytest.mark.parametrize("name", SERVICES)
def test_system_calls_are_the_service_set_less_privileged_and_resources(name: str) -> None:
    assert service(name)["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]


@pytest.mark.parametrize("name", SERVICES)
def test_ip_traffic_is_limited_where_the_peers_are_known(name: str) -> None:
    section = service(name)
    allow, deny = IP_ACCESS[name]
    assert (words(section, "IPAddressAllow"), words(section, "IPAddressDeny")) == (allow, deny)


@pytest.mark.parametrize("name", SERVICES)
def test_nothing_writable_is_executable(name: str) -> None:
    section = service(name)
    assert words(section, "ExecPaths") == EXEC_PATHS[name]
    writable = ["/tmp", "/var", "/run", "/dev", "/etc"]
    for path in words(section, "ExecPaths"):
        assert not any(path.lstrip("-").startswith(place) for place in writable), path


def test_netctl_never_flushes_the_ruleset_when_stopped() -> None:
    # A stop command that flushes would throw every resident off at each restart.
    section = service("parvis-netctl.service")
    assert not {"ExecStop", "ExecStopPost", "ExecReload"} & set(section)
    assert "--flush" not in " ".join(" ".join(values) for values in section.values())


def test_netctl_logs_to_the_journal_namespace_whose_retention_is_capped() -> None:
    namespace = last(service("parvis-netctl.service"), "LogNamespace")
    journal = parse_unit(UNITS_DIR / f"journald@{namespace}.conf")["Journal"]
    assert last(journal, "Storage") == "persistent"
    assert last(journal, "MaxRetentionSec") == "30day"


def test_redis_has_no_tcp_listener() -> None:
    command = last(service("parvis-redis.service"), "ExecStart") or ""
    assert "--port 0" in command
    assert "--unixsocket /run/parvis/redis.sock --unixsocketperm 660" in command


def test_deployment_installs_every_unit() -> None:
    text = DEPLOYMENT_DOC.read_text()
    install = re.search(r"install -m 0644 (systemd/(?:[^\n]*\\\n)*[^\n]*)", text)
    assert install is not None, "docs/deployment.md: no `install -m 0644 systemd/...` step"
    installed = set(re.findall(r"systemd/(parvis-[a-z]+\.service)", install.group(1)))
    assert installed == set(SERVICES)


def recorded_scores() -> dict[str, tuple[float, float]]:
    """docs/systemd.md's table: unit -> (exposure before issue #6, exposure now)."""
    rows = re.findall(r"^\| `(parvis-[a-z]+\.service)` \| ([0-9.]+) \| ([0-9.]+) \|",
                      SYSTEMD_DOC.read_text(), flags=re.MULTILINE)
    return {unit: (float(before), float(after)) for unit, before, after in rows}


def test_scores_table_lists_every_unit_and_none_got_worse() -> None:
    scores = recorded_scores()
    assert set(scores) == set(SERVICES)
    for unit, (before, after) in scores.items():
        assert after <= before, unit


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    """Run systemd-analyze offline, or skip when this machine has none that can."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60,
                            check=False)
    if "--offline" in args and "unrecognized option" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd 250 or later needed)")
    return result


def test_systemd_analyze_verify_finds_nothing_but_absent_programs() -> None:
    # Unknown or misspelt directives, bad values and bad sections all show here;
    # /opt/parvis/venv exists only on a gateway.
    result = systemd_analyze("verify", "--man=no",
                             *(str(UNITS_DIR / name) for name in SERVICES))
    absent = re.compile(r"^parvis-[a-z]+\.service: Command \S+ is not executable: "
                        r"No such file or directory$")
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if line.strip() and not absent.match(line)]
    assert problems == []


@pytest.mark.parametrize("name", SERVICES)
def test_exposure_is_at_most_the_recorded_score(name: str) -> None:
    result = systemd_analyze("security", "--offline=yes", "--no-pager", str(UNITS_DIR / name))
    found = re.search(rf"Overall exposure level for {re.escape(name)}: ([0-9.]+)",
                      result.stdout)
    assert found is not None, result.stdout + result.stderr
    recorded = recorded_scores()[name][1]
    missing = [line for line in result.stdout.splitlines() if line.startswith("✗")]
    assert float(found.group(1)) <= recorded, "\n".join(missing)
