"""The scenario registry: each scenario builds a Sim for (n, seed) and installs its faults.

A scenario lists the replica features it `requires`; only scenarios whose requirements the
replica supports run in CI (test_sim.py) and under `--scenario all`. The replica in
protocols/pbft is being built feature by feature: it may declare `FEATURES` in
protocols/pbft/replica.py; until it does, `KNOWN_FEATURES` below records what has landed, and the
environment variable SIM_FEATURES (comma-separated) overrides both (to try a scenario early).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import protocols.pbft.replica as replica_module
from tests.sim.byzantine import (
    Amnesiac, Equivocator, Forger, Garbage, NetworkReplayer, Replayer, Silent, VoteSpammer,
)
from tests.sim.client import ClientParams
from tests.sim.network import Crash, LinkProfile, Partition
from tests.sim.runner import Sim

ALL_FEATURES = ("normal", "checkpoint", "view_change", "state_transfer", "persistence")
# Landed in 7fada99 (normal case, checkpoints, view change, state transfer, persistence).
KNOWN_FEATURES: frozenset[str] = frozenset(ALL_FEATURES)


def replica_features() -> frozenset[str]:
    env = os.environ.get("SIM_FEATURES")
    if env is not None:
        return frozenset(x.strip() for x in env.split(",") if x.strip())
    declared = getattr(replica_module, "FEATURES", None)
    if declared is not None:
        return frozenset(declared)
    return KNOWN_FEATURES


Stats = dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    name: str
    doc: str
    setup: Callable[[Sim], None]
    requires: tuple[str, ...] = ("normal",)
    sim_args: dict[str, Any] = field(default_factory=dict)
    # Guards against a vacuous pass: given the stats of a batch of passing runs, what the fault
    # should visibly have done and did not (a crash that forced no view change, garbage that
    # never reached the decoder, ...). Empty when the scenario exercised what it claims.
    expect: Callable[[list[Stats]], list[str]] = lambda stats: []

    def supported(self, features: frozenset[str] | None = None) -> bool:
        return set(self.requires) <= (replica_features() if features is None else features)

    def build(self, n: int, seed: int, trace_len: int = 60) -> Sim:
        sim = Sim(self.name, n, seed, trace_len=trace_len, **self.sim_args)
        self.setup(sim)
        return sim


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str,
    requires: tuple[str, ...] = ("normal",),
    expect: Callable[[list[Stats]], list[str]] | None = None,
    **sim_args: Any,
) -> Callable[[Callable[[Sim], None]], Callable[[Sim], None]]:
    def register(fn: Callable[[Sim], None]) -> Callable[[Sim], None]:
        SCENARIOS[name] = Scenario(name, (fn.__doc__ or "").strip(), fn, requires, sim_args, expect or (lambda s: []))
        return fn

    return register


def every(what: str, pred: Callable[[Stats], bool]) -> Callable[[list[Stats]], list[str]]:
    return lambda stats: [f"not exercised: {what} (seed {s['seed']})" for s in stats if not pred(s)][:1]


def some(what: str, pred: Callable[[Stats], bool]) -> Callable[[list[Stats]], list[str]]:
    return lambda stats: [] if not stats or any(pred(s) for s in stats) else [f"not exercised in any seed: {what}"]


def both(*checks: Callable[[list[Stats]], list[str]]) -> Callable[[list[Stats]], list[str]]:
    return lambda stats: [m for c in checks for m in c(stats)]


def _view(s: Stats) -> int:
    return max(s["views"], default=0)


# A fault-free run needs no view change, and no correct replica accuses another.
QUIET = every("a fault-free run stays in view 0 without false evidence", lambda s: _view(s) == 0 and not s["false_evidence"])


def _current_primary(sim: Sim) -> str:
    """The primary of the highest view a quorum of live correct replicas has reached."""
    views = sorted((p.replica.view for p in sim.procs.values() if p.replica is not None and p.correct), reverse=True)
    v = views[min(len(views) - 1, sim.config.f)] if views else 0
    return sim.config.primary(v)


# ---------------------------------------------------------------- fault-free


@scenario("normal", expect=QUIET)
def normal(sim: Sim) -> None:
    """Fault-free load from a few closed-loop clients."""


@scenario(
    "long_load",
    requires=("normal", "checkpoint"),
    expect=QUIET,
    clients=4,
    client_params=ClientParams(ops=30, keys=("a", "b", "c")),
    config=dict(max_batch=2),
)
def long_load(sim: Sim) -> None:
    """Many requests: checkpoints every K=8 become stable and the log is garbage-collected, so
    log_size() stays below 3K (watermark window 2K plus a checkpoint interval of slack)."""
    sim.track_log = True
    # log_size() counts messages (pre-prepare, prepares, commits, certificate, checkpoints), so
    # "3K entries" is 3K sequence numbers of at most 2n+3 messages each: a log that kept every
    # batch would pass it within a few checkpoints.
    limit = 3 * sim.config.checkpoint_interval * (2 * sim.n + 3)

    def bounded(s: Sim) -> list[str]:
        out = []
        if s.obs.max_log > limit:
            out.append(f"bounded log: log_size() reached {s.obs.max_log} > 3K(2n+3) = {limit}")
        if not s.obs.checkpoints:
            out.append("bounded log: no checkpoint ever became stable")
        return out

    sim.hooks.append(bounded)


# ---------------------------------------------------------------- crashes


@scenario(
    "primary_crash",
    requires=("normal", "view_change"),
    expect=every("a view change", lambda s: _view(s) >= 1),
    client_params=ClientParams(ops=8, think=(0.0, 0.05)),
)
def primary_crash(sim: Sim) -> None:
    """The primary of view 0 crashes for good while requests are in flight."""
    at = sim.rng.uniform(0.005, 0.1)
    sim.schedule_crash(Crash(sim.config.primary(0), at))
    sim.heal_at = at


@scenario(
    "successive_crashes",
    requires=("normal", "view_change", "persistence"),
    expect=every("at least two view changes", lambda s: _view(s) >= 2),
    client_params=ClientParams(ops=14, think=(0.08, 0.2)),
)
def successive_crashes(sim: Sim) -> None:
    """The current primary crashes, again and again; each comes back from its persisted state
    once the others have had time to change view, so at most f are ever down (with f >= 2 some
    stay down)."""
    rng = sim.rng
    t = rng.uniform(0.02, 0.1)
    rounds = 3
    down: list[tuple[str, float]] = []
    for i in range(rounds):
        def crash_primary(s: Sim, i: int = i) -> None:
            victim = _current_primary(s)
            proc = s.procs[victim]
            live_down = [p for p in s.procs.values() if p.replica is None]
            if proc.replica is None or len(live_down) >= s.config.f:
                return
            # With f = 1 the victim must come back before the next crash; with more room some stay down.
            restart = s.clock.now + s.rng.uniform(0.55, 0.7) if s.config.f == 1 or s.rng.random() < 0.5 else None
            s.schedule_crash(Crash(victim, s.clock.now, restart_at=restart))

        sim.call_at(t, crash_primary)
        t += rng.uniform(0.8, 1.1)
    sim.heal_at = t


@scenario(
    "rolling_restarts",
    requires=("normal", "view_change", "persistence"),
    expect=every("two restarts from persisted state", lambda s: s["restarts"] >= 2),
    client_params=ClientParams(ops=14, think=(0.05, 0.14)),
)
def rolling_restarts(sim: Sim) -> None:
    """Every replica in turn is killed (kill -9) and restarted from its persisted state, one at a
    time, some within a few milliseconds, under load."""
    rng = sim.rng
    order = list(sim.config.members)
    rng.shuffle(order)
    t = rng.uniform(0.01, 0.05)
    for victim in order:
        down = rng.choice([rng.uniform(0.001, 0.01), rng.uniform(0.05, 0.4)])
        sim.schedule_crash(Crash(victim, t, restart_at=t + down))
        t += down + rng.uniform(0.02, 0.15)
    sim.heal_at = t


@scenario(
    "lone_start",
    requires=("normal", "view_change", "persistence"),
    expect=every("the lone replica timed out at least 3 times before the others came",
                 lambda s: s["lone_timeouts"] >= 3),
    client_params=ClientParams(ops=6, think=(0.0, 0.05)),
)
def lone_start(sim: Sim) -> None:
    """One replica starts alone, with requests arriving, and times out again and again before the
    others start (a fresh federation whose first member came up first). While alone it must not
    race ahead through views (a view change needs a quorum of votes), and at the end every correct
    replica runs the committee's view, active: none is stranded in a view of its own, which would
    silently spend the committee's fault tolerance."""
    rng = sim.rng
    members = list(sim.config.members)
    lone = rng.choice(members)
    arrive = rng.uniform(1.8, 3.0)  # >= 3 timeouts of 0.25 s even with a doubling backoff
    for m in members:
        if m != lone:
            sim.schedule_crash(Crash(m, 0.0, restart_at=arrive + rng.uniform(0.0, 0.05)))
    sim.heal_at = arrive
    sim.drain = 2.0  # time to settle once the clients are done: a stranded replica stays stranded
    sim.note(f"{lone} starts alone; the others start at {arrive:.3f}")
    alone: dict[str, Any] = {}

    def before_arrival(s: Sim) -> None:
        r = s.procs[lone].replica
        alone.update(view=r.view if r else None, active=r.active if r else None)
        s.extra_stats["lone_timeouts"] = s.procs[lone].timeouts

    sim.call_at(arrive - 1e-6, before_arrival)

    def none_stranded(s: Sim) -> list[str]:
        out = []
        if alone.get("view") != 0 or not alone.get("active"):
            out.append(f"views: {lone}, alone, raced ahead to view {alone.get('view')} (active={alone.get('active')})")
        live = [p for p in s.procs.values() if p.correct and p.replica is not None]
        views = sorted({(p.replica.view, p.replica.active) for p in live})
        if len(views) != 1 or not views[0][1]:
            where = ", ".join(f"{p.name}: view {p.replica.view}{'' if p.replica.active else ' (inactive)'}" for p in live)
            out.append(f"views: correct replicas do not share one active view at the end ({where})")
        return out

    sim.live_hooks.append(none_stranded)


