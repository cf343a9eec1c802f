"""``python -m bench [--clients N]``: run the netctl scale benchmark (root; builds a lab)."""

import sys

from bench.netctl_scale import main

sys.exit(main())
