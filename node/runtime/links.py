"""Outbound traffic of one protocol: one long-lived stream per peer on the protocol's stream id.

Each peer has a bounded queue drained by its own task, which keeps one stream open, writes
everything queued in one go (one Noise frame for many messages), and reopens the stream after a
failure, keeping what it could not send (a peer we cannot reach yet, e.g. at start-up before
discovery has its addresses, gets it late rather than never). Nothing here blocks the caller: once
a peer's queue is full, new frames for it are dropped, which every protocol here tolerates by
design (PBFT's STATUS messages and client retransmissions recover it), whereas waiting on one slow
or dead peer would stall the machine for all of them.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from node.network import FrameStream, Network

log = logging.getLogger("sovereign.runtime")

# Per peer: a second or two of traffic. More only piles up stale messages for a peer that was
# paused or cut off, which it must then verify and discard before it can catch up by STATUS.
QUEUE_FRAMES = 512
WRITE_BYTES = 1 << 20  # at most this much per write
RETRY_AFTER = (0.1, 2.0)  # first and longest pause after a failed open, doubling


class Links:
    def __init__(self, net: Network, nursery: trio.Nursery, protocol: str) -> None:
        self._net = net
        self.protocol = protocol
        self._nursery = nursery
        self._queues: dict[str, trio.MemorySendChannel[bytes]] = {}
        self.dropped = 0
        self.sent_frames = 0

    def send(self, peer_id: str, data: bytes) -> None:
        q = self._queues.get(peer_id)
        if q is None:
            q, receive = trio.open_memory_channel[bytes](QUEUE_FRAMES)
            self._queues[peer_id] = q
            self._nursery.start_soon(self._run, peer_id, receive)
        try:
            q.send_nowait(data)
        except trio.WouldBlock:
            self.dropped += 1

    def stats(self) -> dict[str, Any]:
        return {"peers": len(self._queues), "sent_frames": self.sent_frames, "dropped_frames": self.dropped}

    async def _run(self, peer_id: str, queue: trio.MemoryReceiveChannel[bytes]) -> None:
        stream: FrameStream | None = None
        pause = RETRY_AFTER[0]
        frames: list[bytes] = []  # taken from the queue, not yet written
        try:
            while True:
                if not frames:
                    frames.append(await queue.receive())
                size = sum(map(len, frames))
                while size < WRITE_BYTES and len(frames) < QUEUE_FRAMES:
                    try:
                        frames.append(queue.receive_nowait())
                    except trio.WouldBlock:
                        break
                    size += len(frames[-1])
                try:
                    if stream is None:
                        stream = await self._net.open_frame_stream(peer_id, self.protocol)
                    await stream.send_many(frames)
                    self.sent_frames += len(frames)
                    frames = []
                    pause = RETRY_AFTER[0]
                except Exception as exc:  # noqa: BLE001 - any stream failure: reopen later
                    log.debug("%s link to %s failed: %s: %s", self.protocol, peer_id, type(exc).__name__, exc)
                    if stream is not None:
                        await stream.aclose()
                        stream = None
                    # A write that failed midway may have delivered a prefix: resending it is
                    # harmless (the receiver's replay guard refuses the copies).
                    if len(frames) > QUEUE_FRAMES // 2:
                        self.dropped += len(frames) - QUEUE_FRAMES // 2
                        del frames[: len(frames) - QUEUE_FRAMES // 2]  # keep the newest
                    await trio.sleep(pause)
                    pause = min(pause * 2, RETRY_AFTER[1])
        finally:
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
