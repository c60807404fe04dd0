"""node/network.py in one process: two real libp2p hosts on 127.0.0.1."""

from __future__ import annotations

import pytest
import trio

from keys.identity import Identity
from node.discovery import CardBook
from node.network import (
    CardReceived,
    Connected,
    DialError,
    Disconnected,
    NetEvent,
    Network,
    advertised_addrs,
    open_network,
    parse_peer_addr,
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
