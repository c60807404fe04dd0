"""The `sovereign` command: a thin client of the control socket, plus `init`, `daemon` and `demo`.

Exit codes (stable, for scripts):
  0 success;  1 the call failed (the daemon answered with an error);  2 usage error;
  3 the daemon is not running (no control socket);  4 configuration or key file error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from node.rpc import ControlClient, DaemonNotRunning, RpcError

EXIT_OK, EXIT_CALL_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_CONFIG = 0, 1, 2, 3, 4


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sovereign", description="A sovereign peer-to-peer node.")
    p.add_argument("--home", type=Path, help="node home (default $SOVEREIGN_HOME, else the XDG data dir)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    i = sub.add_parser("init", help="create the home, identity key and default config")
    i.add_argument("--genesis", type=Path, metavar="FILE", help="join the federation this genesis file describes")

    d = sub.add_parser("daemon", help="run the node in the foreground")
    d.add_argument("--listen", action="append", metavar="MADDR", help="listen multiaddr (repeatable)")
    d.add_argument("--bootstrap", action="append", metavar="MADDR", help="bootstrap peer multiaddr (repeatable)")
    d.add_argument("--log-format", choices=["human", "json"])
    d.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    sub.add_parser("id", help="this node's peer id and addresses")
    sub.add_parser("status", help="version, uptime, peers")
    sub.add_parser("peers", help="the membership view")

    b = sub.add_parser("bootstrap", help="manage persisted bootstrap peers")
    bsub = b.add_subparsers(dest="action", required=True, metavar="ACTION")
    bsub.add_parser("list")
    for name in ("add", "rm"):
        bsub.add_parser(name).add_argument("addr", metavar="MADDR")

    t = sub.add_parser("transfer", help="transfer from this node's account; waits for the commit")
    t.add_argument("to", metavar="PEER_ID")
    t.add_argument("amount", type=int)
    t.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the commit (default 30)")
    bal = sub.add_parser("balance", help="an account's balance (default: this node's)")
    bal.add_argument("account", nargs="?", metavar="PEER_ID")

    f = sub.add_parser("federation", help="the federation: status, committed log, genesis files")
    fsub = f.add_subparsers(dest="action", required=True, metavar="ACTION")
    fsub.add_parser("status", help="committee, view, primary, checkpoints, throughput")
    flog = fsub.add_parser("log", help="committed batches")
    flog.add_argument("--since", type=int, default=0, help="after this sequence number")
    flog.add_argument("--limit", type=int, default=20)
    fj = fsub.add_parser("join", help="vote to add a peer to the committee (f+1 member votes needed)")
    fj.add_argument("peer", metavar="PEER_ID")
    fl = fsub.add_parser("leave", help="leave the committee (or vote to remove PEER_ID)")
    fl.add_argument("peer", nargs="?", metavar="PEER_ID")
    g = fsub.add_parser("genesis", help="print a new genesis file (JSON) for `init --genesis`")
    g.add_argument("--chain-id", required=True)
    g.add_argument("--member", action="append", required=True, metavar="PEER_ID", help="committee member, in order (repeatable)")
    g.add_argument("--balance", action="append", default=[], metavar="PEER_ID=AMOUNT", help="initial balance (repeatable)")
    g.add_argument("--checkpoint-interval", type=int, default=128)

    pr = sub.add_parser("predict", help="forecasts, simulations and Bayesian networks (computed by the daemon)")
    psub = pr.add_subparsers(dest="action", required=True, metavar="ACTION")
    pf = psub.add_parser("forecast", help="forecast a series: values as arguments, or '-' to read them from stdin")
    pf.add_argument("values", nargs="+", metavar="VALUE")
    pf.add_argument("--horizon", type=int, required=True)
    pf.add_argument("--period", type=int)
    pf.add_argument("--method", default="auto")
    pf.add_argument("--level", type=float, default=0.9)
    ps = psub.add_parser("simulate", help="geometric Brownian motion: terminal value, quantiles, VaR/CVaR")
    for name in ("s0", "mu", "sigma", "horizon"):
        ps.add_argument(f"--{name}", type=float, required=True)
    ps.add_argument("--steps", type=int, required=True)
    ps.add_argument("--paths", type=int, required=True)
    ps.add_argument("--seed", type=int)
    ps.add_argument("--level", type=float, default=0.95)
    pc = psub.add_parser(
        "scenarios",
        help="named scenarios (stress/bear/base/bull) from a price history, or with --tree-steps a scenario tree",
        description="Values as arguments, or '-' to read them from stdin. Without --tree-steps: GBM fitted to the "
        "prices, simulated --horizon-steps ahead and cut into named scenarios. With --tree-steps K: a scenario tree "
        "of K levels (at most 3**8 leaves), GBM (--tree-model gbm) or driven by a fitted forecast model (a "
        "forecast method, or auto), whose level-k expected value is the model's k-step forecast.",
    )
    pc.add_argument("values", nargs="+", metavar="VALUE")
    pc.add_argument("--horizon-steps", type=int, help="steps ahead (named scenarios; required without --tree-steps)")
    pc.add_argument("--paths", type=int, default=10_000)
    pc.add_argument("--seed", type=int, default=0)
    pc.add_argument("--shock-step", type=int)
    pc.add_argument("--shock-multiply", type=float)
    pc.add_argument("--tree-steps", type=int, metavar="K", help="build a scenario tree of K steps instead")
    pc.add_argument("--branching", type=int, choices=(2, 3), help="tree branching: 2 binomial, 3 trinomial (default)")
    pc.add_argument("--tree-model", metavar="MODEL", help="gbm, auto (default) or a forecast method")
    pc.add_argument("--period", type=int, help="seasonal period for the tree's forecast model")
    pb = psub.add_parser("bn", help="Bayesian networks stored in the node's home")
    pbsub = pb.add_subparsers(dest="bn_action", required=True, metavar="ACTION")
    pbl = pbsub.add_parser("load", help="store a network from a BIF file")
    pbl.add_argument("name")
    pbl.add_argument("file", type=Path)
    pbq = pbsub.add_parser("query", help="P(VARIABLE | evidence VAR=STATE ...)")
    pbq.add_argument("name")
    pbq.add_argument("variable")
    pbq.add_argument("evidence", nargs="*", metavar="VAR=STATE")

    tui = sub.add_parser("tui", help="watch and steer the daemon in a terminal UI (Textual)")
    tui.add_argument("--socket", type=Path, metavar="PATH", help="control socket (default: the home's)")

    c = sub.add_parser("call", help="call any control method: sovereign call METHOD '{...}'")
    c.add_argument("method")
    c.add_argument("params", nargs="?", help="JSON object or array")

    demo = sub.add_parser("demo", help="run a local N-replica federation streaming transfers")
    demo.add_argument("--nodes", type=int, default=4)
    demo.add_argument("--dir", type=Path, help="where to create the homes (default: a temp dir, removed after)")
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for full discovery")
    demo.add_argument("--duration", type=float, help="stop after this many seconds (default: run until Ctrl-C)")
    return p


def _config(args: argparse.Namespace, overrides: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    from node.config import ConfigError, load_config

    try:
        return load_config(home=args.home, env=os.environ, overrides=overrides or {})
    except ConfigError as exc:
        raise CliError(f"configuration error: {exc}", EXIT_CONFIG) from None


def _call(args: argparse.Namespace, method: str, params: Any = None) -> Any:
    config = _config(args)
    try:
        with ControlClient(config.socket_path) as client:
            return client.call(method, params)
    except DaemonNotRunning:
        raise CliError(
            f"the daemon is not running (no control socket at {config.socket_path}); start it with `sovereign daemon`",
            EXIT_NOT_RUNNING,
        ) from None
    except RpcError as exc:
        detail = f" ({json.dumps(exc.data)})" if exc.data is not None else ""
        raise CliError(f"{method} failed: {exc.message}{detail}", EXIT_CALL_FAILED) from None


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*map(str, r)).rstrip() for r in [header, *rows])


def _print(args: argparse.Namespace, result: Any, human: str) -> None:
    print(json.dumps(result, indent=2) if args.json else human)


def cmd_init(args: argparse.Namespace) -> int:
    from keys.identity import KeyFileError, load_or_create_identity, passphrase_from_environment
    from node.config import ensure_home, write_default_config

    config = _config(args)
    try:
        ensure_home(config)
        write_default_config(config.config_path)
        passphrase = passphrase_from_environment(os.environ, prompt=True)
        identity, created = load_or_create_identity(config.key_path, passphrase)
    except (KeyFileError, ValueError, OSError) as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None
    result: dict[str, Any] = {"peer_id": identity.peer_id, "home": str(config.home), "created": created}
    human = f"{'created' if created else 'existing'} identity {identity.peer_id} in {config.home}"
    if args.genesis is not None:
        genesis = _install_genesis(args.genesis, config.home)
        role = "a replica" if identity.peer_id in genesis.committee else "a client (not in the committee)"
        result["genesis"] = {"chain_id": genesis.chain_id, "hash": genesis.hash, "replica": identity.peer_id in genesis.committee}
        human += f"\nfederation {genesis.chain_id} (genesis {genesis.hash[:16]}...): this node is {role}"
    _print(args, result, human)
    return EXIT_OK


def _install_genesis(source: Path, home: Path):  # type: ignore[no-untyped-def]
    from protocols.ledger import GenesisError, load_genesis
    from node.federation.service import GENESIS_NAME

    try:
        text = source.read_text()
        genesis = load_genesis(text)
    except OSError as exc:
        raise CliError(f"cannot read {source}: {exc.strerror}", EXIT_CONFIG) from None
    except GenesisError as exc:
        raise CliError(f"{source}: {exc}", EXIT_CONFIG) from None
    target = home / GENESIS_NAME
    if target.exists():
        try:
            current = load_genesis(target.read_text())
        except (OSError, GenesisError) as exc:
            raise CliError(f"{target} exists and is unreadable ({exc}); move it aside first", EXIT_CONFIG) from None
        if current.hash != genesis.hash:
            raise CliError(
                f"{target} already holds another federation ({current.chain_id}); a node belongs to one", EXIT_CONFIG
            )
        return genesis
    tmp = target.with_suffix(".tmp")
    tmp.write_text(genesis.to_json())
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    return genesis


def cmd_daemon(args: argparse.Namespace) -> int:
    import trio

    from keys.identity import KeyFileError, load_or_create_identity, passphrase_from_environment
    from node import daemon
    from node.config import ensure_home
    from node.logs import setup_logging

    overrides = {
        k: v
        for k, v in {
            "listen": tuple(args.listen) if args.listen else None,
            "bootstrap": tuple(args.bootstrap) if args.bootstrap else None,
            "log_format": args.log_format,
            "log_level": args.log_level,
        }.items()
        if v is not None
    }
    config = _config(args, overrides)
    setup_logging(config.log_format, config.log_level)
    try:
        ensure_home(config)
        passphrase = passphrase_from_environment(os.environ, prompt=sys.stdin.isatty())
        identity, created = load_or_create_identity(config.key_path, passphrase)
    except (KeyFileError, ValueError, OSError) as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None
    if created:
        import logging

        logging.getLogger("sovereign.daemon").info("created a new identity %s", identity.peer_id)
    from node.network import ListenError
    from node.federation.service import FederationError

    try:
        trio.run(daemon.run, config, identity)
    except FederationError as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None
    except (ListenError, BaseExceptionGroup) as exc:
        # Raised inside nurseries, a start-up error arrives wrapped in exception groups.
        leaves = _leaves(exc)
        if not all(isinstance(e, ListenError) for e in leaves):
            raise
        raise CliError(str(leaves[0]), EXIT_CONFIG) from None
    return EXIT_OK


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def cmd_id(args: argparse.Namespace) -> int:
    r = _call(args, "node.id")
    _print(args, r, "\n".join([r["peer_id"], *r["addrs"]]))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    r = _call(args, "node.status")
    p = r["peers"]
    human = "\n".join(
        [
            f"peer id   {r['peer_id']}",
            f"version   {r['version']}   pid {r['pid']}   uptime {r['uptime_s']:.0f} s",
            f"listening {', '.join(r['listen_addrs'])}",
            f"peers     {p['alive']} alive, {p['suspect']} suspect, {p['dead']} dead, {p['connected']} connected",
        ]
    )
    _print(args, r, human)
    return EXIT_OK


def format_peers(peers: list[dict[str, Any]]) -> str:
    rows = [
        [
            p["peer_id"],
            p["state"],
            "yes" if p["connected"] else "no",
            f"{p['last_seen_ago_s']:.1f}s ago",
            "-" if p["latency_ms"] is None else f"{p['latency_ms']:.1f} ms",
            ",".join(sorted(p["capabilities"])),
        ]
        for p in peers
    ]
    return _table(rows, ["PEER", "STATE", "CONN", "LAST SEEN", "LATENCY", "CAPABILITIES"]) if rows else "no peers"


def cmd_peers(args: argparse.Namespace) -> int:
    r = _call(args, "peers.list")
    _print(args, r, format_peers(r["peers"]))
    return EXIT_OK


def cmd_bootstrap(args: argparse.Namespace) -> int:
    if args.action == "list":
        r = _call(args, "bootstrap.list")
        _print(args, r, "\n".join(r["bootstrap"]) or "no bootstrap peers")
    elif args.action == "add":
        r = _call(args, "bootstrap.add", {"addr": args.addr})
        _print(args, r, "added" if r["added"] else "already present")
    else:
        r = _call(args, "bootstrap.remove", {"addr": args.addr})
        _print(args, r, "removed" if r["removed"] else "not present")
    return EXIT_OK


def cmd_transfer(args: argparse.Namespace) -> int:
    r = _call(args, "ledger.transfer", {"to": args.to, "amount": args.amount, "timeout": args.timeout})
    human = f"{r['status']}{': ' + r['reason'] if r['reason'] else ''}  tx {r['tx_id']}"
    _print(args, r, human)
    return EXIT_OK if r["status"] == "applied" else EXIT_CALL_FAILED


def cmd_balance(args: argparse.Namespace) -> int:
    r = _call(args, "ledger.balance", {"account": args.account} if args.account else {})
    _print(args, r, f"{r['balance']}  {r['account']}{'' if r['exists'] else '  (no account)'}")
    return EXIT_OK


def format_federation(r: dict[str, Any]) -> str:
    lines = [f"chain     {r['chain_id']}  (genesis {r['genesis'][:16]}...)  epoch {r['epoch']}  this node: {r['role']}"]
    if r["role"] != "replica":
        lines.append(f"synced    state at {r['last_executed']}  ({r['state_digest'][:16]}...)")
    else:
        cp = r["stable_checkpoint"]
        state = "" if r["view_active"] else "  (view change in progress)"
        lines += [
            f"view      {r['view']}  primary {r['primary']}{state}",
            f"executed  {r['last_executed']}  lag {r['lag']}  stable checkpoint {cp['seq']} ({cp['digest'][:16]}...)",
            f"state     {r['state_digest']}",
        ]
    lines.append(f"committed {r['committed_tx_per_s']} tx/s (last 5 s)  in flight {r['client_in_flight']}")
    lines.append(f"members   ({len(r['members'])}, f = {r['f']})")
    lines += [f"  {m}" for m in r["members"]]
    if r.get("pending_members"):
        lines.append(f"pending   ({len(r['pending_members'])} from the next checkpoint)")
    return "\n".join(lines)


def cmd_federation(args: argparse.Namespace) -> int:
    if args.action == "status":
        r = _call(args, "federation.status")
        _print(args, r, format_federation(r))
    elif args.action == "log":
        r = _call(args, "federation.log", {"since": args.since, "limit": args.limit})
        rows = [
            [b["seq"], b["view"], len(b["txs"]), sum(1 for t in b["txs"] if t.get("status") == "applied")]
            for b in r["batches"]
        ]
        _print(args, r, _table(rows, ["SEQ", "VIEW", "TXS", "APPLIED"]) if rows else "no committed batches")
    elif args.action in ("join", "leave"):
        params = {"peer": args.peer} if args.peer else {}
        r = _call(args, f"federation.{args.action}", params)
        pending = r["pending_members"]
        human = f"{r['status']}{': ' + r['reason'] if r['reason'] else ''}  tx {r['tx_id']}"
        if pending:
            human += f"\ncommittee from the next checkpoint: {len(pending)} members"
        _print(args, r, human)
        return EXIT_OK if r["status"] == "applied" else EXIT_CALL_FAILED
    else:
        _print_genesis(args)
    return EXIT_OK


def _print_genesis(args: argparse.Namespace) -> None:
    from protocols.ledger import GenesisError, make_genesis

    balances: dict[str, int] = {}
    for item in args.balance:
        peer, sep, amount = item.partition("=")
        if not sep or not amount.strip().isdigit():
            raise CliError(f"--balance wants PEER_ID=AMOUNT, got {item!r}", EXIT_USAGE)
        balances[peer.strip()] = balances.get(peer.strip(), 0) + int(amount)
    try:
        genesis = make_genesis(args.chain_id, tuple(args.member), balances, args.checkpoint_interval)
    except GenesisError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    print(genesis.to_json())


def _numbers(values: list[str]) -> list[float]:
    if values == ["-"]:
        values = sys.stdin.read().replace(",", " ").split()
    try:
        return [float(v) for v in values]
    except ValueError as exc:
        raise CliError(f"values must be numbers: {exc}", EXIT_USAGE) from None


def cmd_predict(args: argparse.Namespace) -> int:
    if args.action == "forecast":
        params: dict[str, Any] = {"y": _numbers(args.values), "horizon": args.horizon, "method": args.method, "level": args.level}
        if args.period is not None:
            params["period"] = args.period
        r = _call(args, "predict.forecast", params)
        rows = [[h + 1, f"{m:.6g}", f"{lo:.6g}", f"{hi:.6g}"] for h, (m, lo, hi) in enumerate(zip(r["mean"], r["lower"], r["upper"]))]
        pct = f"{r['level'] * 100:g}%"
        _print(args, r, f"method {r['method']}\n" + _table(rows, ["H", "MEAN", f"LOW {pct}", f"HIGH {pct}"]))
    elif args.action == "simulate":
        params = {k: getattr(args, k) for k in ("s0", "mu", "sigma", "horizon", "steps", "paths", "level")}
        if args.seed is not None:
            params["seed"] = args.seed
        r = _call(args, "predict.simulate", params)
        t, q = r["terminal"], r["quantiles"]
        human = (
            f"terminal mean {t['mean']:.6g} (CI {t['low']:.6g} .. {t['high']:.6g}, stderr {t['stderr']:.3g})\n"
            f"quantiles 5% {q['p05']:.6g}  25% {q['p25']:.6g}  50% {q['p50']:.6g}  75% {q['p75']:.6g}  95% {q['p95']:.6g}\n"
            f"loss VaR {r['var']:.6g}  CVaR {r['cvar']:.6g}  at {args.level:g}"
        )
        _print(args, r, human)
    elif args.action == "scenarios":
        _predict_scenarios(args)
    elif args.bn_action == "load":
        try:
            text = args.file.read_text()
        except OSError as exc:
            raise CliError(f"cannot read {args.file}: {exc.strerror}", EXIT_USAGE) from None
        r = _call(args, "predict.bn.load", {"name": args.name, "bif": text})
        _print(args, r, f"stored {r['name']}: {len(r['variables'])} variables")
    else:
        evidence = {}
        for item in args.evidence:
            var, sep, state = item.partition("=")
            if not sep or not var or not state:
                raise CliError(f"evidence is VAR=STATE, got {item!r}", EXIT_USAGE)
            evidence[var] = state
        r = _call(args, "predict.bn.query", {"name": args.name, "variable": args.variable, "evidence": evidence})
        rows = [[state, f"{pr:.6f}"] for state, pr in r["distribution"].items()]
        _print(args, r, _table(rows, [args.variable.upper(), "P"]))
    return EXIT_OK


def format_tree(tree: dict[str, Any]) -> str:
    """A scenario tree's summary: one row per level (nodes, expected value, sd, min, max)."""
    model = tree["model"] if tree["model"] == tree["requested"] else f"{tree['model']} (requested {tree['requested']})"
    kind = {2: "binomial", 3: "trinomial"}.get(tree["branching"], f"branching {tree['branching']}")
    head = f"tree {model}, {kind}, {tree['steps']} steps, {tree['leaves']} leaves"
    fitted = "  ".join(f"{k} {v:.6g}" for k, v in tree["fitted"].items() if isinstance(v, float))
    rows = [
        [str(lv["step"]), str(lv["nodes"]), f"{lv['expected']:.6g}", f"{lv['sd']:.4g}", f"{lv['min']:.6g}", f"{lv['max']:.6g}"]
        for lv in tree["levels"]
    ]
    return "\n".join([head, f"fitted {fitted}", _table(rows, ["STEP", "NODES", "EXPECTED", "SD", "MIN", "MAX"])])


