"""node/network.py in one process: two real libp2p hosts on 127.0.0.1."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr

from keys.identity import Identity
from node.discovery import CardBook
from node.network import (
    CARDS_TOPIC,
    CardReceived,
    DialError,
    Disconnected,
    ListenError,
    NetEvent,
    Network,
    Rejected,
    advertised_addrs,
    open_network,
    parse_peer_addr,
    resolve_listen_addrs,
    strict_no_sign_violation,
)

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


def test_wildcard_listen_addresses_become_interface_addresses() -> None:
    out = advertised_addrs(["/ip4/0.0.0.0/tcp/4100/p2p/X", "/ip4/10.1.2.3/tcp/5/p2p/X"])
    assert "/ip4/127.0.0.1/tcp/4100/p2p/X" in out
    assert not any("0.0.0.0" in a for a in out)
    assert out[-1] == "/ip4/10.1.2.3/tcp/5/p2p/X"
    assert out.index("/ip4/127.0.0.1/tcp/4100/p2p/X") == len(out) - 2  # loopback after the rest


@pytest.mark.parametrize("addr", ["", "garbage", "/ip4/127.0.0.1/tcp/1", "/ip4/1.2.3.4/tcp/1/p2p/notapeer"])
def test_parse_peer_addr_refuses_non_peer_addresses(addr: str) -> None:
    with pytest.raises(DialError):
        parse_peer_addr(addr)


async def next_event(net: Network, kind: type, pred=lambda e: True) -> NetEvent:  # type: ignore[no-untyped-def]
    with trio.fail_after(10):
        async for event in net.events:
            if isinstance(event, kind) and pred(event):
                return event
    raise AssertionError("event channel closed")


async def test_connect_exchanges_cards_pings_and_disconnects() -> None:
    a_id, b_id = Identity.generate(), Identity.generate()
    a_book = CardBook(a_id, "t", {"a": {}})
    b_book = CardBook(b_id, "t", {"b": {}})
    async with open_network(a_id, LOOPBACK, a_book) as a, open_network(b_id, LOOPBACK, b_book) as b:
        a_book.addrs, b_book.addrs = tuple(a.listen_addrs()), tuple(b.listen_addrs())
        assert all(x.endswith("/p2p/" + a_id.peer_id) for x in a.listen_addrs())
        with pytest.raises(DialError, match="ourselves"):
            await a.connect(a.listen_addrs()[0])

        assert await a.connect(b.listen_addrs()[0]) == b_id.peer_id
        # The dialer and the listener each learn the other's card from the exchange.
        got_b = await next_event(a, CardReceived, lambda e: e.card.peer_id == b_id.peer_id)
        got_a = await next_event(b, CardReceived, lambda e: e.card.peer_id == a_id.peer_id)
        assert "b" in got_b.card.capabilities and "a" in got_a.card.capabilities
        assert a.is_connected(b_id.peer_id) and b.is_connected(a_id.peer_id)

        rtt = await a.ping(b_id.peer_id)
        assert 0 < rtt < 2
        assert await a.ping(b_id.peer_id) > 0  # the kept-open stream is reused

        assert await a.disconnect(b_id.peer_id)
        await next_event(b, Disconnected, lambda e: e.peer_id == a_id.peer_id)
        assert not await a.disconnect(b_id.peer_id)


async def test_dial_to_a_closed_port_fails_cleanly() -> None:
    me, other = Identity.generate(), Identity.generate()
    async with open_network(me, LOOPBACK, CardBook(me, "t", {})) as net:
        with pytest.raises(DialError):
            await net.connect(f"/ip4/127.0.0.1/tcp/1/p2p/{other.peer_id}")
        assert net.connected_peers() == []


async def test_gossiped_cards_arrive_verified() -> None:
    a_id, b_id = Identity.generate(), Identity.generate()
    b_book = CardBook(b_id, "t", {})
    async with open_network(a_id, LOOPBACK, CardBook(a_id, "t", {})) as a, open_network(b_id, LOOPBACK, b_book) as b:
        await a.connect(b.listen_addrs()[0])
        await next_event(a, CardReceived)  # the one from the card exchange
        # Publish until one arrives over gossip (the mesh forms within a heartbeat or two).
        with trio.fail_after(15):
            while True:
                await b.publish_card()
                with trio.move_on_after(0.5):
                    event = await next_event(a, CardReceived, lambda e: e.card.peer_id == b_id.peer_id)
                    break
        assert event.card.peer_id == b_id.peer_id


# ---------------------------------------------------------------------------------------------
# Listen addresses are bound exactly as given


def _own_listening_sockets() -> set[tuple[str, int]]:
    """(ip, port) of every TCP socket this process has listening, read from /proc."""
    import ipaddress
    import os

    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hex_ip, hex_port = local.split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc prints the address as 32-bit words in host (little-endian) order.
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            assert len(packed) == size
            found.add((str(ipaddress.ip_address(packed)), int(hex_port, 16)))
    return found


async def test_a_dns4_listen_address_binds_only_what_it_resolves_to() -> None:
    me = Identity.generate()
    before = _own_listening_sockets()
    async with open_network(me, ["/dns4/localhost/tcp/0"], CardBook(me, "t", {})) as net:
        opened = _own_listening_sockets() - before
        assert opened and {ip for ip, _ in opened} == {"127.0.0.1"}, opened
        assert all(a.startswith("/ip4/127.0.0.1/tcp/") for a in net.listen_addrs())
        assert {int(a.split("/")[4]) for a in net.listen_addrs()} == {port for _, port in opened}


@pytest.mark.parametrize(
    "addr, fragment",
    [
        ("/dns4/no-such-host.invalid/tcp/0", "does not resolve"),
        ("/ip4/127.0.0.1/udp/0", "HOST/tcp/PORT"),
        ("/ip4/127.0.0.1/tcp/0/ws", "HOST/tcp/PORT"),
        ("/dnsaddr/localhost/tcp/0", "HOST/tcp/PORT"),
        ("/ip4/::1/tcp/0", "bad ip4 value"),
        ("/ip6/127.0.0.1/tcp/0", "bad ip6 value"),
        ("/ip4/127.0.0.1/tcp/70000", "0..65535"),
        ("garbage", "start with '/'"),
    ],
)
async def test_listen_addresses_that_cannot_be_bound_exactly_are_refused(addr: str, fragment: str) -> None:
    me = Identity.generate()
    before = _own_listening_sockets()
    with pytest.raises(ListenError, match=fragment) as info:
        async with open_network(me, [addr], CardBook(me, "t", {})):
            pass
    assert addr in str(info.value)
    assert _own_listening_sockets() == before


async def test_a_port_another_host_listens_on_is_refused() -> None:
    # py-libp2p's SO_REUSEPORT would let both bind it, and the kernel split connections between them.
    a, b = Identity.generate(), Identity.generate()
    async with open_network(a, LOOPBACK, CardBook(a, "t", {})) as first:
        port = first.listen_addrs()[0].split("/")[4]
        taken = f"/dns4/localhost/tcp/{port}"
        with pytest.raises(ListenError, match="in use") as info:
            async with open_network(b, [taken], CardBook(b, "t", {})):
                pass
        assert f"/ip4/127.0.0.1/tcp/{port} (from {taken})" in str(info.value)
        assert first.listen_addrs()  # the first one is untouched


async def test_resolve_listen_addrs_keeps_ips_and_resolves_names() -> None:
    got = await resolve_listen_addrs(["/ip4/127.0.0.1/tcp/0", "/dns4/localhost/tcp/0", "/ip6/0:0::1/tcp/0"])
    assert got == ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"]  # normalised, and what names the same once


def test_discovery_dials_only_addresses_that_name_the_cards_peer() -> None:
    from node.discovery import dialable_addrs, first_dialable

    me, peer, other = (Identity.generate().peer_id for _ in range(3))
    good = f"/ip4/127.0.0.1/tcp/4100/p2p/{peer}"
    addrs = [
        f"/ip4/127.0.0.1/udp/4100/quic-v1/p2p/{peer}",  # a transport we do not speak
        f"/ip4/127.0.0.1/tcp/0/p2p/{peer}",  # no port
        f"/p2p/{peer}",  # no transport
        f"/ip4/127.0.0.1/tcp/4100/p2p/{other}",  # somebody else
        "garbage",
        good,
    ]
    assert first_dialable(peer, addrs, me) == good
    assert list(dialable_addrs(peer, [*addrs, good + "/"], me)) == [good, good + "/"]
    assert first_dialable(peer, addrs[:-1], me) is None
    assert first_dialable(me, [f"/ip4/127.0.0.1/tcp/4100/p2p/{me}"], me) is None  # ourselves


@pytest.mark.parametrize("suffix", ["/p2p/{p}", "/ip4/127.0.0.1/tcp/0/p2p/{p}", "/ip4/127.0.0.1/udp/1/quic-v1/p2p/{p}"])
def test_parse_peer_addr_wants_a_transport_and_a_port(suffix: str) -> None:
    with pytest.raises(DialError, match="not a peer address"):
        parse_peer_addr(suffix.format(p=Identity.generate().peer_id))


# ---------------------------------------------------------------------------------------------
# Gossip follows GossipSub's StrictNoSign rules, so other libp2p implementations accept it


async def _meshed(net: Network, peer: Network) -> None:
    """Wait until `peer` is in `net`'s mesh on the card topic (both meshes form by heartbeat)."""
    await net.pubsub.wait_for_mesh(ID.from_base58(peer.peer_id), CARDS_TOPIC, timeout=10)


