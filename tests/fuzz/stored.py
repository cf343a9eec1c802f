"""Generated records of the kinds the pages read back from Redis, malformed ones included.

The portal and the console promise to read some records tolerantly: an end
record (``Keys.ended``) with a field missing or malformed is worded without
it, a tile edited in the console that does not parse is left out. These
strategies draw such records: JSON of any shape, huge and non-finite numbers,
wrong types, and now and then text that is not JSON at all.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import strategies as st

from parvis.core.sessions import EndReason

NOW = time.time()

# Numbers that break arithmetic: beyond float, beyond 64 bits, around the year 2100.
AWKWARD_NUMBERS = (10**400, -(10**400), 2**63, 2**64, -1, 0, 4_102_444_800, 4_102_444_799,
                   1e308, -0.0, float("inf"), float("nan"), 0.5)

JSON_SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
    st.sampled_from(AWKWARD_NUMBERS),
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)
_TIMES = st.one_of(st.floats(NOW - 10 * 86400, NOW + 40 * 86400), st.integers(0, 4_200_000_000))

ENDED_FIELDS = ("reason", "ended_at", "reconnect_at", "plan", "quota_bytes", "hard_timeout_s",
                "idle_timeout_s")


@st.composite
def ended_records(draw: st.DrawFn) -> str:
    """An end record's text: as netctl writes it, with odd values, or not JSON at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(["", "null", "[]", "{", "not json", '"Idle-Timeout"',
                                     "[" * 5000]))
    record: dict[str, Any] = {}
    for name in ENDED_FIELDS:
        if not draw(st.integers(0, 3)):
            continue
        if name == "reason":
            record[name] = draw(st.one_of(st.sampled_from([r.value for r in EndReason]),
                                          JSON_VALUES))
        elif name in ("ended_at", "reconnect_at"):
            record[name] = draw(st.one_of(_TIMES, JSON_VALUES))
        else:
            record[name] = draw(st.one_of(st.integers(0, 10**10), JSON_VALUES))
    record.update(draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=2)))
    return json.dumps(record)


TILE_TEXTS = ("title_fr", "title_en", "text_fr", "text_en", "url_fr", "url_en")


@st.composite
def edited_tiles(draw: st.DrawFn) -> str:
    """A tile as the console stores it (``Keys.CONTENT_TILES``), sound or malformed."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(["", "{", "[]", "null", "1e999", "[" * 5000]))
    record: dict[str, Any] = {
        "kind": draw(st.one_of(st.sampled_from(["announcement", "activity", "offer"]),
                               JSON_VALUES)),
    }
    for name in TILE_TEXTS:
        if draw(st.integers(0, 3)):
            record[name] = draw(st.one_of(
                st.sampled_from(["Titre", "https://example.org/", "<script>x</script>",
                                 "A" * 600, ""]),
                JSON_VALUES))
    for name in ("starts_at", "ends_at", "created_at", "updated_at"):
        if draw(st.booleans()):
            record[name] = draw(st.one_of(_TIMES, JSON_VALUES))
    if draw(st.booleans()):
        record["by"] = draw(JSON_VALUES)
    return json.dumps(record)
