"""A replica cut off by a network partition (it runs in a network namespace of its own, joined
to the host by a veth pair the test owns) keeps no divergent state, and catches up once the link
is back. Needs root and `ip netns`; skipped otherwise."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.federation.homes import create_federation_homes
from node.scaling.process import DaemonProcess

from .conftest import wait_for
from .federation_helpers import describe

K = 8


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _netns_works() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = f"sovprobe{os.getpid()}"
    try:
        _ip("netns", "add", name)
        _ip("netns", "del", name)
        return True
    except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(not _netns_works(), reason="needs root and a working `ip netns`")


class Link:
    """A network namespace joined to the host by a veth pair on a private /30."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000}{random.randrange(100)}"
        self.ns, self.host_if, self.ns_if = f"sovns{tag}", f"sv{tag}h", f"sv{tag}n"
        a, b = random.randrange(200, 250), random.randrange(0, 64) * 4
        self.host_ip, self.ns_ip = f"10.{a}.{b // 256}.{b % 256 + 1}", f"10.{a}.{b // 256}.{b % 256 + 2}"
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.ns)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        for cmd in (["addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if], ["link", "set", self.ns_if, "up"], ["link", "set", "lo", "up"]):
            _ip("netns", "exec", self.ns, "ip", *cmd)

    def cut(self) -> None:
        _ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def remove(self) -> None:
        for args in (("link", "del", self.host_if), ("netns", "del", self.ns)):
            try:
                _ip(*args)
            except (subprocess.CalledProcessError, OSError, subprocess.TimeoutExpired):
                pass


class NsDaemon(DaemonProcess):
    """A daemon started inside a network namespace (`ip netns exec` execs it: same pid)."""

    def __init__(self, ns: str, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.ns = ns

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *super().command()]


@pytest.fixture
def link() -> Iterator[Link]:
    link = Link()
    try:
        yield link
    finally:
        link.remove()


def _status(n: DaemonProcess) -> dict[str, Any]:
    return n.call("federation.status", timeout=5)


def _transfer(n: DaemonProcess, to: str, timeout: float = 20) -> dict[str, Any]:
    r = n.call("ledger.transfer", {"to": to, "amount": 1, "timeout": timeout}, timeout=timeout + 10)
    assert r["status"] == "applied", r
    return r


def _batches(n: DaemonProcess) -> dict[int, list[Any]]:
    out, since = {}, 0
    while True:
        got = n.call("federation.log", {"since": since, "limit": 1000}, timeout=10)["batches"]
        if not got:
            return out
        for b in got:
            out[b["seq"]] = b["txs"]
        since = got[-1]["seq"]


def test_a_partitioned_replica_keeps_no_divergent_state_and_catches_up(link: Link) -> None:
    root = Path(tempfile.mkdtemp(prefix="sovpart-", dir="/tmp"))
    nodes: list[DaemonProcess] = []
    env = {**os.environ, "SOVEREIGN_REQUEST_TIMEOUT": "0.5"}
    try:
        homes, ids, _ = create_federation_homes(root, 4, chain_id="part", checkpoint_interval=K)
        host_listen = ("/ip4/127.0.0.1/tcp/0", f"/ip4/{link.host_ip}/tcp/0")
        first = DaemonProcess(homes[0], listen=host_listen, env=env)
        nodes.append(first)
        first.start()
        first.wait_ready()
        boot = next(a for a in first.call("node.id")["addrs"] if f"/{link.host_ip}/" in a)
        for h in homes[1:3]:
            nodes.append(DaemonProcess(h, listen=host_listen, bootstrap=[boot], env=env))
        cut_off = NsDaemon(link.ns, homes[3], listen=(f"/ip4/{link.ns_ip}/tcp/0",), bootstrap=[boot], env=env)
        nodes.append(cut_off)
        for n in nodes[1:]:
            n.start()
        for n in nodes[1:]:
            n.wait_ready()

        acked = [_transfer(nodes[i % 4], ids[(i + 1) % 4])["tx_id"] for i in range(6)]
        wait_for(lambda: len({(_status(n)["last_executed"], _status(n)["state_digest"]) for n in nodes}) == 1, 30,
                 "all four to agree before the cut")

        link.cut()
        acked += [_transfer(nodes[i % 3], ids[(i + 1) % 3])["tx_id"] for i in range(3 * K)]
        # While cut off, its own transfer cannot commit, and nothing it holds contradicts the others.
        with pytest.raises(Exception, match="not committed"):
            cut_off.call("ledger.transfer", {"to": ids[0], "amount": 1, "timeout": 2}, timeout=10)
        inside, outside = _batches(cut_off), _batches(nodes[0])
        assert max(inside) < max(outside)
        assert all(outside[seq] == txs for seq, txs in inside.items()), "the cut-off replica diverged"

        link.heal()
        everyone = nodes

        def caught_up() -> bool:
            sts = [_status(n) for n in everyone]
            return len({(s["last_executed"], s["state_digest"]) for s in sts}) == 1 and sts[0]["last_executed"] >= max(outside)

        try:
            wait_for(caught_up, 60, "the cut-off replica to catch up after the heal")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; now: {describe(everyone)}\ncut-off log:\n{cut_off.log_tail(40)}") from None
        # ... and it is a working member again: its own transfer commits (the one it made while
        # cut off was retransmitted until it committed, too).
        acked.append(_transfer(cut_off, ids[0])["tx_id"])
        for n in everyone:
            wait_for(lambda n=n: all(n.call("ledger.tx", {"id": t}, timeout=5)["status"] == "applied" for t in acked),
                     30, f"every acknowledged transfer on {n.home.name}")
        assert _batches(cut_off) == _batches(nodes[0])
    finally:
        for n in reversed(nodes):
            try:
                n.stop()
            except Exception:  # noqa: BLE001 - teardown reaches every process
                pass
        shutil.rmtree(root, ignore_errors=True)
