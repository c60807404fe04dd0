"""The `sovereign` command: a thin client of the control socket, plus `init`, `daemon` and `demo`.

Exit codes (stable, for scripts):
  0 success;  1 the call failed (the daemon answered with an error, or no answer came);  2 usage
  error;  3 the daemon is not running (no control socket);  4 configuration or key file error.

Every error is one line on stderr starting with "sovereign: ", never a traceback: bad values are
refused before anything is sent, and whatever the daemon's socket does (an error answer, no
answer in time, a hang-up mid-write) becomes such a line with a non-zero exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NoReturn, Sequence

from node.rpc import CALL_FAILED, DAEMON_MAX_LINE, CallTimeout, ControlClient, DaemonNotRunning, RpcError

EXIT_OK, EXIT_CALL_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_CONFIG = 0, 1, 2, 3, 4

# Calls that take a `timeout` are waited for that long by the daemon (30 s if not given, as in
# node/api.py, at most 3600 s); the socket waits a margin longer, so that the daemon's own answer
# to its timeout (with the pending tx id) still reaches us. Other calls wait the same default.
DAEMON_DEFAULT_WAIT = 30.0
DAEMON_MAX_WAIT = 3600.0
CONNECT_TIMEOUT = 10.0
# Methods that submit a transaction: an unanswered one may still commit.
SUBMITTING = frozenset({"ledger.transfer", "federation.join", "federation.leave"})
GENESIS_MAX_BYTES = 16 << 20  # far above any committee of 64 and its balances; bounds what we read
STDIN_MAX_BYTES = 8 * DAEMON_MAX_LINE  # values text; the request it becomes is checked exactly
MESSAGE_MAX = 1000


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _one_line(text: str) -> str:
    """Messages (some come from the daemon) as one bounded line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MESSAGE_MAX else flat[: MESSAGE_MAX - 3] + "..."


