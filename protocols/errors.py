"""The one exception protocol code raises for bad peer input."""

from __future__ import annotations


class ProtocolError(Exception):
    """Peer input that was refused. `reason` is short and machine-readable (it feeds metrics and the
    peer's score); `detail` is for logs. Handlers catch this and never let it reach libp2p."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
