"""Every view renders whatever a daemon sends: a seeded stream of malformed answers and events
is fed to the model and each view is redrawn after each one; nothing may raise."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from tui.app import SovereignApp

from .sample import NOW, PEER_A, sample_state

KEYS = ["peer_id", "addrs", "state", "seq", "view", "requests", "primary", "peers", "members", "uptime_s",
        "listen_addrs", "batches", "view_changes", "connected", "latency_ms", "stable_checkpoint", "chain_id",
        "role", "last_executed", "lag", "state_digest", "capabilities", "version", "txs", "ts", "data", "topic"]
TOPICS = ["peer.joined", "peer.updated", "peer.alive", "peer.suspect", "peer.left", "peer.forgotten",
          "federation.committed", "federation.view", "federation.checkpoint", "x"]


def garbage(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**70, 7, -(2**63)])
    if kind == 3:
        return rng.choice([0.5, -1e308, float("inf"), float("nan"), 1e-300])
    if kind == 4:
        return rng.choice(["", "[b]not markup[/b]", "x" * 500, PEER_A, "\x1b[31m", "🙂"])
    if kind == 5:
        return rng.choice([[], {}])
    if kind in (6, 7):
        return {rng.choice(KEYS): garbage(rng, depth + 1) for _ in range(rng.randrange(6))}
    return [garbage(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_views_survive_malformed_daemon_data() -> None:
    rng = random.Random(20261126)
    state = sample_state()

    async def main() -> None:
        app = SovereignApp("/nonexistent", state=state, live=False, clock=lambda: NOW)
        async with app.run_test(size=(80, 24)) as pilot:
            for i in range(400):
                kind = rng.randrange(6)
                if kind == 0:
                    state.apply_event({"topic": rng.choice(TOPICS), "ts": garbage(rng), "data": garbage(rng)})
                elif kind == 1:
                    state.apply_status(garbage(rng), NOW)
                elif kind == 2:
                    state.apply_peers({"peers": garbage(rng)})
                elif kind == 3:
                    state.apply_federation(garbage(rng) if rng.random() < 0.3 else {k: garbage(rng) for k in KEYS})
                elif kind == 4:
                    state.apply_log({"batches": [garbage(rng), {"seq": rng.randrange(10**6), "txs": garbage(rng)}]})
                else:
                    state.apply_event(garbage(rng))
                app.refresh_views()
                if i % 25 == 0:
                    await pilot.press(rng.choice("opfe"))
            await pilot.pause()
            assert app.is_running

    asyncio.run(main())