class _Parser(argparse.ArgumentParser):
    """A usage error is one line on stderr (exit 2), shaped like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"sovereign: {_one_line(message)} (see `{self.prog} --help`)\n")


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {_short(text)}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {_short(text)}")
    return value


def _seconds(text: str) -> float:
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {_short(text)}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        # int() also refuses more than 4300 digits (sys.int_info.default_max_str_digits).
        raise argparse.ArgumentTypeError(f"not an integer (of at most 4300 digits): {_short(text)}") from None


@dataclass(frozen=True)
class Arg:
    """One argument of a command, as `add_argument` takes it."""

    flags: tuple[str, ...]
    options: Mapping[str, Any]


def arg(*flags: str, **options: Any) -> Arg:
    return Arg(flags, options)


@dataclass(frozen=True)
class Command:
    """One command (or one action of a command group), declared once: the parser and the dispatch
    are both read from it, so a new command is one entry in COMMANDS and its handler.

    A leaf has a handler (`run`); a group has `actions` instead, one of which the user must name
    (parsed into `dest`)."""

    name: str
    help: str | None  # None: the command gets no line in its group's --help
    args: tuple[Arg, ...] = ()
    run: Callable[[argparse.Namespace], int] | None = None
    actions: tuple[Command, ...] = ()
    dest: str = "action"
    description: str | None = None

    def __post_init__(self) -> None:
        if (self.run is None) == (not self.actions):
            raise ValueError(f"command {self.name!r}: give a handler or actions, not both or neither")
        _named(self.actions)  # refuse duplicate action names here, at import

    def add_to(self, group: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        kwargs: dict[str, Any] = {} if self.help is None else {"help": self.help}
        if self.description is not None:
            kwargs["description"] = self.description
        parser = group.add_parser(self.name, **kwargs)
        for a in self.args:
            parser.add_argument(*a.flags, **a.options)
        if self.run is not None:
            parser.set_defaults(handler=self.run)
            return
        actions = parser.add_subparsers(dest=self.dest, required=True, metavar="ACTION")
        for action in self.actions:
            action.add_to(actions)


def _named(commands: Sequence[Command]) -> dict[str, Command]:
    by_name = {c.name: c for c in commands}
    if len(by_name) != len(commands):
        raise ValueError(f"duplicate command names in {[c.name for c in commands]}")
    return by_name


def _config(args: argparse.Namespace, overrides: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    from node.config import ConfigError, load_config

    try:
        return load_config(home=args.home, env=os.environ, overrides=overrides or {})
    except ConfigError as exc:
        raise CliError(f"configuration error: {exc}", EXIT_CONFIG) from None


def call_wait(params: Any) -> float:
    """How long the socket waits for a call's answer: the call's own `timeout` (or the daemon's
    default for it) plus a margin for the answer to travel back."""
    own = params.get("timeout") if isinstance(params, dict) else None
    if type(own) not in (int, float) or not math.isfinite(own) or own <= 0:
        own = DAEMON_DEFAULT_WAIT
    own = min(float(own), DAEMON_MAX_WAIT)  # the daemon refuses more at once
    return own + max(5.0, 0.1 * own)


def _call(args: argparse.Namespace, method: str, params: Any = None) -> Any:
    config = _config(args)
    path = config.socket_path
    wait = call_wait(params)
    client = ControlClient(path, timeout=CONNECT_TIMEOUT, max_request_line=DAEMON_MAX_LINE)
    try:
        return client.call(method, params, timeout=wait)
    except DaemonNotRunning:
        raise CliError(
            f"the daemon is not running (no control socket at {path}); start it with `sovereign daemon`",
            EXIT_NOT_RUNNING,
        ) from None
    except RpcError as exc:
        raise _call_failed(args, method, exc, params) from None
    except CallTimeout:
        raise CliError(_no_answer(method, wait), EXIT_CALL_FAILED) from None
    except TimeoutError:
        raise CliError(f"the daemon did not accept a connection on {path} within {CONNECT_TIMEOUT:g} s", EXIT_CALL_FAILED) from None
    except PermissionError:
        raise CliError(f"cannot connect to {path}: permission denied (run as the daemon's user)", EXIT_CONFIG) from None
    except ConnectionError as exc:
        raise CliError(f"{method}: the daemon hung up without answering ({exc})", EXIT_CALL_FAILED) from None
    except OSError as exc:
        raise CliError(f"cannot reach the daemon at {path}: {exc.strerror or exc}", EXIT_CALL_FAILED) from None
    except (ValueError, TypeError) as exc:  # only encoding raises these: nothing was sent
        raise CliError(f"{method}: the params cannot be sent as JSON: {exc}", EXIT_USAGE) from None
    finally:
        client.close()


def _call_failed(args: argparse.Namespace, method: str, exc: RpcError, params: Any) -> CliError:
    tx_id = exc.data.get("tx_id") if isinstance(exc.data, dict) else None
    if exc.code == CALL_FAILED and isinstance(tx_id, str):
        # Submitted but not committed in time: it is retransmitted and may still commit, so the
        # user needs its id to check, not a bare failure that invites paying twice.
        if args.json:
            print(json.dumps({"tx_id": tx_id, "status": "pending", "reason": exc.message}, indent=2))
        own = params.get("timeout") if isinstance(params, dict) else None
        within = f"within {own:g} s" if type(own) in (int, float) else "in time"
        return CliError(
            f"{method}: tx {tx_id} is still pending (not committed {within}); it may yet commit, so do not"
            f" resend it: look it up with `sovereign tx {tx_id}`",
            EXIT_CALL_FAILED,
        )
    detail = f" ({json.dumps(exc.data)})" if exc.data is not None else ""
    return CliError(f"{method} failed: {exc.message}{detail}", EXIT_CALL_FAILED)


def _no_answer(method: str, wait: float) -> str:
    text = f"{method}: no answer from the daemon within {wait:g} s"
    if method in SUBMITTING:
        text += (
            "; the transaction may still commit, so check before resending it"
            " (`sovereign balance`, `sovereign federation log`)"
        )
    return text


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*map(str, r)).rstrip() for r in [header, *rows])


def _print(args: argparse.Namespace, result: Any, human: Callable[[], str]) -> None:
    """The result as JSON, or formatted by `human` (only then, so --json never depends on the
    answer's shape); an answer this CLI cannot format is an error, not a traceback."""
    if args.json:
        print(json.dumps(result, indent=2))
        return
    try:
        text = human()
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise CliError(
            f"the daemon's answer has an unexpected shape ({type(exc).__name__}: {exc}); --json shows it as is",
            EXIT_CALL_FAILED,
        ) from None
    print(text)


def _read_text(path: Path, limit: int, code: int, why: str) -> str:
    """A UTF-8 file of at most `limit` bytes (read no further, so /dev/zero cannot fill memory)."""
    try:
        # O_NONBLOCK only for the open: a FIFO with no writer would otherwise block it forever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            os.set_blocking(fd, True)
            data = f.read(limit + 1)
            size = os.fstat(fd).st_size
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}", code) from None
    if len(data) > limit:
        shown = f"{size} bytes" if size > limit else "too long"
        raise CliError(f"{path} is {shown}: {why} at most {limit} bytes", code)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{path} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})", code) from None


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
    _print(args, result, lambda: human)
    return EXIT_OK


