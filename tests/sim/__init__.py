"""Deterministic fault simulator for protocol machines: the PBFT core (protocols/pbft), whole
federation nodes (protocols/federation.py) and the test protocol (tests/echo_protocol.py).

Everything runs in one process on a virtual clock with seeded RNGs, so any failure replays
exactly from its (scenario, n, seed):

    .venv/bin/python -m tests.sim --scenario all --replicas 4 --seeds 1000
    .venv/bin/python -m tests.sim --scenario twins --replicas 7 --seeds 1 --first-seed 42 --trace
    .venv/bin/python -m tests.sim.federation --replicas 4 --seeds 300
    .venv/bin/python -m tests.sim.echo --nodes 4 --seeds 200

The core, world.py, runs any set of machines (protocols/machine.py): clock.py (the event heap),
network.py (delay, loss, duplication, reordering, partitions, link cuts, crash schedules), and a
per-node driver that performs the shared effects as the daemon's runtime does, with a host hook
per machine for its own effects. On it:

- runner.py: bare PBFT replicas (each behind a small adapter machine) over a KV toy, with
  client.py (closed-loop PBFT clients), byzantine.py (equivocation, silence, replay on the wire
  and by a replica, forged and recombined certificates, amnesiac view changes, poisoned state
  transfer, garbage bytes; twins are set up in scenarios.py), checkers.py (agreement, validity with
  an audited application, checkpoint and application state digests, linearizability, liveness),
  scenarios.py (the registry, each with the replica features it requires and what it must visibly
  exercise), test_sim.py (CI seeds), mutants.py (does it catch broken replicas; by hand);
- federation.py: whole FederationNodes with the real Ledger (test_federation_sim.py);
- echo.py: the test protocol under loss and a partition (test_echo_sim.py).
"""