# ---------------------------------------------------------------- network faults


@scenario("regions", expect=every("no false accusations", lambda s: not s["false_evidence"]))
def regions(sim: Sim) -> None:
    """Replicas and clients spread over three regions: a millisecond inside one, 20-80 ms with an
    exponential jitter tail between two (per-link delay distributions, each direction its own).
    No fault; a view change is allowed (three slow one-way trips can outlast the 0.25 s request
    timeout of the sims, seed 100136), a false accusation is not."""
    rng = sim.rng
    names = list(sim.procs) + list(sim.clients)
    region = {name: rng.randrange(3) for name in names}
    for a in names:
        for b in names:
            if a != b and region[a] != region[b]:
                sim.network.links[(a, b)] = LinkProfile(base=rng.uniform(0.02, 0.08), jitter=rng.uniform(0.002, 0.02))
    sim.note("regions: " + ", ".join(f"{n}@{region[n]}" for n in names))


@scenario(
    "partition",
    requires=("normal", "view_change"),
    expect=every("messages cut and a view change", lambda s: s["dropped"] > 0 and _view(s) >= 1),
    client_params=ClientParams(ops=6, think=(0.0, 0.03)),
)
def partition(sim: Sim) -> None:
    """The committee splits in two halves neither of which holds a quorum (2-2 at n=4, 3-4 at n=7):
    nothing new commits while it lasts, nobody diverges; it heals, and every request completes."""
    rng = sim.rng
    members = list(sim.config.members)
    rng.shuffle(members)
    half = sim.n // 2
    start = rng.uniform(0.01, 0.05)
    end = start + rng.uniform(0.5, 1.5)
    sim.network.partitions.append(Partition(start, end, (frozenset(members[:half]), frozenset(members[half:]))))
    sim.heal_at = end
    # A sequence number whose commit quorum formed just before the split may still execute just
    # after it starts (the last commits travel inside one half). Those chains are a few hops of a
    # few milliseconds; after SETTLE nothing may execute until the split heals.
    settle = 0.1

    def quiet(s: Sim) -> list[str]:
        bad = [(t, p, seq) for t, p, seq in s.obs.exec_log if start + settle <= t < end]
        return [f"partition: {p} executed seq {seq} at t={t:.4f} during the split [{start:.4f}, {end:.4f})"
                for t, p, seq in bad[:3]]

    sim.hooks.append(quiet)