def _read_genesis_file(path: Path):  # type: ignore[no-untyped-def]
    from protocols.ledger import GenesisError, load_genesis

    text = _read_text(path, GENESIS_MAX_BYTES, EXIT_CONFIG, "a genesis file is")
    try:
        return load_genesis(text)
    except GenesisError as exc:
        raise CliError(f"{path}: {exc}", EXIT_CONFIG) from None


def _install_genesis(source: Path, home: Path):  # type: ignore[no-untyped-def]
    from node.federation.service import GENESIS_NAME

    genesis = _read_genesis_file(source)
    target = home / GENESIS_NAME
    if os.path.lexists(target):
        try:
            current = _read_genesis_file(target)
        except CliError as exc:
            raise CliError(f"{target} exists and is unusable ({exc}); move it aside first", EXIT_CONFIG) from None
        if current.hash != genesis.hash:
            raise CliError(
                f"{target} already holds another federation ({current.chain_id}); a node belongs to one", EXIT_CONFIG
            )
        return genesis
    tmp = target.with_suffix(".tmp")
    try:
        tmp.write_text(genesis.to_json())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise CliError(f"cannot write {target}: {exc.strerror or exc}", EXIT_CONFIG) from None
    return genesis


def cmd_daemon(args: argparse.Namespace) -> int:
    import trio

    from keys.identity import passphrase_from_environment
    from node import daemon
    from node.config import ensure_home
    from node.home import explain_failure, load_key, lock_home
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
        # The lock first, before the key is read or the store opened (see node/home.py).
        with lock_home(config.home):
            passphrase = passphrase_from_environment(os.environ, prompt=sys.stdin.isatty())
            identity = load_key(config, passphrase)
            trio.run(daemon.run, config, identity)
    except BaseException as exc:  # noqa: BLE001 - anything not in home's table is re-raised as is
        message = explain_failure(exc)
        if message is None:
            raise
        raise CliError(f"cannot start: {message}", EXIT_CONFIG) from None
    return EXIT_OK


def cmd_id(args: argparse.Namespace) -> int:
    try:
        r = _call(args, "node.id")
    except CliError as exc:
        if exc.code != EXIT_NOT_RUNNING:
            raise
        r = _offline_id(args)
    else:
        r = {**r, "online": True} if isinstance(r, dict) else r
    _print(args, r, lambda: "\n".join([r["peer_id"], *r["addrs"]]))
    return EXIT_OK


def _offline_id(args: argparse.Namespace) -> dict[str, Any]:
    """The peer id and listen addresses from the home alone, as `ipfs config Identity.PeerID`
    gives them: the peer id is public, so learning it must not need a running daemon."""
    from keys.identity import KeyFileError
    from node.home import StartupError

    config = _config(args)
    try:
        peer_id, source = _home_peer_id(config)
    except (KeyFileError, StartupError) as exc:
        raise CliError(str(exc), EXIT_CONFIG) from None
    except OSError as exc:
        raise CliError(f"cannot read home {config.home}: {exc.strerror or exc}", EXIT_CONFIG) from None
    print(
        f"sovereign: offline: no daemon answers on {config.socket_path}; the addresses are as configured,"
        f" not bound{source}",
        file=sys.stderr,
    )
    return {"peer_id": peer_id, "addrs": [f"{a}/p2p/{peer_id}" for a in config.listen], "online": False}


