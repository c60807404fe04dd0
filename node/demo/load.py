"""The demo's load: each node streams transfers to the next through its own control socket."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any, Protocol

IN_FLIGHT = 8  # transfers each node keeps outstanding
AMOUNT = 1
RECONNECT_S = 0.2  # how often a stream whose daemon is down tries its socket again

# A daemon that goes away or answers nonsense interrupts the stream, never a thread traceback.
_STREAM_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError)


class _Pipe(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...
    def readline(self) -> bytes: ...


class TransferStream(threading.Thread):
    """Keeps IN_FLIGHT transfers outstanding on one pipelined control connection. When its daemon
    dies, what was in flight counts as interrupted (it may or may not commit) and the stream
    reconnects once the daemon is back, so a restarted replica takes its share of the load again."""

    def __init__(self, socket_path: Path, to: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.socket_path, self.to, self.stop_event = socket_path, to, stop
        self.applied = 0
        self.refused = 0
        self.interrupted = 0  # calls in flight when the daemon went away
        self.errors: list[str] = []  # error answers, and answers this stream cannot read
        self._outstanding = 0
        self._next_id = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(str(self.socket_path))
                    self._stream(s.makefile("rwb"))
                    if self._outstanding == 0:
                        return  # stopped, with every answer in
            except (FileNotFoundError, ConnectionRefusedError):
                pass  # the daemon is down or not listening yet: try again shortly
            except _STREAM_ERRORS as exc:
                if not isinstance(exc, OSError):
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            self.interrupted += self._outstanding
            self._outstanding = 0
            self.stop_event.wait(RECONNECT_S)

    def _stream(self, f: _Pipe) -> None:
        """Until stopped and every answer is in, or the daemon hangs up."""
        while not self.stop_event.is_set() or self._outstanding:
            while self._outstanding < IN_FLIGHT and not self.stop_event.is_set():
                self._next_id += 1
                params = {"to": self.to, "amount": AMOUNT}
                call = {"jsonrpc": "2.0", "id": self._next_id, "method": "ledger.transfer", "params": params}
                f.write(json.dumps(call).encode() + b"\n")
                self._outstanding += 1
            f.flush()
            line = f.readline()
            if not line:
                return  # hung up: what is outstanding is interrupted
            self._outstanding -= 1
            self._count(json.loads(line))

    def _count(self, answer: Any) -> None:
        if "error" in answer:
            error = answer["error"]
            self.errors.append(str(error.get("message") if isinstance(error, dict) else error))
        elif answer["result"]["status"] == "applied":
            self.applied += 1
        else:
            self.refused += 1
