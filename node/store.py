"""The daemon's SQLite store: bootstrap list, known peers, metadata (later: PBFT log, ledger).

Durability: WAL with ``synchronous=NORMAL`` commits survive a process crash (``kill -9``), which is
what "acknowledged" means for a node; only an OS crash or power loss can drop the last commits.
Every public write is its own committed transaction.

Threading: one ``sqlite3`` connection shared behind a lock, so a Store may be called from any
thread (the daemon uses ``trio.to_thread``), one call at a time. Calls are short; nothing holds
the lock across I/O other than SQLite's own.

Schema: ``MIGRATIONS[i]`` upgrades ``PRAGMA user_version`` from i to i + 1. New tables are new
scripts appended to the list; an applied script is never edited.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["KnownPeer", "MIGRATIONS", "Store", "StoreError"]

# How long a writer waits for another connection's lock (another process, e.g. a CLI tool)
# before failing with "database is locked".
BUSY_TIMEOUT_MS: Final = 5000
# quick_check stops after this many problems: enough to name the damage in one message.
_INTEGRITY_PROBLEMS: Final = 3
_RESTORE_HINT: Final = "restore it from a backup"

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: bootstrap list, known peers, metadata.
    """
    CREATE TABLE bootstrap (
        id INTEGER PRIMARY KEY,          -- insertion order, so the list reads back as added
        addr TEXT NOT NULL UNIQUE
    );
    CREATE TABLE peers (
        peer_id TEXT PRIMARY KEY,
        addrs TEXT NOT NULL,             -- JSON array of multiaddr strings
        last_seen_ms INTEGER NOT NULL,
        card BLOB
    );
    CREATE INDEX peers_by_last_seen ON peers (last_seen_ms DESC);
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 2: the federation. PBFT's durable state is its last full dump (taken at each stable
    # checkpoint) plus every input fed to the replica since, in order: the replica is
    # deterministic, so replaying the inputs rebuilds exactly what it had promised before a crash.
    # Executed batches and their receipts are the node's copy of the committed ledger.
    """
    CREATE TABLE pbft_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,            -- the stable checkpoint this dump was taken at
        state BLOB NOT NULL
    );
    CREATE TABLE pbft_inputs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,              -- message | request | timer
        sender TEXT NOT NULL,
        payload BLOB NOT NULL,
        at REAL NOT NULL                 -- the replica's `now` when fed
    );
    CREATE TABLE ledger_batches (
        seq INTEGER PRIMARY KEY,
        view INTEGER NOT NULL,
        executed_ms INTEGER NOT NULL,
        ops BLOB NOT NULL,               -- msgpack list of [client_id, timestamp, op]
        results BLOB NOT NULL            -- msgpack list of result bytes
    );
    CREATE TABLE ledger_txs (
        tx_id TEXT PRIMARY KEY,          -- the first receipt of a tx is the one that counts
        seq INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        sender TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE TABLE client_lanes (
        lane INTEGER PRIMARY KEY,
        nonce INTEGER NOT NULL,          -- the last nonce this node signed on the lane
        ts INTEGER NOT NULL              -- the last PBFT request timestamp used on it
    );
    """,
    # 3: a lane's request in flight (its signed tx), retransmitted after a restart until the
    # committee answers: abandoning it would leave a nonce gap that refuses the lane forever.
    """
    ALTER TABLE client_lanes ADD COLUMN pending BLOB;
    """,
)


class StoreError(Exception):
    """The store cannot be opened or used; the message names the file."""


@dataclass(frozen=True)
class KnownPeer:
    peer_id: str
    addrs: tuple[str, ...]
    last_seen_ms: int
    card: bytes | None


