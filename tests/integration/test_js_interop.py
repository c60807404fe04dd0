"""A js-libp2p node (tests/integration/js, installed by scripts/setup.sh) against a real daemon.

js-libp2p's GossipSub drops gossip that breaks its signature policy, so this is the check that
the daemon's cards follow StrictNoSign: the js node subscribes to the card topic, verifies each
card it receives itself (envelope and card signatures, from the sender's peer id), and publishes
a card-shaped message with a bad signature, which the daemon must refuse and log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keys.identity import Identity
from node.discovery import CardBook
from node.network import CARDS_TOPIC

from .conftest import Cluster, wait_for

pytestmark = pytest.mark.integration

JS_DIR = Path(__file__).parent / "js"
CARDS_WANTED = 3
EVENT_TIMEOUT = 15.0


def _skip_reason() -> str | None:
    node = shutil.which("node")
    if node is None:
        return "node is not installed: the js-libp2p interop test needs Node.js >= 20 and npm"
    if not (JS_DIR / "node_modules" / "libp2p").is_dir():
        return f"{JS_DIR / 'node_modules'} is missing: run scripts/setup.sh with npm installed"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    major = re.match(r"v(\d+)", version)
    if major is None or int(major.group(1)) < 20:
        return f"node {version or '(unknown version)'} is too old: js-libp2p 2.8 needs Node.js >= 20"
    return None


SKIP_REASON = _skip_reason()


def _unpadded_b64(text: str) -> bytes:
    # js-libp2p-gossipsub names message ids in base64 without padding.
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


class JsPeer:
    """The js peer as a child process; its JSON lines are read by a thread into a queue."""

    def __init__(self, daemon_addr: str, log: Path) -> None:
        self._log = log
        with open(log, "wb") as stderr:
            self._proc = subprocess.Popen(
                ["node", str(JS_DIR / "peer.mjs"), daemon_addr, str(CARDS_WANTED)],
                cwd=JS_DIR,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._held: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def expect(self, kind: str, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        """The next event of `kind` (events of other kinds are kept for later calls)."""
        for i, event in enumerate(self._held):
            if event["event"] == kind:
                return self._held.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the js peer sent no {kind!r} within {timeout:g} s; {self._story()}") from None
            if event is None:
                raise AssertionError(f"the js peer exited ({self._proc.wait()}) before {kind!r}; {self._story()}")
            if event["event"] in ("invalid", "error", "publish-failed", "timeout"):
                raise AssertionError(f"the js peer reported {event}; {self._story()}")
            if event["event"] == kind:
                return event
            self._held.append(event)

    def _story(self) -> str:
        return f"held events: {self._held}; stderr: {self._log.read_text(errors='replace')[-2000:]!r}"

    def close(self) -> None:
        try:
            if self._proc.stdin is not None:
                self._proc.stdin.close()  # the peer stops its node and exits when stdin ends
            self._proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()


@pytest.fixture
def js_log() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sovjs-") as tmp:
        yield Path(tmp) / "js.log"


@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
def test_js_libp2p_accepts_our_cards_and_we_refuse_its_garbage(cluster: Cluster, js_log: Path) -> None:
    daemon = cluster.start("d")
    ident = daemon.call("node.id")
    daemon_id, daemon_addr = ident["peer_id"], ident["addrs"][0]
    js = JsPeer(daemon_addr, js_log)
    try:
        ready = js.expect("ready")
        js_id = ready["peer_id"]
        # Identify across implementations: js learned what the daemon speaks.
        assert {"/meshsub/1.1.0", "/ipfs/id/1.0.0", "/sovereign/card/1"} <= set(ready["daemon_protocols"])

        cards = [js.expect("card") for _ in range(CARDS_WANTED)]
        verifier = CardBook(Identity.generate(), "test", {})  # our own codec, as a second opinion
        for card in cards:
            data = bytes.fromhex(card["data"])
            assert card["sender"] == daemon_id and card["via"] == daemon_id
            assert verifier.open(data, via=card["via"], direct=False).peer_id == daemon_id
            # js derived the message id itself (StrictNoSign's default): the content hash, ours too.
            assert _unpadded_b64(card["msg_id"]) == hashlib.sha256(data).digest()
        assert len({c["seq"] for c in cards}) == CARDS_WANTED  # distinct cards, none taken as duplicates
        assert cards[0]["addrs"] == ident["addrs"]

        assert daemon_id in js.expect("published")["recipients"]
        refusal = f"refused {CARDS_TOPIC} from {js_id}: EnvelopeError: bad-signature"
        wait_for(lambda: refusal in daemon.log_tail(400), EVENT_TIMEOUT, "the daemon to log refusing the js garbage")
        assert daemon.poll() is None and daemon.call("node.status")["peer_id"] == daemon_id
    finally:
        js.close()