def _predict_scenarios(args: argparse.Namespace) -> None:
    params: dict[str, Any] = {"prices": _numbers(args.values)}
    if args.horizon_steps is not None:
        params["horizon_steps"] = args.horizon_steps
    if args.tree_steps is None:
        if args.branching is not None or args.tree_model is not None or args.period is not None:
            raise CliError("--branching, --tree-model and --period go with --tree-steps", EXIT_USAGE)
        if args.horizon_steps is None:
            raise CliError("give --horizon-steps (named scenarios) or --tree-steps (a scenario tree)", EXIT_USAGE)
        params.update(paths=args.paths, seed=args.seed)
        if args.shock_step is not None or args.shock_multiply is not None:
            params.update(shock_step=args.shock_step, shock_multiply=args.shock_multiply)
        r = _call(args, "predict.scenarios", params)
        rows = [[sc["name"], f"{sc['probability']:.4f}", f"{sc['terminal']:.6g}"] for sc in r["scenarios"]]
        _print(args, r, f"{r['horizon_steps']} steps ahead\n" + _table(rows, ["SCENARIO", "P", "TERMINAL"]))
        return
    if args.shock_step is not None or args.shock_multiply is not None:
        raise CliError("shocks apply to the named scenarios, not to a tree", EXIT_USAGE)
    tree: dict[str, Any] = {"steps": args.tree_steps, "branching": 3 if args.branching is None else args.branching,
                            "model": args.tree_model or "auto"}
    if args.period is not None:
        tree["period"] = args.period
    params["tree"] = tree
    r = _call(args, "predict.scenarios", params)
    _print(args, r, format_tree(r["tree"]))