def _home_peer_id(config: Any) -> tuple[str, str]:
    """The home's peer id, and where it came from when not from the key itself. An encrypted
    PKCS#8 key hides its public half too, so without the passphrase the has-state marker (which
    the daemon wrote once it had checked this key against its store) is the only other witness."""
    from keys.identity import PassphraseRequiredError, passphrase_from_environment
    from node.home import MARKER_NAME, load_key, read_marker

    try:
        # Never a prompt: `id` is what scripts run to learn who a home is.
        return load_key(config, passphrase_from_environment(os.environ, prompt=False)).peer_id, ""
    except PassphraseRequiredError:
        pass
    marker = read_marker(config.home)
    if marker is None:
        raise CliError(
            f"{config.key_path} is encrypted: the peer id cannot be shown without its passphrase;"
            " set SOVEREIGN_PASSPHRASE, or start the daemon and ask it",
            EXIT_CONFIG,
        )
    return marker.peer_id, f"; the key is encrypted: the peer id is the one {config.home / MARKER_NAME} records"


def format_status(r: dict[str, Any]) -> str:
    p = r["peers"]
    return "\n".join(
        [
            f"peer id   {r['peer_id']}",
            f"version   {r['version']}   pid {r['pid']}   uptime {r['uptime_s']:.0f} s",
            f"listening {', '.join(r['listen_addrs'])}",
            f"peers     {p['alive']} alive, {p['suspect']} suspect, {p['dead']} dead, {p['connected']} connected",
        ]
    )


def cmd_status(args: argparse.Namespace) -> int:
    r = _call(args, "node.status")
    _print(args, r, lambda: format_status(r))
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
    _print(args, r, lambda: format_peers(r["peers"]))
    return EXIT_OK


def cmd_bootstrap_list(args: argparse.Namespace) -> int:
    r = _call(args, "bootstrap.list")
    _print(args, r, lambda: "\n".join(r["bootstrap"]) or "no bootstrap peers")
    return EXIT_OK


def cmd_bootstrap_add(args: argparse.Namespace) -> int:
    r = _call(args, "bootstrap.add", {"addr": args.addr})
    _print(args, r, lambda: "added" if r["added"] else "already present")
    return EXIT_OK


def cmd_bootstrap_rm(args: argparse.Namespace) -> int:
    r = _call(args, "bootstrap.remove", {"addr": args.addr})
    _print(args, r, lambda: "removed" if r["removed"] else "not present")
    return EXIT_OK


def _receipt(r: dict[str, Any]) -> str:
    return f"{r['status']}{': ' + r['reason'] if r['reason'] else ''}  tx {r['tx_id']}"


def _applied(r: Any) -> int:
    return EXIT_OK if isinstance(r, dict) and r.get("status") == "applied" else EXIT_CALL_FAILED


def cmd_transfer(args: argparse.Namespace) -> int:
    r = _call(args, "ledger.transfer", {"to": args.to, "amount": args.amount, "timeout": args.timeout})
    _print(args, r, lambda: _receipt(r))
    return _applied(r)


def cmd_balance(args: argparse.Namespace) -> int:
    r = _call(args, "ledger.balance", {"account": args.account} if args.account else {})
    _print(args, r, lambda: f"{r['balance']}  {r['account']}{'' if r['exists'] else '  (no account)'}")
    return EXIT_OK


def format_tx(r: dict[str, Any]) -> str:
    return f"{_receipt(r)}\ncommitted at seq {r['seq']} (index {r['index']}), sender {r['sender']}"


def cmd_tx(args: argparse.Namespace) -> int:
    # Ids are lowercase hex; accept one copied in upper case.
    r = _call(args, "ledger.tx", {"id": args.tx_id.strip().lower()})
    _print(args, r, lambda: format_tx(r))
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


