"""A hostile peer, built with py-libp2p in the test, throws garbage at a real daemon.

Garbage, oversize, mis-signed and foreign cards on the gossip topic, and garbage on the card
stream: the daemon must refuse each, log it, and stay up; afterwards a proper card from the same
peer is still accepted (the daemon kept working, not just kept running).
"""

from __future__ import annotations

import os
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import msgpack
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as Noise
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr

from keys.card import issue_card
from keys.envelope import seal
from keys.identity import Identity
from node.discovery import CardBook
from node.network import CARD_PROTOCOL, CARDS_TOPIC, StrictNoSignGossipSub, StrictNoSignPubsub

from .conftest import POLL_S, Cluster, peer_states

pytestmark = pytest.mark.integration


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def hostile_messages(me: Identity) -> dict[str, bytes]:
    other = Identity.generate()
    card = issue_card(me, addrs=("/ip4/127.0.0.1/tcp/9",), capabilities={}, version="evil", now_ms=now_ms())
    tampered = msgpack.unpackb(card.to_bytes(), raw=False)
    tampered["addrs"] = ["/ip4/6.6.6.6/tcp/666"]  # the signature no longer covers this
    foreign = issue_card(other, addrs=(), capabilities={}, version="x", now_ms=now_ms())
    expired = issue_card(me, addrs=(), capabilities={}, version="x", now_ms=now_ms() - 120_000, ttl_ms=60_000)

    def env(payload: bytes, *, who: Identity = me, seq: int, domain: str = CARDS_TOPIC) -> bytes:
        return seal(who, domain=domain, type="card", seq=seq, ts=now_ms(), payload=payload)

    good_env = env(card.to_bytes(), seq=1)
    bad_sig = bytearray(good_env)
    bad_sig[-5] ^= 0xFF
    return {
        "garbage": os.urandom(200),
        "oversize": env(b"\x00" * 200_000, seq=2),
        "bad-envelope-signature": bytes(bad_sig),
        "tampered-card": env(msgpack.packb(tampered), seq=3),
        "someone-elses-card": env(foreign.to_bytes(), seq=4),
        "expired-card": env(expired.to_bytes(), seq=5),
        "wrong-domain": env(card.to_bytes(), seq=6, domain="sovereign/other/1"),
        "replayed": good_env,  # sent twice below: the second copy is a replay
    }


@asynccontextmanager
async def hostile_host(me: Identity, boot: str, daemon_id: str) -> AsyncIterator[tuple[Any, Pubsub]]:
    """A py-libp2p host with our identity, connected to the daemon and meshed on the card topic."""
    private = Ed25519PrivateKey.new(me.seed)
    kp = KeyPair(private, private.get_public_key())
    host = new_host(
        key_pair=kp,
        sec_opt={NOISE_ID: Noise(kp, noise_privkey=x25519_key_pair().private_key)},
        muxer_opt={YAMUX_ID: Yamux},
    )
    gossip = StrictNoSignGossipSub(
        protocols=[PROTOCOL_ID_V11], degree=6, degree_low=4, degree_high=12,
        heartbeat_interval=1, spam_protection_enabled=False,
    )
    pubsub = StrictNoSignPubsub(host, gossip, lambda *_: None)  # as our daemons gossip (StrictNoSign)
    listen = [Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with host.run(listen_addrs=listen), background_trio_service(pubsub), background_trio_service(gossip):
        await pubsub.wait_until_ready()
        await pubsub.subscribe(CARDS_TOPIC)
        with trio.fail_after(15):
            await host.connect(info_from_p2p_addr(Multiaddr(boot)))
            while ID.from_base58(daemon_id) not in pubsub.peer_topics.get(CARDS_TOPIC, set()):
                await trio.sleep(POLL_S)
        yield host, pubsub


async def test_hostile_peer_cannot_hurt_the_daemon(cluster: Cluster) -> None:
    daemon = cluster.start("victim")
    daemon_id = daemon.call("node.id")["peer_id"]
    boot = daemon.call("node.id")["addrs"][0]

    me = Identity.generate()
    async with hostile_host(me, boot, daemon_id) as (host, pubsub):
        messages = hostile_messages(me)
        for name, data in messages.items():
            await pubsub.publish(CARDS_TOPIC, data)
        await pubsub.publish(CARDS_TOPIC, messages["replayed"])

        # Garbage on the stream: random bytes, a huge declared frame, a truncated frame.
        for junk in (os.urandom(64), (2**31).to_bytes(4, "big") + b"x", (100).to_bytes(4, "big") + b"short"):
            stream = await host.new_stream(ID.from_base58(daemon_id), [CARD_PROTOCOL])
            await stream.write(junk)
            await stream.close()

        # Only one message above was valid (the first copy of "replayed"), so the daemon now
        # lists us alive; everything else was refused and logged, and it still answers.
        with trio.fail_after(15):
            while peer_states(daemon).get(me.peer_id) != "alive":
                await trio.sleep(POLL_S)
        ours = {p["peer_id"]: p for p in daemon.call("peers.list")["peers"]}[me.peer_id]
        assert ours["addrs"] == ["/ip4/127.0.0.1/tcp/9"]  # the tampered addrs never got in
        with trio.fail_after(15):
            while daemon.call("peers.list")["peers"][0]["rejected"] < 8:
                await trio.sleep(POLL_S)

        # A proper card through the proper codec is still accepted: the daemon kept working.
        book = CardBook(me, "test", {"probe": {"ok": True}})
        await pubsub.publish(CARDS_TOPIC, book.seal_own())
        with trio.fail_after(15):
            while "probe" not in {p["peer_id"]: p for p in daemon.call("peers.list")["peers"]}[me.peer_id]["capabilities"]:
                await trio.sleep(POLL_S)

    assert daemon.poll() is None
    assert daemon.call("node.status")["peer_id"] == daemon_id
    log = daemon.log_tail(200)
    assert "refused" in log


async def test_a_peer_that_keeps_sending_garbage_is_banned(cluster: Cluster) -> None:
    daemon = cluster.start("victim")
    daemon_id = daemon.call("node.id")["peer_id"]
    boot = daemon.call("node.id")["addrs"][0]
    me = Identity.generate()
    async with hostile_host(me, boot, daemon_id) as (host, pubsub):
        for _ in range(40):
            await pubsub.publish(CARDS_TOPIC, os.urandom(100))
        with trio.fail_after(15):
            while me.peer_id not in daemon.call("node.status")["banned"]:
                await trio.sleep(POLL_S)
            # The daemon closes its connection (and would close any new one while the ban lasts).
            while ID.from_base58(daemon_id) in host.get_connected_peers():
                await trio.sleep(POLL_S)
    assert daemon.call("node.status")["banned"] == [me.peer_id]
    assert "banned" in daemon.log_tail(50)
