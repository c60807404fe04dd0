"""An in-process py-libp2p peer speaks /sovereign/pbft/1 to three real replicas.

The genesis names five identities: a committee of four (nodes 0-2 run as daemons; node 3's
identity is the in-process "silent member", 3 of 4 being a quorum with f = 1) and node 4, a
non-member with an account, whose identity the in-process client uses. The client sends raw
signed PBFT Requests, so the test controls timestamps and nonces: the same request twice, the same
signed tx in a new request, a replayed nonce and a nonce gap. Then hostile traffic: PBFT protocol
messages from a non-member, a member's bundle with a forged envelope signature, and a bundle
signed by one identity over another's connection. Each is refused and logged, and the replicas
keep working.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as Noise
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from multiaddr import Multiaddr

from keys.envelope import SeqCounter, open_envelope, seal
from keys.identity import Identity, load_identity
from node.runtime import seal_messages
from node.network import frame, read_frame_or_end
from protocols.federation import FederationWire, bundle_channel
from protocols.ledger import decode_receipt, decode_tx, sign_tx
from protocols.pbft import Checkpoint, Commit, Prepare, Reply, Request
from protocols.pbft.binding import ChainBinding
from protocols.pbft.bundle import DOMAIN, decode_bundle

from .conftest import POLL_S
from .federation_helpers import (  # noqa: F401 - fed_root is a fixture
    LocalFederation,
    describe,
    fed_root,
    logged_batches,
    make_federation,
    missing_txs,
    status,
    wait_converged,
)

pytestmark = pytest.mark.integration

PROTOCOL = FederationWire.protocol
PBFT = TProtocol(PROTOCOL)  # the stream protocol; DOMAIN is the envelope domain tag
GENESIS_BALANCE = 1_000_000_000
CHAIN = "itest"


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll a (blocking, quick) predicate from trio until it is truthy."""
    deadline = trio.current_time() + timeout
    last: Exception | None = None
    while trio.current_time() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001
            last = exc
        await trio.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last error: {last!r})")


def bundle(identity: Identity, seqs: SeqCounter, messages: list[Any], binding: ChainBinding) -> bytes:
    """One signed frame of PBFT messages, as the daemon's own runtime makes it."""
    frames = seal_messages(identity, FederationWire(binding), bundle_channel(0), messages, seqs)
    assert len(frames) == 1
    return frames[0]


class Peer:
    """A py-libp2p host with a given identity, connected to the replicas; it collects the
    Replies they send it and writes raw frames to them on /sovereign/pbft/1."""

    def __init__(self, identity: Identity, host: Any, binding: ChainBinding) -> None:
        self.identity = identity
        self.binding = binding  # the federation's genesis, bound into every frame
        self.host = host
        self.seqs = SeqCounter()
        self.replies: dict[int, list[Reply]] = defaultdict(list)  # by request timestamp
        self._streams: dict[str, Any] = {}
        self.errors: list[Exception] = []
        self.streams_in = 0

    async def handle(self, stream: Any) -> None:
        sender = stream.muxed_conn.peer_id.to_base58()
        self.streams_in += 1
        try:
            while (data := await read_frame_or_end(stream, 64 * 1024 * 1024)) is not None:
                env = open_envelope(
                    data, domain=DOMAIN, now_ms=time.time_ns() // 1_000_000, guard=None,
                    max_size=64 * 1024 * 1024, expected_sender=sender,
                )
                for m in decode_bundle(self.binding.open(env.payload)):
                    if isinstance(m, Reply) and m.sender == sender:
                        self.replies[m.timestamp].append(m)
        except Exception as exc:  # noqa: BLE001 - the replica went away, or sent what we do not care about
            self.errors.append(exc)

    async def send_raw(self, to: str, data: bytes) -> None:
        stream = self._streams.get(to)
        if stream is None:
            stream = self._streams[to] = await self.host.new_stream(ID.from_base58(to), [PBFT])
        await stream.write(frame(data))

    async def send(self, to: str, messages: list[Any]) -> None:
        await self.send_raw(to, bundle(self.identity, self.seqs, messages, self.binding))