def _format_log(r: dict[str, Any]) -> str:
    rows = [
        [b["seq"], b["view"], len(b["txs"]), sum(1 for t in b["txs"] if t.get("status") == "applied")]
        for b in r["batches"]
    ]
    return _table(rows, ["SEQ", "VIEW", "TXS", "APPLIED"]) if rows else "no committed batches"


def _format_vote(r: dict[str, Any]) -> str:
    human = _receipt(r)
    if r["pending_members"]:
        human += f"\ncommittee from the next checkpoint: {len(r['pending_members'])} members"
    return human


def cmd_federation_status(args: argparse.Namespace) -> int:
    r = _call(args, "federation.status")
    _print(args, r, lambda: format_federation(r))
    return EXIT_OK


def cmd_federation_log(args: argparse.Namespace) -> int:
    r = _call(args, "federation.log", {"since": args.since, "limit": args.limit})
    _print(args, r, lambda: _format_log(r))
    return EXIT_OK


def cmd_federation_vote(args: argparse.Namespace) -> int:
    """`federation join` and `federation leave`: the action names the method."""
    params = {"peer": args.peer} if args.peer else {}
    r = _call(args, f"federation.{args.action}", params)
    _print(args, r, lambda: _format_vote(r))
    return _applied(r)


def _amount(item: str) -> tuple[str, int]:
    peer, sep, amount = item.partition("=")
    amount = amount.strip()
    # isascii: str.isdigit() also accepts digits such as '²' that int() refuses.
    if not sep or not amount.isascii() or not amount.isdigit():
        raise CliError(f"--balance wants PEER_ID=AMOUNT, got {_short(item, 120)}", EXIT_USAGE)
    try:
        return peer.strip(), int(amount)
    except ValueError:  # over 4300 digits
        raise CliError(f"--balance: the amount for {_short(peer.strip())} is far too large", EXIT_USAGE) from None


def cmd_federation_genesis(args: argparse.Namespace) -> int:
    from protocols.ledger import GenesisError, make_genesis

    balances: dict[str, int] = {}
    for item in args.balance:
        peer, amount = _amount(item)
        balances[peer] = balances.get(peer, 0) + amount
    try:
        genesis = make_genesis(args.chain_id, tuple(args.member), balances, args.checkpoint_interval)
    except GenesisError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    print(genesis.to_json())
    return EXIT_OK


def _read_stdin() -> str:
    try:
        data = sys.stdin.buffer.read(STDIN_MAX_BYTES + 1)
    except (AttributeError, OSError, ValueError) as exc:  # no stdin, closed, or not readable
        raise CliError(f"cannot read the values from stdin: {exc}", EXIT_USAGE) from None
    if len(data) > STDIN_MAX_BYTES:
        raise CliError(f"stdin holds over {STDIN_MAX_BYTES} bytes of values; the daemon takes requests of at most {DAEMON_MAX_LINE}", EXIT_USAGE)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"stdin is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})", EXIT_USAGE) from None


def _numbers(values: list[str]) -> list[float]:
    if values == ["-"]:
        values = _read_stdin().replace(",", " ").split()
    out = []
    for v in values:
        try:
            x = float(v)
        except ValueError:
            raise CliError(f"values must be numbers, got {_short(v)}", EXIT_USAGE) from None
        if not math.isfinite(x):
            raise CliError(f"values must be finite numbers, got {_short(v)}", EXIT_USAGE)
        out.append(x)
    return out


def _format_forecast(r: dict[str, Any]) -> str:
    rows = [[h + 1, f"{m:.6g}", f"{lo:.6g}", f"{hi:.6g}"] for h, (m, lo, hi) in enumerate(zip(r["mean"], r["lower"], r["upper"]))]
    pct = f"{r['level'] * 100:g}%"
    return f"method {r['method']}\n" + _table(rows, ["H", "MEAN", f"LOW {pct}", f"HIGH {pct}"])


def _format_simulation(r: dict[str, Any], level: float) -> str:
    t, q = r["terminal"], r["quantiles"]
    return (
        f"terminal mean {t['mean']:.6g} (CI {t['low']:.6g} .. {t['high']:.6g}, stderr {t['stderr']:.3g})\n"
        f"quantiles 5% {q['p05']:.6g}  25% {q['p25']:.6g}  50% {q['p50']:.6g}  75% {q['p75']:.6g}  95% {q['p95']:.6g}\n"
        f"loss VaR {r['var']:.6g}  CVaR {r['cvar']:.6g}  at {level:g}"
    )