@scenario(
    "lossy",
    requires=("normal", "view_change"),
    expect=every("messages lost", lambda s: s["dropped"] > 0),
    link=LinkProfile(loss=0.2, duplicate=0.2, reorder=0.3, reorder_delay=0.05),
    client_params=ClientParams(ops=6, think=(0.0, 0.05)),
)
def lossy(sim: Sim) -> None:
    """20% loss, 20% duplication and reordering on every link until the network heals at 1-2 s."""
    sim.heal_at = sim.network.heal_at = sim.rng.uniform(1.0, 2.0)


@scenario(
    "state_transfer",
    requires=("normal", "checkpoint", "state_transfer"),
    expect=every("a state transfer", lambda s: s["restored"] >= 1),
    client_params=ClientParams(ops=24, think=(0.002, 0.02)),
    config=dict(max_batch=2),
)
def state_transfer(sim: Sim) -> None:
    """A backup misses several checkpoints (cut off from everyone, or crashed and restarted with
    a blank disk); once back it must catch up by state transfer to the latest stable checkpoint."""
    _lagging(sim, sim.rng.choice(sim.config.members[1:]))


def _lagging(sim: Sim, victim: str, strict: bool = True) -> None:
    """Keep `victim` away (cut off, or crashed to come back blank) until the others have made a
    checkpoint at 2K or later stable (so the log it missed is garbage-collected), then bring it
    back while the load goes on. With another fault in the scenario (`strict=False`) the others
    are not owed progress while the victim is away: if no checkpoint became stable in 2 s the
    victim comes back anyway and the catch-up check does not apply."""
    rng = sim.rng
    earliest = rng.uniform(0.15, 0.3)
    blank = rng.random() < 0.5
    if blank:
        sim.schedule_crash(Crash(victim, 0.001))
    else:
        for other in sim.procs:
            if other != victim:
                sim.network.cut(victim, other)
    sim.drain = 1.0
    sim.heal_at = float("inf")
    mark: dict[str, float] = {}

    def poll(s: Sim) -> None:
        target = max(s.obs.checkpoints, default=0)
        if target < 2 * s.config.checkpoint_interval and s.clock.now < earliest + 2.0:
            s.call_at(s.clock.now + 0.02, poll)
            return
        mark["target"], mark["back"] = target, s.clock.now
        s.heal_at = s.clock.now
        if blank:
            s.note(f"{victim} restarts blank at {s.clock.now:.4f}")
            s.call_at(s.clock.now, lambda s: s.restart(Crash(victim, 0.001, restart_at=s.clock.now, blank=True)))
        else:
            s.note(f"{victim} cut off from every replica until {s.clock.now:.4f}")
            s.network.heal_cuts(victim, s.clock.now)

    sim.call_at(earliest, poll)

    def caught_up(s: Sim) -> list[str]:
        rep = s.procs[victim].replica
        target = int(mark.get("target", 0))
        if target == 0:
            return [f"state transfer: no checkpoint was stable by t={mark.get('back')} (load too small)"] if strict else []
        if rep is None or rep.last_executed < target:
            got = rep.last_executed if rep else None
            return [f"state transfer: {victim} ({'blank restart' if blank else 'cut off'} until {mark['back']:.3f}) "
                    f"executed up to {got}, never reached checkpoint {target}"]
        return []

    sim.live_hooks.append(caught_up)


