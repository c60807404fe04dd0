"""node/home.py: the lock, the has-state marker, the key and store checks, and the verification of
the persisted federation state (a committee of one driven in-process: no network)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from keys.identity import Identity, KeyFileError, save_identity
from node import home as home_mod
from node.config import Config, load_config
from node.federation.host import FederationHost
from node.runtime import Call, Timer, clock
from node.home import (
    HomeLocked,
    HomeStateError,
    Marker,
    StartupError,
    StateCorrupt,
    explain_failure,
    load_key,
    lock_home,
    open_store,
    read_marker,
    verify_federation_state,
)
from node.store import Store, StoreError
from protocols.codec import decode, encode
from protocols.ledger import Genesis, make_genesis, sign_tx
from protocols.pbft import Request

ME = Identity.from_seed(b"\x07" * 32)
OTHER = Identity.from_seed(b"\x08" * 32).peer_id
K = 2  # checkpoint interval: a stable checkpoint (and a dump) every second batch


@pytest.fixture
def config(tmp_path: Path) -> Config:
    home = tmp_path / "h"
    home.mkdir(mode=0o700)
    return load_config(home=home, env={}, overrides={})


def _with_key(config: Config, identity: Identity = ME) -> Identity:
    save_identity(identity, config.key_path)
    return identity


# ------------------------------------------------------------------------------ the lock


def test_lock_is_exclusive_and_names_the_holder(config: Config) -> None:
    with lock_home(config.home):
        # Another process: flock locks belong to open file descriptions, so test across processes.
        code = (
            "import sys; from pathlib import Path; from node.home import lock_home, HomeLocked\n"
            "try:\n    lock_home(Path(sys.argv[1]))\nexcept HomeLocked as e:\n    print(e); sys.exit(7)\n"
        )
        r = subprocess.run([sys.executable, "-c", code, str(config.home)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 7, r.stderr
        assert f"process {os.getpid()}" in r.stdout and str(config.home) in r.stdout
    # Released: the next daemon may take it.
    with lock_home(config.home):
        pass


def test_lock_is_refused_within_a_process_too(config: Config) -> None:
    with lock_home(config.home):
        with pytest.raises(HomeLocked, match="in use"):
            lock_home(config.home)


def test_lock_is_not_inherited_by_children(config: Config) -> None:
    # A child that kept the descriptor would keep the home locked after the daemon exits.
    with lock_home(config.home) as lock:
        assert not os.get_inheritable(lock._fd)
    assert lock._fd == -1


# ------------------------------------------------------------------------------- the key


def test_a_fresh_home_without_a_key_is_told_to_run_init(config: Config) -> None:
    with pytest.raises(HomeStateError, match="run `sovereign --home .* init`"):
        load_key(config, None)
    assert not config.key_path.exists()  # never created here


def test_a_home_with_state_and_no_key_is_refused(config: Config) -> None:
    _with_key(config)
    open_store(config, ME).close()
    config.key_path.unlink()
    with pytest.raises(HomeStateError, match="has state of peer .*restore identity.key") as info:
        load_key(config, None)
    assert ME.peer_id in str(info.value)
    assert not config.key_path.exists()


def test_a_store_without_marker_also_counts_as_state(config: Config) -> None:
    Store(config.store_path).close()  # a home from before markers: the database alone
    with pytest.raises(HomeStateError, match="has state"):
        load_key(config, None)


def test_a_broken_key_is_its_own_error(config: Config) -> None:
    config.key_path.write_bytes(b"garbage")
    config.key_path.chmod(0o600)
    with pytest.raises(KeyFileError, match="corrupt"):
        load_key(config, None)


# ----------------------------------------------------------------------------- the store


def test_first_open_writes_the_marker_and_binds_the_store(config: Config) -> None:
    _with_key(config)
    assert read_marker(config.home) is None
    with open_store(config, ME) as store:
        marker = read_marker(config.home)
        assert marker is not None and marker.peer_id == ME.peer_id
        assert store.meta_get("store_id") == marker.store_id and store.meta_get("peer_id") == ME.peer_id
    with open_store(config, ME):  # the same home again: accepted, marker unchanged
        assert read_marker(config.home) == marker


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_lost_store_is_refused_not_started_fresh(config: Config, damage: str) -> None:
    _with_key(config)
    with open_store(config, ME) as store:
        store.bootstrap_add("/ip4/192.0.2.1/tcp/1/p2p/" + OTHER)
    for suffix in ("", "-wal", "-shm"):
        path = Path(str(config.store_path) + suffix)
        if damage == "delete" or suffix:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(b"")
    with pytest.raises(HomeStateError, match="empty|missing") as info:
        open_store(config, ME)
    assert "backup" in str(info.value)
    if damage == "delete":
        assert not config.store_path.exists()  # refused before SQLite could create a new one
    else:
        assert config.store_path.stat().st_size == 0


def test_a_replaced_store_is_refused(config: Config) -> None:
    _with_key(config)
    open_store(config, ME).close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(config.store_path) + suffix).unlink(missing_ok=True)
    with Store(config.store_path) as other:
        other.bootstrap_add("/ip4/192.0.2.1/tcp/1/p2p/" + OTHER)  # some other, non-empty database
    with pytest.raises(HomeStateError, match="not this home's store"):
        open_store(config, ME)


def test_another_key_is_refused(config: Config) -> None:
    _with_key(config)
    open_store(config, ME).close()
    stranger = Identity.from_seed(b"\x09" * 32)
    with pytest.raises(HomeStateError, match="belongs to peer"):
        open_store(config, stranger)
    # Without the marker too: the store itself records whose it is.
    (config.home / home_mod.MARKER_NAME).unlink()
    with pytest.raises(HomeStateError, match="belongs to peer"):
        open_store(config, stranger)


def test_a_damaged_marker_is_refused(config: Config) -> None:
    _with_key(config)
    open_store(config, ME).close()
    (config.home / home_mod.MARKER_NAME).write_text("{not json")
    with pytest.raises(HomeStateError, match="damaged"):
        open_store(config, ME)


def test_a_store_from_before_markers_is_adopted(config: Config) -> None:
    _with_key(config)
    with Store(config.store_path) as old:
        old.bootstrap_add("/ip4/192.0.2.1/tcp/1/p2p/" + OTHER)
    with open_store(config, ME) as store:
        assert store.bootstrap_list()  # its data kept
    assert read_marker(config.home) is not None


def test_a_damaged_store_is_refused(config: Config) -> None:
    _with_key(config)
    with open_store(config, ME) as store:
        for i in range(200):
            store.peer_upsert(f"peer-{i:04d}", ["/ip4/10.0.0.1/tcp/1"], i, bytes(300))
    import sqlite3

    conn = sqlite3.connect(config.store_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    conn.close()
    data = config.store_path.read_bytes()
    victim = data.index(b"peer-0100") // page
    with open(config.store_path, "r+b") as f:
        f.seek(victim * page)
        f.write(bytes((i * 37 + 11) % 256 for i in range(page)))
    with pytest.raises(StoreError, match="damaged"):
        open_store(config, ME)


# ------------------------------------------------------------------ the federation's state


class _Links:
    def send(self, peer: str, data: bytes) -> None:
        pass


def _genesis() -> Genesis:
    return make_genesis("home", (ME.peer_id,), {ME.peer_id: 1000}, K)


def _driver(store: Store, genesis: Genesis, me: Identity) -> FederationHost:
    noop: Any = lambda *a: None  # noqa: E731
    d = FederationHost(me, genesis, store, request_timeout=1.0, on_reply=noop, on_committed=noop, publish=noop, on_refused=noop)
    d.links = _Links()  # type: ignore[assignment]
    return d


def transfers(store: Store, genesis: Genesis, first: int, last: int, me: Identity = ME) -> None:
    """Transfers `first`..`last` (nonces) through a committee of one, `me`: one batch each."""

    async def main() -> None:
        d = _driver(store, genesis, me)
        for nonce in range(first, last + 1):
            tx = sign_tx(me, chain=genesis.chain_id, genesis=genesis.hash, lane=0, nonce=nonce, op="transfer", args={"to": OTHER, "amount": 10})
            d.turn([Call(0, Request(f"{me.peer_id}/0", nonce, tx))], clock())
            d.turn([Timer("batch")], clock())

    trio.run(main)


@pytest.fixture
def fed_store(tmp_path: Path) -> Iterator[tuple[Store, Genesis]]:
    genesis = _genesis()
    with Store(tmp_path / "fed.db") as store:
        yield store, genesis


def _dump(store: Store) -> tuple[int, dict[str, Any], dict[str, Any]]:
    state, _ = store.pbft_load()
    assert state is not None
    outer = decode(state, max_size=1 << 31, max_depth=4, max_items=1 << 20)
    inner = decode(outer["replica"], max_size=1 << 31, max_depth=16, max_items=1 << 26)
    return inner["stable_checkpoint"][0], outer, inner


def _put(store: Store, seq: int, outer: dict[str, Any], inner: dict[str, Any]) -> None:
    outer = dict(outer, replica=encode(inner))
    store.pbft_commit([], [], [], (seq, encode(outer)))


def move_coins(snapshot: bytes, amount: int) -> bytes:
    """The same total supply, another distribution: passes every check of the ledger itself."""
    obj = decode(snapshot, max_size=1 << 24, max_depth=8, max_items=1 << 20)
    accounts = obj[2]
    assert len(accounts) >= 2
    accounts[0][1] -= amount
    accounts[1][1] += amount
    return encode(obj)


def test_genesis_and_real_states_verify(fed_store: tuple[Store, Genesis]) -> None:
    store, genesis = fed_store
    verify_federation_state(store, genesis)  # nothing stored yet
    transfers(store, genesis, 1, 5)  # dumps at 2 and 4, one input logged after
    assert _dump(store)[0] == 4
    verify_federation_state(store, genesis)


def test_an_edited_stable_snapshot_is_refused(fed_store: tuple[Store, Genesis]) -> None:
    store, genesis = fed_store
    transfers(store, genesis, 1, 4)
    seq, outer, inner = _dump(store)
    inner["stable_snapshot"] = move_coins(inner["stable_snapshot"], 5)
    inner["app"] = inner["stable_snapshot"]  # consistently, as a careful editor would
    _put(store, seq, outer, inner)
    with pytest.raises(StateCorrupt, match="does not match its certified digest"):
        verify_federation_state(store, genesis)


def test_an_edited_snapshot_with_its_digest_is_refused(fed_store: tuple[Store, Genesis]) -> None:
    from protocols.pbft.view_checks import state_digest

    store, genesis = fed_store
    transfers(store, genesis, 1, 4)
    seq, outer, inner = _dump(store)
    inner["stable_snapshot"] = inner["app"] = move_coins(inner["stable_snapshot"], 5)
    inner["stable_checkpoint"] = [seq, state_digest(inner["stable_snapshot"], inner["stable_table"])]
    _put(store, seq, outer, inner)
    with pytest.raises(StateCorrupt, match="not certified"):
        verify_federation_state(store, genesis)


def test_an_edited_proof_is_refused(fed_store: tuple[Store, Genesis]) -> None:
    from protocols.pbft.messages import decode_message, encode_message
    from protocols.pbft.view_checks import state_digest

    store, genesis = fed_store
    transfers(store, genesis, 1, 4)
    seq, outer, inner = _dump(store)
    inner["stable_snapshot"] = inner["app"] = move_coins(inner["stable_snapshot"], 5)
    digest = state_digest(inner["stable_snapshot"], inner["stable_table"])
    inner["stable_checkpoint"] = [seq, digest]
    proof = [decode_message(b) for b in inner["stable_proof"]]
    inner["stable_proof"] = [encode_message(type(c)(c.seq, digest, c.sender, c.sig)) for c in proof]
    _put(store, seq, outer, inner)
    with pytest.raises(StateCorrupt, match="not certified .*signature"):
        verify_federation_state(store, genesis)


def test_an_edited_current_state_is_refused(fed_store: tuple[Store, Genesis]) -> None:
    store, genesis = fed_store
    transfers(store, genesis, 1, 4)
    seq, outer, inner = _dump(store)
    inner["app"] = move_coins(inner["app"], 5)  # the state after the checkpoint, not the snapshot
    _put(store, seq, outer, inner)
    with pytest.raises(StateCorrupt, match="not what the batches"):
        verify_federation_state(store, genesis)


def test_the_state_past_the_checkpoint_is_re_executed(tmp_path: Path) -> None:
    """A dump whose replica executed past its stable checkpoint (stable at 2, executed through 4):
    the current state is what batches 3 and 4 make of the certified snapshot at 2."""
    genesis = _genesis()
    with Store(tmp_path / "a.db") as store:
        transfers(store, genesis, 1, 2)
        _, _, at2 = _dump(store)
        transfers(store, genesis, 3, 4)
        seq, outer, at4 = _dump(store)
        assert seq == 4
        past = dict(at2, app=at4["app"], clients=at4["clients"], last_executed=4)
        _put(store, 2, outer, past)
        verify_federation_state(store, genesis)
        _put(store, 2, outer, dict(past, app=move_coins(at4["app"], 1)))
        with pytest.raises(StateCorrupt, match="not what the batches 3..4"):
            verify_federation_state(store, genesis)
        _put(store, 2, outer, dict(past, last_executed=5))  # a batch it claims and the store lacks
        with pytest.raises(StateCorrupt, match="batch 5, .*missing"):
            verify_federation_state(store, genesis)


@pytest.mark.parametrize(
    "garbage", [b"", b"\xc1", encode({"v": 99}), encode([1, 2]), encode({"v": 1, "replica": b"\x93\x01"})]
)
def test_an_undecodable_dump_is_refused(fed_store: tuple[Store, Genesis], garbage: bytes) -> None:
    store, genesis = fed_store
    store.pbft_commit([], [], [], (2, garbage))
    with pytest.raises(StateCorrupt, match="federation state"):
        verify_federation_state(store, genesis)


def test_a_malformed_logged_input_is_refused(fed_store: tuple[Store, Genesis]) -> None:
    store, genesis = fed_store
    transfers(store, genesis, 1, 1)
    store.pbft_commit([("message", OTHER, b"\xc1garbage", 1.0)], [], [])
    with pytest.raises(StateCorrupt, match="logged federation input"):
        verify_federation_state(store, genesis)


def test_a_dump_of_another_genesis_is_refused(fed_store: tuple[Store, Genesis]) -> None:
    store, genesis = fed_store
    transfers(store, genesis, 1, 2)
    other = make_genesis("home", (ME.peer_id,), {ME.peer_id: 1000, OTHER: 1}, K)
    with pytest.raises(StateCorrupt):
        verify_federation_state(store, other)


# ------------------------------------------------------------------ what a failed start says


def test_expected_failures_are_explained_even_in_groups() -> None:
    from node.control import ControlSocketInUse

    assert explain_failure(StartupError("no key")) == "no key"
    group = BaseExceptionGroup("outer", [ExceptionGroup("inner", [ControlSocketInUse("in use")]), FileExistsError(17, "exists")])
    message = explain_failure(group)
    assert message is not None and "in use" in message and "exists" in message


def test_unexpected_failures_are_not_explained() -> None:
    assert explain_failure(TypeError("a bug")) is None
    assert explain_failure(ExceptionGroup("g", [StoreError("x"), ZeroDivisionError()])) is None
    assert explain_failure(KeyboardInterrupt()) is None


def test_marker_round_trip(config: Config) -> None:
    home_mod.write_marker(config.home, Marker("abc", ME.peer_id))
    assert read_marker(config.home) == Marker("abc", ME.peer_id)
    assert oct((config.home / home_mod.MARKER_NAME).stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in config.home.iterdir()] == [home_mod.MARKER_NAME]  # no temp file left


# ------------------------------------------------------------------ decoders under garbage

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.binary(max_size=40) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_any_marker_file_reads_or_is_refused(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    home = tmp_path_factory.mktemp("m")
    (home / home_mod.MARKER_NAME).write_bytes(data)
    try:
        marker = read_marker(home)
    except HomeStateError:
        return
    assert isinstance(marker, Marker) and marker.store_id and marker.peer_id


_REAL: dict[str, Any] = {}


def _real_dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """One real store with a checkpointed dump, made once and copied for every example."""
    if not _REAL:
        path = tmp_path_factory.mktemp("real") / "fed.db"
        with Store(path) as store:
            transfers(store, _genesis(), 1, 4)
            _, outer, inner = _dump(store)
        _REAL.update(path=path, outer=outer, inner=inner)
    return _REAL["path"], _REAL["outer"], _REAL["inner"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_edit_of_the_dump_verifies_or_is_refused(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    import shutil

    source, outer, inner = _real_dump(tmp_path_factory)
    path = tmp_path_factory.mktemp("e") / "fed.db"
    shutil.copy(source, path)
    layer = data.draw(st.sampled_from(["outer", "inner", "bytes"]))
    if layer == "bytes":
        blob = bytearray(encode(dict(outer, replica=encode(inner))))
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
        state = bytes(blob)
    else:
        target = dict(outer if layer == "outer" else inner)
        target[data.draw(st.sampled_from(sorted(target)))] = data.draw(VALUES)
        state = encode(target) if layer == "outer" else encode(dict(outer, replica=encode(target)))
    with Store(path) as store:
        store.pbft_commit([], [], [], (4, state))
        try:
            verify_federation_state(store, _genesis())
        except StateCorrupt:
            pass
