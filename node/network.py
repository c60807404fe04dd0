"""The daemon's libp2p host: the only module that imports libp2p (ARCHITECTURE.md).

It owns the host (TCP, Noise only, yamux), GossipSub v1.1 with explicit parameters, the card topic
`sovereign/cards/1`, the card-exchange stream `/sovereign/card/1`, ping, dialing and connection
events. It knows bytes, not meaning: sealing and opening cards is delegated to a `CardCodec`, and
everything it learns leaves as a `NetEvent` on one channel, so data flows one way into the daemon.

No remote input may kill the host (an exception escaping a libp2p handler takes down the swarm,
see shared/notes/libp2p.md): every handler and validator here catches everything but cancellation.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import logging
import os
import socket
import struct
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Literal, Protocol, Sequence, Union

import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.ping import ID as PING_PROTOCOL
from libp2p.host.ping import PING_LENGTH as PING_SIZE
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.config import ConnectionConfig
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.mcache import CacheEntry, MessageCache
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr

from keys.card import CapabilityCard
from keys.identity import Identity
from node.config import split_listen_addr, split_peer_addr

log = logging.getLogger("sovereign.network")

# py-libp2p's yamux by default answers every read with a WINDOW_UPDATE frame, doubling the frames
# (and Noise encryptions) of small gossip messages; "0" restores go-yamux's batching, which sends
# one when half the window is consumed. Read on every call, so setting it here takes effect.
os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")

CARDS_TOPIC = "sovereign/cards/1"
CARD_PROTOCOL = TProtocol("/sovereign/card/1")
MAX_FRAME = 64 * 1024
READ_CHUNK = 256 * 1024
MAX_HINTS = 16
MAX_TRACKED_PEERS = 4096
STREAM_TIMEOUT = 5.0
DIAL_TIMEOUT = 5.0


@dataclass(frozen=True)
class GossipParams:
    """GossipSub v1.1 parameters, explicit because py-libp2p's defaults are unsafe for us
    (a 120 s heartbeat, and spam protection that drops more than 10 msg/s per peer per topic).

    The mesh degree is low on purpose: every card travels to every node, and each copy costs
    py-libp2p about a millisecond of CPU to send or receive. Measured with 16 daemons on 2
    cores: D=6 saturates both cores, D=4 uses 1.9 of them, D=3 1.4; short of two
    missed cards in a row a peer is not suspected, and gossip (IHAVE/IWANT) repairs losses.
    """

    degree: int = 3
    degree_low: int = 2
    degree_high: int = 6
    heartbeat_interval: int = 1
    time_to_live: int = 30
    gossip_window: int = 3
    gossip_history: int = 5


@dataclass(frozen=True)
class Connected:
    peer_id: str


@dataclass(frozen=True)
class Disconnected:
    peer_id: str


@dataclass(frozen=True)
class CardReceived:
    card: CapabilityCard
    via: str  # the peer that delivered it (the author, or a gossip relay)


@dataclass(frozen=True)
class PeersHinted:
    """Cards of other peers that a peer passed on in a card exchange. Each is self-signed and
    verified, but may be up to its TTL old: a hint of whom to dial, not evidence of liveness."""

    cards: tuple[CapabilityCard, ...]
    via: str


@dataclass(frozen=True)
class Rejected:
    """A peer sent something we refused; the daemon logs it and keeps score."""

    peer_id: str
    where: str
    reason: str  # for people
    code: str  # for policy: the decoder's reason code, or the exception type's name


NetEvent = Union[Connected, Disconnected, CardReceived, PeersHinted, Rejected]


class CardCodec(Protocol):
    """Turns the node's card into bytes and verified bytes back into cards."""

    def seal_own(self, *, direct: bool) -> bytes:
        """Our card, freshly issued and sealed for gossip (`direct=False`) or one peer."""
        ...

    def open(self, data: bytes, *, via: str, direct: bool) -> CapabilityCard:
        """Verify and decode; raise ValueError (or a subclass) with a reason on any bad input."""
        ...

    def sample_peers(self) -> list[bytes]:
        """Signed cards of some live peers, to pass on to a peer that exchanges cards with us."""
        ...

    def open_hint(self, data: bytes) -> CapabilityCard:
        """Verify a passed-on card (signature and validity only); ValueError if bad."""
        ...


class FrameError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class DialError(Exception):
    """A dial failed; the message says why in operator terms."""


