from __future__ import annotations

import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import node.store as store_module
from node.store import MIGRATIONS, KnownPeer, Store, StoreError

A = "/ip4/192.0.2.1/tcp/4100/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
B = "/ip4/192.0.2.2/tcp/4100/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sovereign.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as opened:
        yield opened


def test_bootstrap_round_trip(store: Store) -> None:
    assert store.bootstrap_list() == []
    assert store.bootstrap_add(B)
    assert store.bootstrap_add(A)
    assert not store.bootstrap_add(B)  # idempotent
    assert store.bootstrap_list() == [B, A]  # insertion order
    assert store.bootstrap_remove(B)
    assert not store.bootstrap_remove(B)
    assert store.bootstrap_list() == [A]


def test_peers_round_trip(store: Store) -> None:
    store.peer_upsert("p1", ["/ip4/1.1.1.1/tcp/1"], 1000, b"card-1")
    store.peer_upsert("p2", [], 3000, None)
    store.peer_upsert("p3", ["/ip4/3.3.3.3/tcp/3", "/ip6/::1/tcp/3"], 2000, b"")
    assert store.peers_known() == [
        KnownPeer("p2", (), 3000, None),
        KnownPeer("p3", ("/ip4/3.3.3.3/tcp/3", "/ip6/::1/tcp/3"), 2000, b""),
        KnownPeer("p1", ("/ip4/1.1.1.1/tcp/1",), 1000, b"card-1"),
    ]
    assert [p.peer_id for p in store.peers_known(limit=2)] == ["p2", "p3"]
    assert store.peers_known(limit=0) == []
    store.peer_forget("p3")
    store.peer_forget("absent")
    assert [p.peer_id for p in store.peers_known()] == ["p2", "p1"]


def test_peer_upsert_merges(store: Store) -> None:
    store.peer_upsert("p", ["/ip4/1.1.1.1/tcp/1"], 5000, b"old card")
    # A newer sighting without a card keeps the card and replaces the addresses.
    store.peer_upsert("p", ["/ip4/2.2.2.2/tcp/2"], 6000, None)
    assert store.peers_known() == [KnownPeer("p", ("/ip4/2.2.2.2/tcp/2",), 6000, b"old card")]
    # A late, older report never moves last_seen backwards.
    store.peer_upsert("p", ["/ip4/2.2.2.2/tcp/2"], 10, b"new card")
    assert store.peers_known() == [KnownPeer("p", ("/ip4/2.2.2.2/tcp/2",), 6000, b"new card")]


def test_meta(store: Store) -> None:
    assert store.meta_get("k") is None
    store.meta_set("k", "v1")
    store.meta_set("k", "v2")
    assert store.meta_get("k") == "v2"


def test_persists_across_reopen(db_path: Path) -> None:
    with Store(db_path) as first:
        first.bootstrap_add(A)
        first.peer_upsert("p", ["/ip4/1.1.1.1/tcp/1"], 42, b"\x00\xff")
        first.meta_set("started", "yes")
    with Store(db_path) as second:
        assert second.bootstrap_list() == [A]
        assert second.peers_known() == [KnownPeer("p", ("/ip4/1.1.1.1/tcp/1",), 42, b"\x00\xff")]
        assert second.meta_get("started") == "yes"
        assert second.schema_version == len(MIGRATIONS)


def test_writes_are_committed_without_close(db_path: Path) -> None:
    # Each write is its own transaction: another connection sees it at once (what survives kill -9).
    store = Store(db_path)
    try:
        store.bootstrap_add(A)
        store.meta_set("k", "v")
        other = sqlite3.connect(db_path)
        try:
            assert other.execute("SELECT addr FROM bootstrap").fetchall() == [(A,)]
            assert other.execute("SELECT value FROM meta").fetchall() == [("v",)]
        finally:
            other.close()
    finally:
        store.close()


def test_pragmas(store: Store, db_path: Path) -> None:
    conn = store._require()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == store_module.BUSY_TIMEOUT_MS


def test_files_are_private(store: Store, db_path: Path) -> None:
    store.meta_set("k", "v")  # make sure -wal and -shm exist
    for path in [db_path, db_path.with_name(db_path.name + "-wal"), db_path.with_name(db_path.name + "-shm")]:
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_existing_loose_file_is_tightened(db_path: Path) -> None:
    db_path.touch(mode=0o644)
    db_path.chmod(0o644)
    Store(db_path).close()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_migrates_an_empty_file(db_path: Path) -> None:
    db_path.write_bytes(b"")
    with Store(db_path) as store:
        assert store.schema_version == len(MIGRATIONS)
        assert store.bootstrap_list() == []


