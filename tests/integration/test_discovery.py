"""Three real daemons started through the CLI: discovery, death by kill -9, rejoin on restart."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest

from node.rpc import INVALID_PARAMS, RpcError
from node.scaling.process import DaemonProcess

from .conftest import Cluster, peer_states, wait_for

pytestmark = pytest.mark.integration

DEAD_AFTER = 3.0  # the default the daemons run with


def test_three_daemons_discover_detect_death_and_rejoin(cluster: Cluster) -> None:
    a = cluster.start("a")
    boot = a.call("node.id")["addrs"][0]
    assert boot.startswith("/ip4/127.0.0.1/tcp/") and boot.endswith("/p2p/" + a.call("node.id")["peer_id"])
    b = cluster.start("b", bootstrap=(boot,))
    c = cluster.start("c", bootstrap=(boot,))
    ids = {n: n.call("node.id")["peer_id"] for n in (a, b, c)}

    def all_alive() -> bool:
        return all(
            peer_states(n) == {ids[m]: "alive" for m in (a, b, c) if m is not n} for n in (a, b, c)
        )

    wait_for(all_alive, 20, "every daemon to list the other two as alive")
    # b and c were only told about a, so they learned of each other by gossip.
    peers_of_b = {p["peer_id"]: p for p in b.call("peers.list")["peers"]}
    assert set(peers_of_b[ids[c]]["capabilities"]) >= {"discovery"}
    assert peers_of_b[ids[c]]["addrs"][0].endswith(ids[c])

    old_id = ids[c]
    with a.client(timeout=30) as watcher:
        events = watcher.subscribe(["peer"], timeout=DEAD_AFTER + 10)
        c.kill()
        seen: list[str] = []
        for event in events:
            if event["data"]["peer_id"] == old_id:
                seen.append(event["topic"])
                if event["topic"] == "peer.left":
                    break
    # Notifications tell the story: suspect (silence or a dropped connection), then dead.
    assert seen[-1] == "peer.left" and "peer.suspect" in seen
    for survivor in (a, b):
        wait_for(lambda: peer_states(survivor).get(old_id) == "dead", DEAD_AFTER + 10, "the killed node to be marked dead")
        seen = {p["peer_id"]: p for p in survivor.call("peers.list")["peers"]}[old_id]
        # Dead is decided by silence, not by the dropped connection: never before dead_after.
        assert seen["last_seen_ago_s"] >= DEAD_AFTER
    assert peer_states(a)[ids[b]] == "alive"

    c2 = DaemonProcess(c.home, bootstrap=(boot,))
    cluster.nodes.append(c2)
    c2.start()
    c2.wait_ready()
    assert c2.call("node.id")["peer_id"] == old_id
    wait_for(
        lambda: all(peer_states(n).get(old_id) == "alive" for n in (a, b)),
        20,
        "the restarted node to be alive again on both survivors",
    )
    wait_for(lambda: set(peer_states(c2).values()) == {"alive"} and len(peer_states(c2)) == 2, 20, "the restarted node to see both")


def test_sigterm_stops_cleanly_and_removes_the_socket(cluster: Cluster) -> None:
    a = cluster.start("a")
    mode = stat.S_IMODE(os.stat(a.socket_path).st_mode)
    assert mode == 0o600
    key_mode = stat.S_IMODE(os.stat(a.home / "identity.key").st_mode)
    assert key_mode == 0o600
    assert a.stop(timeout=10) == 0
    assert not a.socket_path.exists()
    assert "stopped" in a.log_tail()


def test_node_shutdown_method_stops_the_daemon(cluster: Cluster) -> None:
    a = cluster.start("a")
    assert a.call("node.shutdown") == {"stopping": True}
    wait_for(lambda: a.poll() is not None, 10, "the daemon to exit")
    assert a.poll() == 0
    assert not a.socket_path.exists()


def test_cli_commands_against_a_running_daemon(cluster: Cluster) -> None:
    a = cluster.start("a")
    b = cluster.start("b", bootstrap=(a.call("node.id")["addrs"][0],))
    b_id = b.call("node.id")["peer_id"]
    wait_for(lambda: peer_states(a).get(b_id) == "alive", 20, "a to see b")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "node", "--home", str(a.home), *args], capture_output=True, text=True, timeout=30
        )

    r = cli("--json", "peers")
    assert r.returncode == 0, r.stderr
    assert b_id in r.stdout
    assert b_id in cli("peers").stdout
    r = cli("call", "node.status")
    assert r.returncode == 0 and '"peer_count": 1' in r.stdout
    r = cli("call", "no.such.method")
    assert r.returncode == 1 and "not found" in r.stderr.lower()
    r = cli("call", "peers.connect", '{"addr": "garbage"}')
    assert r.returncode == 1 and "addr" in r.stderr
    r = cli("call", "node.status", "{not json")
    assert r.returncode == 2
    addr = "/ip4/127.0.0.1/tcp/1/p2p/" + b_id
    assert cli("bootstrap", "add", addr).returncode == 0
    assert addr in cli("bootstrap", "list").stdout
    assert cli("bootstrap", "rm", addr).returncode == 0
    assert addr not in cli("bootstrap", "list").stdout
    b.signal(signal.SIGTERM)
    a.stop()
    r = cli("status")
    assert r.returncode == 3 and "not running" in r.stderr


def test_peers_connect_and_disconnect_through_the_control_socket(cluster: Cluster) -> None:
    a = cluster.start("a")
    b = cluster.start("b")
    b_id = b.call("node.id")["peer_id"]
    assert a.call("peers.list") == {"peers": []}
    assert a.call("peers.connect", {"addr": b.call("node.id")["addrs"][0]}) == {"peer_id": b_id, "connected": True}
    wait_for(lambda: peer_states(a).get(b_id) == "alive", 10, "a to see b after peers.connect")
    assert a.call("peers.disconnect", {"peer_id": b_id}) == {"peer_id": b_id, "disconnected": True}
    with pytest.raises(RpcError, match="not a peer id") as bad:
        a.call("peers.disconnect", {"peer_id": "not-a-peer"})
    assert bad.value.code == INVALID_PARAMS and bad.value.data == {"field": "peer_id"}


def test_daemon_refuses_to_start_on_a_port_in_use(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        subprocess.run([sys.executable, "-m", "node", "--home", str(tmp_path / "h"), "init"], check=True, capture_output=True)
        r = subprocess.run(
            [sys.executable, "-m", "node", "--home", str(tmp_path / "h"), "daemon", "--listen", f"/ip4/127.0.0.1/tcp/{port}"],
            capture_output=True, text=True, timeout=60,
        )
    assert r.returncode == 4, r.stderr
    assert f"cannot listen on /ip4/127.0.0.1/tcp/{port}: Address already in use" in r.stderr
