"""Uniswap v2's integer rules (protocols/ledger/amm.py): v2-core's own golden values, and the
properties every pool must keep (k never decreases, rounding favours the pool, nothing is minted
from nothing)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.ledger.amm import (
    MINIMUM_LIQUIDITY,
    AmmError,
    Pool,
    amount_in,
    amount_out,
    amounts_in,
    amounts_out,
    k_holds,
)

E18 = 10**18


@pytest.mark.parametrize(
    ("swap", "reserve_in", "reserve_out", "expected"),
    [
        (1, 5, 10, 1662497915624478906),
        (1, 10, 5, 453305446940074565),
        (2, 5, 10, 2851015155847869602),
        (2, 10, 5, 831248957812239453),
        (1, 10, 10, 906610893880149131),
        (1, 100, 100, 987158034397061298),
        (1, 1000, 1000, 996006981039903216),
    ],
)
def test_v2_core_golden_swap_outputs(swap: int, reserve_in: int, reserve_out: int, expected: int) -> None:
    # v2-core test/UniswapV2Pair.spec.ts, "getInputPrice": amounts in units of 10^18.
    assert amount_out(swap * E18, reserve_in * E18, reserve_out * E18) == expected
    # The swap that takes exactly that much holds k; one unit more does not.
    r0, r1 = reserve_in * E18, reserve_out * E18
    assert k_holds(r0, r1, r0 + swap * E18, r1 - expected, swap * E18, 0)
    assert not k_holds(r0, r1, r0 + swap * E18, r1 - expected - 1, swap * E18, 0)


def test_v2_core_first_mint() -> None:
    pool, minted = Pool(0, 0, 0).deposit(1 * E18, 4 * E18)
    assert pool.shares == 2 * E18 and minted == 2 * E18 - MINIMUM_LIQUIDITY


def test_small_numbers_by_hand() -> None:
    assert amount_out(1000, 1_000_000, 1_000_000) == 996  # 997·10^9 // (10^9 + 997)
    assert amount_in(996, 1_000_000, 1_000_000) == 1000  # the least input that buys 996
    assert amounts_out(1000, [(10**6, 10**6), (10**6, 2 * 10**6)]) == [1000, 996, 1984]
    assert amounts_in(1984, [(10**6, 10**6), (10**6, 2 * 10**6)])[-1] == 1984


@pytest.mark.parametrize(
    "call",
    [
        lambda: amount_out(0, 10, 10), lambda: amount_out(1, 0, 10), lambda: amount_in(10, 10, 10),
        lambda: amount_in(-1, 10, 10), lambda: amounts_out(1, []), lambda: amounts_out(1, [(9, 9)] * 5),
        lambda: Pool(0, 0, 0).deposit(10, 10), lambda: Pool(10**6, 10**6, 10**6).withdraw(10**6),
        lambda: Pool(10**6, 10**6, 10**6).swap(1, True), lambda: amount_out(True, 10, 10),
    ],
)
def test_what_a_pool_cannot_honour_is_an_amm_error(call: object) -> None:
    with pytest.raises(AmmError):
        call()  # type: ignore[operator]


amounts = st.integers(min_value=1, max_value=2**62)


@settings(max_examples=400, deadline=None)
@given(amounts, amounts, amounts, st.booleans())
def test_a_swap_never_decreases_k_and_amount_in_is_the_least_that_buys(r_a: int, r_b: int, x: int, a_to_b: bool) -> None:
    pool = Pool(r_a, r_b, 1)
    try:
        after, out = pool.swap(x, a_to_b)
    except AmmError:
        return
    assert after.reserve_a * after.reserve_b >= r_a * r_b and 0 < out
    r_in, r_out = (r_a, r_b) if a_to_b else (r_b, r_a)
    need = amount_in(out, r_in, r_out)
    assert need <= x and amount_out(need, r_in, r_out) >= out
    if need > 1:
        assert amount_out(need - 1, r_in, r_out) < out  # rounded up: one less does not buy it


@settings(max_examples=300, deadline=None)
@given(st.integers(10**4, 2**40), st.integers(10**4, 2**40), st.integers(1, 2**40), st.integers(1, 2**40))
def test_deposit_then_withdraw_never_pays_out_more_than_went_in(a0: int, b0: int, a: int, b: int) -> None:
    try:
        pool, _ = Pool(0, 0, 0).deposit(a0, b0)
        pool, minted = pool.deposit(a, b)
        after, got_a, got_b = pool.withdraw(minted)
    except AmmError:
        return
    assert got_a <= a and got_b <= b
    assert after.reserve_a >= a0 and after.reserve_b >= b0  # the pool keeps the rounding
    assert after.reserve_a + got_a == pool.reserve_a and after.reserve_b + got_b == pool.reserve_b
