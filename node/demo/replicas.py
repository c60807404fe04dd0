"""The demo's replicas: N daemons on 127.0.0.1, watched. One that dies is reported and restarted
with backoff, and counts as back once it has caught up with the others; a view change and the loss
(and return) of the quorum are reported as they happen. Each report is one line.

PBFT with n = 3f+1 replicas commits while at most f are down, so the demo keeps its load running
through a death: showing that is what the demo is for.
"""

from __future__ import annotations

import enum
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.demo.errors import DemoError
from node.rpc import RpcError
from node.scaling.process import DaemonProcess, DaemonStartError

BACKOFF_FIRST = 1.0  # seconds from a death to the first restart
BACKOFF_MAX = 30.0  # a replica that keeps failing is retried at least this often
START_TIMEOUT = 30.0  # a restarted daemon not ready by then is killed and tried again later
STATUS_TIMEOUT = 2.0
POLL_S = 0.1  # polling a condition in an interactive tool, not a test


class State(enum.Enum):
    UP = "up"
    DOWN = "down"  # not running; restarted at `retry_at`
    STARTING = "starting"  # restarted, not ready yet
    CATCHING_UP = "catching up"  # ready, not yet level with the others


@dataclass(eq=False)  # a replica is itself, not its fields
class Replica:
    name: str
    peer_id: str
    process: DaemonProcess
    state: State = State.UP
    backoff: float = BACKOFF_FIRST
    retry_at: float = 0.0
    started_at: float = 0.0
    addr: str | None = None  # its first listen multiaddr: a restarted peer bootstraps to it
    died_at: float = 0.0
    seq_at_death: int = 0  # how far the federation had executed when it died
    status: dict[str, Any] | None = field(default=None, repr=False)  # federation.status, this look

    @property
    def running(self) -> bool:
        return self.state in (State.UP, State.CATCHING_UP)


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _start(r: Replica) -> None:
    try:
        r.process.start()
    except (OSError, DaemonStartError) as exc:
        raise DemoError(f"cannot start the daemon of {r.name}: {exc}") from None


def _ready(r: Replica) -> None:
    try:
        r.process.wait_ready()
    except DaemonStartError as exc:
        last = r.process.log_tail(1).strip()[:300] or "(no log)"
        first = str(exc).splitlines()[0]
        raise DemoError(f"the daemon of {r.name} did not start ({first}); last log line: {last}") from None
    r.addr = _first_addr(r.process)
    if r.addr is None:
        raise DemoError(f"the daemon of {r.name} does not tell its address")


def _first_addr(process: DaemonProcess) -> str | None:
    try:
        return str(process.call("node.id", timeout=STATUS_TIMEOUT)["addrs"][0])
    except (OSError, RpcError, KeyError, IndexError, TypeError):
        return None


def _status(process: DaemonProcess) -> dict[str, Any] | None:
    try:
        status = process.call("federation.status", timeout=STATUS_TIMEOUT)
    except Exception:  # noqa: BLE001 - a busy, starting or dying node shows as unknown
        return None
    return status if isinstance(status, dict) else None