# -- gossip under GossipSub's StrictNoSign policy ------------------------------------------------
#
# Our envelopes are signed end to end, so libp2p's per-message signature is off. The GossipSub
# spec then requires StrictNoSign: no `from`, `seqno`, `signature` or `key` on the wire, message
# ids derived from the content, and messages carrying any of those fields refused (js-libp2p drops
# them as `seqno_present`/`signature_present`, go-libp2p as unexpected auth info). py-libp2p 0.8
# has no such mode: with strict_signing=False it still sends `from` and `seqno`, and without them
# every id it derives (seen cache, message cache, equivocation check) is the same empty string.
# The three subclasses below supply the mode from our side; nothing in site-packages is touched.

SEEN_TTL = 120  # seconds a message id stays in the seen cache after it was last seen
_AuthField = Literal["from_id", "seqno", "signature", "key"]
_AUTH_FIELDS: tuple[_AuthField, ...] = ("from_id", "seqno", "signature", "key")


def content_message_id(msg: rpc_pb2.Message) -> bytes:
    """SHA-256 of the data: js-libp2p-gossipsub's StrictNoSign id (Ethereum's consensus layer also
    hashes the data), so IHAVE, IWANT and IDONTWANT name a message the same way on both sides."""
    return hashlib.sha256(msg.data).digest()


class GossipPolicyError(ValueError):
    """A gossip message broke StrictNoSign (it carries authorship fields we never accept)."""

    def __init__(self, reason: str, fields: Sequence[str]) -> None:
        shown = ", ".join("from" if f == "from_id" else f for f in fields)
        super().__init__(
            f"{reason}: message carries {shown}; this network gossips unsigned, content-addressed "
            "messages only (GossipSub StrictNoSign)"
        )
        self.reason = reason


def strict_no_sign_violation(msg: rpc_pb2.Message) -> GossipPolicyError | None:
    present = [f for f in _AUTH_FIELDS if msg.HasField(f)]
    if not present:
        return None
    reason = "unexpected-signature" if {"signature", "key"} & set(present) else "unexpected-auth-info"
    return GossipPolicyError(reason, present)


class _ContentAddressedMessageCache(MessageCache):
    """py-libp2p's message cache keys by from+seqno whatever the pubsub's id function is; under
    StrictNoSign that key is empty, so only the first message would ever be offered by gossip."""

    def put(self, msg: rpc_pb2.Message) -> None:
        mid = content_message_id(msg)
        if mid not in self.msgs:
            self.msgs[mid] = msg
            self.history[0].append(CacheEntry(mid, msg.topicIDs))


class StrictNoSignGossipSub(GossipSub):
    """GossipSub with a content-addressed message cache and no equivocation check."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mcache = _ContentAddressedMessageCache(self.mcache.window_size, self.mcache.history_size)

    def _check_equivocation(self, msg: rpc_pb2.Message) -> bool:
        # Equivocation is one (from, seqno) with two contents. Without from and seqno every
        # message shares the empty key, and py-libp2p would stop forwarding all but the first.
        return True


RefusalHandler = Callable[[ID, str, BaseException], None]


class StrictNoSignPubsub(Pubsub):
    """Publishes messages without from/seqno/signature/key, ids them by content, and refuses
    (through `on_refused(forwarder, topic, error)`) any message that carries those fields."""

    def __init__(self, host: Any, router: GossipSub, on_refused: RefusalHandler) -> None:
        super().__init__(
            host,
            router,
            strict_signing=False,
            msg_id_constructor=content_message_id,
            seen_ttl=SEEN_TTL,
            # No longer than the seen cache: a validation result cached past it would let a
            # replay of the same bytes skip our validators once the seen entry has expired.
            validation_cache_ttl=SEEN_TTL,
        )
        self._on_refused = on_refused

    async def publish(self, topic_id: str | list[str], data: bytes) -> None:
        topics = [topic_id] if isinstance(topic_id, str) else list(topic_id)
        await self.push_msg(self.my_id, rpc_pb2.Message(data=data, topicIDs=topics))

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        violation = strict_no_sign_violation(msg)
        if violation is not None:
            # Refused before the seen cache and validators, as go- and js-libp2p do; relaying it
            # would get us penalised by their peer scores as the sender of invalid messages.
            if not self.is_peer_blacklisted(msg_forwarder):
                self._on_refused(msg_forwarder, ",".join(msg.topicIDs), violation)
            return
        await super().push_msg(msg_forwarder, msg)


class _NoAutoConnector(AutoConnector):
    """py-libp2p's auto-connector dials peerstore peers towards (low + high watermark) / 2
    connections, so low_watermark=0 still means 150 dials, on a timer and after every
    disconnect. Never started, it does nothing (every entry point checks `_started`): the
    discovery service's dialer is the only one, with its own backoff and bans."""

    async def start(self) -> None:
        return None


