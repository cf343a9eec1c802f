"""``python -m admin --config FILE``: the same as ``parvis-admin``."""

from __future__ import annotations

import sys

from admin.main import main

if __name__ == "__main__":
    sys.exit(main())
