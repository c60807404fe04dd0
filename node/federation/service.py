"""The federation inside one daemon: links, the federation machine on the runtime, the client.

A node whose home holds a genesis file (genesis.json) belongs to that federation: if the genesis
committee names it, it runs a replica; either way it can submit transactions as a client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import trio

from keys.identity import Identity
from node.federation.ledger_client import LedgerClient
from node.runtime.links import Links
from node.federation.host import Committed, FederationHost
from node.network import Network
from node.store import Store
from protocols.errors import ProtocolError
from protocols.ledger import Genesis, GenesisError, Receipt, decode_receipt, load_genesis
from protocols.pbft import Reply, Request

log = logging.getLogger("sovereign.federation")

GENESIS_NAME = "genesis.json"


class FederationError(Exception):
    """The federation cannot start (bad genesis file, ...); the message says why."""


MAX_GENESIS_BYTES = 16 << 20  # a committee of 1024 with balances is well under 1 MiB


def read_genesis(home: Path) -> Genesis | None:
    path = home / GENESIS_NAME
    try:
        with path.open("rb") as f:
            data = f.read(MAX_GENESIS_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FederationError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_GENESIS_BYTES:
        raise FederationError(f"{path}: larger than {MAX_GENESIS_BYTES} bytes; not a genesis file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FederationError(f"{path}: not UTF-8 text (byte {exc.start}); not a genesis file") from None
    try:
        return load_genesis(text)
    except GenesisError as exc:
        raise FederationError(f"{path}: {exc}") from None


class Federation:
    def __init__(
        self,
        identity: Identity,
        genesis: Genesis,
        store: Store,
        net: Network,
        *,
        request_timeout: float,
        publish: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.identity = identity
        self.me = identity.peer_id
        self.genesis = genesis
        self.store = store
        self.net = net
        self._publish = publish
        self.links: Links | None = None
        self.host = FederationHost(
            identity,
            genesis,
            store,
            request_timeout=request_timeout,
            on_reply=self._on_reply,
            on_committed=self._on_committed,
            publish=publish,
            on_refused=self._on_refused,
        )
        ledger = self.host.ledger
        self.client = LedgerClient(
            identity,
            genesis.chain_id,
            genesis.hash,
            lambda: self.host.members,
            store,
            send=self._send_request,
            submit_local=self.host.submit,
            next_nonce=lambda lane: ledger.next_nonce(self.me, lane),
        )
        self.committed_txs = 0  # requests in executed batches (duplicates included)
        self.rate = _Rate()
        self._progress = trio.Event()  # set (and replaced) whenever batches are stored

    @property
    def role(self) -> str:
        return self.host.role

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            wire = self.host.wire
            self.links = Links(self.net, nursery, wire.protocol)
            self.net.serve_frames(wire.protocol, self.host.on_frame, wire.max_frame)
            nursery.start_soon(self.client.run)
            nursery.start_soon(self.host.run, self.links, self.net.is_connected)
            log.info(
                "federation %s: %s of a %d-member committee (epoch %d)",
                self.genesis.chain_id, self.role, len(self.host.members), self.host.epoch,
            )

    # ------------------------------------------------------------------ wiring

    def _on_reply(self, sender: str, reply: Reply) -> None:
        self.client.on_reply(sender, reply)

    def _send_request(self, peer_id: str, request: Request) -> None:
        self.host.send_request(peer_id, request)

    def _on_refused(self, peer_id: str, exc: Exception) -> None:
        self.net.report_refusal(peer_id, self.host.wire.protocol, exc)

    def _on_committed(self, c: Committed) -> None:
        self._progress.set()
        self._progress = trio.Event()
        n = len(c.requests)
        self.committed_txs += n
        self.rate.add(n)
        self._publish("federation.committed", {"seq": c.seq, "view": c.view, "requests": n})

    # ------------------------------------------------------------------ what the API asks

    async def transfer(self, to: str, amount: int, timeout: float) -> Receipt:
        return await self.client.submit("transfer", {"to": to, "amount": amount}, timeout)

    async def vote(self, op: str, peer: str, timeout: float) -> Receipt:
        """federation.join / federation.leave: this node's vote (a leave of itself takes effect alone)."""
        return await self.client.submit(op, {"peer": peer}, timeout)

    async def applied_here(self, tx_id: str, timeout: float) -> bool:
        """Wait until this node's own ledger holds `tx_id` (f+1 replicas answering a client does
        not mean ours has executed it yet); False after `timeout` (a follower learns it later)."""
        with trio.move_on_after(timeout):
            while self.store.ledger_tx(tx_id) is None:
                await self._progress.wait()
            return True
        return False

    def status(self) -> dict[str, Any]:
        base: dict[str, Any] = {
            "chain_id": self.genesis.chain_id,
            "genesis": self.genesis.hash,
            "role": self.role,
            "committed_tx_per_s": round(self.rate.per_second(), 1),
            "client_in_flight": self.client.in_flight(),
        }
        base.update(self.host.status())
        base["links"] = self.links.stats() if self.links else {}
        return base

    def log_entries(self, since: int, limit: int) -> list[dict[str, Any]]:
        out = []
        for seq, view, executed_ms, ops, results in self.store.ledger_batches(since, limit):
            reqs = msgpack.unpackb(ops, raw=False)
            res = msgpack.unpackb(results, raw=False)
            txs = []
            for (client_id, ts, _op), result in zip(reqs, res):
                entry: dict[str, Any] = {"client": client_id, "timestamp": ts}
                try:
                    r = decode_receipt(result) if result else None
                except ProtocolError:
                    r = None
                if r is not None:
                    entry.update({"tx_id": r.tx_id, "status": r.status, "reason": r.reason})
                else:
                    entry["status"] = "duplicate"
                txs.append(entry)
            out.append({"seq": seq, "view": view, "executed_ms": executed_ms, "txs": txs})
        return out


class _Rate:
    """Committed requests per second over the last few seconds (for status and the TUI)."""

    WINDOW = 5.0

    def __init__(self) -> None:
        self._events: list[tuple[float, int]] = []

    def add(self, n: int) -> None:
        now = trio.current_time()
        self._events.append((now, n))
        if len(self._events) > 4096:
            self._trim(now)

    def _trim(self, now: float) -> None:
        cut = now - self.WINDOW
        i = 0
        while i < len(self._events) and self._events[i][0] < cut:
            i += 1
        del self._events[:i]

    def per_second(self) -> float:
        now = trio.current_time()
        self._trim(now)
        return sum(n for _, n in self._events) / self.WINDOW