def _libp2p_key_pair(identity: Identity) -> KeyPair:
    private = Ed25519PrivateKey.new(identity.seed)
    return KeyPair(private, private.get_public_key())


def parse_peer_addr(addr: str) -> tuple[str, Multiaddr]:
    """Parse an address we may dial or persist: `/ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT/p2p/ID`
    with a non-zero port (``node.config.split_peer_addr``); DialError saying why if it is not
    one. Every dial goes through here, so nothing without a transport or a port is tried."""
    try:
        split_peer_addr(addr)
    except ValueError as exc:
        raise DialError(f"not a peer address: {exc}") from None
    try:
        maddr = Multiaddr(addr)
        info = info_from_p2p_addr(maddr)
    except Exception as exc:  # multiaddr raises a zoo of types for bad input
        raise DialError(f"not a peer address (want /ip4/HOST/tcp/PORT/p2p/PEER_ID): {addr!r}: {exc}") from None
    return info.peer_id.to_base58(), maddr


async def _read_exactly(stream, n: int) -> bytes:  # type: ignore[no-untyped-def]
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))
        if not chunk:
            raise EOFError("stream closed mid-frame")
        buf += chunk
    return bytes(buf)


async def read_frame(stream) -> bytes:  # type: ignore[no-untyped-def]
    """One length-prefixed frame (4-byte big-endian length), refused above MAX_FRAME."""
    data = await read_frame_or_end(stream)
    if data is None:
        raise EOFError("stream closed before a frame")
    return data


async def read_frame_or_end(stream, max_size: int = MAX_FRAME) -> bytes | None:  # type: ignore[no-untyped-def]
    """Like `read_frame`, but None when the stream ends cleanly at a frame boundary."""
    try:
        first = await stream.read(4)
    except EOFError:  # py-libp2p raises StreamEOF (an EOFError) at the end of a stream
        return None
    if not first:
        return None
    header = first + (await _read_exactly(stream, 4 - len(first)) if len(first) < 4 else b"")
    size = int.from_bytes(header, "big")
    if size > max_size:
        raise ValueError(f"frame of {size} bytes exceeds {max_size}")
    return await _read_exactly(stream, size)


def frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _interface_ipv4() -> list[str]:
    """The primary IPv4 address of each interface (SIOCGIFADDR: stdlib only, no netlink,
    which the systemd unit's RestrictAddressFamilies does not allow)."""
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue  # no IPv4 address on this interface
            found.append(socket.inet_ntoa(packed[20:24]))
    return found