def _record_wire_messages(net: Network) -> list[tuple[str, Any]]:
    """Every gossip message `net` receives from a peer, as it came off the wire."""
    seen: list[tuple[str, Any]] = []
    original = net.pubsub.push_msg

    async def push_msg(forwarder: ID, msg: Any) -> None:
        if forwarder.to_base58() != net.peer_id:
            seen.append((forwarder.to_base58(), msg))
        await original(forwarder, msg)

    net.pubsub.push_msg = push_msg  # type: ignore[method-assign]
    return seen


async def test_relayed_cards_are_unsigned_content_addressed_and_all_delivered() -> None:
    # a - b - c in a line: c hears a only through b's forwarding, so a relay that took every
    # card after the first for a duplicate (an empty message id) or an equivocation (the same
    # empty from/seqno with other data) would starve it.
    ids = [Identity.generate() for _ in range(3)]
    books = [CardBook(i, "t", {}) for i in ids]
    async with (
        open_network(ids[0], LOOPBACK, books[0]) as a,
        open_network(ids[1], LOOPBACK, books[1]) as b,
        open_network(ids[2], LOOPBACK, books[2]) as c,
    ):
        wire_at_b, wire_at_c = _record_wire_messages(b), _record_wire_messages(c)
        await a.connect(b.listen_addrs()[0])
        await c.connect(b.listen_addrs()[0])
        await _meshed(a, b)
        await _meshed(b, c)
        cards = 5
        for _ in range(cards):
            await a.publish_card()
        with trio.fail_after(10):
            got: set[int] = set()
            async for event in c.events:
                if isinstance(event, CardReceived) and event.card.peer_id == a.peer_id and event.via == b.peer_id:
                    got.add(event.card.issued_at_ms * 1000 + len(got))
                    if len(got) == cards:
                        break
        assert not c.rejections and not b.rejections

        from_a = [m for via, m in wire_at_b if via == a.peer_id]
        from_b = [m for via, m in wire_at_c if via == b.peer_id]
        assert len({m.data for m in from_a}) == cards and len({m.data for m in from_b}) == cards
        for msg in from_a + from_b:
            assert [f for f in ("from_id", "seqno", "signature", "key") if msg.HasField(f)] == []
            assert c.pubsub.get_message_id(msg) == hashlib.sha256(msg.data).digest()
        # Gossip (IHAVE/IWANT) advertises each card under its own content id, not one shared id.
        window = set(b.gossipsub.mcache.window(CARDS_TOPIC))
        assert {hashlib.sha256(m.data).digest() for m in from_a} <= window


