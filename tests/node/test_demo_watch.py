"""The demo's watch over its replicas, on fake daemons and a fake clock: a death is reported and
restarted after its backoff, a failed restart doubles it, a restarted replica counts as caught up
only once level with the others (same checkpoint, same digest at the same seq), and the loss of
the quorum, its return and a view change are each one line, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from node.demo.replicas import BACKOFF_FIRST, BACKOFF_MAX, LocalFederation, State
from node.scaling.process import DaemonStartError

IDS = [f"12D3KooWpeer{i}xxxxxxxx{i}" for i in range(4)]
INTERVAL = 16


def status(seq: int, *, view: int = 0, cp: int = 0, digest: str = "d", active: bool = True) -> dict[str, Any]:
    return {
        "last_executed": seq, "state_digest": f"{digest}{seq}", "view": view, "view_active": active,
        "primary": IDS[view % 4], "view_vote": None, "stable_checkpoint": {"seq": cp, "digest": f"c{cp}"},
    }


class FakeDaemon:
    """What the watch uses of a DaemonProcess."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.code: int | None = None
        self.status = status(10)
        self.ready = True
        self.starts = 0
        self.exit_on_start: int | None = None
        self.bootstrap: tuple[str, ...] = ()

    def poll(self) -> int | None:
        return self.code

    def call(self, method: str, params: Any = None, timeout: float = 10.0) -> Any:
        if self.code is not None or not self.ready:
            raise ConnectionRefusedError
        if method == "node.id":
            return {"addrs": [f"/ip4/127.0.0.1/tcp/{self.pid}"]}
        assert method == "federation.status"
        return self.status

    def start(self) -> None:
        self.starts += 1
        self.pid += 100
        self.code, self.ready = self.exit_on_start, False

    def wait_ready(self, timeout: float = 30.0) -> float:
        if not self.ready:
            raise DaemonStartError("not ready")
        return 0.0

    def stop(self, timeout: float = 5.0) -> int:
        return self.code or 0

    def kill(self) -> None:
        self.code = -9

    def log_tail(self, lines: int = 30) -> str:
        return '{"msg": "the last line"}'


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fed(clock: Clock, tmp_path: Path) -> LocalFederation:
    federation = LocalFederation([tmp_path / f"node-{i}" for i in range(4)], IDS, INTERVAL, clock=clock)
    for i, r in enumerate(federation.replicas):
        r.process = FakeDaemon(1000 + i)  # type: ignore[assignment]
        r.addr = f"/ip4/127.0.0.1/tcp/{1000 + i}"
    assert federation.watch() == []
    return federation


def fake(fed: LocalFederation, i: int) -> FakeDaemon:
    process = fed.replicas[i].process
    assert isinstance(process, FakeDaemon)
    return process


def state_of(fed: LocalFederation, i: int) -> State:
    return fed.replicas[i].state


def advance(fed: LocalFederation, seq: int, cp: int = 0, view: int = 0, skip: tuple[int, ...] = ()) -> None:
    for i in range(4):
        if i not in skip:
            fake(fed, i).status = status(seq, cp=cp, view=view)


def test_a_death_is_reported_restarted_after_its_backoff_and_caught_up(fed: LocalFederation, clock: Clock) -> None:
    fake(fed, 1).code = -9
    [died] = fed.watch()
    assert died.startswith("node-1 (peer ...") and "pid 1001) died, killed by SIGKILL" in died
    assert "3 of 4 replicas up (at most f = 1 down: the others keep committing)" in died
    assert state_of(fed, 1) is State.DOWN

    advance(fed, 40, skip=(1,))
    clock.now = BACKOFF_FIRST / 2
    assert fed.watch() == [] and fake(fed, 1).starts == 0  # not before its backoff
    clock.now = BACKOFF_FIRST
    assert fed.watch() == [] and fake(fed, 1).starts == 1
    # It dials the replicas that run, not its own dead address.
    assert set(fake(fed, 1).bootstrap) == {f"/ip4/127.0.0.1/tcp/{1000 + i}" for i in (0, 2, 3)}

    fake(fed, 1).ready, fake(fed, 1).status = True, status(12)
    [back] = fed.watch()
    assert back.startswith("node-1 is back (pid 1101)") and "executed seq 10 -> 40" in back
    assert state_of(fed, 1) is State.CATCHING_UP
    assert fed.watch() == []  # seq 12 is not 40

    fake(fed, 1).status = status(40)
    [caught] = fed.watch()
    assert caught.startswith("node-1 caught up: executed seq 40")
    assert state_of(fed, 1) is State.UP and fed.deaths == 1 and fed.restarts == 1