def cmd_predict_bn_query(args: argparse.Namespace) -> int:
    evidence = {}
    for item in args.evidence:
        var, sep, state = item.partition("=")
        if not sep or not var or not state:
            raise CliError(f"evidence is VAR=STATE, got {_short(item, 120)}", EXIT_USAGE)
        evidence[var] = state
    r = _call(args, "predict.bn.query", {"name": args.name, "variable": args.variable, "evidence": evidence})
    _print(args, r, lambda: _table([[state, f"{pr:.6f}"] for state, pr in r["distribution"].items()], [args.variable.upper(), "P"]))
    return EXIT_OK


def cmd_predict_forecast(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"y": _numbers(args.values), "horizon": args.horizon, "method": args.method, "level": args.level}
    if args.period is not None:
        params["period"] = args.period
    r = _call(args, "predict.forecast", params)
    _print(args, r, lambda: _format_forecast(r))
    return EXIT_OK


def cmd_predict_simulate(args: argparse.Namespace) -> int:
    params = {k: getattr(args, k) for k in ("s0", "mu", "sigma", "horizon", "steps", "paths", "level")}
    if args.seed is not None:
        params["seed"] = args.seed
    r = _call(args, "predict.simulate", params)
    _print(args, r, lambda: _format_simulation(r, args.level))
    return EXIT_OK


def cmd_predict_bn_load(args: argparse.Namespace) -> int:
    # The whole network travels in one request line, which the daemon caps: refuse a bigger
    # file here, before reading it all, rather than have the daemon hang up mid-write.
    text = _read_text(args.file, DAEMON_MAX_LINE, EXIT_USAGE, "the daemon takes requests of")
    r = _call(args, "predict.bn.load", {"name": args.name, "bif": text})
    _print(args, r, lambda: f"stored {r['name']}: {len(r['variables'])} variables")
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


def _format_scenarios(r: dict[str, Any]) -> str:
    rows = [[sc["name"], f"{sc['probability']:.4f}", f"{sc['terminal']:.6g}"] for sc in r["scenarios"]]
    return f"{r['horizon_steps']} steps ahead\n" + _table(rows, ["SCENARIO", "P", "TERMINAL"])


def cmd_predict_scenarios(args: argparse.Namespace) -> int:
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
        _print(args, r, lambda: _format_scenarios(r))
        return EXIT_OK
    if args.shock_step is not None or args.shock_multiply is not None:
        raise CliError("shocks apply to the named scenarios, not to a tree", EXIT_USAGE)
    tree: dict[str, Any] = {"steps": args.tree_steps, "branching": 3 if args.branching is None else args.branching,
                            "model": args.tree_model or "auto"}
    if args.period is not None:
        tree["period"] = args.period
    params["tree"] = tree
    r = _call(args, "predict.scenarios", params)
    _print(args, r, lambda: format_tree(r["tree"]))
    return EXIT_OK


def cmd_call(args: argparse.Namespace) -> int:
    from node.rpc import decode_line

    params = None
    if args.params is not None:
        # The daemon's own strict decoder: no NaN/Infinity, no 1e999, no 5000-digit integers, no
        # nesting that exhausts the stack, each a one-line usage error instead of a traceback.
        try:
            params = decode_line(os.fsencode(args.params))
        except RpcError as exc:
            raise CliError(f"params are not valid JSON: {exc.data or exc.message}", EXIT_USAGE) from None
        if not isinstance(params, (dict, list)):
            raise CliError("params must be a JSON object or array", EXIT_USAGE)
    print(json.dumps(_call(args, args.method, params), indent=2))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from node.demo import DemoError, run_demo

    if not 1 <= args.nodes <= 64:
        raise CliError("--nodes must be between 1 and 64", EXIT_USAGE)
    if args.duration is not None and not 0 < args.duration <= 86400:
        raise CliError("--duration must be in (0, 86400] seconds", EXIT_USAGE)
    if not 0 < args.timeout <= 3600:
        raise CliError("--timeout must be in (0, 3600] seconds", EXIT_USAGE)
    try:
        return run_demo(args.nodes, args.dir, args.timeout, as_json=args.json, duration=args.duration)
    except DemoError as exc:
        raise CliError(str(exc), exc.code) from None


