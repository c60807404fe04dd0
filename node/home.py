"""A daemon's home at start: its lock, its "has state" marker, and the checks made before any
service opens.

The order (`sovereign daemon`, then `daemon.run`):

1. ``lock_home``: an exclusive ``flock`` on ``<home>/home.lock``, held for the daemon's life. One
   daemon per home, whatever control socket it is given: two processes on one key and one SQLite
   file would each speak as the node, and the peers would see the real replica go dead.
2. ``load_key``: the identity key. Never created here (only ``sovereign init`` creates keys): a
   key regenerated beside the old state is another node that the federation does not know.
3. ``open_store``: the store. The marker ``<home>/has-state``, written once a store has been
   opened in this home, says the home has state; then a missing or empty ``sovereign.db`` is lost
   data, not a fresh start. The file must pass SQLite's ``quick_check``, and must be this home's
   store (the store id in the marker) of this key (the peer id in both).
4. ``verify_federation_state``: the persisted PBFT state must match what its checkpoints certify:
   the stable snapshot its digest and 2f+1 signed CHECKPOINTs, the current ledger state what
   re-executing the stored batches from that snapshot gives.

Each failure is a StartupError whose message says what is wrong and what to do; the daemon exits 4
(see ``explain_failure``) and has changed nothing. The marker lives outside the database because
its whole point is to survive the database's loss.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from keys.identity import Identity, KeyFileError, KeyFileMissingError, load_identity
from node.config import Config, ConfigError
from node.store import Store, StoreError
from protocols.codec import decode
from protocols.errors import ProtocolError
from protocols.ledger import Genesis, Ledger

__all__ = [
    "HomeLock",
    "HomeLocked",
    "HomeStateError",
    "LOCK_NAME",
    "MARKER_NAME",
    "Marker",
    "StartupError",
    "StateCorrupt",
    "explain_failure",
    "load_key",
    "lock_home",
    "open_store",
    "read_marker",
    "verify_federation_state",
]

log = logging.getLogger("sovereign.home")

LOCK_NAME: Final = "home.lock"
MARKER_NAME: Final = "has-state"
_MARKER_FORMAT: Final = 1
_MAX_MARKER_BYTES: Final = 4096
# Store metadata keys (the meta table) that tie a database to its home and its key.
META_STORE_ID: Final = "store_id"
META_PEER_ID: Final = "peer_id"


class StartupError(Exception):
    """The daemon cannot start; the message says why and what to do."""


class HomeLocked(StartupError):
    """Another process holds the home's lock."""


class HomeStateError(StartupError):
    """The home's files disagree: state without its store or its key, a foreign store or key."""


class StateCorrupt(StartupError):
    """Persisted state that does not verify (digests, certificates, undecodable records)."""


# --------------------------------------------------------------------------------- the lock


class HomeLock:
    """The home's exclusive lock; released by `release` (or when the process exits, however)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1

    def __enter__(self) -> HomeLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def lock_home(home: Path) -> HomeLock:
    """Take ``<home>/home.lock`` (flock, exclusive, non-blocking) and write our pid in it.

    The file stays after the daemon exits: unlinking it would let a second daemon lock a new file
    while a third still holds the old one. The kernel drops the lock with the process, so a
    ``kill -9`` leaves nothing stale behind."""
    path = Path(home) / LOCK_NAME
    try:
        # CLOEXEC: a sibling daemon this one spawns must not inherit (and keep) our lock.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StartupError(f"cannot open the home's lock file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _read_pid(fd)
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StartupError(f"cannot lock {path}: {exc.strerror}") from None
        who = f"process {holder}" if holder is not None else "another process"
        raise HomeLocked(
            f"home {home} is in use: {who} holds {path} (a daemon already runs on this home). "
            "Stop it first, or give this daemon a home of its own (--home)"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise StartupError(f"cannot write {path}: {exc.strerror}") from None
    return HomeLock(path, fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and len(text) < 12 else None


# ------------------------------------------------------------------------------- the marker


@dataclass(frozen=True)
class Marker:
    """What ``<home>/has-state`` records: which store this home has, and whose it is."""

    store_id: str
    peer_id: str


def read_marker(home: Path) -> Marker | None:
    """The home's marker, or None when it has none (a fresh home, or one from before markers)."""
    path = Path(home) / MARKER_NAME
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_MARKER_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HomeStateError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if len(data) > _MAX_MARKER_BYTES:
            raise ValueError("too large")
        obj = json.loads(data)
        if not isinstance(obj, dict) or obj.get("v") != _MARKER_FORMAT:
            raise ValueError("unknown format")
        store_id, peer_id = obj["store_id"], obj["peer_id"]
        if not (isinstance(store_id, str) and store_id and isinstance(peer_id, str) and peer_id):
            raise ValueError("bad fields")
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        # Refused, not ignored: ignoring it is exactly what would let a lost store start fresh.
        raise HomeStateError(
            f"{path} is damaged ({exc}); it says this home has state. Restore it from a backup, "
            f"or, if {path.parent / 'sovereign.db'} really is this home's store, delete {path} to re-adopt it"
        ) from None
    return Marker(store_id, peer_id)