@scenario(
    "poisoned_state",
    requires=("normal", "checkpoint", "state_transfer", "view_change"),
    expect=some("a state transfer", lambda s: s["restored"] >= 1),
    client_params=ClientParams(ops=24, think=(0.002, 0.02)),
    config=dict(max_batch=2),
)
def poisoned_state(sim: Sim) -> None:
    """A lagging backup catches up while a byzantine backup answers its state fetches first with
    a well-formed wrong snapshot for the right certified checkpoint, and sends rogue NEW-VIEWs
    (its own VIEW-CHANGE only) with pre-prepares reusing committed sequence numbers."""
    victim, liar = sim.rng.sample(list(sim.config.members[1:]), 2)
    p = sim.procs[liar]
    p.behaviour = Forger(random.Random(f"{sim.seed}/byz"), period=0.02)
    sim.mark_faulty(liar)
    _lagging(sim, victim, strict=False)


# ---------------------------------------------------------------- byzantine


@scenario("equivocation", requires=("normal", "view_change"), expect=some("a view change", lambda s: _view(s) >= 1))
def equivocation(sim: Sim) -> None:
    """The primary sends different pre-prepares for one sequence number to different backups."""
    p = sim.procs[sim.config.primary(0)]
    p.behaviour = Equivocator(random.Random(f"{sim.seed}/byz"))
    sim.mark_faulty(p.ident)