async def test_signed_or_sequenced_gossip_is_refused() -> None:
    # A plain py-libp2p Pubsub (StrictSign, the library's default) adds from, seqno, key and a
    # signature; under StrictNoSign such a message is refused, counted and never relayed.
    me, peer = Identity.generate(), Identity.generate()
    async with open_network(me, LOOPBACK, CardBook(me, "t", {})) as net, _plain_libp2p_peer(peer) as (host, pubsub):
        await host.connect(info_from_p2p_addr(Multiaddr(net.listen_addrs()[0])))
        await pubsub.wait_for_subscription(ID.from_base58(net.peer_id), CARDS_TOPIC, timeout=10)
        await pubsub.publish(CARDS_TOPIC, CardBook(peer, "t", {}).seal_own())
        refused = await next_event(net, Rejected, lambda e: e.peer_id == peer.peer_id)
    assert refused.code == "unexpected-signature" and refused.where == CARDS_TOPIC
    assert "StrictNoSign" in refused.reason


@asynccontextmanager
async def _plain_libp2p_peer(me: Identity) -> AsyncIterator[tuple[Any, Any]]:
    from libp2p import new_host
    from libp2p.crypto.ed25519 import Ed25519PrivateKey
    from libp2p.crypto.keys import KeyPair
    from libp2p.crypto.x25519 import create_new_key_pair
    from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
    from libp2p.pubsub.pubsub import Pubsub
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
    from libp2p.security.noise.transport import Transport as Noise
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
    from libp2p.stream_muxer.yamux.yamux import Yamux
    from libp2p.tools.anyio_service import background_trio_service

    private = Ed25519PrivateKey.new(me.seed)
    kp = KeyPair(private, private.get_public_key())
    host = new_host(key_pair=kp, sec_opt={NOISE_ID: Noise(kp, noise_privkey=create_new_key_pair().private_key)}, muxer_opt={YAMUX_ID: Yamux})
    gossip = GossipSub(protocols=[PROTOCOL_ID_V11], degree=3, degree_low=2, degree_high=6, heartbeat_interval=1)
    pubsub = Pubsub(host, gossip)
    async with host.run(listen_addrs=[Multiaddr(LOOPBACK[0])]), background_trio_service(pubsub), background_trio_service(gossip):
        await pubsub.wait_until_ready()
        await pubsub.subscribe(CARDS_TOPIC)
        yield host, pubsub


