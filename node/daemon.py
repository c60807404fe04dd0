"""The composition root: every service of one daemon in one trio nursery.

Start order is the order of dependence: the home is locked, the key read and the store checked
(node/home.py, before any service opens), then the network listens (so our card can name its real
addresses), then discovery runs, then the control socket is bound, and only then do we tell
systemd READY=1. Stop is the reverse, by cancellation: SIGTERM, SIGINT, SIGHUP or `node.shutdown`
cancel the nursery; each service's own `finally` closes what it opened (the control server removes
its socket file, leaving `open_network` closes libp2p).
"""

from __future__ import annotations

import logging
import os
import random
import signal
from importlib import metadata
from typing import Any, Final

import trio

from keys.identity import Identity
from node import api
from node.config import Config
from node.control import ControlServer
from node.discovery import CardBook, DiscoveryOptions, DiscoveryService
from node.federation.service import Federation, read_genesis
from node.home import open_store, verify_federation_state
from node.network import open_network
from node.runtime.registry import ProtocolSpec
from node.runtime.service import Protocols, load_specs
from node.sdnotify import Notifier
from node.store import Store
from protocols.discovery import DiscoveryConfig, PeerState
from protocols.ledger import Genesis

log = logging.getLogger("sovereign.daemon")

# Capabilities this build offers, advertised in the card (later issues add theirs).
CAPABILITIES: dict[str, dict[str, Any]] = {"discovery": {"version": 1}, "control": {"jsonrpc": "2.0"}}


def software_version() -> str:
    try:
        return metadata.version("sovereign-node")
    except metadata.PackageNotFoundError:
        return "0+unknown"


async def run(config: Config, identity: Identity) -> None:
    """Run the daemon until a signal or `node.shutdown`; return after a clean stop.

    The caller holds the home's lock (node.home.lock_home). Everything that can refuse the start
    without a peer's help (genesis file, store, persisted federation state) is checked before the
    network opens: a refused start has announced nothing and changed nothing."""
    version = software_version()
    notifier = Notifier.from_environment(os.environ)
    genesis = read_genesis(config.home)  # before anything starts: a bad file is a config error
    specs = load_specs(config.protocols)
    store = open_store(config, identity)
    try:
        if genesis is not None:
            verify_federation_state(store, genesis)
        await _serve(config, identity, version, notifier, genesis, store, specs)
    finally:
        store.close()
    log.info("stopped")


async def _serve(
    config: Config, identity: Identity, version: str, notifier: Notifier, genesis: Genesis | None, store: Store,
    specs: list[ProtocolSpec],
) -> None:
    capabilities = dict(CAPABILITIES)
    if genesis is not None:
        capabilities["federation"] = {"chain_id": genesis.chain_id, "replica": identity.peer_id in genesis.committee}
    cards = CardBook(identity, version, capabilities)
    shutdown = trio.Event()
    try:
        async with open_network(identity, config.listen, cards) as net:
            cards.addrs = tuple(net.listen_addrs())
            membership = DiscoveryConfig(
                card_interval=config.card_interval,
                suspect_after=config.suspect_after,
                dead_after=config.dead_after,
            )
            control = ControlServer(
                config.socket_path,
                idle_timeout=config.control_idle_timeout,
                max_queued_bytes=config.control_max_queued_bytes,
            )
            discovery = DiscoveryService(
                net, cards, store, DiscoveryOptions(membership), control.publish, config.bootstrap, random.Random()
            )
            federation = None
            if genesis is not None:
                federation = Federation(
                    identity, genesis, store, net, request_timeout=config.request_timeout, publish=control.publish
                )
            extra = Protocols(identity, net, specs, control.publish)
            ctx = api.NodeContext(identity, version, trio.current_time(), net, discovery, store, shutdown.set)
            api.register_all(control, ctx, federation, config.home, extra)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stop_on_signals, shutdown)
                nursery.start_soon(discovery.run)
                if federation is not None:
                    nursery.start_soon(federation.run)
                nursery.start_soon(extra.run)
                await nursery.start(control.serve)
                log.info(
                    "sovereign %s ready: peer %s listening on %s, control socket %s",
                    version, identity.peer_id, ", ".join(net.listen_addrs()), config.socket_path,
                )
                notifier.ready(f"peer {identity.peer_id}")
                nursery.start_soon(_report_to_systemd, notifier, discovery)
                await shutdown.wait()
                log.info("stopping")
                notifier.stopping()
                # Let the reply to a `node.shutdown` call leave before its connection is cancelled.
                await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
    except Exception as exc:
        if not shutdown.is_set():
            raise
        # py-libp2p's own handlers can race its teardown (pubsub schedules a task for a message
        # that arrives while its service stops, and the error escapes the swarm). We were
        # stopping anyway and everything of ours has closed: say so, and stop cleanly.
        log.warning("the network raised while stopping (ignored): %s: %s", type(exc).__name__, exc)


# SIGHUP too: the terminal a foreground daemon ran in has gone, and nothing here can be reloaded
# in place (see README, "Signals"); without a handler it killed the process with no log line and
# left the control socket behind.
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


async def _stop_on_signals(shutdown: trio.Event) -> None:
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async for signum in signals:
            log.info("received %s", signal.Signals(signum).name)
            shutdown.set()


async def _report_to_systemd(notifier: Notifier, discovery: DiscoveryService) -> None:
    """STATUS= every second; WATCHDOG=1 at half the watchdog interval when systemd asks for it.
    The watchdog ping comes from the same trio loop the services run on, so a wedged loop
    stops the pings and systemd restarts us."""
    period = notifier.watchdog_interval()
    tick = min(1.0, period) if period else 1.0
    last_status = ""
    while True:
        m = discovery.membership
        status = f"{m.count(PeerState.ALIVE)} peers alive, {m.count(PeerState.SUSPECT)} suspect"
        if status != last_status:
            notifier.status(status)
            last_status = status
        if period:
            notifier.watchdog()
        await trio.sleep(tick)