class LocalFederation:
    """The replicas of one genesis, started on 127.0.0.1 and kept running."""

    def __init__(
        self, homes: list[Path], ids: list[str], checkpoint_interval: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.clock = clock  # the backoff's time; the tests give their own
        self.replicas = [Replica(home.name, peer, DaemonProcess(home)) for home, peer in zip(homes, ids)]
        self.n = len(self.replicas)
        self.f = (self.n - 1) // 3
        # A replica two stable checkpoints behind the others is not keeping up: it is reported,
        # and watched until it has caught up again.
        self.behind_by = 2 * checkpoint_interval
        self.view = 0
        self.stalled = False  # more than f down: nothing can commit
        self.deaths = self.restarts = self.view_changes = 0

    # ---------------------------------------------------------------- start and stop

    def start(self) -> None:
        """Start the first replica, then the others bootstrapped to it; raises DemoError."""
        first, rest = self.replicas[0], self.replicas[1:]
        _start(first)
        _ready(first)
        for r in rest:
            r.process.bootstrap = (str(first.addr),)
            _start(r)
        for r in rest:
            _ready(r)

    def wait_discovery(self, timeout: float) -> float:
        """Seconds until every node sees every other alive; raises DemoError after `timeout`."""
        start = time.monotonic()
        while min(self._alive_counts()) < self.n - 1:
            if time.monotonic() - start > timeout:
                raise DemoError(f"not all {self.n} nodes saw each other within {timeout:g} s")
            time.sleep(POLL_S)
        return time.monotonic() - start

    def _alive_counts(self) -> list[int]:
        counts = []
        for r in self.replicas:
            try:
                peers = r.process.call("peers.list", timeout=5)["peers"]
            except Exception:  # noqa: BLE001 - a node still starting just counts as seeing no one
                counts.append(0)
                continue
            counts.append(sum(1 for p in peers if p["state"] == "alive"))
        return counts

    def stop(self) -> None:
        for r in reversed(self.replicas):
            r.process.stop()

    # ---------------------------------------------------------------- what runs

    def running(self) -> list[Replica]:
        return [r for r in self.replicas if r.running]

    def name_of(self, peer_id: object) -> str:
        return next((r.name for r in self.replicas if r.peer_id == peer_id), str(peer_id)[-8:])

    def most_advanced(self) -> dict[str, Any] | None:
        """The status of this look with the highest executed sequence number."""
        statuses = [r.status for r in self.running() if r.status is not None]
        return max(statuses, key=lambda s: s["last_executed"]) if statuses else None

    # ---------------------------------------------------------------- the watch

    def watch(self) -> list[str]:
        """One look at every replica; returns what happened since the last look, one line each."""
        now = self.clock()
        events: list[str] = []
        for r in self.replicas:
            events += self._step(r, now)
        # The replicas that are up are asked first, so a catching-up one is compared with what
        # they had executed before it answered: level with that, it has caught up.
        for r in sorted(self.replicas, key=lambda r: r.state is not State.UP):
            r.status = _status(r.process) if r.running else None
        for r in self.replicas:
            if r.state is State.CATCHING_UP:
                events += self._check_caught_up(r)
            elif r.state is State.UP:
                events += self._check_behind(r)
        events += self._quorum_events()
        events += self._view_events()
        return events

    def _step(self, r: Replica, now: float) -> list[str]:
        code = r.process.poll()
        if r.running and code is not None:
            return [self._died(r, code, now)]
        if r.state is State.DOWN and now >= r.retry_at:
            return self._restart(r, now)
        if r.state is State.STARTING:
            return self._starting(r, code, now)
        return []

    def _died(self, r: Replica, code: int, now: float) -> str:
        if r.state is State.CATCHING_UP:
            r.backoff = min(2 * r.backoff, BACKOFF_MAX)  # died again before it was back: back off
        self.deaths += 1
        top = self.most_advanced()
        r.died_at, r.seq_at_death = now, top["last_executed"] if top else 0
        r.state, r.retry_at, r.status = State.DOWN, now + r.backoff, None
        down = self.n - len(self.running())
        within = f" (at most f = {self.f} down: the others keep committing)" if down <= self.f else ""
        return (
            f"{r.name} (peer ...{r.peer_id[-8:]}, pid {r.process.pid}) died, {_exit_text(code)};"
            f" {self.n - down} of {self.n} replicas up{within}; restarting it in {r.backoff:g} s"
        )

    def _restart(self, r: Replica, now: float) -> list[str]:
        r.process.stop()  # reaps the dead process and closes its notify socket
        # Its old listen port is gone with it: it dials the replicas that run, as a new node would.
        r.process.bootstrap = tuple(x.addr for x in self.running() if x.addr is not None)
        self.restarts += 1
        try:
            r.process.start()
        except (OSError, DaemonStartError) as exc:
            return [self._failed(r, f"cannot start it: {exc}", now)]
        r.state, r.started_at = State.STARTING, now
        return []

    def _starting(self, r: Replica, code: int | None, now: float) -> list[str]:
        if code is not None:
            return [self._failed(r, _exit_text(code), now)]
        try:
            r.process.wait_ready(timeout=0.01)
        except DaemonStartError:
            if now - r.started_at <= START_TIMEOUT:
                return []
            r.process.kill()
            return [self._failed(r, f"not ready after {START_TIMEOUT:g} s", now)]
        r.addr = _first_addr(r.process) or r.addr
        r.state = State.CATCHING_UP
        meanwhile = self._meanwhile(r.seq_at_death)
        return [f"{r.name} is back (pid {r.process.pid}) after {now - r.died_at:.1f} s down{meanwhile}; catching up"]

    def _meanwhile(self, since: int) -> str:
        top = self.most_advanced()
        if top is None:
            return ""
        if top["last_executed"] == since:
            return f"; meanwhile the others executed nothing (still at seq {since})"
        return f"; meanwhile the others executed seq {since} -> {top['last_executed']}"

    def _failed(self, r: Replica, why: str, now: float) -> str:
        r.backoff = min(2 * r.backoff, BACKOFF_MAX)
        r.state, r.retry_at = State.DOWN, now + r.backoff
        last = " ".join(r.process.log_tail(1).split())[:200] or "(no log)"
        return f"{r.name} did not come back ({why}; last log line: {last}); next try in {r.backoff:g} s"

    def _check_caught_up(self, r: Replica) -> list[str]:
        me = r.status
        if me is None:
            return []
        peers = [(x, x.status) for x in self.replicas if x.state is State.UP and x.status is not None]
        if not peers:
            if self.n > 1:
                return []  # no one to compare with yet
            r.state, r.backoff = State.UP, BACKOFF_FIRST
            return [f"{r.name} is up: executed seq {me['last_executed']}"]
        ref, theirs = max(peers, key=lambda p: p[1]["last_executed"])
        if me["last_executed"] < theirs["last_executed"] or me["stable_checkpoint"] != theirs["stable_checkpoint"]:
            return []
        if me["last_executed"] == theirs["last_executed"] and me["state_digest"] != theirs["state_digest"]:
            return []  # not the same state: the final check says so, this one waits
        r.state, r.backoff = State.UP, BACKOFF_FIRST
        cp = me["stable_checkpoint"]
        line = (
            f"{r.name} caught up: executed seq {me['last_executed']} ({ref.name} was at {theirs['last_executed']}),"
            f" stable checkpoint {cp['seq']} with the same digest {str(cp['digest'])[:16]}..."
        )
        return [line]

    def _check_behind(self, r: Replica) -> list[str]:
        top = self.most_advanced()
        me = r.status
        if me is None or top is None:
            return []
        if top["stable_checkpoint"]["seq"] - me["stable_checkpoint"]["seq"] < self.behind_by:
            return []
        r.state = State.CATCHING_UP
        view = "" if me.get("view_active", True) else f", in a view change (view {me['view']}, voting {me.get('view_vote')})"
        line = (
            f"{r.name} fell behind: executed seq {me['last_executed']}, the others {top['last_executed']}"
            f" (stable checkpoint {me['stable_checkpoint']['seq']} vs {top['stable_checkpoint']['seq']}){view}"
        )
        return [line]

    def _quorum_events(self) -> list[str]:
        down = [r.name for r in self.replicas if not r.running]
        if len(down) > self.f and not self.stalled:
            self.stalled = True
            line = (
                f"{len(down)} of {self.n} replicas down ({', '.join(down)}), more than f = {self.f}:"
                " the federation cannot commit until they are back; restarting them"
            )
            return [line]
        if len(down) <= self.f and self.stalled:
            self.stalled = False
            return [f"{self.n - len(down)} of {self.n} replicas running again, enough for a quorum"]
        return []

    def _view_events(self) -> list[str]:
        active = [r.status for r in self.running() if r.status is not None and r.status.get("view_active")]
        if not active:
            return []
        top = max(active, key=lambda s: s["view"])
        if top["view"] <= self.view:
            return []
        old, self.view = self.view, top["view"]
        self.view_changes += 1
        return [f"view change: view {old} -> {self.view}, the primary is now {self.name_of(top['primary'])}"]
