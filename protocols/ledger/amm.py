"""Constant-product pool arithmetic, exactly Uniswap v2's integer rules (UniswapV2Pair.sol,
UniswapV2Library.sol), as pure functions over Python integers.

Rounding always favours the pool: outputs round down, required inputs round up (+1), minted
shares round down, withdrawals round down. The product k = R_a·R_b never decreases across a swap
(the fee stays in the reserves). The first deposit locks MINIMUM_LIQUIDITY shares forever, which
is what makes the first-depositor share-inflation attack unprofitable.

These functions know nothing of assets, accounts or bounds; the ledger operations that use them
enforce the 2**63 limit on every amount and reserve. AmmError carries a short reason for a
receipt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import isqrt

FEE_NUMERATOR = 997  # 0.3% fee: 997/1000 of the input counts
FEE_DENOMINATOR = 1000
MINIMUM_LIQUIDITY = 1000
MAX_PATH = 4  # pools in one path swap


class AmmError(ValueError):
    """An amount the pool cannot honour; `reason` is short and machine-readable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _positive(**values: int) -> None:
    for name, v in values.items():
        if type(v) is not int or v <= 0:
            raise AmmError("insufficient-amount" if "amount" in name else "insufficient-liquidity", f"{name} = {v!r}")


def amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """What `amount_in` buys from a pool holding (reserve_in, reserve_out), after the fee."""
    _positive(amount_in=amount_in, reserve_in=reserve_in, reserve_out=reserve_out)
    with_fee = amount_in * FEE_NUMERATOR
    return (with_fee * reserve_out) // (reserve_in * FEE_DENOMINATOR + with_fee)


def amount_in(amount_out_: int, reserve_in: int, reserve_out: int) -> int:
    """The least input that buys `amount_out_` (rounded up)."""
    _positive(amount_out=amount_out_, reserve_in=reserve_in, reserve_out=reserve_out)
    if amount_out_ >= reserve_out:
        raise AmmError("insufficient-liquidity", f"wants {amount_out_} of a reserve of {reserve_out}")
    return (reserve_in * amount_out_ * FEE_DENOMINATOR) // ((reserve_out - amount_out_) * FEE_NUMERATOR) + 1


def amounts_out(amount: int, hops: Sequence[tuple[int, int]]) -> list[int]:
    """Along a path of pools, each hop (reserve_in, reserve_out): the amount after every hop,
    starting with `amount` itself (v2's getAmountsOut)."""
    if not 1 <= len(hops) <= MAX_PATH:
        raise AmmError("bad-path", f"a path has 1..{MAX_PATH} pools, not {len(hops)}")
    out = [amount]
    for r_in, r_out in hops:
        out.append(amount_out(out[-1], r_in, r_out))
    return out


def amounts_in(amount: int, hops: Sequence[tuple[int, int]]) -> list[int]:
    """The inputs needed at every hop for `amount` out of the last one (v2's getAmountsIn)."""
    if not 1 <= len(hops) <= MAX_PATH:
        raise AmmError("bad-path", f"a path has 1..{MAX_PATH} pools, not {len(hops)}")
    ins = [amount]
    for r_in, r_out in reversed(hops):
        ins.append(amount_in(ins[-1], r_in, r_out))
    return ins[::-1]


def k_holds(reserve_0: int, reserve_1: int, balance_0: int, balance_1: int, in_0: int, in_1: int) -> bool:
    """v2's swap invariant on the balances after a swap, the fee taken from the inputs:
    (B0·1000 − in0·3)·(B1·1000 − in1·3) >= R0·R1·1000²."""
    adjusted_0 = balance_0 * FEE_DENOMINATOR - in_0 * (FEE_DENOMINATOR - FEE_NUMERATOR)
    adjusted_1 = balance_1 * FEE_DENOMINATOR - in_1 * (FEE_DENOMINATOR - FEE_NUMERATOR)
    return adjusted_0 * adjusted_1 >= reserve_0 * reserve_1 * FEE_DENOMINATOR**2


@dataclass(frozen=True)
class Pool:
    """Reserves of the pair's two assets (in the pair's canonical order) and the share supply,
    MINIMUM_LIQUIDITY locked shares included."""

    reserve_a: int
    reserve_b: int
    shares: int

    def deposit(self, a: int, b: int) -> tuple[Pool, int]:
        """Add `a` and `b`; returns the pool after and the shares minted to the depositor. The
        first deposit mints isqrt(a·b) − MINIMUM_LIQUIDITY (and locks MINIMUM_LIQUIDITY); later
        ones min(a·T/R_a, b·T/R_b): the excess of one side is a gift to the pool."""
        _positive(amount_a=a, amount_b=b)
        if self.shares == 0:
            minted = isqrt(a * b) - MINIMUM_LIQUIDITY
            total = minted + MINIMUM_LIQUIDITY
        else:
            minted = min(a * self.shares // self.reserve_a, b * self.shares // self.reserve_b)
            total = self.shares + minted
        if minted <= 0:
            raise AmmError("insufficient-liquidity-minted", f"{a} and {b} mint no shares")
        return Pool(self.reserve_a + a, self.reserve_b + b, total), minted

    def withdraw(self, shares: int) -> tuple[Pool, int, int]:
        """Burn `shares`: pays shares·R/T of each side, rounded down."""
        _positive(amount_shares=shares)
        if shares > self.shares - MINIMUM_LIQUIDITY:
            raise AmmError("insufficient-shares", f"{shares} of {self.shares - MINIMUM_LIQUIDITY} withdrawable")
        a = shares * self.reserve_a // self.shares
        b = shares * self.reserve_b // self.shares
        if a <= 0 or b <= 0:
            raise AmmError("insufficient-liquidity-burned", f"{shares} shares pay nothing")
        return Pool(self.reserve_a - a, self.reserve_b - b, self.shares - shares), a, b

    def swap(self, amount: int, a_to_b: bool) -> tuple[Pool, int]:
        """Sell `amount` of one side for the other; returns the pool after and what it paid."""
        r_in, r_out = (self.reserve_a, self.reserve_b) if a_to_b else (self.reserve_b, self.reserve_a)
        out = amount_out(amount, r_in, r_out)
        if out <= 0:
            raise AmmError("insufficient-output-amount", f"{amount} buys nothing")
        after = Pool(self.reserve_a + amount, self.reserve_b - out, self.shares) if a_to_b else \
            Pool(self.reserve_a - out, self.reserve_b + amount, self.shares)
        in_a, in_b = (amount, 0) if a_to_b else (0, amount)
        assert k_holds(self.reserve_a, self.reserve_b, after.reserve_a, after.reserve_b, in_a, in_b)
        return after, out


__all__ = [
    "AmmError", "FEE_DENOMINATOR", "FEE_NUMERATOR", "MAX_PATH", "MINIMUM_LIQUIDITY", "Pool", "amount_in",
    "amount_out", "amounts_in", "amounts_out", "k_holds",
]