def write_marker(home: Path, marker: Marker) -> None:
    """Atomically (temp file, fsync, rename, fsync of the directory): a half-written marker would
    refuse the next start."""
    path = Path(home) / MARKER_NAME
    tmp = path.with_name(f".{MARKER_NAME}.{secrets.token_hex(4)}.tmp")
    data = json.dumps({"v": _MARKER_FORMAT, "store_id": marker.store_id, "peer_id": marker.peer_id}).encode() + b"\n"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        raise StartupError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _has_data(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------------------------- the key


def load_key(config: Config, passphrase: bytes | None) -> Identity:
    """The node's key; a missing one is an error that says which command fixes it."""
    try:
        return load_identity(config.key_path, passphrase)
    except KeyFileMissingError:
        pass
    marker = read_marker(config.home)
    if marker is not None or _has_data(config.store_path):
        whose = f" of peer {marker.peer_id}" if marker is not None else ""
        raise HomeStateError(
            f"no identity key at {config.key_path}, but home {config.home} has state{whose}: restore "
            "identity.key from your backup. A new key (`sovereign init`) would be another node, "
            "and this home's store refuses it"
        )
    raise HomeStateError(
        f"no identity key in home {config.home}: run `sovereign --home {config.home} init` first "
        "(only init creates keys)"
    )


# -------------------------------------------------------------------------------- the store


def open_store(config: Config, identity: Identity) -> Store:
    """Open the home's store once it is known to be the right one, intact; record the marker."""
    marker = read_marker(config.home)
    path = config.store_path
    if marker is not None and not _has_data(path):
        what = "empty (0 bytes)" if path.exists() else "missing"
        raise HomeStateError(
            f"{path} is {what}, but this home has state ({config.home / MARKER_NAME} says so): restore "
            f"sovereign.db from a backup. To start this node with no state on purpose, remove {MARKER_NAME} too"
        )
    store = Store(path)
    try:
        store.check_integrity()
        _claim(store, marker, identity, config)
    except BaseException:
        store.close()
        raise
    return store


def _claim(store: Store, marker: Marker | None, identity: Identity, config: Config) -> None:
    store_id, owner = store.meta_get(META_STORE_ID), store.meta_get(META_PEER_ID)
    if owner is not None and owner != identity.peer_id:
        raise HomeStateError(
            f"{store.path} belongs to peer {owner}, but {config.key_path} is peer {identity.peer_id}: "
            "restore this node's own identity.key (a new key is another node)"
        )
    if marker is not None:
        if store_id != marker.store_id:
            found = f"store id {store_id}" if store_id else "no store id: a new database"
            raise HomeStateError(
                f"{store.path} is not this home's store ({found}; {MARKER_NAME} expects {marker.store_id}): "
                "restore the home's own sovereign.db from a backup"
            )
        if marker.peer_id != identity.peer_id:
            raise HomeStateError(
                f"this home's state belongs to peer {marker.peer_id}, but {config.key_path} is peer "
                f"{identity.peer_id}: restore this node's own identity.key"
            )
        if owner is None:
            store.meta_set(META_PEER_ID, identity.peer_id)
        return
    # No marker: a fresh home, or one from before markers. Adopt the store, then say so outside it.
    if store_id is None:
        store_id = secrets.token_hex(16)
        store.meta_set(META_STORE_ID, store_id)
    if owner is None:
        store.meta_set(META_PEER_ID, identity.peer_id)
    write_marker(config.home, Marker(store_id, identity.peer_id))


# ------------------------------------------------------------------- the federation's state


def verify_federation_state(store: Store, genesis: Genesis) -> None:
    """Check the persisted PBFT state before the replica recovers from it; StateCorrupt if any
    part fails. Our own store, but a file anyone with the account can edit: a snapshot changed to
    keep the total supply passes the ledger's own checks, not its certified digest."""
    state, inputs = store.pbft_load()
    if state is not None:
        where = f"{store.path}: the federation state"
        try:
            dump = decode(state, max_size=1 << 31, max_depth=4, max_items=1 << 20)
        except ProtocolError as exc:
            raise StateCorrupt(f"{where} does not decode ({exc}); {_RESTORE}") from None
        _verify_dump(dump, store, genesis, where)
    _verify_inputs(inputs, store)


_RESTORE: Final = (
    f"restore sovereign.db from a backup, or move it and {MARKER_NAME} aside to resync this node from its peers"
)


def _verify_dump(dump: Any, store: Store, genesis: Genesis, where: str) -> None:
    from protocols.federation import DUMP_FORMAT

    try:
        if not isinstance(dump, dict) or dump.get("v") != DUMP_FORMAT:
            raise ValueError(f"unknown format {dump.get('v') if isinstance(dump, dict) else type(dump).__name__!r}")
        members = tuple(dump["members"])
        epoch = dump["epoch"]
        replica = dump["replica"]
        if replica is not None:
            _verify_replica(replica, members, epoch, store, genesis)
        else:
            _verify_follower(dump, genesis)
    except StateCorrupt as exc:
        raise StateCorrupt(f"{where}: {exc}; {_RESTORE}") from None
    except (ValueError, KeyError, TypeError, OverflowError, ProtocolError) as exc:
        raise StateCorrupt(f"{where} is malformed ({type(exc).__name__}: {exc}); {_RESTORE}") from None


def _verify_replica(blob: bytes, members: tuple[str, ...], epoch: int, store: Store, genesis: Genesis) -> None:
    from protocols.pbft.view_checks import encode_client_table, state_digest

    from protocols.pbft.persist import upgrade

    p = upgrade(decode(blob, max_size=1 << 31, max_depth=16, max_items=1 << 26))
    seq, digest = p["stable_checkpoint"]
    if state_digest(p["stable_snapshot"], p["stable_table"]) != digest:
        raise StateCorrupt(f"the stable snapshot at {seq} does not match its certified digest")
    _check_proof(members, epoch, seq, digest, p["stable_proof"], genesis)
    if seq == 0 and digest != state_digest(Ledger(genesis).snapshot(), encode_client_table({})):
        raise StateCorrupt("the genesis checkpoint does not match genesis.json")
    _verify_current(p, store, genesis)


def _check_proof(
    members: tuple[str, ...], epoch: int, seq: int, digest: bytes, raw: list[bytes], genesis: Genesis
) -> None:
    """`raw` (encoded CHECKPOINTs) certifies (seq, digest) in the configuration (members, epoch):
    2f+1 distinct members, one digest, signatures bound to our genesis, as the replica checks them."""
    from protocols.pbft.binding import ChainBinding
    from protocols.pbft.config import PbftConfig
    from protocols.pbft.messages import Checkpoint, message_from_obj
    from protocols.pbft.signing import check_signatures, default_verifier
    from protocols.pbft.view_checks import checkpoint_proof_error

    k = genesis.checkpoint_interval
    config = PbftConfig(members=members, checkpoint_interval=k, window=max(256, 2 * k), base_seq=epoch)
    proof = [message_from_obj(decode(b, max_size=1 << 20, max_depth=12, max_items=1 << 16)) for b in raw]
    if not all(isinstance(c, Checkpoint) for c in proof):
        raise StateCorrupt(f"the proof of the stable checkpoint at {seq} holds other messages")
    problem = checkpoint_proof_error(config, seq, tuple(proof))
    if problem is None and any(c.state_digest != digest for c in proof):
        problem = "proof-for-another-digest"
    if problem is None:
        verify = ChainBinding.of(genesis.hash).verifier(default_verifier)
        problem = next((r for r in (check_signatures(c, verify) for c in proof) if r is not None), None)
    if problem is not None:
        raise StateCorrupt(f"the stable checkpoint at {seq} is not certified ({problem})")


def _verify_follower(dump: dict[str, Any], genesis: Genesis) -> None:
    """A follower's ledger must be the state it synced: the certified snapshot (its digest, and
    the CHECKPOINTs of the committee that snapshot names), with the committee change it triggered
    activated, if any. A dump from before followers kept this evidence gets the ledger's own
    checks (chain, supply, canonical form) only."""
    from protocols.pbft.view_checks import state_digest

    ledger = Ledger(genesis)
    cert = dump.get("certified")
    if cert is None:
        ledger.restore(dump["ledger"])
        return
    seq, digest, snapshot = cert["seq"], cert["digest"], cert["snapshot"]
    if state_digest(snapshot, cert["table"]) != digest:
        raise StateCorrupt(f"the synced snapshot at {seq} does not match its certified digest")
    ledger.restore(snapshot)
    if tuple(cert["members"]) != ledger.committee:
        raise StateCorrupt(f"the synced checkpoint at {seq} names signers that are not its committee")
    if cert["proof"] or seq != cert["epoch"]:
        _check_proof(tuple(cert["members"]), cert["epoch"], seq, digest, cert["proof"], genesis)
    if ledger.reconfiguring():
        ledger.activate_pending()
    if ledger.snapshot() != dump["ledger"]:
        raise StateCorrupt(f"the follower's ledger is not the state it synced at {seq}")


def _verify_current(p: dict[str, Any], store: Store, genesis: Genesis) -> None:
    """The ledger state the replica stands at must be what the stored batches make of the certified
    snapshot: it is the state the next checkpoint will be taken from."""
    from protocols.pbft.view_checks import decode_client_table, encode_client_table

    ledger = Ledger(genesis)
    ledger.restore(p["stable_snapshot"])
    clients = decode_client_table(p["stable_table"])
    seq, last = p["stable_checkpoint"][0], p["last_executed"]
    for _number, ops in _batches(store, seq, last):
        _execute(ledger, clients, ops)
    if ledger.snapshot() != p["app"] or encode_client_table(clients) != p["clients"]:
        raise StateCorrupt(
            f"the ledger state at {last} is not what the batches {seq + 1}..{last} make of the stable "
            f"snapshot at {seq}"
        )


def _batches(store: Store, since: int, upto: int) -> Iterator[tuple[int, list[Any]]]:
    import msgpack

    expected = since + 1
    while expected <= upto:
        rows = store.ledger_batches(expected - 1, min(256, upto - expected + 1))
        for number, _view, _ms, ops, _results in rows:
            if number != expected:
                break
            yield number, msgpack.unpackb(ops, raw=False)
            expected += 1
        if not rows or expected <= upto and rows[-1][0] != expected - 1:
            raise StateCorrupt(f"batch {expected}, executed before the last stop, is missing from the store")


def _execute(ledger: Ledger, clients: dict[str, tuple[int, bytes]], ops: list[Any]) -> None:
    # The replica's execution rule (protocols/pbft/replica.py, Replica._execute): a request whose
    # timestamp the client table has passed was ordered twice and is not applied again.
    for client_id, timestamp, op in ops:
        last = clients.get(client_id)
        if last is not None and timestamp <= last[0]:
            continue
        clients[client_id] = (timestamp, ledger.apply(op))


def _verify_inputs(inputs: list[tuple[str, str, bytes, float]], store: Store) -> None:
    """Every input logged since the dump must decode, or replaying it would crash the start."""
    from protocols.federation import decode_journal

    for index, (kind, _sender, payload, _at) in enumerate(inputs):
        try:
            decode_journal(kind, payload)
        except (ProtocolError, ValueError, UnicodeDecodeError) as exc:
            raise StateCorrupt(
                f"{store.path}: logged federation input {index + 1} of {len(inputs)} is malformed "
                f"({type(exc).__name__}: {exc}); {_RESTORE}"
            ) from None


# ------------------------------------------------------------------ what a failed start says


def _start_errors() -> tuple[type[BaseException], ...]:
    """Failures at start that are the environment's doing (files, ports, sockets, peers' data in
    our store), shown as one clear message with exit 4. Anything else is a bug and surfaces whole.
    A table rather than a list of except clauses: a new expected failure is one more entry."""
    from node.control import ControlSocketInUse
    from node.federation.service import FederationError
    from node.network import ListenError
    from node.runtime.registry import RegistryError

    return (
        StartupError, KeyFileError, ConfigError, StoreError, ControlSocketInUse, ListenError,
        FederationError, RegistryError, ProtocolError, OSError,
    )


def _leaves(exc: BaseException) -> list[BaseException]:
    # Raised inside trio nurseries, one failure arrives wrapped in (nested) exception groups.
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def explain_failure(exc: BaseException) -> str | None:
    """The message for a daemon that stopped on an expected failure (the table above), or None
    when any part of `exc` is something else, which the caller must re-raise."""
    leaves = _leaves(exc)
    known = _start_errors()
    if not leaves or not all(isinstance(e, known) for e in leaves):
        return None
    for leaf in leaves:
        log.debug("start failed", exc_info=leaf)
    return "; ".join(dict.fromkeys(str(e) or type(e).__name__ for e in leaves))