def test_appended_migration_applies_once(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store(db_path) as store:
        store.meta_set("k", "v")
    extra = "CREATE TABLE later (x TEXT); INSERT INTO later VALUES ('a;b');"
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, extra))
    for _ in range(2):
        with Store(db_path) as store:
            assert store.schema_version == len(MIGRATIONS) + 1
            assert store._require().execute("SELECT x FROM later").fetchall() == [("a;b",)]
            assert store.meta_get("k") == "v"


def test_failed_migration_rolls_back(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store(db_path).close()
    broken = "CREATE TABLE half (x TEXT); INSERT INTO nowhere VALUES (1);"
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, broken))
    with pytest.raises(StoreError, match="migration failed.*nowhere"):
        Store(db_path)
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS)
    with Store(db_path) as store:
        assert store.schema_version == len(MIGRATIONS)
        tables = store._require().execute("SELECT name FROM sqlite_master WHERE name = 'half'")
        assert tables.fetchall() == []


def test_newer_schema_is_refused(db_path: Path) -> None:
    Store(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this program"):
        Store(db_path)


def test_corrupt_file(db_path: Path) -> None:
    db_path.write_bytes(b"this is not a database, it is a grocery list\n" * 100)
    with pytest.raises(StoreError) as info:
        Store(db_path)
    assert str(db_path) in str(info.value) and "not a usable SQLite database" in str(info.value)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        Store(tmp_path / "absent" / "sovereign.db")


def test_closed_store(db_path: Path) -> None:
    store = Store(db_path)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.bootstrap_list()


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.bootstrap_add(""),
        lambda s: s.bootstrap_remove(None),
        lambda s: s.peer_upsert("", [], 1, None),
        lambda s: s.peer_upsert("p", "/ip4/1.1.1.1/tcp/1", 1, None),
        lambda s: s.peer_upsert("p", [1], 1, None),
        lambda s: s.peer_upsert("p", [], -1, None),
        lambda s: s.peer_upsert("p", [], 1.5, None),
        lambda s: s.peer_upsert("p", [], 1, "card"),
        lambda s: s.peers_known(limit=-1),
        lambda s: s.meta_set("k", 3),
        lambda s: s.meta_get(""),
    ],
)
def test_bad_input(store: Store, call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        call(store)


def test_usable_from_several_threads(store: Store) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                store.meta_set(f"t{n}-{i}", str(i))
                store.peer_upsert(f"peer{n}", [], i, None)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.peers_known()) == 4
    assert store.meta_get("t3-49") == "49"


def _store_with_pages(path: Path, pages: int = 12) -> int:
    """A real store whose peers table spans several pages; returns the page size."""
    with Store(path) as s:
        for i in range(pages * 8):
            s.peer_upsert(f"peer-{i:04d}", [f"/ip4/10.0.{i // 256}.{i % 256}/tcp/4100"], i, bytes(400))
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the main file
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def test_intact_store_passes_the_integrity_check(db_path: Path) -> None:
    _store_with_pages(db_path)
    with Store(db_path) as s:
        s.check_integrity()


@pytest.mark.parametrize("row", ["peer-0010", "peer-0050", "peer-0090"])
@pytest.mark.parametrize("start", [0, 8])  # the whole page, or its cells only (header intact)
def test_garbage_in_a_data_page_is_a_clear_error(db_path: Path, row: str, start: int) -> None:
    page_size = _store_with_pages(db_path)
    data = db_path.read_bytes()
    victim = data.index(row.encode()) // page_size  # the page that holds this row
    assert victim >= 2  # not the header page: the file still opens
    with open(db_path, "r+b") as f:
        f.seek(victim * page_size + start)
        f.write(bytes((i * 151 + 7) % 256 for i in range(page_size - start)))
    # Opening still works (the header and the schema are intact): only the check sees it.
    with Store(db_path) as s:
        with pytest.raises(StoreError, match="database is damaged") as info:
            s.check_integrity()
    assert str(db_path) in str(info.value) and "backup" in str(info.value)