@scenario(
    "twins",
    requires=("normal", "view_change"),
    expect=some("evidence of equivocation or a view change", lambda s: bool(s["evidence"]) or _view(s) >= 1),
)
def twins(sim: Sim) -> None:
    """f identities run twice (Twins, OPODIS 2021): two correct processes with one key, each cut
    off from a different part of the committee, so each acts on a different partial view. The
    primary's identity is always twinned. As in Twins' rounds, who hears which twin changes up to
    twice during the run."""
    rng = sim.rng
    idents = [sim.config.primary(0)] + rng.sample(list(sim.config.members[1:]), sim.config.f - 1)
    bounds = [0.0] + sorted(rng.uniform(0.05, 1.0) for _ in range(rng.randint(0, 2))) + [float("inf")]
    for ident in idents:
        twin = sim.add_proc(ident + "~", ident)
        sim.mark_faulty(ident)
        for start, end in zip(bounds, bounds[1:]):
            for other in sim.config.members:
                if other in idents:
                    continue
                side = rng.randrange(3)  # 0: talks to the original only, 1: the twin only, 2: both
                if side == 0:
                    sim.network.cut(twin.name, other, start, end)
                elif side == 1:
                    sim.network.cut(ident, other, start, end)
                sim.note(f"from {start:.3f} {other} talks to {['only ' + ident, 'only ' + twin.name, 'both twins'][side]}")


@scenario(
    "vote_spam",
    requires=("normal", "view_change"),
    expect=both(
        every("votes were spammed", lambda s: s["spam_votes"] > 0),
        every("no view change and no false accusation", lambda s: _view(s) == 0 and not s["false_evidence"]),
    ),
)
def vote_spam(sim: Sim) -> None:
    """f members (the primary among the candidates) vote for view changes nobody else wants, the
    next view and views far ahead, to random subsets: without a correct replica's timeout the
    committee never leaves view 0."""
    liars = sim.rng.sample(list(sim.config.members), sim.config.f)
    spammers = []
    for ident in liars:
        p = sim.procs[ident]
        p.behaviour = VoteSpammer(random.Random(f"{sim.seed}/byz/{ident}"))
        spammers.append(p.behaviour)
        sim.mark_faulty(ident)

    def count(s: Sim) -> list[str]:
        s.extra_stats["spam_votes"] = sum(b.sent for b in spammers)
        return []

    sim.hooks.append(count)


