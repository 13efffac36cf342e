"""The chain's units: money is integer rao everywhere (TAO exists only when parsing input or
displaying), and shares are u16 fixed point (weights, kappa, takes, bonds, incentive)."""

from decimal import Decimal, InvalidOperation
from typing import NewType

from services.common.errors import InvalidAmount

Rao = NewType("Rao", int)

RAO_PER_TAO = 10**9
TOTAL_SUPPLY_RAO = Rao(21_000_000 * RAO_PER_TAO)
# Lua numbers are doubles, exact only to 2^53: no single amount may exceed this (about 9.007M TAO).
MAX_AMOUNT_RAO = Rao(2**53 - 1)
U16_MAX = 65_535
"""A share in u16 fixed point: U16_MAX stands for 1.0, as subtensor stores it."""


def parse_tao(text: str) -> Rao:
    """Parse a decimal TAO amount ("1.5") into rao, never via float."""
    try:
        rao = Decimal(text.strip()) * RAO_PER_TAO
    except (InvalidOperation, AttributeError):
        raise InvalidAmount(f"{text!r} is not a number") from None
    if not rao.is_finite() or rao != rao.to_integral_value() or not 0 <= rao <= MAX_AMOUNT_RAO:
        raise InvalidAmount(f"{text!r}: need 0..{MAX_AMOUNT_RAO} rao, at most 9 decimals of TAO")
    return Rao(int(rao))


def check_amount(rao: int, *, what: str = "amount", allow_zero: bool = False) -> Rao:
    """Validate an amount in rao that arrived over the wire."""
    low = 0 if allow_zero else 1
    if not isinstance(rao, int) or isinstance(rao, bool) or not low <= rao <= MAX_AMOUNT_RAO:
        raise InvalidAmount(f"{what} {rao!r} rao: need {low}..{MAX_AMOUNT_RAO} rao")
    return Rao(rao)


def format_tao(rao: int) -> str:
    """1500000000 -> '1.500000000'. Exact: integer arithmetic only."""
    sign = "-" if rao < 0 else ""
    whole, frac = divmod(abs(rao), RAO_PER_TAO)
    return f"{sign}{whole:,}.{frac:09d}"