def test_a_restart_that_fails_doubles_the_backoff(fed: LocalFederation, clock: Clock) -> None:
    fake(fed, 2).code = 1
    [died] = fed.watch()
    assert "exit status 1" in died
    fake(fed, 2).exit_on_start = 4
    clock.now = BACKOFF_FIRST
    fed.watch()
    [failed] = fed.watch()
    assert failed.startswith("node-2 did not come back (exit status 4; last log line:") and "the last line" in failed
    assert f"next try in {2 * BACKOFF_FIRST:g} s" in failed
    clock.now += 2 * BACKOFF_FIRST - 0.01
    fed.watch()
    assert fake(fed, 2).starts == 1
    clock.now += 0.01
    fed.watch()
    assert fake(fed, 2).starts == 2
    for _ in range(20):  # however often it fails, it is tried again at least every BACKOFF_MAX
        clock.now += BACKOFF_MAX
        fed.watch()
    assert fed.replicas[2].backoff == BACKOFF_MAX


def test_more_than_f_down_is_said_once_and_so_is_its_end(fed: LocalFederation, clock: Clock) -> None:
    fake(fed, 1).code = fake(fed, 2).code = -9
    events = fed.watch()
    assert len(events) == 3 and "died" in events[0] and "died" in events[1]
    assert "the others keep committing" in events[0] and "the others keep committing" not in events[1]
    assert events[2] == (
        "2 of 4 replicas down (node-1, node-2), more than f = 1: the federation cannot commit until they are back;"
        " restarting them"
    )
    assert fed.watch() == []  # said once
    clock.now = BACKOFF_FIRST
    fed.watch()
    fake(fed, 1).ready = True
    events = fed.watch()
    assert any("node-1 is back" in e and "executed nothing (still at seq 10)" in e for e in events)
    assert events[-1] == "3 of 4 replicas running again, enough for a quorum"


def test_a_view_change_is_one_line_once_the_new_view_is_active(fed: LocalFederation) -> None:
    for i in range(4):
        fake(fed, i).status = status(10, view=1, active=False)
    assert fed.watch() == []  # voting for it is not having it
    fake(fed, 2).status = status(11, view=1)
    assert fed.watch() == ["view change: view 0 -> 1, the primary is now node-1"]
    advance(fed, 12, view=1)
    assert fed.watch() == [] and fed.view_changes == 1


def test_level_means_the_same_checkpoint_and_the_same_digest(fed: LocalFederation, clock: Clock) -> None:
    fake(fed, 3).code = -9
    fed.watch()
    clock.now = BACKOFF_FIRST
    fed.watch()
    fake(fed, 3).ready = True
    advance(fed, 20, cp=16, skip=(3,))
    fake(fed, 3).status = status(20, cp=0)
    fed.watch()
    assert state_of(fed, 3) is State.CATCHING_UP  # same seq, older stable checkpoint
    fake(fed, 3).status = {**status(20, cp=16), "state_digest": "other"}
    assert fed.watch() == [] and state_of(fed, 3) is State.CATCHING_UP  # another state
    fake(fed, 3).status = status(20, cp=16)
    assert fed.watch()[0].startswith("node-3 caught up")


def test_a_replica_two_checkpoints_behind_is_reported_until_it_catches_up(fed: LocalFederation) -> None:
    advance(fed, 3 * INTERVAL + 1, cp=3 * INTERVAL, skip=(2,))
    fake(fed, 2).status = {**status(INTERVAL + 1, cp=INTERVAL, view=1, active=False), "view_vote": 2}
    [behind] = fed.watch()
    assert behind == (
        f"node-2 fell behind: executed seq {INTERVAL + 1}, the others {3 * INTERVAL + 1}"
        f" (stable checkpoint {INTERVAL} vs {3 * INTERVAL}), in a view change (view 1, voting 2)"
    )
    assert fed.watch() == []  # said once
    fake(fed, 2).status = status(3 * INTERVAL + 1, cp=3 * INTERVAL)
    assert fed.watch()[0].startswith("node-2 caught up")
