"""``parvis-lab``: build, inspect, use and remove the network lab.

    parvis-lab up [--clients N] [--name NAME] [--no-netctl] [--no-portal]
    parvis-lab status [--name NAME] [--json]
    parvis-lab run NODE -- COMMAND...      (NODE: c1…cN, gw or up)
    parvis-lab down [--name NAME]

Errors are one sentence on stderr and exit status 1; ``run`` passes the
command's exit status through.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from lab.topology import (
    DEFAULT_CLIENTS,
    DEFAULT_NAME,
    DEFAULT_STATE_ROOT,
    INTERNET_WEB4,
    Lab,
    LabError,
    check_environment,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parvis-lab",
        description="The Parvis network lab: a gateway, a stand-in internet and DHCP clients "
        "in network namespaces (docs/lab.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def named(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--name", default=DEFAULT_NAME,
                         help=f"lab name, prefix of its namespaces (default {DEFAULT_NAME})")
        return sub

    up = named(commands.add_parser("up", help="build the lab (nothing to do if it is up)"))
    up.add_argument("--clients", type=int, default=DEFAULT_CLIENTS,
                    help=f"number of clients c1…cN (default {DEFAULT_CLIENTS})")
    up.add_argument("--no-netctl", action="store_true", help="do not start netctl")
    up.add_argument("--no-portal", action="store_true", help="do not start the portal")

    named(commands.add_parser("down", help="remove everything, whatever state it is in"))

    status = named(commands.add_parser("status", help="show namespaces, processes, clients"))
    status.add_argument("--json", action="store_true", help="machine-readable output")

    run = named(commands.add_parser("run", help="run a command inside a node's namespace"))
    run.add_argument("node", help="c1…cN, gw or up")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    return parser


def _client_count(name: str) -> int:
    """How many clients the lab called ``name`` was built with (state file, else namespaces)."""
    try:
        recorded = json.loads((DEFAULT_STATE_ROOT / name / "lab.json").read_text())["clients"]
        if isinstance(recorded, int) and recorded >= 1:
            return recorded
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no usable state file (never built, or a crash): count the namespaces
    lab = Lab(name=name, clients=1)
    numbers = [int(ns.rsplit("-c", 1)[1]) for ns in lab.existing_namespaces()
               if ns.rsplit("-", 1)[1].startswith("c")]
    return max(numbers, default=1)


def _print_status(report: dict[str, object]) -> None:
    healthy = report["healthy"]
    print(f"lab {report['name']}: {'up' if healthy else 'NOT HEALTHY'}")
    problems = report["problems"]
    assert isinstance(problems, list)
    for problem in problems:
        print(f"  problem: {problem}")
    print(f"  state:  {report['state_dir']}")
    print(f"  config: {report['config']}")
    print(f"  redis:  {report['redis_url']}")
    processes = report["processes"]
    assert isinstance(processes, dict)
    shown = {k: v for k, v in processes.items() if not k.startswith("dhclient-")}
    for proc, info in shown.items():
        where = info["node"]
        state = f"pid {info['pid']}" if info["running"] else "STOPPED"
        print(f"  {proc:<12} {where:<5} {state:<12} {info['log']}")
    dhclients = [v for k, v in processes.items() if k.startswith("dhclient-")]
    if dhclients:
        running = sum(1 for v in dhclients if v["running"])
        print(f"  dhclient     {running}/{len(dhclients)} running")
    clients = report["clients"]
    assert isinstance(clients, list)
    for client in clients:
        print(f"  {client['node']:<5} {client['namespace']:<18} {client['mac']}  "
              f"{client['ip4'] or '-':<15} {client['ip6'] or '-'}")


def _summary(lab: Lab) -> None:
    print(f"""
Lab {lab.name!r} is up: {lab.clients} client(s), config {lab.config_path}
Try:
  parvis-lab run c1 -- curl -i http://connectivitycheck.gstatic.com/generate_204
  parvis-lab run c1 -- curl -s http://{INTERNET_WEB4}/
  parvis-lab run c1 -- dig +short garden.test
  parvisctl --config {lab.config_path} clients
  parvis-lab status{'' if lab.name == DEFAULT_NAME else f' --name {lab.name}'}
  parvis-lab down{'' if lab.name == DEFAULT_NAME else f' --name {lab.name}'}
Logs and pid files: {lab.state_dir}/""")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``parvis-lab`` console script."""
    args = _parser().parse_args(argv)
    try:
        check_environment()
        if args.command == "up":
            lab = Lab(name=args.name, clients=args.clients, state_root=DEFAULT_STATE_ROOT)
            already = not lab.problems()
            lab.up(netctl=not args.no_netctl, portal=not args.no_portal)
            if already:
                _print_status(lab.status())
            else:
                _summary(lab)
            return 0
        lab = Lab(name=args.name, clients=_client_count(args.name))
        if args.command == "down":
            lab.down()
            print(f"lab {args.name!r} removed", file=sys.stderr)
            return 0
        if args.command == "status":
            report = lab.status()
            if args.json:
                print(json.dumps(report, indent=2))
            else:
                _print_status(report)
            return 0 if report["healthy"] else 1
        # run
        command = list(args.argv)
        if command[:1] == ["--"]:
            command = command[1:]
        if not command:
            raise LabError("nothing to run: parvis-lab run NODE -- COMMAND...")
        if not lab.existing_namespaces():
            raise LabError(f"lab {lab.name!r} is not up (start it with: parvis-lab up"
                           f"{'' if lab.name == DEFAULT_NAME else ' --name ' + lab.name})")
        namespace = lab.ns(args.node)
        if namespace not in lab.existing_namespaces():
            raise LabError(f"namespace {namespace} does not exist: run parvis-lab down, then up")
        # The caller's terminal stays attached; the exit status passes through.
        env = dict(os.environ, PARVIS_LAB=lab.name)
        os.execvpe("ip", ["ip", "netns", "exec", namespace, *command], env)
    except LabError as error:
        print(f"parvis-lab: {error}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        detail = (error.stderr or "").strip() if isinstance(error.stderr, str) else ""
        print(f"parvis-lab: {' '.join(map(str, error.cmd))} failed (exit {error.returncode})"
              f"{': ' + detail if detail else ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("parvis-lab: interrupted; `parvis-lab up` again rebuilds, `parvis-lab down` "
              "removes what was built", file=sys.stderr)
        return 130
    return 0  # not reached: execvpe replaced this process


if __name__ == "__main__":
    sys.exit(main())
