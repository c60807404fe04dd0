"""The replicated application interface and a small deterministic key-value store for tests."""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import msgpack

from protocols.codec import encode


class Application(Protocol):
    """The replicated state machine. Every method must be deterministic, and `snapshot()` canonical
    (equal states give equal bytes): checkpoint digests are computed from snapshot bytes, and
    replicas compare them. `apply` must not raise on any op (return an error result instead)."""

    def apply(self, op: bytes) -> bytes: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...

    def digest(self) -> bytes: ...

    # Optional: `reconfiguring() -> bool`, true when the state asks for a new committee. A replica
    # checks it at each checkpoint and stops there (Replica.halt_at) so that every replica switches
    # at the same sequence number; the driver then starts the new configuration from it.


def _error(reason: str) -> bytes:
    return encode(["error", reason])


class KVStore:
    """ops: msgpack ["put", key, value] / ["get", key] / ["cas", key, expected, new] (keys str, values
    bytes; `expected` may be nil meaning "absent"). Results are msgpack: ["ok", value-or-nil] or
    ["error", reason]. A malformed op yields an error result: ops come from clients, and raising would
    let one bad client stall every replica at the same sequence number."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def apply(self, op: bytes) -> bytes:
        try:
            # Plain msgpack with tight limits is enough here (ops are small and the result of any
            # failure is the same deterministic error); the guarded decoder costs 3x as much.
            cmd: Any = msgpack.unpackb(op, raw=False, max_array_len=8, max_map_len=0, max_ext_len=0)
        except Exception:  # noqa: BLE001 - any malformed op is a client error, never a crash
            return _error("malformed")
        if type(cmd) is not list or not cmd or type(cmd[0]) is not str:
            return _error("malformed")
        name, args = cmd[0], cmd[1:]
        if name == "put" and len(args) == 2 and type(args[0]) is str and type(args[1]) is bytes:
            self.data[args[0]] = args[1]
            return encode(["ok", None])
        if name == "get" and len(args) == 1 and type(args[0]) is str:
            return encode(["ok", self.data.get(args[0])])
        if (
            name == "cas"
            and len(args) == 3
            and type(args[0]) is str
            and (args[1] is None or type(args[1]) is bytes)
            and type(args[2]) is bytes
        ):
            current = self.data.get(args[0])
            if current != args[1]:
                return encode(["fail", current])
            self.data[args[0]] = args[2]
            return encode(["ok", current])
        return _error("malformed")

    def snapshot(self) -> bytes:
        # Sorted so that equal states give byte-identical snapshots (and digests) on every replica.
        return msgpack.packb(sorted(self.data.items()), use_bin_type=True)

    def restore(self, data: bytes) -> None:
        items = msgpack.unpackb(data, raw=False, use_list=True)
        self.data = {str(k): bytes(v) for k, v in items}

    def digest(self) -> bytes:
        return hashlib.sha256(self.snapshot()).digest()


def put(key: str, value: bytes) -> bytes:
    return encode(["put", key, value])


def get(key: str) -> bytes:
    return encode(["get", key])


def cas(key: str, expected: bytes | None, new: bytes) -> bytes:
    return encode(["cas", key, expected, new])