def _statements(script: str) -> Iterator[str]:
    # Split on ';' but only where SQLite agrees a statement ends, so semicolons inside strings or
    # trigger bodies stay put. executescript() is no use here: it commits first, which would
    # break the one-transaction-per-migration rule.
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \t\n;"):
                yield buffer
            buffer = ""
    if buffer.strip(" \t\n;"):
        raise ValueError(f"incomplete SQL statement in migration: {buffer.strip()!r}")


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._create_private_file()
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # autocommit; transactions are explicit BEGIN/COMMIT
                check_same_thread=False,  # the lock serialises access instead
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open database: {exc}") from None
        try:
            self._configure()
            self._migrate()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    def _create_private_file(self) -> None:
        # SQLite would create the file 0644 (minus umask) and gives its -wal/-shm files the main
        # file's mode, so creating it 0600 first keeps all three private.
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open database file: {exc.strerror}") from None
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    def _configure(self) -> None:
        conn = self._require()
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path}: not a usable SQLite database ({exc}); {_RESTORE_HINT}"
            ) from None
        if str(mode).lower() != "wal":
            raise StoreError(f"{self.path}: cannot enable WAL journal mode (got {mode!r})")

    def _migrate(self) -> None:
        conn = self._require()
        target = len(MIGRATIONS)
        try:
            # IMMEDIATE takes the write lock before reading the version, so two processes
            # opening a fresh file cannot both apply the same migration.
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > target:
                    raise StoreError(
                        f"{self.path}: schema version {version} is newer than this program "
                        f"understands ({target}); upgrade sovereign"
                    )
                for index in range(version, target):
                    for statement in _statements(MIGRATIONS[index]):
                        conn.execute(statement)
                    # user_version lives in the database header, so it commits with the DDL.
                    conn.execute(f"PRAGMA user_version = {index + 1}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: schema migration failed: {exc}") from None

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: store is closed")
        return self._conn

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._require().execute("PRAGMA user_version").fetchone()[0])

    def check_integrity(self) -> None:
        """SQLite's ``quick_check`` (every page and B-tree of the file, without cross-checking index
        contents: linear in the file's size); StoreError naming the first problems if it is damaged.
        A damaged page would otherwise surface later, as a failed call or a crash mid-run."""
        with self._lock:
            conn = self._require()
            try:
                rows = conn.execute(f"PRAGMA quick_check({_INTEGRITY_PROBLEMS})").fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path}: the database is damaged ({exc}); {_RESTORE_HINT}") from None
        problems = [str(row[0]) for row in rows]
        if problems != ["ok"]:
            raise StoreError(f"{self.path}: the database is damaged ({'; '.join(problems)}); {_RESTORE_HINT}")

    def close(self) -> None:
        """Close the connection; further calls raise StoreError. Safe to call twice."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write(self, sql: str, params: tuple[object, ...]) -> int:
        """Run one statement as one committed transaction; return the rows changed."""
        with self._lock:
            conn = self._require()
            try:
                # Autocommit mode: a single statement is its own transaction, committed on return.
                return conn.execute(sql, params).rowcount
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path}: write failed: {exc}") from None

    def _read(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._require()
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path}: read failed: {exc}") from None

    # --- bootstrap list --------------------------------------------------------------------

    def bootstrap_list(self) -> list[str]:
        return [str(row[0]) for row in self._read("SELECT addr FROM bootstrap ORDER BY id", ())]

    def bootstrap_add(self, addr: str) -> bool:
        """Remember a bootstrap address; False if it was already there."""
        _require_text("addr", addr)
        return self._write("INSERT OR IGNORE INTO bootstrap (addr) VALUES (?)", (addr,)) == 1

    def bootstrap_remove(self, addr: str) -> bool:
        """Forget a bootstrap address; False if it was not there."""
        _require_text("addr", addr)
        return self._write("DELETE FROM bootstrap WHERE addr = ?", (addr,)) == 1

    # --- known peers -----------------------------------------------------------------------

    def peer_upsert(
        self, peer_id: str, addrs: list[str], last_seen_ms: int, card: bytes | None
    ) -> None:
        """Record a sighting. Addresses are replaced; last_seen_ms never goes backwards (a late,
        older report must not age a peer); card None keeps the card already stored."""
        _require_text("peer_id", peer_id)
        if isinstance(addrs, str) or not all(isinstance(a, str) and a for a in addrs):
            raise ValueError(f"addrs must be a list of non-empty strings, got {addrs!r}")
        if isinstance(last_seen_ms, bool) or not isinstance(last_seen_ms, int) or last_seen_ms < 0:
            raise ValueError(f"last_seen_ms must be a non-negative int, got {last_seen_ms!r}")
        if card is not None and not isinstance(card, (bytes, bytearray, memoryview)):
            raise ValueError(f"card must be bytes or None, got {type(card).__name__}")
        self._write(
            """
            INSERT INTO peers (peer_id, addrs, last_seen_ms, card) VALUES (?, ?, ?, ?)
            ON CONFLICT (peer_id) DO UPDATE SET
                addrs = excluded.addrs,
                last_seen_ms = max(peers.last_seen_ms, excluded.last_seen_ms),
                card = coalesce(excluded.card, peers.card)
            """,
            (peer_id, json.dumps(list(addrs)), last_seen_ms, None if card is None else bytes(card)),
        )

    def peers_known(self, limit: int = 1000) -> list[KnownPeer]:
        """Known peers, most recently seen first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a non-negative int, got {limit!r}")
        rows = self._read(
            "SELECT peer_id, addrs, last_seen_ms, card FROM peers"
            " ORDER BY last_seen_ms DESC, peer_id LIMIT ?",
            (limit,),
        )
        return [
            KnownPeer(
                peer_id=str(peer_id),
                addrs=tuple(json.loads(str(addrs))),
                last_seen_ms=int(last_seen_ms),  # type: ignore[call-overload]
                card=None if card is None else bytes(card),  # type: ignore[arg-type,call-overload]
            )
            for peer_id, addrs, last_seen_ms, card in rows
        ]

    def peer_forget(self, peer_id: str) -> None:
        _require_text("peer_id", peer_id)
        self._write("DELETE FROM peers WHERE peer_id = ?", (peer_id,))

    # --- federation ------------------------------------------------------------------------

    def pbft_load(self) -> tuple[bytes | None, list[tuple[str, str, bytes, float]]]:
        """The last dump (or None) and every input logged after it, oldest first."""
        rows = self._read("SELECT state FROM pbft_state WHERE id = 1", ())
        inputs = self._read("SELECT kind, sender, payload, at FROM pbft_inputs ORDER BY id", ())
        state = bytes(rows[0][0]) if rows else None
        return state, [(str(k), str(s), bytes(p), float(a)) for k, s, p, a in inputs]

    def pbft_commit(
        self,
        inputs: list[tuple[str, str, bytes, float]],
        batches: list[tuple[int, int, int, bytes, bytes]],
        txs: list[tuple[str, int, int, str, str, str]],
        dump: tuple[int, bytes] | None = None,
    ) -> None:
        """One transaction: new inputs, executed batches and their receipts, and optionally a new
        dump (which supersedes every input logged so far, these included)."""
        with self._lock:
            conn = self._require()
            try:
                conn.execute("BEGIN")
                try:
                    if inputs:
                        conn.executemany("INSERT INTO pbft_inputs (kind, sender, payload, at) VALUES (?, ?, ?, ?)", inputs)
                    if batches:
                        conn.executemany(
                            "INSERT OR REPLACE INTO ledger_batches (seq, view, executed_ms, ops, results) VALUES (?, ?, ?, ?, ?)",
                            batches,
                        )
                    if txs:
                        conn.executemany(
                            "INSERT OR IGNORE INTO ledger_txs (tx_id, seq, idx, sender, status, reason) VALUES (?, ?, ?, ?, ?, ?)",
                            txs,
                        )
                    if dump is not None:
                        conn.execute("DELETE FROM pbft_inputs")
                        conn.execute(
                            "INSERT INTO pbft_state (id, seq, state) VALUES (1, ?, ?)"
                            " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, state = excluded.state",
                            dump,
                        )
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path}: write failed: {exc}") from None

    def ledger_batches(self, since: int, limit: int) -> list[tuple[int, int, int, bytes, bytes]]:
        rows = self._read(
            "SELECT seq, view, executed_ms, ops, results FROM ledger_batches WHERE seq > ? ORDER BY seq LIMIT ?",
            (since, limit),
        )
        return [(int(a), int(b), int(c), bytes(d), bytes(e)) for a, b, c, d, e in rows]

    def ledger_gap(self, upto: int, since: int = 0) -> tuple[int, int] | None:
        """The first run of sequence numbers in since+1..upto with no stored batch (a state
        transfer jumped over them), as (first, last); None when that part of the log is complete.
        `since` must be a seq known to be stored (or 0)."""
        rows = self._read("SELECT 1 FROM ledger_batches WHERE seq = ?", (since + 1,))
        if not rows:
            lo = since + 1
        else:
            found = self._read(
                "SELECT a.seq + 1 FROM ledger_batches a LEFT JOIN ledger_batches b ON b.seq = a.seq + 1"
                " WHERE b.seq IS NULL AND a.seq > ? AND a.seq < ? ORDER BY a.seq LIMIT 1",
                (since, upto),
            )
            if not found:
                return None
            lo = int(found[0][0])
        if lo > upto:
            return None
        nxt = self._read("SELECT MIN(seq) FROM ledger_batches WHERE seq > ?", (lo,))
        hi = upto if nxt[0][0] is None else min(upto, int(nxt[0][0]) - 1)
        return lo, hi

    def ledger_tx(self, tx_id: str) -> tuple[int, int, str, str, str] | None:
        rows = self._read("SELECT seq, idx, sender, status, reason FROM ledger_txs WHERE tx_id = ?", (tx_id,))
        if not rows:
            return None
        seq, idx, sender, status, reason = rows[0]
        return int(seq), int(idx), str(sender), str(status), str(reason)

    def lanes(self) -> dict[int, tuple[int, int, bytes | None]]:
        """lane -> (last nonce, last timestamp, the encoded request still in flight or None)."""
        rows = self._read("SELECT lane, nonce, ts, pending FROM client_lanes", ())
        return {int(l): (int(n), int(t), None if p is None else bytes(p)) for l, n, t, p in rows}

    def lane_set(self, lane: int, nonce: int, ts: int, pending: bytes | None) -> None:
        self._write(
            "INSERT INTO client_lanes (lane, nonce, ts, pending) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (lane) DO UPDATE SET nonce = excluded.nonce, ts = excluded.ts, pending = excluded.pending",
            (lane, nonce, ts, pending),
        )

    def lane_done(self, lane: int) -> None:
        self._write("UPDATE client_lanes SET pending = NULL WHERE lane = ?", (lane,))

    # --- metadata --------------------------------------------------------------------------

    def meta_get(self, key: str) -> str | None:
        _require_text("key", key)
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def meta_set(self, key: str, value: str) -> None:
        _require_text("key", key)
        if not isinstance(value, str):
            raise ValueError(f"value must be a string, got {type(value).__name__}")
        self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