async def test_only_our_own_dialer_dials() -> None:
    # py-libp2p's auto-connector would dial peers from the peerstore towards a target of
    # (low + high watermark) / 2 connections, whatever min_connections and low_watermark say;
    # it runs on a timer and after every disconnect.
    me, other = Identity.generate(), Identity.generate()
    async with open_network(me, LOOPBACK, CardBook(me, "t", {})) as a, open_network(other, LOOPBACK, CardBook(other, "t", {})) as b:
        peer, maddr = parse_peer_addr(b.listen_addrs()[0])
        info = info_from_p2p_addr(maddr)
        a.host.get_peerstore().add_addrs(info.peer_id, info.addrs, 3600)
        await a.host.get_network().auto_connector.maybe_connect()
        assert not a.is_connected(peer) and a.host.get_network().get_total_connections() == 0


@given(st.sets(st.sampled_from(["from_id", "seqno", "signature", "key"])), st.binary(max_size=64))
@settings(max_examples=50, deadline=None)
def test_strict_no_sign_refuses_exactly_the_messages_with_authorship_fields(fields: set[str], data: bytes) -> None:
    from libp2p.pubsub.pb import rpc_pb2

    # Presence counts, not content: an empty seqno is still a seqno to go- and js-libp2p.
    msg = rpc_pb2.Message(data=data, topicIDs=[CARDS_TOPIC], **{f: b"" for f in fields})
    violation = strict_no_sign_violation(msg)
    if not fields:
        assert violation is None
    else:
        assert violation is not None
        signed = bool(fields & {"signature", "key"})
        assert violation.reason == ("unexpected-signature" if signed else "unexpected-auth-info")
