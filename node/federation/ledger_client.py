"""This node as a PBFT client: sign a transaction, get it ordered, wait for f+1 matching replies.

PBFT allows one outstanding request per client id, so the node is many clients: lanes, each with
its own client id "<peer id>/<lane>", its own request timestamps and its own nonce sequence in the
ledger (a tx's nonce is per (account, lane)). A submission takes a free lane, signs the tx with the
lane's next nonce, sends it to the committee, and holds the lane until f+1 replicas have replied
with the same receipt: at least one of them is correct, so the receipt is the committee's. Until
then it retransmits the same request (same timestamp) with backoff, to the whole committee.

If the caller stops waiting (timeout), the lane stays held and retransmission goes on in the
background: the tx may still commit, and reusing the lane before it has would break the nonce
sequence. The lane's nonce and timestamp are stored before the request leaves, so a restart never
reuses either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from keys.identity import Identity
from node.store import Store
from protocols.committee import Committee
from protocols.errors import ProtocolError
from protocols.ledger import Receipt, Tx, decode_receipt, decode_tx, signed_tx
from protocols.pbft import Reply, Request, decode_message, encode_message

log = logging.getLogger("sovereign.federation")

LANES = 64
RETRANSMIT = (0.5, 8.0)  # first and longest pause between retransmissions


class LanesBusy(Exception):
    """Nothing was submitted: every lane carries a transaction still in flight."""

    def __init__(self, lanes: int, seconds: float) -> None:
        super().__init__(
            f"nothing was submitted: all {lanes} lanes still carry transactions in flight after {seconds:g} s; retry later"
        )


class SubmitTimeout(Exception):
    def __init__(self, tx_id: str, seconds: float) -> None:
        super().__init__(f"transaction {tx_id} not committed within {seconds:g} s; it is still being retransmitted")
        self.tx_id = tx_id


@dataclass
class _Outstanding:
    request: Request
    tx: Tx
    replies: dict[str, bytes] = field(default_factory=dict)  # replica -> result
    views: dict[str, int] = field(default_factory=dict)
    done: trio.Event = field(default_factory=trio.Event)
    receipt: Receipt | None = None
    recovered: bool = False  # in flight when the node last stopped


class LedgerClient:
    def __init__(
        self,
        identity: Identity,
        chain_id: str,
        genesis_hash: str,
        members: Callable[[], tuple[str, ...]],
        store: Store,
        *,
        send: Callable[[str, Request], None],
        submit_local: Callable[[Request], bool],
        next_nonce: Callable[[int], int] | None,
        lanes: int = LANES,
    ) -> None:
        self.identity = identity
        self.me = identity.peer_id
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash  # bound into every tx we sign
        self._members = members  # the current committee (it changes with federation.join/leave)
        self._committee_cache: Committee | None = None
        self._send = send
        self._submit_local = submit_local
        self._store = store
        self._view = 0  # the highest view seen in replies: its primary gets our first copy
        stored = store.lanes()
        self._lanes: dict[int, tuple[int, int]] = {}
        self._outstanding: dict[int, _Outstanding] = {}
        self._free_in, self._free = trio.open_memory_channel[int](lanes)
        for lane in range(lanes):
            nonce, ts, pending = stored.get(lane, (0, 0, None))
            if next_nonce is not None:
                nonce = max(nonce, next_nonce(lane) - 1)  # the ledger knows better after a lost store
            self._lanes[lane] = (nonce, ts)
            request = self._pending_request(pending)
            if request is not None:
                # In flight when we stopped: it may still commit, so it is retransmitted until
                # the committee answers (a new tx on the lane would leave a nonce gap).
                self._outstanding[lane] = _Outstanding(request, decode_tx(request.op), recovered=True)
            else:
                self._free_in.send_nowait(lane)
        self._nursery: trio.Nursery | None = None
        self.committed = 0

    @staticmethod
    def _pending_request(data: bytes | None) -> Request | None:
        if data is None:
            return None
        try:
            msg = decode_message(data)
            if isinstance(msg, Request):
                decode_tx(msg.op)
                return msg
        except ProtocolError:
            pass
        log.error("ignoring an unreadable in-flight request in the store")
        return None

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for lane, out in list(self._outstanding.items()):
                log.info("retransmitting tx %s, in flight when the node stopped", out.tx.id)
                nursery.start_soon(self._drive, lane, out)
            await trio.sleep_forever()

    def in_flight(self) -> int:
        return len(self._outstanding)

    async def submit(self, op: str, args: Mapping[str, Any], timeout: float) -> Receipt:
        """Sign and submit one transaction; return its receipt once f+1 replicas agree on it."""
        assert self._nursery is not None, "client not running"
        try:
            lane = self._free.receive_nowait()  # a free lane is taken even when the timeout is tiny
        except trio.WouldBlock:
            with trio.move_on_after(timeout) as scope:
                lane = await self._free.receive()
            if scope.cancelled_caught:
                raise LanesBusy(len(self._lanes), timeout) from None
        try:
            nonce, last_ts = self._lanes[lane]
            nonce += 1
            ts = max(time.time_ns() // 1000, last_ts + 1)
            tx, data = signed_tx(
                self.identity, chain=self.chain_id, genesis=self.genesis_hash, lane=lane, nonce=nonce, op=op, args=args
            )
            request = Request(f"{self.me}/{lane}", ts, data)
            self._store.lane_set(lane, nonce, ts, encode_message(request))
            self._lanes[lane] = (nonce, ts)
        except BaseException:
            self._free_in.send_nowait(lane)
            raise
        out = _Outstanding(request, tx)
        self._outstanding[lane] = out
        self._nursery.start_soon(self._drive, lane, out)
        with trio.move_on_after(timeout):
            await out.done.wait()
        if out.receipt is None:
            raise SubmitTimeout(tx.id, timeout)
        return out.receipt

    async def _drive(self, lane: int, out: _Outstanding) -> None:
        """Send, then retransmit to everybody until f+1 matching replies arrive; free the lane."""
        try:
            self._transmit(out.request, everyone=False)
            pause = RETRANSMIT[0]
            while True:
                with trio.move_on_after(pause):
                    await out.done.wait()
                    return
                self._transmit(out.request, everyone=True)
                pause = min(pause * 2, RETRANSMIT[1])
        finally:
            self._outstanding.pop(lane, None)
            if out.done.is_set():
                if out.recovered:
                    # Only after a restart: otherwise the stale in-flight entry is harmless (a
                    # retransmission of an executed request gets its cached reply) and rewriting
                    # it on every commit would cost a store write per transaction.
                    self._store.lane_done(lane)
                self._free_in.send_nowait(lane)

    def _transmit(self, request: Request, *, everyone: bool) -> None:
        """First to the primary only, as PBFT's clients do; then, on retransmission, to every
        replica, which makes each of them time the primary. Handing the first copy to our own
        replica (when it is a backup) would make it time the primary alone: on a slow start it
        would vote for a view change nobody else wants, and sit in it, useless, until the next
        real one."""
        members = self._members()
        primary = members[self._view % len(members)]
        for m in members:
            if m == self.me:
                if everyone or m == primary:
                    self._submit_local(request)
            elif everyone or m == primary:
                self._send(m, request)

    def _committee(self) -> Committee:
        """The current committee, rebuilt only when its members change (this runs per reply)."""
        members = self._members()
        if self._committee_cache is None or self._committee_cache.members != members:
            self._committee_cache = Committee(members)
        return self._committee_cache

    def on_reply(self, sender: str, reply: Reply) -> None:
        """A verified reply from replica `sender` (its envelope was checked by the caller)."""
        peer, _, lane_text = reply.client_id.partition("/")
        if peer != self.me or not lane_text.isdigit():
            return
        out = self._outstanding.get(int(lane_text))
        if out is None or out.request.timestamp != reply.timestamp or out.done.is_set():
            return
        out.replies[sender] = reply.result
        out.views[sender] = reply.view
        same = [s for s, r in out.replies.items() if r == reply.result]
        if len(same) < self._committee().weak:
            return
        try:
            receipt = decode_receipt(reply.result)
        except ProtocolError as exc:
            # f+1 replicas agree on bytes that are no receipt: a bug on their side, not a reason to hang.
            log.error("f+1 replicas replied with an undecodable result for %s: %s", out.tx.id, exc)
            receipt = Receipt(out.tx.id, "refused", "malformed-result")
        out.receipt = receipt
        self._view = max(self._view, max(out.views[s] for s in same))
        self.committed += 1
        out.done.set()
