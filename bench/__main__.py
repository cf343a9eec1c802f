"""``python -m bench [scale|counters|portal|reports|all] [options]``: Parvis benchmarks (root only).

* ``scale``: netctl with N authorised clients in the lab (bench/netctl_scale.py);
* ``counters``: reading every counter, netctl's way against libnftables (bench/counter_read.py);
* ``portal``: the captive portal under wrk, and accept → online (bench/portal_load.py);
* ``reports``: council reports, a month of 100,000 sessions (bench/reports.py; no root);
* ``all`` (the default): counters at 10,000 clients, scale at 1,000 and 10,000, portal, reports.
"""

import sys

from bench import counter_read, netctl_scale, portal_load, reports


def main(argv: list[str]) -> int:
    """Dispatch to one benchmark, or run them all."""
    if argv and argv[0] == "scale":
        return netctl_scale.main(argv[1:])
    if argv and argv[0] == "counters":
        return counter_read.main(argv[1:])
    if argv and argv[0] == "portal":
        return portal_load.main(argv[1:])
    if argv and argv[0] == "reports":
        return reports.main(argv[1:])
    if argv and argv[0] not in ("all",):
        print(__doc__, file=sys.stderr)
        return 2
    status = counter_read.main(["--clients", "10000", "--pyroute2"])
    for clients in ("1000", "10000"):
        print(f"\n== netctl with {clients} clients", flush=True)
        status |= netctl_scale.main(["--clients", clients])
    print("\n== the portal with 1000 clients", flush=True)
    status |= portal_load.main(["--clients", "1000"])
    print("\n== council reports, a month of 100,000 sessions", flush=True)
    status |= reports.main([])
    return status


sys.exit(main(sys.argv[1:]))
