"""Parsing and printing the units users type: ether amounts, share amounts, durations.

Money stays integer wei end to end: amounts are parsed with ``Decimal`` and refused when they
do not land on a whole wei.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from databright.errors import UsageError

WEI_PER = {"wei": 1, "gwei": 10**9, "eth": 10**18, "ether": 10**18}
SHARE_UNIT = 10**18
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AMOUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")
_DURATION = re.compile(r"^\s*([0-9]+)\s*([smhdw]?)\s*$")


def parse_wei(text: str, default_unit: str = "wei") -> int:
    """``"0.01eth"`` → 10**16, ``"5gwei"`` → 5·10**9, ``"1000"`` → 1000 (``default_unit``)."""
    match = _AMOUNT.match(str(text))
    if not match:
        raise UsageError(f"not an amount: {text!r} (examples: 0.01eth, 5gwei, 1000wei)")
    number, unit = match.group(1), (match.group(2) or default_unit).lower()
    if unit not in WEI_PER:
        raise UsageError(f"unknown unit {unit!r} in {text!r}: use eth, gwei or wei")
    return _exact(Decimal(number) * WEI_PER[unit], text, "wei")


def parse_shares(text: str) -> int:
    """Share amounts in whole shares with up to 18 decimals → integer base units."""
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise UsageError(f"not a share amount: {text!r} (example: 12.5)") from None
    if value < 0 or not value.is_finite():
        raise UsageError(f"share amount must be positive: {text!r}")
    return _exact(value * SHARE_UNIT, text, "share unit (18 decimals)")


_SIZE = re.compile(r"^\s*([0-9]+)\s*([kKmMgG]?)(?:i?[bB])?\s*$")


def parse_size(text: str) -> int:
    """``"10MB"`` → 10·2**20 bytes; suffixes K, M, G (binary); a bare number is bytes."""
    match = _SIZE.match(str(text))
    if not match:
        raise UsageError(f"not a size: {text!r} (examples: 512K, 10MB, 1G)")
    return int(match.group(1)) * 1024 ** " KMG".index((match.group(2) or " ").upper())


def parse_duration(text: str) -> int:
    """``"3d"`` → 259200 seconds; units s, m, h, d, w; a bare number is seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise UsageError(f"not a duration: {text!r} (examples: 90s, 30m, 12h, 3d, 1w)")
    return int(match.group(1)) * _SECONDS[match.group(2) or "s"]


def parse_fraction_bps(text: str) -> int:
    """``"0.2"`` or ``"20%"`` → 2000 basis points."""
    raw = str(text).strip()
    try:
        value = Decimal(raw[:-1]) / 100 if raw.endswith("%") else Decimal(raw)
    except InvalidOperation:
        raise UsageError(f"not a fraction: {text!r} (examples: 0.2, 20%)") from None
    if not Decimal(0) <= value <= Decimal(1):
        raise UsageError(f"fraction out of range [0, 1]: {text!r}")
    return _exact(value * 10_000, text, "basis point")


def format_wei(wei: int, places: int | None = None) -> str:
    """Exact, human-friendly: ``1.5 ETH`` (no float rounding); ``places`` truncates for display."""
    whole, frac = divmod(int(wei), 10**18)
    digits = (f"{frac:018d}"[:places] if places is not None else f"{frac:018d}").rstrip("0")
    return f"{whole}.{digits} ETH" if digits else f"{whole} ETH"


def format_shares(units: int, places: int | None = None) -> str:
    """Shares with their decimals trimmed (``1234.5``); ``places`` truncates for display."""
    whole, frac = divmod(int(units), SHARE_UNIT)
    digits = f"{frac:018d}"[:places] if places is not None else f"{frac:018d}"
    digits = digits.rstrip("0")
    return f"{whole}.{digits}" if digits else f"{whole}"


def format_duration(seconds: int) -> str:
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _exact(value: Decimal, text: str, unit: str) -> int:
    if value != value.to_integral_value():
        raise UsageError(f"{text!r} is not a whole number of {unit}")
    return int(value)
