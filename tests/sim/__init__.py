"""Deterministic fault simulator for the PBFT core (protocols/pbft).

Everything runs in one process on a virtual clock with one seeded RNG per run, so any failure
replays exactly from its (scenario, n, seed). See runner.py for the driver, scenarios.py for the
fault schedules, checkers.py for the safety and liveness properties checked after every run.
"""
