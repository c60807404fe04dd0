"""node/store.py, the federation part: the PBFT dump + input log, the ledger copy (batches,
receipts, gaps), client lanes, and the schema that holds them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.store import MIGRATIONS, Store, StoreError

PROPS = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sovereign.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as opened:
        yield opened


def inp(i: int) -> tuple[str, str, bytes, float]:
    return ("message", f"peer{i % 3}", bytes([i % 256]) * (i % 5), float(i) + 0.5)


def batch(seq: int, view: int = 0, ops: bytes = b"ops", results: bytes = b"res") -> tuple[int, int, int, bytes, bytes]:
    return (seq, view, 1000 + seq, ops, results)


def tx(tx_id: str, seq: int, idx: int = 0, status: str = "ok") -> tuple[str, int, int, str, str, str]:
    return (tx_id, seq, idx, "sender", status, "")


# ---------------------------------------------------------------- PBFT dump + inputs

def test_empty_store_loads_nothing(store: Store) -> None:
    assert store.pbft_load() == (None, [])
    assert store.ledger_batches(0, 100) == []
    assert store.ledger_tx("nope") is None
    assert store.lanes() == {}


def test_inputs_are_logged_in_order(store: Store) -> None:
    store.pbft_commit([inp(1), inp(2)], [], [])
    store.pbft_commit([], [], [])
    store.pbft_commit([inp(3)], [], [])
    assert store.pbft_load() == (None, [inp(1), inp(2), inp(3)])


def test_load_returns_dump_and_only_later_inputs(store: Store) -> None:
    store.pbft_commit([inp(1), inp(2)], [], [])
    store.pbft_commit([inp(3)], [], [], dump=(128, b"state-128"))
    assert store.pbft_load() == (b"state-128", [])  # the dump supersedes the inputs of its own commit too
    store.pbft_commit([inp(4)], [], [])
    store.pbft_commit([inp(5), inp(6)], [], [])
    assert store.pbft_load() == (b"state-128", [inp(4), inp(5), inp(6)])
    store.pbft_commit([], [], [], dump=(256, b"state-256"))
    assert store.pbft_load() == (b"state-256", [])
    store.pbft_commit([inp(7)], [], [])
    assert store.pbft_load() == (b"state-256", [inp(7)])
    # One dump row only, replaced in place.
    rows = sqlite3.connect(store.path).execute("SELECT id, seq, state FROM pbft_state").fetchall()
    assert rows == [(1, 256, b"state-256")]


def test_empty_dump_is_a_dump(store: Store) -> None:
    store.pbft_commit([inp(1)], [], [])
    store.pbft_commit([], [], [], dump=(0, b""))
    assert store.pbft_load() == (b"", [])


@PROPS
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), max_size=12))
def test_load_model(db_path: Path, steps: list[tuple[int, bool]]) -> None:
    """Random commits, some with a dump: load gives the last dump and the inputs of the commits after it."""
    db_path.unlink(missing_ok=True)
    with Store(db_path) as s:
        dump: bytes | None = None
        since: list[tuple[str, str, bytes, float]] = []
        n = 0
        for k, with_dump in steps:
            new = [inp(n + i) for i in range(k)]
            n += k
            if with_dump:
                dump = f"dump-{n}".encode()
                s.pbft_commit(new, [], [], dump=(n, dump))
                since = []
            else:
                s.pbft_commit(new, [], [])
                since += new
            assert s.pbft_load() == (dump, since)


def test_commit_is_atomic(store: Store) -> None:
    store.pbft_commit([inp(1)], [batch(1)], [tx("t1", 1)], dump=(0, b"d0"))
    store.pbft_commit([inp(2)], [], [])
    before = (store.pbft_load(), store.ledger_batches(0, 100), store.ledger_tx("t1"))
    with pytest.raises(StoreError):
        # A bad batch (NULL ops) after good ones: the inputs and the batch before it roll back.
        store.pbft_commit([inp(3)], [batch(2), (3, 0, 0, None, b"")], [tx("t2", 2)], dump=(9, b"d9"))  # type: ignore[list-item]
    assert (store.pbft_load(), store.ledger_batches(0, 100), store.ledger_tx("t1")) == before
    assert store.ledger_tx("t2") is None
    store.pbft_commit([inp(4)], [], [])  # still usable, not left inside a transaction
    assert store.pbft_load() == (b"d0", [inp(2), inp(4)])


def test_failed_dump_keeps_earlier_inputs(store: Store) -> None:
    store.pbft_commit([inp(1)], [], [])
    # A failing dump (NULL state) must not have deleted the earlier inputs.
    with pytest.raises(StoreError):
        store.pbft_commit([inp(2)], [], [], dump=(5, None))  # type: ignore[arg-type]
    assert store.pbft_load() == (None, [inp(1)])


# ---------------------------------------------------------------- ledger

def test_ledger_batches_order_and_limit(store: Store) -> None:
    store.pbft_commit([], [batch(5), batch(2), batch(9)], [])
    store.pbft_commit([], [batch(1), batch(3)], [])
    assert [b[0] for b in store.ledger_batches(0, 100)] == [1, 2, 3, 5, 9]
    assert store.ledger_batches(0, 2) == [batch(1), batch(2)]
    assert store.ledger_batches(2, 2) == [batch(3), batch(5)]
    assert [b[0] for b in store.ledger_batches(3, 100)] == [5, 9]
    assert store.ledger_batches(9, 100) == []
    assert store.ledger_batches(0, 0) == []


def test_ledger_batch_rewritten_by_a_later_commit(store: Store) -> None:
    store.pbft_commit([], [batch(1, view=0)], [])
    store.pbft_commit([], [batch(1, view=3, results=b"again")], [])
    assert store.ledger_batches(0, 10) == [batch(1, view=3, results=b"again")]


def test_ledger_tx_first_receipt_wins(store: Store) -> None:
    store.pbft_commit([], [batch(1)], [tx("t1", 1, 0, "ok"), tx("t2", 1, 1, "rejected")])
    assert store.ledger_tx("t1") == (1, 0, "sender", "ok", "")
    store.pbft_commit([], [batch(2)], [tx("t1", 2, 0, "duplicate"), tx("t3", 2, 1)])
    assert store.ledger_tx("t1") == (1, 0, "sender", "ok", "")
    assert store.ledger_tx("t2") == (1, 1, "sender", "rejected", "")
    assert store.ledger_tx("t3") == (2, 1, "sender", "ok", "")
    # Within one commit too: the first of two receipts for one tx counts.
    store.pbft_commit([], [], [tx("t4", 3, 0, "first"), tx("t4", 3, 1, "second")])
    assert store.ledger_tx("t4") == (3, 0, "sender", "first", "")


def brute_gap(stored: set[int], upto: int, since: int) -> tuple[int, int] | None:
    missing = [n for n in range(since + 1, upto + 1) if n not in stored]
    if not missing:
        return None
    lo = hi = missing[0]
    while hi + 1 <= upto and hi + 1 not in stored:
        hi += 1
    return lo, hi


def test_ledger_gap_examples(store: Store) -> None:
    assert store.ledger_gap(0) is None
    assert store.ledger_gap(5) == (1, 5)
    store.pbft_commit([], [batch(n) for n in (1, 2, 3, 7, 8, 12)], [])
    assert store.ledger_gap(3) is None
    assert store.ledger_gap(5) == (4, 5)
    assert store.ledger_gap(20) == (4, 6)
    assert store.ledger_gap(20, since=3) == (4, 6)
    assert store.ledger_gap(20, since=7) == (9, 11)
    assert store.ledger_gap(20, since=8) == (9, 11)
    assert store.ledger_gap(12, since=12) is None
    assert store.ledger_gap(20, since=12) == (13, 20)
    assert store.ledger_gap(8, since=6) is None
    assert store.ledger_gap(2, since=5) is None  # upto below since


@PROPS
@given(
    st.sets(st.integers(1, 40), max_size=30),
    st.integers(0, 45),
    st.integers(0, 45),
    st.booleans(),
)
def test_ledger_gap_matches_brute_force(db_path: Path, stored: set[int], upto: int, since: int, since_stored: bool) -> None:
    db_path.unlink(missing_ok=True)
    if since_stored and stored:  # the documented use: `since` is a stored seq (or 0)
        since = sorted(stored)[since % len(stored)]
    with Store(db_path) as s:
        s.pbft_commit([], [batch(n) for n in sorted(stored)], [])
        got = s.ledger_gap(upto, since)
    assert got == brute_gap(stored, upto, since)
    if got is not None:
        lo, hi = got
        assert since < lo <= hi <= upto


# ---------------------------------------------------------------- client lanes

def test_lanes(store: Store) -> None:
    assert store.lanes() == {}
    store.lane_set(0, 1, 100, b"req-1")
    store.lane_set(3, 7, 50, None)
    assert store.lanes() == {0: (1, 100, b"req-1"), 3: (7, 50, None)}
    store.lane_set(0, 2, 101, b"req-2")  # the next request on the lane replaces the previous one
    assert store.lanes()[0] == (2, 101, b"req-2")
    store.lane_done(0)
    assert store.lanes() == {0: (2, 101, None), 3: (7, 50, None)}  # nonce and ts stay
    store.lane_done(0)  # idempotent
    store.lane_done(42)  # an unknown lane: nothing to do, nothing created
    assert store.lanes() == {0: (2, 101, None), 3: (7, 50, None)}
    store.lane_set(3, 8, 51, b"")  # an empty pending request is not None
    assert store.lanes()[3] == (8, 51, b"")


# ---------------------------------------------------------------- schema and persistence

EXPECTED_COLUMNS = {
    "pbft_state": ["id", "seq", "state"],
    "pbft_inputs": ["id", "kind", "sender", "payload", "at"],
    "ledger_batches": ["seq", "view", "executed_ms", "ops", "results"],
    "ledger_txs": ["tx_id", "seq", "idx", "sender", "status", "reason"],
    "client_lanes": ["lane", "nonce", "ts", "pending"],
}


def _columns(path: Path) -> dict[str, list[str]]:
    conn = sqlite3.connect(path)
    try:
        return {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in EXPECTED_COLUMNS}
    finally:
        conn.close()


def test_migrations_apply_from_scratch(db_path: Path) -> None:
    with Store(db_path) as s:
        assert s.schema_version == len(MIGRATIONS) == 3
    assert _columns(db_path) == EXPECTED_COLUMNS


def test_migrates_a_version_1_database(db_path: Path) -> None:
    # A node from before the federation: only the first script applied; its data stays.
    conn = sqlite3.connect(db_path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Store(db_path) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert s.meta_get("k") == "v"
        s.lane_set(1, 1, 1, b"p")
        assert s.lanes() == {1: (1, 1, b"p")}
    assert _columns(db_path) == EXPECTED_COLUMNS


def test_migrates_a_version_2_database(db_path: Path) -> None:
    # Lanes written before `pending` existed read back with no request in flight.
    conn = sqlite3.connect(db_path)
    conn.executescript(MIGRATIONS[0] + MIGRATIONS[1])
    conn.execute("INSERT INTO client_lanes (lane, nonce, ts) VALUES (2, 5, 9)")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with Store(db_path) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert s.lanes() == {2: (5, 9, None)}


def test_federation_data_survives_reopen(db_path: Path) -> None:
    with Store(db_path) as s:
        s.pbft_commit([inp(1)], [batch(1)], [tx("t1", 1)], dump=(64, b"dump"))
        s.pbft_commit([inp(2), inp(3)], [batch(2), batch(4)], [tx("t2", 2)])
        s.lane_set(0, 3, 30, b"pending")
        s.lane_set(1, 4, 40, None)
    with Store(db_path) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert s.pbft_load() == (b"dump", [inp(2), inp(3)])
        assert s.ledger_batches(0, 10) == [batch(1), batch(2), batch(4)]
        assert s.ledger_tx("t1") == (1, 0, "sender", "ok", "")
        assert s.ledger_tx("t2") == (2, 0, "sender", "ok", "")
        assert s.ledger_gap(4) == (3, 3)
        assert s.lanes() == {0: (3, 30, b"pending"), 1: (4, 40, None)}


def test_commit_survives_without_close(db_path: Path) -> None:
    s = Store(db_path)
    s.pbft_commit([inp(1)], [batch(1)], [tx("t1", 1)])
    other = Store(db_path)  # a second connection sees the committed write
    try:
        assert other.pbft_load() == (None, [inp(1)])
        assert other.ledger_tx("t1") == (1, 0, "sender", "ok", "")
    finally:
        other.close()
        s.close()


def test_closed_store_refuses_federation_calls(db_path: Path) -> None:
    s = Store(db_path)
    s.close()
    for call in (
        lambda: s.pbft_load(),
        lambda: s.pbft_commit([inp(1)], [], []),
        lambda: s.ledger_batches(0, 1),
        lambda: s.ledger_gap(3),
        lambda: s.ledger_tx("t"),
        lambda: s.lanes(),
        lambda: s.lane_set(0, 0, 0, None),
        lambda: s.lane_done(0),
    ):
        with pytest.raises(StoreError):
            call()