@asynccontextmanager
async def peer(identity: Identity, addrs: list[str], binding: ChainBinding) -> AsyncIterator[Peer]:
    private = Ed25519PrivateKey.new(identity.seed)
    kp = KeyPair(private, private.get_public_key())
    host = new_host(
        key_pair=kp, sec_opt={NOISE_ID: Noise(kp, noise_privkey=x25519_key_pair().private_key)}, muxer_opt={YAMUX_ID: Yamux}
    )
    p = Peer(identity, host, binding)
    async with host.run(listen_addrs=[Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        host.set_stream_handler(PBFT, p.handle)
        with trio.fail_after(15):
            for addr in addrs:
                await host.connect(info_from_p2p_addr(Multiaddr(addr)))
        yield p


def start_three(request: pytest.FixtureRequest, root: Path) -> tuple[LocalFederation, list[Any], list[str]]:
    fed = make_federation(request, root, 5, members=4)
    nodes = fed.start_all([0, 1, 2])
    st = status(nodes[0])
    assert st["members"] == fed.ids[:4] and st["primary"] == fed.ids[0]
    addrs = [n.call("node.id")["addrs"][0] for n in nodes]
    return fed, nodes, addrs


async def submit(p: Peer, replicas: list[str], client_id: str, ts: int, op: bytes) -> None:
    """One raw PBFT Request, sent to every live replica (as a client's retransmission is)."""
    for r in replicas:
        await p.send(r, [Request(client_id, ts, op)])


async def receipt(p: Peer, ts: int, timeout: float = 20) -> Any:
    """The receipt f+1 = 2 replicas agree on for the request with timestamp `ts`."""
    def agreed() -> Any:
        results = [r.result for r in p.replies[ts]]
        return next((decode_receipt(x) for x in results if results.count(x) >= 2), None)
    try:
        return await until(agreed, timeout, f"f+1 matching replies for timestamp {ts}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; streams in {p.streams_in}, errors {p.errors!r}") from None


def tx_row(node: Any, tx_id: str) -> dict[str, Any] | None:
    try:
        return node.call("ledger.tx", {"id": tx_id})
    except Exception:  # noqa: BLE001
        return None


def log_entries(node: Any, client_id: str) -> list[dict[str, Any]]:
    return [{**t, "seq": b["seq"]} for b in logged_batches(node) for t in b["txs"] if t["client"] == client_id]


async def test_a_signed_tx_applies_once_and_nonces_are_enforced(
    request: pytest.FixtureRequest, fed_root: Path
) -> None:
    fed, nodes, addrs = start_three(request, fed_root)
    client = load_identity(fed.homes[4] / "identity.key")
    assert client.peer_id == fed.ids[4]
    to = fed.ids[1]
    lane = 7
    cid = f"{client.peer_id}/{lane}"
    replicas = fed.ids[:3]

    def tx(nonce: int, amount: int) -> tuple[bytes, str]:
        op = sign_tx(
            client, chain=CHAIN, genesis=fed.genesis.hash, lane=lane, nonce=nonce, op="transfer", args={"to": to, "amount": amount}
        )
        return op, decode_tx(op).id

    async with peer(client, addrs, ChainBinding.of(fed.genesis.hash)) as p:
        # 1. A signed transfer (nonce 1): applied on every replica.
        op1, id1 = tx(1, 100)
        await submit(p, replicas, cid, 1000, op1)
        r1 = await receipt(p, 1000)
        assert (r1.tx_id, r1.status) == (id1, "applied")
        await until(lambda: not any(missing_txs(n, [id1]) for n in nodes), 20, "tx 1 on every replica")
        first = nodes[0].call("ledger.tx", {"id": id1})

        # 2. The very same request again (same client, same timestamp): not executed again, the
        #    replicas just resend their reply.
        n_replies = len(p.replies[1000])
        await submit(p, replicas, cid, 1000, op1)
        await until(lambda: len(p.replies[1000]) >= n_replies + 2, 20, "the replies resent for the duplicate")
        assert {decode_receipt(r.result) for r in p.replies[1000]} == {r1}

        # 3. The same signed tx in a new request (new timestamp): ordered, but the ledger refuses
        #    its spent nonce. Its tx_id keeps the first (applied) receipt.
        await submit(p, replicas, cid, 2000, op1)
        r2 = await receipt(p, 2000)
        assert (r2.tx_id, r2.status, r2.reason) == (id1, "refused", "bad-nonce")

        # 4. A replayed nonce in a different tx, 5. a nonce gap: refused, nothing consumed.
        op_replay, id_replay = tx(1, 5)
        await submit(p, replicas, cid, 3000, op_replay)
        r3 = await receipt(p, 3000)
        assert (r3.tx_id, r3.status, r3.reason) == (id_replay, "refused", "bad-nonce")
        op_gap, id_gap = tx(3, 7)
        await submit(p, replicas, cid, 4000, op_gap)
        r4 = await receipt(p, 4000)
        assert (r4.tx_id, r4.status, r4.reason) == (id_gap, "refused", "bad-nonce")

        # 6. The next nonce in order is applied.
        op2, id2 = tx(2, 11)
        await submit(p, replicas, cid, 5000, op2)
        r5 = await receipt(p, 5000)
        assert (r5.tx_id, r5.status) == (id2, "applied")

        # 7. A request older than the last executed one is ignored altogether.
        before = len(p.replies[500])
        await submit(p, replicas, cid, 500, tx(3, 1)[0])
        await submit(p, replicas, cid, 6000, tx(3, 1)[0])  # a later one, to know the old one had its chance
        r6 = await receipt(p, 6000)
        assert r6.status == "applied"
        assert len(p.replies[500]) == before == 0

    await until(lambda: not any(missing_txs(n, [id2]) for n in nodes), 20, "tx 2 on every replica")
    common = wait_converged(nodes, "after the client's requests")
    for n in nodes:
        assert n.call("ledger.tx", {"id": id1}) == first  # the one applied receipt, same place
        for tx_id in (id_replay, id_gap):
            row = n.call("ledger.tx", {"id": tx_id})
            assert (row["status"], row["reason"], row["sender"]) == ("refused", "bad-nonce", client.peer_id)
        entries = log_entries(n, cid)
        # Each timestamp ordered once: 1000, 2000, 3000, 4000, 5000, 6000 (the duplicate 1000
        # and the stale 500 never reached the log).
        assert [e["timestamp"] for e in entries] == [1000, 2000, 3000, 4000, 5000, 6000], entries
        assert [e["status"] for e in entries] == ["applied", "refused", "refused", "refused", "applied", "applied"]
        assert n.call("ledger.balance", {"account": client.peer_id})["balance"] == GENESIS_BALANCE - 100 - 11 - 1
        assert n.call("ledger.balance", {"account": to})["balance"] == GENESIS_BALANCE + 100 + 11 + 1
    assert common["last_executed"] >= 6


async def test_non_members_and_forged_bundles_are_refused_and_logged(
    request: pytest.FixtureRequest, fed_root: Path
) -> None:
    fed, nodes, addrs = start_three(request, fed_root)
    member = load_identity(fed.homes[3] / "identity.key")  # in the committee, its daemon not running
    outsider = load_identity(fed.homes[4] / "identity.key")  # has an account, not in the committee
    stranger = Identity.generate()  # in no genesis at all
    target = fed.ids[1]  # a backup
    digest = bytes(32)
    replicas = fed.ids[:3]
    cid = f"{outsider.peer_id}/0"

    def transfer(nonce: int, amount: int) -> bytes:
        return sign_tx(outsider, chain=CHAIN, genesis=fed.genesis.hash, lane=0, nonce=nonce, op="transfer", args={"to": fed.ids[0], "amount": amount})

    binding = ChainBinding.of(fed.genesis.hash)
    async with peer(outsider, addrs, binding) as bad, peer(stranger, addrs, binding) as worse, peer(member, addrs, binding) as forger:
        # A transfer first (submitted as a client over the same connection the attack uses).
        await submit(bad, replicas, cid, 1, transfer(1, 3))
        assert (await receipt(bad, 1)).status == "applied"
        before = wait_converged(nodes, "before the attack", at_least=1)
        seq = before["last_executed"] + 1
        # Protocol messages from peers outside the committee, in their own names.
        for p in (bad, worse):
            me = p.identity.peer_id
            await p.send(target, [Prepare(0, seq, digest, me)])
            await p.send(target, [Commit(0, seq, digest, me)])
            await p.send(target, [Checkpoint(seq, digest, me)])
        # A member's bundle with its envelope signature broken.
        good = bundle(member, forger.seqs, [Commit(0, seq, digest, member.peer_id)], binding)
        forged = bytearray(good)
        forged[-5] ^= 0xFF
        await forger.send_raw(target, bytes(forged))
        # A bundle sealed by the member's key, sent over the outsider's connection.
        await bad.send_raw(target, bundle(member, SeqCounter(), [Commit(0, seq, digest, member.peer_id)], binding))
        # A member's message naming another member as its sender.
        await forger.send(target, [Commit(0, seq, digest, fed.ids[0])])
        # Garbage on the stream.
        await bad.send_raw(target, os.urandom(300))
        await bad.send_raw(target, seal(outsider, domain=DOMAIN, type="bundle", seq=bad.seqs.next(),
                                        ts=time.time_ns() // 1_000_000, payload=binding.seal(b"\x93not a bundle")))

        log = fed.nodes[1].log_path
        await until(
            lambda: all(pid in log.read_text(errors="replace") and "refused" in log.read_text(errors="replace")
                        for pid in (outsider.peer_id, stranger.peer_id, member.peer_id)),
            15, "the backup's log to name every refused sender",
        )
        await until(lambda: status(nodes[1])["evidence"] >= 1, 15, "the member's mismatched sender counted as evidence")

        # Nothing changed: no state moved, nobody crashed, and the federation still works: a
        # transfer from the same client over the same connection is applied.
        after = status(nodes[1])
        assert (after["last_executed"], after["state_digest"]) == (before["last_executed"], before["state_digest"])
        await submit(bad, replicas, cid, 2, transfer(2, 4))
        assert (await receipt(bad, 2)).status == "applied"

    assert all(n.poll() is None for n in nodes)
    text = log.read_text(errors="replace")
    refusals = [line for line in text.splitlines() if "refused" in line and PROTOCOL in line]
    assert any(outsider.peer_id in x and "not-a-member" in x for x in refusals), refusals[-5:]
    assert any(stranger.peer_id in x and "not-a-member" in x for x in refusals), refusals[-5:]
    assert any(member.peer_id in x and "EnvelopeError" in x for x in refusals), refusals[-5:]
    common = wait_converged(nodes, "after the attack")
    assert common["last_executed"] > before["last_executed"]
    for n in nodes:
        assert n.call("ledger.balance", {"account": outsider.peer_id})["balance"] == GENESIS_BALANCE - 7
