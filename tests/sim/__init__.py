"""Deterministic fault simulator for the PBFT core (protocols/pbft).

Everything runs in one process on a virtual clock with seeded RNGs, so any failure replays
exactly from its (scenario, n, seed):

    .venv/bin/python -m tests.sim --scenario all --replicas 4 --seeds 1000
    .venv/bin/python -m tests.sim --scenario twins --replicas 7 --seeds 1 --first-seed 42 --trace

Modules: clock.py (the event heap), network.py (delay, loss, duplication, reordering,
partitions, link cuts, crash schedules), client.py (closed-loop PBFT clients), byzantine.py
(equivocation, silence, replay on the wire and by a replica, forged and recombined certificates,
amnesiac view changes, poisoned state transfer, garbage bytes; twins are set up in scenarios.py),
checkers.py (agreement, validity with an audited application, checkpoint and application state
digests, linearizability, liveness), scenarios.py (the registry, each with the replica features it
requires and what it must visibly exercise), runner.py (the driver), test_sim.py (CI seeds).

Protocol machines (protocols/machine.py) run on the generic core instead, world.py: the same clock
and network, a per-node driver that performs the shared effects as the daemon's runtime does, and
a host hook per machine for its own effects. On it: federation.py (whole FederationNodes with the
real Ledger; `python -m tests.sim.federation`) and echo.py (the test protocol tests/echo_protocol.py;
`python -m tests.sim.echo`).
"""
