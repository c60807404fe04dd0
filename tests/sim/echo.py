"""The test protocol (tests/echo_protocol.py) in the simulator, built by its own registration:
N echo nodes under message loss, one of them cut off by a partition for a while.

`python -m tests.sim.echo --nodes 4 --seeds 50` sweeps seeds; CI runs a few (test_echo_sim.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keys.identity import Identity
from node.runtime.registry import NodeContext
from tests.echo_protocol import PROTOCOL
from tests.sim.network import LinkProfile
from tests.sim.world import SimNode, World

INTERVAL = 0.2
LOSS = 0.2
CUT_FROM, CUT_TO, END = 2.0, 5.0, 8.0  # the partition, and how long the run goes on after it


@dataclass
class EchoRun:
    world: World
    victim: str
    snapshots: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # label -> node -> status

    def status(self, name: str) -> dict[str, Any]:
        return self.snapshots["end"][name]


def build(seed: int, n: int = 4, *, partition: bool = True, trace: bool = False) -> EchoRun:
    world = World(seed, link=LinkProfile(loss=LOSS), trace=trace)  # loss throughout: never healed
    for i in range(n):
        pid = Identity.from_seed(bytes([i + 1]) * 32).peer_id

        def make(node: SimNode) -> tuple[Any, Any]:
            return PROTOCOL.make(NodeContext(me=node.pid, options={"interval": INTERVAL}))

        world.add(f"e{i}", pid, make, start=PROTOCOL.start, boot_at=world.rng.uniform(0, INTERVAL))
    run = EchoRun(world, f"e{seed % n}")
    if partition:
        world.isolate(run.victim, CUT_FROM, CUT_TO)
    for label, t in (("cut", CUT_FROM - 1e-6), ("before-heal", CUT_TO - 1e-6), ("heal", CUT_TO), ("end", END)):
        world.at(t, lambda label=label: snapshot(run, label))
    return run


def snapshot(run: EchoRun, label: str) -> None:
    """Every node's status, asked the way the control socket asks (protocol.call)."""
    shot = run.snapshots.setdefault(label, {})
    for name in run.world.nodes:
        run.world.call(name, {"op": "status"}, on_answer=lambda status, name=name: shot.__setitem__(name, status))


def run(seed: int, n: int = 4, **kw: Any) -> tuple[EchoRun, list[str], list[str]]:
    """(the run, failures, guard failures)."""
    r = build(seed, n, **kw)
    r.world.run(END)
    return r, check(r), guard(r)


def check(r: EchoRun) -> list[str]:
    """After the heal every node hears every other's beats and gets acks for its own; nobody
    heard or had acknowledged a beat that was never sent; no frame was refused."""
    out: list[str] = []
    nodes = r.world.nodes
    pids = {name: node.pid for name, node in nodes.items()}
    healed, end = r.snapshots.get("heal", {}), r.snapshots.get("end", {})
    if len(end) != len(nodes) or len(healed) != len(nodes):
        return [f"status calls went unanswered: {sorted(end)} at the end, {sorted(healed)} at the heal"]
    for a in nodes:
        for b in nodes:
            if a == b:
                continue
            for what in ("seen", "acked"):
                before, after = healed[a][what].get(pids[b], 0), end[a][what].get(pids[b], 0)
                if not after > before:
                    out.append(f"{a}.{what}[{b}] stayed at {before} from the heal to the end")
                if after > end[a if what == "acked" else b]["counter"]:
                    out.append(f"{a}.{what}[{b}] = {after}, beyond any beat sent")
    for name, node in nodes.items():
        if node.refused:
            out.append(f"{name} refused {node.refused}")
    return out


def guard(r: EchoRun) -> list[str]:
    """The partition had an effect: what the victim had seen of the others, and they of it, stood
    still while it lasted, as the others kept beating."""
    cut, before = r.snapshots.get("cut", {}), r.snapshots.get("before-heal", {})
    v, pids = r.victim, {name: node.pid for name, node in r.world.nodes.items()}
    others = [name for name in r.world.nodes if name != v]
    if v not in cut or v not in before:
        return ["not exercised: no status around the partition"]
    stalled = cut[v]["seen"] == before[v]["seen"] and all(
        cut[o]["seen"].get(pids[v]) == before[o]["seen"].get(pids[v]) for o in others
    )
    beating = all(before[o]["counter"] >= cut[o]["counter"] + (CUT_TO - CUT_FROM) / INTERVAL - 2 for o in others)
    if not stalled or not beating:
        return [f"not exercised: the partition of {v} changed nothing (stalled={stalled}, others beating={beating})"]
    return []


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tests.sim.echo")
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0)
    args = ap.parse_args(argv)
    failed = 0
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        r, bad, unexercised = run(seed, args.nodes)
        if bad or unexercised:
            failed += 1
            print(f"FAILED seed={seed}: {(bad + unexercised)[:3]} faults: {r.world.faults}")
    print(f"echo n={args.nodes} seeds={args.seeds} failed={failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
