"""The federation: PBFT among a committee of daemons over libp2p, replicating the ledger.

`links` carries signed bundles to peers, `replica` drives the sans-I/O PBFT core (timers,
persistence, effects), `client` submits this node's transactions and waits for f+1 matching
replies, and `service` puts them together for the daemon and the control API.
"""
