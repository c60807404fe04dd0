"""A deterministic daemon state for the TUI's snapshot and pilot tests (no daemon, no clock)."""

from __future__ import annotations

from tui.state import DaemonState

ME = "12D3KooWKDJuXikCBYMHWh3cv3UW2ovfb2rLQWbeyzVjPX4r4FLQ"
PEER_A = "12D3KooWGS2djaJfDo1pbegQwWoKBTfwwxpk3nbrUS4kqnRRSpMG"
PEER_B = "12D3KooWRx2mXQz1qz5nAmpL7cWb1FM3v4tYVLkJ6KrZ2sHqYb9d"
PEER_C = "12D3KooWBn7yPq2Zf6cHrEJjNw1a4VUt5uLxKkT8gMdS3oQeRi2X"
NOW = 1_000.0  # the fake clock every sample is read against


def sample_state(*, connected: bool = True) -> DaemonState:
    s = DaemonState(socket_path="/tmp/sample/sovereign.sock")
    s.apply_status(
        {
            "version": "0.1.0",
            "peer_id": ME,
            "pid": 4242,
            "uptime_s": 3725.0,
            "listen_addrs": [f"/ip4/127.0.0.1/tcp/40001/p2p/{ME}"],
            "peer_count": 2,
            "peers": {"alive": 2, "suspect": 1, "dead": 0, "connected": 2},
        },
        NOW,
    )
    card = {"control": {"jsonrpc": "2.0"}, "discovery": {"version": 1}, "federation": {"chain": "demo"}}
    s.apply_peers(
        {
            "peers": [
                {"peer_id": PEER_A, "addrs": [f"/ip4/127.0.0.1/tcp/40002/p2p/{PEER_A}"], "state": "alive",
                 "connected": True, "last_seen_ago_s": 0.4, "latency_ms": 1.5, "version": "0.1.0",
                 "capabilities": card, "rejected": 0},
                {"peer_id": PEER_B, "addrs": [f"/ip4/127.0.0.1/tcp/40003/p2p/{PEER_B}"], "state": "alive",
                 "connected": True, "last_seen_ago_s": 0.9, "latency_ms": 2.25, "version": "0.1.0",
                 "capabilities": card, "rejected": 3},
                {"peer_id": PEER_C, "addrs": [f"/ip4/127.0.0.1/tcp/40004/p2p/{PEER_C}"], "state": "suspect",
                 "connected": False, "last_seen_ago_s": 2.6, "latency_ms": None, "version": "0.1.0",
                 "capabilities": {}, "rejected": 0},
            ]
        }
    )
    s.apply_bootstrap({"bootstrap": [f"/ip4/127.0.0.1/tcp/40002/p2p/{PEER_A}"]})
    s.apply_federation(
        {
            "chain_id": "demo", "genesis": "ab" * 32, "role": "replica", "committed_tx_per_s": 812.5,
            "epoch": 0, "members": [ME, PEER_A, PEER_B, PEER_C], "f": 1, "view": 1, "view_active": True,
            "primary": PEER_A, "last_executed": 1290, "stable_checkpoint": {"seq": 1280, "digest": "cd" * 32},
            "lag": 0, "log_size": 10, "state_digest": "5f" * 32,
            "view_changes": [{"view": 1, "primary": PEER_A, "at_ms": 1_764_000_000_000}],
        }
    )
    s.apply_log({"batches": [{"seq": q, "view": 1, "executed_ms": 0, "txs": [{}] * (q % 7 + 1)} for q in range(1270, 1291)]})
    for i in range(40):
        ts = 1_764_000_000_000 + i * 250
        s.apply_event({"topic": "federation.committed", "ts": ts, "data": {"seq": 1291 + i, "view": 1, "requests": 20 + i % 9}})
        if i % 8 == 0:
            s.apply_event({"topic": "peer.updated", "ts": ts + 1, "data": {"peer_id": PEER_A, "addrs": [f"/ip4/127.0.0.1/tcp/40002/p2p/{PEER_A}"]}})
        if i % 4 == 3:
            s.tick()
    s.apply_event({"topic": "peer.suspect", "ts": 1_764_000_010_000, "data": {"peer_id": PEER_C, "reason": "no card for 2 s"}})
    s.set_connected(connected, "connected to /tmp/sample/sovereign.sock" if connected else
                    "disconnected: no daemon is listening on /tmp/sample/sovereign.sock; retrying in 1.0 s")
    return s