def _interface_ipv6() -> list[str]:
    """Global and loopback IPv6 addresses from /proc/net/if_inet6 (link-local ones need a zone)."""
    found: list[str] = []
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) >= 4 and int(fields[3], 16) != 0x20:
            found.append(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
    return found


def advertised_addrs(bound: Sequence[str]) -> list[str]:
    """What peers can dial: a wildcard listener (0.0.0.0, ::) stands for every interface
    address, listed non-loopback first so a remote peer tries a reachable one first."""
    out: list[str] = []
    for addr in bound:
        parts = addr.split("/")
        if len(parts) > 2 and parts[1] in ("ip4", "ip6") and parts[2] in ("0.0.0.0", "::"):
            ips = _interface_ipv4() if parts[1] == "ip4" else _interface_ipv6()
            ips.sort(key=lambda ip: ipaddress.ip_address(ip).is_loopback)
            out += ["/".join([*parts[:2], ip, *parts[3:]]) for ip in ips]
        else:
            out.append(addr)
    return list(dict.fromkeys(out))


class _ConnectionNotifee:
    """Swarm notifee that turns connection changes into events, never blocking the swarm."""

    def __init__(self, network: Network) -> None:
        self._network = network

    async def opened_stream(self, network, stream) -> None:  # type: ignore[no-untyped-def]
        return None

    async def closed_stream(self, network, stream) -> None:  # type: ignore[no-untyped-def]
        return None

    async def connected(self, network, conn) -> None:  # type: ignore[no-untyped-def]
        self._network._connection_changed(conn.muxed_conn.peer_id)

    async def disconnected(self, network, conn) -> None:  # type: ignore[no-untyped-def]
        self._network._connection_changed(conn.muxed_conn.peer_id)

    async def listen(self, network, multiaddr) -> None:  # type: ignore[no-untyped-def]
        return None

    async def listen_close(self, network, multiaddr) -> None:  # type: ignore[no-untyped-def]
        return None


FrameHandler = Callable[[str, bytes], None]


class FrameStream:
    """An outbound stream of length-prefixed frames to one peer on one protocol (long-lived and
    pipelined: opening a stream costs a multistream negotiation, about 10 ms)."""

    def __init__(self, stream: Any, peer_id: str) -> None:
        self._stream = stream
        self.peer_id = peer_id

    async def send(self, data: bytes) -> None:
        await self._stream.write(frame(data))

    async def send_many(self, frames: Sequence[bytes]) -> None:
        # One write for many frames: one Noise encryption and yamux frame instead of one each.
        await self._stream.write(b"".join(frame(d) for d in frames))

    async def aclose(self) -> None:
        await _reset_quietly(self._stream)


class Network:
    """A running libp2p host. Create with `open_network`; read `events`."""

    def __init__(self, identity: Identity, codec: CardCodec, gossip: GossipParams, events_buffer: int) -> None:
        self.identity = identity
        self.peer_id = identity.peer_id
        self._codec = codec
        key_pair = _libp2p_key_pair(identity)
        self.host = new_host(
            key_pair=key_pair,
            # Noise only: py-libp2p's defaults would also accept plaintext and secio.
            sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)},
            muxer_opt={YAMUX_PROTOCOL_ID: Yamux},  # type: ignore[dict-item]
            connection_config=ConnectionConfig(min_connections=0, low_watermark=0, dial_timeout=DIAL_TIMEOUT),
        )
        # We choose whom to dial ourselves (discovery's dialer); the watermarks above do not turn
        # py-libp2p's auto-connector off, replacing it before the swarm starts does.
        swarm = self.host.get_network()
        assert isinstance(swarm, Swarm)  # what new_host builds for TCP
        swarm.auto_connector = _NoAutoConnector(swarm, swarm.connection_config.auto_connect_interval)
        self.gossipsub = StrictNoSignGossipSub(
            protocols=[PROTOCOL_ID_V11],
            degree=gossip.degree,
            degree_low=gossip.degree_low,
            degree_high=gossip.degree_high,
            heartbeat_interval=gossip.heartbeat_interval,
            time_to_live=gossip.time_to_live,
            gossip_window=gossip.gossip_window,
            gossip_history=gossip.gossip_history,
            spam_protection_enabled=False,
            # Adaptive gossip raises the gossip factor when the network looks unhealthy; on a
            # CPU-starved node that means more IHAVE/IWANT traffic exactly when it is behind,
            # a positive feedback we would rather not have.
            adaptive_gossip_enabled=False,
        )
        # Our envelopes are signed and verified end to end; libp2p's own per-message signature
        # would be a second Ed25519 verify of every copy of every message. Unsigned gossip must
        # then follow StrictNoSign, or other implementations drop it (see StrictNoSignPubsub).
        self.pubsub = StrictNoSignPubsub(self.host, self.gossipsub, self._refuse_gossip)
        self._ping_streams: dict[str, Any] = {}
        self._send, self.events = trio.open_memory_channel[NetEvent](events_buffer)
        self._connected: dict[str, float] = {}  # peer id -> trio time connected
        self.banned: dict[str, float] = {}  # peer id -> trio time its ban ends
        self._listen_addrs: tuple[str, ...] = ()
        self._nursery: trio.Nursery | None = None
        self.rejections: dict[str, int] = {}
        self.dropped_events = 0

    # -- what the daemon asks of the network -------------------------------------------------

    def listen_addrs(self) -> list[str]:
        """Full multiaddrs ending in /p2p/<peer id>, with the ports actually bound and
        wildcard addresses replaced by this host's interface addresses. Computed once the
        host listens (building multiaddrs is costly and `node.status` is a hot path); a host
        whose interface addresses change is restarted by its operator, as with most daemons."""
        return list(self._listen_addrs)

    def connected_peers(self) -> list[str]:
        return sorted(self._connected)

    def is_connected(self, peer_id: str) -> bool:
        return peer_id in self._connected

    def connected_since(self, peer_id: str) -> float | None:
        """trio time at which our current connection to the peer opened."""
        return self._connected.get(peer_id)

    async def connect(self, addr: str) -> str:
        """Dial a peer address, exchange cards with it, and return its peer id."""
        peer_id, maddr = parse_peer_addr(addr)
        if peer_id == self.peer_id:
            raise DialError("refusing to dial ourselves")
        if self.is_banned(peer_id):
            raise DialError(f"{peer_id} is banned for misbehaviour")
        try:
            with trio.fail_after(DIAL_TIMEOUT):
                await self.host.connect(info_from_p2p_addr(maddr))
        except trio.TooSlowError:
            raise DialError(f"dial {addr} timed out after {DIAL_TIMEOUT:g} s") from None
        except Exception as exc:
            raise DialError(f"dial {addr} failed: {type(exc).__name__}: {exc}") from None
        await self._exchange_cards(peer_id)
        return peer_id

    def ban(self, peer_id: str, seconds: float) -> None:
        """Refuse a misbehaving peer for a while: libp2p drops its gossip before our validator
        runs, its card streams are reset, and its connections are closed whenever they open."""
        self.banned[peer_id] = trio.current_time() + seconds
        self.pubsub.add_to_blacklist(ID.from_base58(peer_id))
        log.warning("banned %s for %.0f s", peer_id, seconds)
        if self._nursery is not None and peer_id in self._connected:
            self._nursery.start_soon(self.disconnect, peer_id)

    def is_banned(self, peer_id: str) -> bool:
        until = self.banned.get(peer_id)
        if until is None:
            return False
        if trio.current_time() < until:
            return True
        del self.banned[peer_id]  # lifted lazily: a banned peer's next contact is a connection
        self.pubsub.remove_from_blacklist(ID.from_base58(peer_id))
        return False

    async def disconnect(self, peer_id: str) -> bool:
        if peer_id not in self._connected:
            return False
        await self.host.disconnect(ID.from_base58(peer_id))
        return True

    async def ping(self, peer_id: str) -> float:
        """Round-trip time in seconds of one libp2p ping (/ipfs/ping/1.0.0) on a stream kept
        open per peer, so the figure is the network's, not stream negotiation's. Raises on
        failure or after 2 s; one ping per peer at a time (the caller's loop ensures it)."""
        stream = self._ping_streams.get(peer_id)
        try:
            with trio.fail_after(2.0):
                if stream is None:
                    stream = await self.host.new_stream(ID.from_base58(peer_id), [PING_PROTOCOL])
                    self._ping_streams[peer_id] = stream
                payload = os.urandom(PING_SIZE)
                start = trio.current_time()
                await stream.write(payload)
                echo = await _read_exactly(stream, PING_SIZE)
                rtt = trio.current_time() - start
        except BaseException:
            self._ping_streams.pop(peer_id, None)
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await _reset_quietly(stream)
            raise
        if echo != payload:
            self._ping_streams.pop(peer_id, None)
            raise ValueError(f"{peer_id} answered a ping with other bytes")
        return rtt

    async def open_frame_stream(self, peer_id: str, protocol: str) -> FrameStream:
        """A new outbound frame stream (dialing the peer from the peerstore if need be)."""
        if self.is_banned(peer_id):
            raise DialError(f"{peer_id} is banned for misbehaviour")
        try:
            with trio.fail_after(DIAL_TIMEOUT):
                stream = await self.host.new_stream(ID.from_base58(peer_id), [TProtocol(protocol)])
        except trio.TooSlowError:
            raise DialError(f"opening {protocol} to {peer_id} timed out") from None
        except Exception as exc:
            raise DialError(f"opening {protocol} to {peer_id} failed: {type(exc).__name__}: {exc}") from None
        return FrameStream(stream, peer_id)

    def serve_frames(self, protocol: str, on_frame: FrameHandler, max_frame: int) -> None:
        """Accept inbound streams on `protocol` and hand every frame to `on_frame(peer_id, data)`
        (synchronous and non-blocking: it should only queue). A peer sending an oversize or
        truncated frame has its stream reset and the refusal counted; nothing escapes."""

        async def handle(stream) -> None:  # type: ignore[no-untyped-def]
            peer_id = "?"
            try:
                peer_id = stream.muxed_conn.peer_id.to_base58()
                if self.is_banned(peer_id):
                    await _reset_quietly(stream)
                    return
                # Large reads, frames split here: every read of a yamux stream costs a window
                # update (a Noise-encrypted frame back), so one read per frame header and body
                # would triple the work for small frames.
                buf = bytearray()
                while True:
                    try:
                        chunk = await stream.read(READ_CHUNK)
                    except EOFError:  # py-libp2p's StreamEOF: the peer closed its side
                        break
                    if not chunk:
                        break
                    buf += chunk
                    while len(buf) >= 4:
                        size = int.from_bytes(buf[:4], "big")
                        if size > max_frame:
                            raise ValueError(f"frame of {size} bytes exceeds {max_frame}")
                        if len(buf) < 4 + size:
                            break
                        data = bytes(buf[4 : 4 + size])
                        del buf[: 4 + size]
                        try:
                            on_frame(peer_id, data)
                        except Exception:  # noqa: BLE001 - our bug, not the peer's: say so, keep reading
                            log.exception("%s: handling a frame from %s failed", protocol, peer_id)
            except Exception as exc:  # noqa: BLE001 - an escaping exception kills the swarm
                if isinstance(exc, ValueError):  # oversize: the peer's doing
                    self._reject(peer_id, protocol, exc)
                else:  # the connection went away (reset, EOF mid-frame): ordinary churn
                    log.debug("%s stream from %s ended: %s: %s", protocol, peer_id, type(exc).__name__, exc)
                await _reset_quietly(stream)

        self.host.set_stream_handler(TProtocol(protocol), handle)

    async def join_topic(self, topic: str, validate: Callable[[str, bytes], bool]) -> None:
        """Take part in gossip `topic` until the network closes. `validate(forwarder, data)`
        decides, synchronously, what is delivered and forwarded (it should only verify and queue);
        our own publications pass."""

        def validator(forwarder: ID, msg: Any) -> bool:
            via = "?"
            try:
                via = forwarder.to_base58()
                return via == self.peer_id or bool(validate(via, bytes(msg.data)))
            except Exception:  # noqa: BLE001 - a validator that raises would kill the host: our bug, say so
                log.exception("%s: validating a message from %s failed", topic, via)
                return False

        assert self._nursery is not None, "join topics inside open_network"
        self.pubsub.set_topic_validator(topic, validator, False)
        subscription = await self.pubsub.subscribe(topic)
        self._nursery.start_soon(self._drain, subscription)

    async def publish(self, topic: str, data: bytes) -> None:
        await self.pubsub.publish(topic, data)

    async def publish_card(self) -> None:
        await self.pubsub.publish(CARDS_TOPIC, self._codec.seal_own(direct=False))

    def peer_addrs(self, peer_id: str) -> list[str]:
        try:
            return [str(a) for a in self.host.get_peerstore().addrs(ID.from_base58(peer_id))]
        except Exception:
            return []

    # -- inbound ----------------------------------------------------------------------------

    def _emit(self, event: NetEvent) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            # The consumer is ours and fast; if it ever falls this far behind, losing an event
            # is better than stalling the swarm. Liveness recovers from the next card.
            self.dropped_events += 1
            log.error("network event queue full; dropped %s", type(event).__name__)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def report_refusal(self, peer_id: str, where: str, exc: BaseException) -> None:
        """Another service refused something this peer sent: logged and counted like our own
        refusals (discovery bans peers that keep sending provably bad messages)."""
        self._reject(peer_id, where, exc)

    def _reject(self, peer_id: str, where: str, exc: BaseException) -> None:
        # Re-inserted last so the dict's order is recency; bounded against floods of identities.
        self.rejections[peer_id] = self.rejections.pop(peer_id, 0) + 1
        if len(self.rejections) > MAX_TRACKED_PEERS:
            del self.rejections[next(iter(self.rejections))]
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("refused %s from %s: %s", where, peer_id, reason)
        # Decoders give a machine-readable `reason`; transport failures are named by their type.
        self._emit(Rejected(peer_id, where, reason, getattr(exc, "reason", type(exc).__name__)))

    def _refuse_gossip(self, forwarder: ID, topic: str, exc: BaseException) -> None:
        self._reject(forwarder.to_base58(), topic, exc)

    def _connection_changed(self, peer: ID) -> None:
        # The swarm may hold several connections to one peer; what matters is whether any is left.
        peer_id = peer.to_base58()
        now_connected = self.host.get_network().connections.get(peer) not in (None, [])
        if now_connected and self.is_banned(peer_id) and self._nursery is not None:
            self._nursery.start_soon(self.host.disconnect, peer)
        if now_connected and peer_id not in self._connected:
            self._connected[peer_id] = trio.current_time()
            self._emit(Connected(peer_id))
        elif not now_connected and peer_id in self._connected:
            del self._connected[peer_id]
            self._ping_streams.pop(peer_id, None)
            self._emit(Disconnected(peer_id))

    def _validate_card(self, via: str, data: bytes) -> bool:
        """The card topic's validator (join_topic): only verified cards are delivered or forwarded."""
        try:
            card = self._codec.open(data, via=via, direct=False)
        except Exception as exc:  # noqa: BLE001 - whatever the codec raises, the card is refused
            self._reject(via, CARDS_TOPIC, exc)
            return False
        self._emit(CardReceived(card, via))
        return True

    async def _drain(self, subscription) -> None:  # type: ignore[no-untyped-def]
        # Verified messages already left through the validator; reading keeps the 32-slot
        # subscription buffer from overflowing (a WARNING per dropped message otherwise).
        while True:
            await subscription.get()

    async def _exchange_cards(self, peer_id: str) -> None:
        """Dialer side of /sovereign/card/1: send our card; read theirs, then up to MAX_HINTS
        cards of their live peers. Best effort: gossip delivers cards anyway; the exchange
        makes a join immediate, and the hints let a newcomer connect to more than its
        bootstrap peer at once (so it joins the gossip mesh even if that peer prunes it)."""
        stream = None
        try:
            with trio.fail_after(STREAM_TIMEOUT):
                stream = await self.host.new_stream(ID.from_base58(peer_id), [CARD_PROTOCOL])
                await stream.write(frame(self._codec.seal_own(direct=True)))
                data = await read_frame(stream)
                card = self._codec.open(data, via=peer_id, direct=True)
                self._emit(CardReceived(card, peer_id))
                hints: list[CapabilityCard] = []
                while len(hints) < MAX_HINTS and (hint := await read_frame_or_end(stream)) is not None:
                    hints.append(self._codec.open_hint(hint))
                if hints:
                    self._emit(PeersHinted(tuple(hints), peer_id))
                await stream.close()
        except Exception as exc:  # noqa: BLE001 - a bad peer must not fail our dial
            log.debug("card exchange with %s failed: %s: %s", peer_id, type(exc).__name__, exc)
            if stream is not None:
                await _reset_quietly(stream)

    async def _handle_card_stream(self, stream) -> None:  # type: ignore[no-untyped-def]
        peer_id = "?"
        try:
            peer_id = stream.muxed_conn.peer_id.to_base58()
            if self.is_banned(peer_id):
                await _reset_quietly(stream)
                return
            with trio.fail_after(STREAM_TIMEOUT):
                data = await read_frame(stream)
                try:
                    card = self._codec.open(data, via=peer_id, direct=True)
                except Exception as exc:  # noqa: BLE001
                    self._reject(peer_id, str(CARD_PROTOCOL), exc)
                    await _reset_quietly(stream)
                    return
                self._emit(CardReceived(card, peer_id))
                hints = [c for c in self._codec.sample_peers() if len(c) <= MAX_FRAME][:MAX_HINTS]
                await stream.write(b"".join(frame(d) for d in [self._codec.seal_own(direct=True), *hints]))
                await stream.close()
        except Exception as exc:  # noqa: BLE001 - an escaping exception kills the swarm
            self._reject(peer_id, str(CARD_PROTOCOL), exc)
            await _reset_quietly(stream)


