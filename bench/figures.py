"""What every benchmark shares: the figures table and the JSON file under artifacts/."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows as aligned text columns under ``header``."""
    width = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, width, strict=True))]
    lines.append("-+-".join("-" * w for w in width))
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, width, strict=True)) for row in rows]
    return "\n".join(lines)


def write(name: str, figures: dict[str, Any]) -> Path:
    """Save ``figures`` as ``artifacts/<name>.json`` and say where."""
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / f"{name}.json"
    out.write_text(json.dumps(figures, indent=2))
    print(f"figures written to {out}")
    return out