def cmd_call(args: argparse.Namespace) -> int:
    params = None
    if args.params is not None:
        try:
            params = json.loads(args.params)
        except json.JSONDecodeError as exc:
            raise CliError(f"params are not valid JSON: {exc}", EXIT_USAGE) from None
        if not isinstance(params, (dict, list)):
            raise CliError("params must be a JSON object or array", EXIT_USAGE)
    print(json.dumps(_call(args, args.method, params), indent=2))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from node.scaling.demo import run_demo

    if not 1 <= args.nodes <= 64:
        raise CliError("--nodes must be between 1 and 64", EXIT_USAGE)
    if args.duration is not None and not 0 < args.duration <= 86400:
        raise CliError("--duration must be in (0, 86400] seconds", EXIT_USAGE)
    return run_demo(args.nodes, args.dir, args.timeout, as_json=args.json, duration=args.duration)


def cmd_tui(args: argparse.Namespace) -> int:
    socket_path = args.socket if args.socket is not None else _config(args).socket_path
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CliError("the TUI needs a terminal; for scripts use the other commands or `sovereign call`", EXIT_USAGE)
    from node.tui.app import run  # Textual takes a while to import: only for this command

    # A daemon that is not running yet is not an error: the TUI shows "disconnected" and retries.
    return run(str(socket_path))


COMMANDS = {
    "init": cmd_init,
    "daemon": cmd_daemon,
    "id": cmd_id,
    "status": cmd_status,
    "peers": cmd_peers,
    "bootstrap": cmd_bootstrap,
    "transfer": cmd_transfer,
    "balance": cmd_balance,
    "federation": cmd_federation,
    "predict": cmd_predict,
    "call": cmd_call,
    "demo": cmd_demo,
    "tui": cmd_tui,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(f"sovereign: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