async def _reset_quietly(stream) -> None:  # type: ignore[no-untyped-def]
    try:
        await stream.reset()
    except Exception:  # noqa: BLE001 - the stream may already be gone
        pass


class ListenError(Exception):
    """A configured listen address cannot be bound exactly as given (py-libp2p only logs this)."""


_LISTEN_FAMILIES = {"dns4": socket.AF_INET, "dns6": socket.AF_INET6, "dns": socket.AF_UNSPEC}


def _split_listen_addr(addr: str) -> tuple[str, str, int]:
    """py-libp2p binds the wildcard for any host it cannot read as an IP (a DNS name, say), so
    whatever is not an IP or a name we resolve is refused here rather than widened."""
    try:
        return split_listen_addr(addr)
    except ValueError as exc:
        raise ListenError(f"bad listen address: {exc}") from None


async def resolve_listen_addrs(listen: Sequence[str]) -> list[str]:
    """Listen multiaddrs with every DNS name replaced by the addresses it resolves to (of the
    family the protocol names: dns4 -> IPv4, dns6 -> IPv6, dns -> both), so each is bound
    exactly; an unresolvable name or an address that cannot be bound exactly is a ListenError,
    and so is a port that another socket listens on."""
    out: list[str] = []
    for addr in listen:
        for concrete in await _resolve_listen_addr(addr):
            _refuse_taken_port(concrete, addr)
            out.append(concrete)
    return list(dict.fromkeys(out))


