"""One PBFT replica as a pure state machine (skeleton: the interface; behaviour follows)."""

from __future__ import annotations

from protocols.pbft.app import Application
from protocols.pbft.config import PbftConfig
from protocols.pbft.effects import Effect
from protocols.pbft.messages import Message, Request


class Replica:
    def __init__(self, replica_id: str, config: PbftConfig, app: Application) -> None:
        self.id = replica_id
        self.config = config
        self.app = app
        self.view = 0
        self.last_executed = 0
        self.stable_checkpoint: tuple[int, bytes] = (0, app.digest())

    @property
    def low_watermark(self) -> int:
        return self.stable_checkpoint[0]

    def log_size(self) -> int:
        return 0

    def on_request(self, request: Request, now: float) -> list[Effect]:
        return []

    def on_message(self, sender: str, message: Message, now: float) -> list[Effect]:
        return []

    def on_timer(self, key: str, now: float) -> list[Effect]:
        return []

    def persistent_state(self) -> bytes:
        return b""

    @classmethod
    def recover(cls, replica_id: str, config: PbftConfig, app: Application, state: bytes) -> "Replica":
        return cls(replica_id, config, app)
