"""``python -m bench [scale|counters|all] [options]``: Parvis benchmarks (root; builds namespaces).

* ``scale``: netctl with N authorised clients in the lab (bench/netctl_scale.py);
* ``counters``: reading every counter, netctl's way against libnftables (bench/counter_read.py);
* ``all`` (the default): counters at 10,000 clients, then scale at 1,000 and 10,000.
"""

import sys

from bench import counter_read, netctl_scale


def main(argv: list[str]) -> int:
    """Dispatch to one benchmark, or run them all."""
    if argv and argv[0] == "scale":
        return netctl_scale.main(argv[1:])
    if argv and argv[0] == "counters":
        return counter_read.main(argv[1:])
    if argv and argv[0] not in ("all",):
        print(__doc__, file=sys.stderr)
        return 2
    status = counter_read.main(["--clients", "10000", "--pyroute2"])
    for clients in ("1000", "10000"):
        print(f"\n== netctl with {clients} clients", flush=True)
        status |= netctl_scale.main(["--clients", clients])
    return status


sys.exit(main(sys.argv[1:]))
