"""Access codes for events and special cases: generation, normalization, identity, durations.

A code is 16 characters from a 19-character alphabet with no look-alikes
(68 bits of entropy), shown as ``ACEF-HJKM-NPRT-WXY3``. Residents may type it
in any case, with or without dashes or spaces. Codes are never stored: Redis
holds only :func:`code_id`, a keyed hash, so a dump of Redis reveals no valid
code. This module does no I/O except :func:`load_secret`'s one file read.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# No 0/O/D/Q, 1/I/L, 2/Z, 5/S, 6/G, 8/B, U/V: every character here reads and
# sounds unambiguous on a poster, a receipt or over the phone.
ALPHABET = "3479ACEFHJKMNPRTWXY"
CODE_LENGTH = 16
GROUP_LENGTH = 4
ENTROPY_BITS = CODE_LENGTH * math.log2(len(ALPHABET))
# Longest text normalize_code() looks at: a code with a separator between every
# character plus surrounding blanks; anything longer is refused before any work.
MAX_INPUT_CHARS = 64
MIN_SECRET_BYTES = 32
_MAX_SECRET_FILE_BYTES = 64 * 1024

# Limits parvisctl and the store enforce on a batch.
MAX_CODES_PER_BATCH = 10_000
MIN_VALID_FOR_S = 60
MAX_VALID_FOR_S = 90 * 86400
MAX_USES = 10_000
MIN_SESSION_S = 60
MAX_SESSION_S = 7 * 86400
MAX_NOTE_CHARS = 200
# A plan name as the authorize command carries it (parvis.core.commands: 64 at most).
MAX_PLAN_CHARS = 64
# A code's key outlives its batch's validity by a day so that a late resident
# hears "expired" rather than "unknown"; the batch itself stays listable for 30 days.
CODE_KEY_GRACE_S = 86400
BATCH_RETENTION_S = 30 * 86400

# Redemption reasons (the portal words them for residents in their language).
UNKNOWN = "unknown"
EXPIRED = "expired"
USED_UP = "used-up"
REVOKED = "revoked"

_SEPARATORS = re.compile(r"[\s-]+")
_CODE_CHARS = frozenset(ALPHABET)
_BATCH_ID_RE = re.compile(r"^b-[0-9]{8}-[0-9a-f]{4}$")
_DURATION_RE = re.compile(r"^(?:(\d{1,4})d)?(?:(\d{1,5})h)?(?:(\d{1,6})m)?(?:(\d{1,8})s)?$")


@dataclass(frozen=True)
class Redemption:
    """The outcome of redeeming a code: ok, or the reason it was refused."""

    ok: bool
    reason: str = ""  # "unknown" | "expired" | "used-up" | "revoked"
    batch: str = ""
    session_s: int | None = None
    plan: str = ""  # the batch's plan; "" = the gateway's default plan


@dataclass(frozen=True)
class CodeBatch:
    """A batch of codes made by one ``parvisctl codes create``, with its use so far."""

    id: str  # b-YYYYMMDD-xxxx (local date of creation, 4 random hex digits)
    created_at: float
    valid_until: float
    uses: int  # uses allowed per code
    session_s: int | None  # session length granted; None = the [session] default
    note: str
    count: int  # codes in the batch
    redemptions: int = 0  # successful redemptions over all codes
    codes_used_up: int = 0  # codes with no use left
    revoked: bool = False
    plan: str = ""  # the plan its sessions get ([plans] in the config); "" = the default

    @property
    def codes_left(self) -> int:
        """Codes that still have at least one use (expired or revoked ones included)."""
        return self.count - self.codes_used_up

    def state(self, now: float) -> str:
        """``active``, ``expired``, ``revoked`` or ``used-up``, for listings."""
        if self.revoked:
            return REVOKED
        if now >= self.valid_until:
            return EXPIRED
        if self.codes_left <= 0:
            return USED_UP
        return "active"


def generate_codes(count: int) -> list[str]:
    """``count`` distinct random codes (compact, upper case) drawn with ``secrets``."""
    if not 0 <= count <= MAX_CODES_PER_BATCH:
        raise ValueError(f"count must be from 0 to {MAX_CODES_PER_BATCH}, got {count}")
    codes: dict[str, None] = {}  # ordered and duplicate-free
    while len(codes) < count:
        codes["".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))] = None
    return list(codes)


def normalize_code(text: str) -> str | None:
    """The compact upper-case code typed in ``text``, or None if it cannot be a code."""
    if len(text) > MAX_INPUT_CHARS:
        return None
    compact = _SEPARATORS.sub("", text).upper()
    if len(compact) != CODE_LENGTH or not _CODE_CHARS.issuperset(compact):
        return None
    return compact


def format_code(code: str) -> str:
    """The code in groups for display: ``ACEF-HJKM-NPRT-WXY3``."""
    compact = normalize_code(code)
    if compact is None:
        raise ValueError("not an access code")
    return "-".join(compact[i:i + GROUP_LENGTH] for i in range(0, CODE_LENGTH, GROUP_LENGTH))


def code_id(code: str, key: bytes) -> str:
    """The keyed hash (HMAC-SHA256, hex) under which a code is stored; any typed form works."""
    compact = normalize_code(code)
    if compact is None:
        raise ValueError("not an access code")
    # The prefix keeps this use of the portal's secret apart from its other uses.
    return hmac.new(key, b"parvis-code-v1:" + compact.encode("ascii"), hashlib.sha256).hexdigest()


def new_batch_id(now: float) -> str:
    """A fresh batch id ``b-YYYYMMDD-xxxx``; the store retries on the rare collision."""
    return f"b-{datetime.fromtimestamp(now).strftime('%Y%m%d')}-{secrets.token_hex(2)}"


def is_batch_id(text: str) -> bool:
    """True when ``text`` has the form of a batch id."""
    return bool(_BATCH_ID_RE.match(text))


def check_batch_request(count: int, valid_for_s: int, uses: int, session_s: int | None,
                        note: str, plan: str = "") -> None:
    """Raise ValueError naming the first argument of a new batch that is out of range.

    Only the plan's form is checked here; whether the configuration knows it is
    parvisctl's check (the store does not read the configuration).
    """
    if not 1 <= count <= MAX_CODES_PER_BATCH:
        raise ValueError(f"count must be from 1 to {MAX_CODES_PER_BATCH}, got {count}")
    if not MIN_VALID_FOR_S <= valid_for_s <= MAX_VALID_FOR_S:
        raise ValueError(f"validity must be from {MIN_VALID_FOR_S} s (1m) to "
                         f"{MAX_VALID_FOR_S} s (90d), got {valid_for_s} s")
    if not 1 <= uses <= MAX_USES:
        raise ValueError(f"uses must be from 1 to {MAX_USES}, got {uses}")
    if session_s is not None and not MIN_SESSION_S <= session_s <= MAX_SESSION_S:
        raise ValueError(f"session must be from {MIN_SESSION_S} s (1m) to "
                         f"{MAX_SESSION_S} s (7d), got {session_s} s")
    if len(note) > MAX_NOTE_CHARS or not note.isprintable():
        raise ValueError(f"note must be at most {MAX_NOTE_CHARS} printable characters")
    if len(plan) > MAX_PLAN_CHARS or not plan.isprintable() or plan != plan.strip():
        raise ValueError(f"plan must be a name of at most {MAX_PLAN_CHARS} printable "
                         f"characters, got {plan!r}")


def parse_duration(text: str) -> int:
    """Seconds in a duration such as ``90s``, ``30m``, ``4h``, ``2d`` or ``1h30m``."""
    expected = "a duration such as 90s, 30m, 4h, 2d or 1h30m"
    compact = text.strip().lower()
    match = _DURATION_RE.match(compact) if len(compact) <= 32 else None
    if not compact or match is None:
        raise ValueError(f"{text!r} is not {expected}")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    total = days * 86400 + hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"{text!r} is zero, expected {expected}")
    return total


def load_secret(path: Path) -> bytes:
    """The secret in ``path`` (surrounding blanks stripped); ValueError says what is wrong."""
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_SECRET_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except PermissionError:
        raise ValueError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or error})") from None
    if len(data) > _MAX_SECRET_FILE_BYTES:
        raise ValueError(f"{path}: larger than {_MAX_SECRET_FILE_BYTES} bytes")
    secret = data.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"{path}: holds {len(secret)} bytes, fewer than {MIN_SECRET_BYTES}")
    return secret