def _byzantine_backup(sim: Sim, make: Callable[[random.Random], Any]) -> None:
    p = sim.procs[sim.rng.choice(sim.config.members[1:])]
    p.behaviour = make(random.Random(f"{sim.seed}/byz"))
    sim.mark_faulty(p.ident)


@scenario(
    "amnesia",
    requires=("normal", "view_change"),
    expect=some("a view change", lambda s: _view(s) >= 1),
    link=LinkProfile(loss=0.3, duplicate=0.05, reorder=0.2),
    client_params=ClientParams(ops=8, think=(0.0, 0.05)),
)
def amnesia(sim: Sim) -> None:
    """f backups vote selectively, hide their prepared certificates in view changes and vote for
    view changes all the time, while 30% loss until the network heals makes correct replicas time
    out (byzantine.Amnesiac). (20% loss forced a view change in 2 of 25 seeds once a lone timeout
    stopped being one: a view change needs 2f+1 votes.)"""
    for ident in sim.rng.sample(list(sim.config.members[1:]), sim.config.f):
        p = sim.procs[ident]
        p.behaviour = Amnesiac(random.Random(f"{sim.seed}/byz/{ident}"))
        sim.mark_faulty(ident)
    sim.heal_at = sim.network.heal_at = sim.rng.uniform(1.0, 2.0)


@scenario("silent_backup")
def silent_backup(sim: Sim) -> None:
    """A backup receives everything and never says a word."""
    _byzantine_backup(sim, Silent)


@scenario("silent_primary", requires=("normal", "view_change"), expect=every("a view change", lambda s: _view(s) >= 1))
def silent_primary(sim: Sim) -> None:
    """The primary receives everything and never says a word."""
    p = sim.procs[sim.config.primary(0)]
    p.behaviour = Silent(random.Random(f"{sim.seed}/byz"))
    sim.mark_faulty(p.ident)


@scenario("replay", expect=some("evidence against the replayer", lambda s: bool(s["evidence"])))
def replay(sim: Sim) -> None:
    """A backup re-sends old messages: its own (stale) and others' (a sender mismatch)."""
    _byzantine_backup(sim, Replayer)


@scenario(
    "wire_replay",
    requires=("normal", "view_change"),
    expect=every("a view change", lambda s: _view(s) >= 1),
    client_params=ClientParams(ops=10, think=(0.0, 0.05)),
)
def wire_replay(sim: Sim) -> None:
    """An attacker on the wire re-delivers captured messages between replicas, with their
    genuine senders, long after (across views, checkpoints and a crash of the primary)."""
    NetworkReplayer(random.Random(f"{sim.seed}/wire")).attach(sim)
    sim.note("the wire replays captured envelopes")
    primary_crash(sim)


@scenario(
    "forgery",
    expect=both(
        every("evidence against the forger", lambda s: bool(s["evidence"])),
        some("five kinds of evidence", lambda s: len(s["evidence"]) >= 5),
    ),
)
def forgery(sim: Sim) -> None:
    """A backup impersonates others and sends recombined certificates: short, duplicated,
    mismatched prepared certificates, unproven checkpoints, new-views it may not send."""
    _byzantine_backup(sim, Forger)


@scenario("garbage", expect=every("decoder refusals", lambda s: s["decode_errors"] > 0))
def garbage(sim: Sim) -> None:
    """A backup sprays random bytes, bit-flipped messages and ill-typed msgpack."""
    _byzantine_backup(sim, Garbage)
