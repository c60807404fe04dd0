"""The daemon's control methods: every capability of the node as a JSON-RPC method, one module
per namespace.

- ``node``: node.* (identity, status, shutdown);
- ``peers``: peers.* and bootstrap.*;
- ``ledger``, ``federation``: ledger.* and federation.* (on a node without a genesis file each
  answers why it cannot);
- ``protocols``: protocol.* (the extra protocols the config loads);
- ``predict`` (with ``predict_bn``, ``predict_tree``, ``predict_bounds``, ``predict_worker``):
  predict.*, bounded inputs, heavy work in threads.

events.* and rpc.methods are the control server's own (node/control.py). Each namespace module
has a ``METHODS`` table of module-level handlers over an explicit context (``context.py``);
params validation by type is the control server's job (the params dataclasses), domain
validation (is this a peer address?) is the handler's and answers INVALID_PARAMS with the reason
(``checks.py``). To add a method: a handler and its params dataclass in its namespace's module,
a row in its ``METHODS``, its line in README's control API, and the pinned listing
(tests/node/data/rpc_methods.json).
"""

from __future__ import annotations

from pathlib import Path

from node.api import federation, ledger, node, peers, protocols
from node.api.context import NodeContext, register_methods, register_unavailable
from node.api.federation import LogParams, MemberParams
from node.api.ledger import BalanceParams, TransferParams, TxParams
from node.api.peers import AddrParams, PeerParams
from node.api.predict import register_predict
from node.control import ControlServer
from node.federation.service import Federation
from node.runtime.service import Protocols

NO_FEDERATION = "this node is in no federation: its home has no genesis.json"


def register_all(
    server: ControlServer, ctx: NodeContext, fed: Federation | None, home: Path, extra: Protocols
) -> None:
    """Every control method of a daemon (what node/daemon.py calls, once, before serving)."""
    register_methods(server, ctx, node.METHODS + peers.METHODS)
    register_methods(server, extra, protocols.METHODS)
    register_federation(server, fed)
    register_predict(server, home)


def register_federation(server: ControlServer, fed: Federation | None) -> None:
    """ledger.* and federation.*; on a node without a genesis file each answers why it cannot."""
    methods = ledger.METHODS + federation.METHODS
    if fed is None:
        register_unavailable(server, methods, NO_FEDERATION)
    else:
        register_methods(server, fed, methods)


__all__ = [
    "AddrParams", "BalanceParams", "LogParams", "MemberParams", "NodeContext", "PeerParams", "TransferParams",
    "TxParams", "register_all", "register_federation", "register_predict",
]
