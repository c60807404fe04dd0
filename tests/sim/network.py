"""The virtual network: per-link delay, loss, duplication, reordering, partitions, crash schedules.

The network only decides *whether* and *when* a payload arrives; the runner owns the clock and the
processes. Endpoints are process names ("r0", a twin "r0'", a client "c1"), not replica ids, so two
twins sharing one identity can sit on different sides of a partition. All randomness comes from the
run's one seeded RNG, drawn in a fixed order, so a seed replays exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LinkProfile:
    """Delay = base + exponential jitter (mean `jitter`); with probability `reorder` an extra delay
    of up to `reorder_delay` so a message overtakes nothing but is overtaken (out-of-order delivery)."""

    base: float = 0.001
    jitter: float = 0.002
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.05

    def sample_delay(self, rng: random.Random) -> float:
        d = self.base + rng.expovariate(1.0 / self.jitter) if self.jitter > 0 else self.base
        if self.reorder and rng.random() < self.reorder:
            d += rng.uniform(0.0, self.reorder_delay)
        return d


@dataclass(frozen=True)
class Partition:
    """Between `start` and `end` only processes in the same group can talk. A process not named in
    any group (clients, usually) talks to everybody."""

    start: float
    end: float
    groups: tuple[frozenset[str], ...]

    def separates(self, a: str, b: str, t: float) -> bool:
        if not self.start <= t < self.end:
            return False
        ga = gb = None
        for i, g in enumerate(self.groups):
            if a in g:
                ga = i
            if b in g:
                gb = i
        return ga is not None and gb is not None and ga != gb


@dataclass(frozen=True)
class Crash:
    """Process `proc` stops at `at`; if `restart_at` is set it comes back then, from its persisted
    state (`blank=False`, a kill -9 and restart) or with nothing at all (`blank=True`, a new disk:
    it must catch up by state transfer)."""

    proc: str
    at: float
    restart_at: float | None = None
    blank: bool = False


@dataclass
class Network:
    rng: random.Random
    default: LinkProfile = field(default_factory=LinkProfile)
    links: dict[tuple[str, str], LinkProfile] = field(default_factory=dict)
    partitions: list[Partition] = field(default_factory=list)
    # Faults (loss, duplication, reordering, partitions) stop at `heal_at`: the "global
    # stabilisation time" after which liveness is owed. Never, unless a scenario says so.
    heal_at: float = float("inf")
    # Directed link cuts (src, dst, start, end), independent of partitions: twins are each cut
    # off from a different half of the committee, a lagging replica is cut off from everyone.
    cuts: list[tuple[str, str, float, float]] = field(default_factory=list)
    sent: int = 0
    dropped: int = 0

    def profile(self, src: str, dst: str, now: float) -> LinkProfile:
        p = self.links.get((src, dst), self.default)
        if now >= self.heal_at and (p.loss or p.duplicate or p.reorder):
            return LinkProfile(base=p.base, jitter=p.jitter)
        return p

    def cut(self, a: str, b: str, start: float = 0.0, end: float = float("inf")) -> None:
        """Cut the link between a and b, both directions."""
        self.cuts.append((a, b, start, end))
        self.cuts.append((b, a, start, end))

    def heal_cuts(self, proc: str, at: float) -> None:
        """End, at `at`, every cut touching `proc`."""
        self.cuts = [(a, b, s, min(e, at) if proc in (a, b) else e) for a, b, s, e in self.cuts]

    def blocked(self, src: str, dst: str, t: float) -> bool:
        for p in self.partitions:
            if p.separates(src, dst, t):
                return True
        for a, b, start, end in self.cuts:
            if a == src and b == dst and start <= t < end:
                return True
        return False

    def transmit(self, src: str, dst: str, now: float) -> list[float]:
        """Arrival delays for one send: [] when lost, two entries when duplicated. Partitions are
        checked both now and at arrival (a message in flight when the partition starts is cut)."""
        self.sent += 1
        p = self.profile(src, dst, now)
        if not (self.partitions or self.cuts or p.loss or p.duplicate or p.reorder):
            return [p.base + self.rng.expovariate(1.0 / p.jitter) if p.jitter > 0 else p.base]  # the fast path
        if self.blocked(src, dst, now) or (p.loss and self.rng.random() < p.loss):
            self.dropped += 1
            return []
        delays = [p.sample_delay(self.rng)]
        if p.duplicate and self.rng.random() < p.duplicate:
            delays.append(p.sample_delay(self.rng))
        out = [d for d in delays if not self.blocked(src, dst, now + d)]
        self.dropped += len(delays) - len(out)
        return out
