"""``python -m portal --config FILE``: the same as ``parvis-portal``."""

from __future__ import annotations

import sys

from portal.main import main

if __name__ == "__main__":
    sys.exit(main())
