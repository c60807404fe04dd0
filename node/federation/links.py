"""Outbound PBFT traffic: one long-lived stream per peer on /sovereign/pbft/1.

Each peer has a bounded queue drained by its own task, which keeps one stream open, writes
everything queued in one go (one Noise frame for many messages), and reopens the stream after a
failure. Nothing here blocks the caller: a frame for a peer that is down or far behind is dropped,
which PBFT tolerates by design (STATUS messages and client retransmissions recover it), whereas
waiting on one slow peer would stall the replica for all of them.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from node.network import DialError, FrameStream, Network

log = logging.getLogger("sovereign.federation")

PROTOCOL = "/sovereign/pbft/1"
QUEUE_FRAMES = 4096  # per peer
WRITE_BYTES = 1 << 20  # at most this much per write
RETRY_AFTER = (0.1, 2.0)  # first and longest pause after a failed open, doubling


class Links:
    def __init__(self, net: Network, nursery: trio.Nursery) -> None:
        self._net = net
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
        retry_at = 0.0
        try:
            while True:
                frames = [await queue.receive()]
                size = len(frames[0])
                while size < WRITE_BYTES:
                    try:
                        frames.append(queue.receive_nowait())
                    except trio.WouldBlock:
                        break
                    size += len(frames[-1])
                if trio.current_time() < retry_at:
                    self.dropped += len(frames)  # the peer was unreachable a moment ago
                    continue
                try:
                    if stream is None:
                        stream = await self._net.open_frame_stream(peer_id, PROTOCOL)
                    await stream.send_many(frames)
                    self.sent_frames += len(frames)
                    pause = RETRY_AFTER[0]
                except (DialError, Exception) as exc:  # noqa: BLE001 - any stream failure: reopen later
                    log.debug("pbft link to %s failed: %s: %s", peer_id, type(exc).__name__, exc)
                    self.dropped += len(frames)
                    if stream is not None:
                        await stream.aclose()
                        stream = None
                    retry_at = trio.current_time() + pause
                    pause = min(pause * 2, RETRY_AFTER[1])
        finally:
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