async def _resolve_listen_addr(addr: str) -> list[str]:
    proto, host, port = _split_listen_addr(addr)
    if proto in ("ip4", "ip6"):  # the syntax check has made sure each is of its family
        return [f"/{proto}/{ipaddress.ip_address(host)}/tcp/{port}"]
    try:
        infos = await trio.socket.getaddrinfo(host, port, _LISTEN_FAMILIES[proto], socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ListenError(f"cannot listen on {addr!r}: {host!r} does not resolve: {exc}") from None
    ips = [str(ipaddress.ip_address(info[4][0])) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
    if not ips:
        raise ListenError(f"cannot listen on {addr!r}: {host!r} has no {proto} address")
    return [f"/{'ip4' if ':' not in ip else 'ip6'}/{ip}/tcp/{port}" for ip in ips]


def _refuse_taken_port(concrete: str, requested: str) -> None:
    """py-libp2p binds with SO_REUSEPORT, so a second daemon on a taken port would bind too and
    the kernel would share incoming connections between the two. A plain bind first (with
    SO_REUSEADDR only, so a restart is not refused for connections in TIME_WAIT) finds that out."""
    proto, host, port = split_listen_addr(concrete)
    if port == 0:
        return
    with socket.socket(socket.AF_INET if proto == "ip4" else socket.AF_INET6, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            shown = concrete if concrete == requested else f"{concrete} (from {requested})"
            raise ListenError(f"cannot listen on {shown}: {exc.strerror or exc}") from None


def _bound_host(addr: str) -> tuple[str, str]:
    parts = addr.split("/")
    return parts[1], str(ipaddress.ip_address(parts[2]))


def _check_listening(net: Network, requested: Sequence[str]) -> None:
    bound = [str(a) for a in net.host.get_addrs()]
    # Exactly the hosts asked for: a port in use yields no listener for its address, and a
    # listener on any other host (a wildcard) would be wider than what was configured.
    want = sorted(_bound_host(a) for a in requested)
    got = sorted(_bound_host(a) for a in bound)
    if want != got:
        raise ListenError(
            f"could not listen on exactly {', '.join(requested)} (bound: {', '.join(bound) or 'none'}); "
            "is the port in use or the address not on this host?"
        )


@asynccontextmanager
async def open_network(
    identity: Identity,
    listen: Sequence[str],
    codec: CardCodec,
    *,
    gossip: GossipParams = GossipParams(),
    events_buffer: int = 4096,
) -> AsyncIterator[Network]:
    """Start the host listening on `listen` and yield it; leaving the block stops everything."""
    resolved = await resolve_listen_addrs(listen)
    try:
        listen_addrs = [Multiaddr(a) for a in resolved]
    except Exception as exc:  # multiaddr raises a zoo of types for bad input
        raise ListenError(f"bad listen address in {list(listen)!r}: {exc}") from None
    net = Network(identity, codec, gossip, events_buffer)
    net.host.get_network().register_notifee(_ConnectionNotifee(net))  # type: ignore[arg-type]
    net.host.set_stream_handler(CARD_PROTOCOL, net._handle_card_stream)
    async with (
        net.host.run(listen_addrs=listen_addrs),
        background_trio_service(net.pubsub),
        background_trio_service(net.gossipsub),
        trio.open_nursery() as nursery,
    ):
        _check_listening(net, resolved)
        net._listen_addrs = tuple(advertised_addrs([str(a) for a in net.host.get_addrs()]))
        await net.pubsub.wait_until_ready()
        net._nursery = nursery
        await net.join_topic(CARDS_TOPIC, net._validate_card)
        try:
            yield net
        finally:
            nursery.cancel_scope.cancel()
            net._send.close()

