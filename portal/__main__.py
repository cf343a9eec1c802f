"""``python -m portal --config FILE``: serve the portal with gunicorn on the configured address."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from parvis.core.config import DEFAULT_CONFIG_PATH, ConfigError, load_config
from portal import create_app


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self.application


def main(argv: list[str] | None = None) -> int:
    """Serve until stopped; exit 2 on a configuration problem."""
    parser = argparse.ArgumentParser(prog="parvis-portal")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"parvis-portal: {error}", file=sys.stderr)
        return 2
    binds = [f"{config.portal.address}:{config.portal.http_port}"]
    if config.portal.address6 is not None:
        binds.append(f"[{config.portal.address6}]:{config.portal.http_port}")
    _Server(create_app(), {"bind": binds, "workers": args.workers, "accesslog": "-",
                           "errorlog": "-"}).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