def cmd_tui(args: argparse.Namespace) -> int:
    socket_path = args.socket if args.socket is not None else _config(args).socket_path
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CliError("the TUI needs a terminal; for scripts use the other commands or `sovereign call`", EXIT_USAGE)
    from tui.app import run  # Textual takes a while to import: only for this command

    # A daemon that is not running yet is not an error: the TUI shows "disconnected" and retries.
    return run(str(socket_path))


# Every command of `sovereign`, in the order --help lists them.
COMMANDS: dict[str, Command] = _named([
    Command("init", "create the home, identity key and default config", run=cmd_init, args=(
        arg("--genesis", type=Path, metavar="FILE", help="join the federation this genesis file describes"),
    )),
    Command("daemon", "run the node in the foreground", run=cmd_daemon, args=(
        arg("--listen", action="append", metavar="MADDR", help="listen multiaddr (repeatable)"),
        arg("--bootstrap", action="append", metavar="MADDR", help="bootstrap peer multiaddr (repeatable)"),
        arg("--log-format", choices=["human", "json"]),
        arg("--log-level", choices=["debug", "info", "warning", "error"]),
    )),
    Command("id", "this node's peer id and addresses", run=cmd_id),
    Command("status", "version, uptime, peers", run=cmd_status),
    Command("peers", "the membership view", run=cmd_peers),
    Command("bootstrap", "manage persisted bootstrap peers", actions=(
        Command("list", None, run=cmd_bootstrap_list),
        Command("add", None, run=cmd_bootstrap_add, args=(arg("addr", metavar="MADDR"),)),
        Command("rm", None, run=cmd_bootstrap_rm, args=(arg("addr", metavar="MADDR"),)),
    )),
    Command("transfer", "transfer from this node's account; waits for the commit", run=cmd_transfer, args=(
        arg("to", metavar="PEER_ID"),
        arg("amount", type=_integer),
        arg("--timeout", type=_seconds, default=30.0, help="seconds to wait for the commit (default 30)"),
    )),
    Command("balance", "an account's balance (default: this node's)", run=cmd_balance, args=(
        arg("account", nargs="?", metavar="PEER_ID"),
    )),
    Command("tx", "look a transaction up by id: where it committed and its receipt", run=cmd_tx, args=(
        arg("tx_id", metavar="TX_ID"),
    )),
    Command("federation", "the federation: status, committed log, genesis files", actions=(
        Command("status", "committee, view, primary, checkpoints, throughput", run=cmd_federation_status),
        Command("log", "committed batches", run=cmd_federation_log, args=(
            arg("--since", type=_integer, default=0, help="after this sequence number"),
            arg("--limit", type=_integer, default=20),
        )),
        Command("join", "vote to add a peer to the committee (f+1 member votes needed)", run=cmd_federation_vote, args=(
            arg("peer", metavar="PEER_ID"),
        )),
        Command("leave", "leave the committee (or vote to remove PEER_ID)", run=cmd_federation_vote, args=(
            arg("peer", nargs="?", metavar="PEER_ID"),
        )),
        Command("genesis", "print a new genesis file (JSON) for `init --genesis`", run=cmd_federation_genesis, args=(
            arg("--chain-id", required=True),
            arg("--member", action="append", required=True, metavar="PEER_ID", help="committee member, in order (repeatable)"),
            arg("--balance", action="append", default=[], metavar="PEER_ID=AMOUNT", help="initial balance (repeatable)"),
            arg("--checkpoint-interval", type=_integer, default=128),
        )),
    )),
    Command("predict", "forecasts, simulations and Bayesian networks (computed by the daemon)", actions=(
        Command("forecast", "forecast a series: values as arguments, or '-' to read them from stdin", run=cmd_predict_forecast, args=(
            arg("values", nargs="+", metavar="VALUE"),
            arg("--horizon", type=_integer, required=True),
            arg("--period", type=_integer),
            arg("--method", default="auto"),
            arg("--level", type=_finite, default=0.9),
        )),
        Command("simulate", "geometric Brownian motion: terminal value, quantiles, VaR/CVaR", run=cmd_predict_simulate, args=(
            *(arg(f"--{name}", type=_finite, required=True) for name in ("s0", "mu", "sigma", "horizon")),
            arg("--steps", type=_integer, required=True),
            arg("--paths", type=_integer, required=True),
            arg("--seed", type=_integer),
            arg("--level", type=_finite, default=0.95),
        )),
        Command(
            "scenarios",
            "named scenarios (stress/bear/base/bull) from a price history, or with --tree-steps a scenario tree",
            run=cmd_predict_scenarios,
            description=(
                "Values as arguments, or '-' to read them from stdin. Without --tree-steps: GBM fitted to the "
                "prices, simulated --horizon-steps ahead and cut into named scenarios. With --tree-steps K: a scenario tree "
                "of K levels (at most 3**8 leaves), GBM (--tree-model gbm) or driven by a fitted forecast model (a "
                "forecast method, or auto), whose level-k expected value is the model's k-step forecast."
            ),
            args=(
                arg("values", nargs="+", metavar="VALUE"),
                arg("--horizon-steps", type=_integer, help="steps ahead (named scenarios; required without --tree-steps)"),
                arg("--paths", type=_integer, default=10_000),
                arg("--seed", type=_integer, default=0),
                arg("--shock-step", type=_integer),
                arg("--shock-multiply", type=_finite),
                arg("--tree-steps", type=_integer, metavar="K", help="build a scenario tree of K steps instead"),
                arg("--branching", type=_integer, choices=(2, 3), help="tree branching: 2 binomial, 3 trinomial (default)"),
                arg("--tree-model", metavar="MODEL", help="gbm, auto (default) or a forecast method"),
                arg("--period", type=_integer, help="seasonal period for the tree's forecast model"),
            ),
        ),
        Command("bn", "Bayesian networks stored in the node's home", dest="bn_action", actions=(
            Command("load", "store a network from a BIF file (UTF-8, at most 1 MiB)", run=cmd_predict_bn_load, args=(
                arg("name"),
                arg("file", type=Path),
            )),
            Command("query", "P(VARIABLE | evidence VAR=STATE ...)", run=cmd_predict_bn_query, args=(
                arg("name"),
                arg("variable"),
                arg("evidence", nargs="*", metavar="VAR=STATE"),
            )),
        )),
    )),
    Command("tui", "watch and steer the daemon in a terminal UI (Textual)", run=cmd_tui, args=(
        arg("--socket", type=Path, metavar="PATH", help="control socket (default: the home's)"),
    )),
    Command("call", "call any control method: sovereign call METHOD '{...}'", run=cmd_call, args=(
        arg("method"),
        arg("params", nargs="?", help="JSON object or array"),
    )),
    Command("demo", "run a local N-replica federation streaming transfers", run=cmd_demo, args=(
        arg("--nodes", type=_integer, default=4),
        arg("--dir", type=Path, help="where to create the homes (default: a temp dir, removed after)"),
        arg("--timeout", type=_seconds, default=60.0, help="seconds to wait for full discovery"),
        arg("--duration", type=_seconds, help="stop after this many seconds (default: run until Ctrl-C)"),
    )),
])


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sovereign", description="A sovereign peer-to-peer node.")
    p.add_argument("--home", type=Path, help="node home (default $SOVEREIGN_HOME, else the XDG data dir)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_to(commands)
    return p


def _quiet_stdout() -> None:
    """After stdout's reader went away (`sovereign peers | head`): point it at /dev/null so the
    flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (captured in a test)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    # Paths and arguments may hold bytes that are not UTF-8 (kept as surrogates): print them
    # escaped rather than fail on them.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return args.handler(args)  # type: ignore[no-any-return]
    except CliError as exc:
        print(f"sovereign: {_one_line(str(exc))}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Only stdout gets here: _call turns every error of the daemon's socket into a CliError.
        _quiet_stdout()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
