"""Node configuration: where a daemon keeps its files, and its tunables.

Layout of a home directory (one per daemon, one identity each)::

    config.toml     optional; the keys below
    identity.key    the node's Ed25519 key (owned by ``keys``)
    sovereign.db    the SQLite store (``node.store``)
    sovereign.sock  the control socket, unless a runtime directory holds it

Which home: ``--home DIR`` (the ``home`` argument), else ``$SOVEREIGN_HOME``, else
``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``), else ``$XDG_DATA_HOME/sovereign``,
else ``~/.local/share/sovereign``.

Which socket: ``$SOVEREIGN_SOCKET`` (or the ``socket_path`` override), else
``$RUNTIME_DIRECTORY/sovereign.sock`` when the home came from ``$STATE_DIRECTORY`` (that is,
systemd chose both), else ``<home>/sovereign.sock``. An explicit home never takes the runtime
directory's socket: sibling daemons inherit the parent's environment, and two daemons must not
fight over one socket path.

Precedence for every tunable: defaults < config.toml < ``SOVEREIGN_*`` environment < CLI flags.

config.toml is flat: top-level keys named exactly like the ``Config`` fields, so one name works in
the file, in the environment (upper-cased, ``SOVEREIGN_`` prefix) and on the command line. Unknown
keys are errors, so a typo never silently falls back to a default. A complete example::

    # Multiaddrs to listen on (at least one): /ip4|ip6/ADDR/tcp/PORT, or /dns4|dns6|dns/NAME/tcp/PORT
    # (bound on the addresses the name resolves to, never wider). Port 0: any free port.
    listen = ["/ip4/0.0.0.0/tcp/4100", "/ip6/::/tcp/4100"]

    # Peers to dial at start: /ip4|ip6|dns4|dns6|dns/HOST/tcp/PORT/p2p/<peer id>, port 1..65535.
    bootstrap = [
        "/ip4/192.0.2.10/tcp/4100/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
    ]

    # Seconds between our own capability card publications (the daemon adds jitter); 0.1..60.
    card_interval = 1.0
    # Seconds without a card from a peer before it is suspect (0.1..300, >= card_interval), then
    # dead (0.2..300, > suspect_after).
    suspect_after = 2.0
    dead_after = 3.0

    # PBFT: seconds a replica waits for a request to commit before it votes the primary out
    # (doubled after each failed view change); 0.05..600. Only used when the home holds a genesis.json.
    request_timeout = 1.0

    # Control socket: seconds after which a connection that sends nothing, has no call in flight
    # and no event subscription is closed (1..86400); and the bytes of answers and events that
    # may wait, over all connections, for clients that do not read them (1 MiB..4 GiB): past it
    # the connection with the longest backlog is closed.
    control_idle_timeout = 300.0
    control_max_queued_bytes = 67108864

    # "human" for a terminal, "json" (one object per line) for journald and log shippers.
    log_format = "human"
    # debug | info | warning | error
    log_level = "info"

    # Extra peer protocols to run, each a Python module (or module:ATTRIBUTE) holding a
    # node.runtime.registry.ProtocolSpec (ARCHITECTURE.md, "How to add a protocol"). Code the
    # operator installs and names here; nothing is ever fetched.
    protocols = []

Environment: ``SOVEREIGN_LISTEN`` and ``SOVEREIGN_BOOTSTRAP`` are comma-separated (an empty
``SOVEREIGN_BOOTSTRAP`` means "no bootstrap peers"); ``SOVEREIGN_CARD_INTERVAL``,
``SOVEREIGN_SUSPECT_AFTER``, ``SOVEREIGN_DEAD_AFTER``, ``SOVEREIGN_REQUEST_TIMEOUT``,
``SOVEREIGN_PROTOCOLS`` is comma-separated too;
``SOVEREIGN_CONTROL_IDLE_TIMEOUT`` are numbers of seconds, ``SOVEREIGN_CONTROL_MAX_QUEUED_BYTES``
an integer; ``SOVEREIGN_LOG_FORMAT``, ``SOVEREIGN_LOG_LEVEL`` as above. Other ``SOVEREIGN_*``
variables (for example ``SOVEREIGN_PASSPHRASE``) belong to other modules and are ignored here.
Every number outside its range is refused with the key and where it came from.

Multiaddrs get a light, stdlib-only syntax check here: importing and using the ``multiaddr``
package costs about 35 ms (netaddr, cid, multibase, idna), too much for every CLI call. The
network layer parses them fully.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

from keys.peerid import PeerIdError, b58decode

__all__ = [
    "Config",
    "ConfigError",
    "DEFAULT_CONFIG_TEXT",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "check_multiaddr",
    "split_listen_addr",
    "split_peer_addr",
    "default_home",
    "ensure_home",
    "load_config",
    "write_default_config",
]

CONFIG_NAME: Final = "config.toml"
KEY_NAME: Final = "identity.key"
STORE_NAME: Final = "sovereign.db"
SOCKET_NAME: Final = "sovereign.sock"

LOG_FORMATS: Final = ("human", "json")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")

# sun_path is 108 bytes on Linux; keep one for the NUL so the path also works from C clients
# (socat, libc connect) and on other Unixes' conventions.
_MAX_SOCKET_PATH_BYTES: Final = 107


class ConfigError(ValueError):
    """A configuration value is wrong; the message says where it came from and why."""


@dataclass(frozen=True)
class Config:
    home: Path
    socket_path: Path
    key_path: Path
    store_path: Path
    config_path: Path
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/4100",)
    bootstrap: tuple[str, ...] = ()
    card_interval: float = 1.0
    suspect_after: float = 2.0
    dead_after: float = 3.0
    request_timeout: float = 1.0
    control_idle_timeout: float = 300.0
    control_max_queued_bytes: int = 64 * 1024 * 1024
    log_format: str = "human"
    log_level: str = "info"
    protocols: tuple[str, ...] = ()


_PATH_FIELDS: Final = frozenset({"home", "socket_path", "key_path", "store_path", "config_path"})
# The tunables: settable from config.toml, the environment and CLI overrides.
_TUNABLES: Final = tuple(f.name for f in fields(Config) if f.name not in _PATH_FIELDS)
_LIST_FIELDS: Final = frozenset({"listen", "bootstrap", "protocols"})
# Every numeric key has a range that makes sense for it, inclusive at both ends; anything outside
# is refused by name. Below the minimum a node burns CPU and flaps its peers (a card every 0.1 ms
# used half a core and had every peer suspected); above the maximum it is a typo or a unit
# mistake (milliseconds for seconds). dead_after stays below discovery's forget_after (600 s).
_RANGES: Final[Mapping[str, tuple[float, float]]] = {
    "card_interval": (0.1, 60.0),
    "suspect_after": (0.1, 300.0),
    "dead_after": (0.2, 300.0),
    "request_timeout": (0.05, 600.0),
    "control_idle_timeout": (1.0, 86_400.0),
    "control_max_queued_bytes": (1 << 20, 1 << 32),
}
_FLOAT_FIELDS: Final = frozenset(
    {"card_interval", "suspect_after", "dead_after", "request_timeout", "control_idle_timeout"}
)
_INT_FIELDS: Final = frozenset({"control_max_queued_bytes"})
_CHOICE_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "log_format": LOG_FORMATS,
    "log_level": LOG_LEVELS,
}
_DEFAULTS: Final[Mapping[str, Any]] = {
    f.name: f.default for f in fields(Config) if f.name not in _PATH_FIELDS
}


# ---------------------------------------------------------------------------------------------
# Multiaddr syntax


_BASE32_CID: Final = re.compile(r"b[a-z2-7]{20,}")
_DNS_NAME: Final = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)


def _check_ip4(value: str) -> None:
    ipaddress.IPv4Address(value)


def _check_ip6(value: str) -> None:
    ipaddress.IPv6Address(value)


def _check_port(value: str) -> None:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise ValueError(f"port {value!r} is not an integer in 0..65535")


def _check_dns(value: str) -> None:
    if not _DNS_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a DNS name")


def _check_nonempty(value: str) -> None:
    if not value:
        raise ValueError("empty value")


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 63:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated varint")


def _check_peer_id(value: str) -> None:
    # A peer id is a multihash, usually base58btc (12D3KooW..., Qm...), sometimes a base32 CIDv1.
    # Checking the multihash length catches the commonest mistake: a truncated copy-paste.
    if _BASE32_CID.fullmatch(value):
        return
    try:
        raw = b58decode(value) if value else b""
    except PeerIdError:
        raw = b""
    if not raw:
        raise ValueError(f"peer id {value!r} is not base58btc")
    try:
        code, pos = _read_varint(raw, 0)
        length, pos = _read_varint(raw, pos)
    except ValueError:
        raise ValueError(f"peer id {value!r} is not a multihash") from None
    if length != len(raw) - pos:
        raise ValueError(f"peer id {value!r} is truncated or has extra characters")
    # libp2p inlines public keys of at most 42 bytes (identity multihash; Ed25519's is 36, the
    # smallest) and hashes longer ones with sha2-256.
    if not ((code == 0x00 and 36 <= length <= 42) or (code == 0x12 and length == 32)):
        raise ValueError(f"peer id {value!r} is not a libp2p peer id (wrong multihash)")


# Protocol name -> value checker, or None for protocols that take no value. Enough to cover what
# a libp2p node is given by hand; anything rarer should be added here when the network supports it.
_PROTOCOLS: Final[Mapping[str, Callable[[str], None] | None]] = {
    "ip4": _check_ip4,
    "ip6": _check_ip6,
    "ip6zone": _check_nonempty,
    "dns": _check_dns,
    "dns4": _check_dns,
    "dns6": _check_dns,
    "dnsaddr": _check_dns,
    "tcp": _check_port,
    "udp": _check_port,
    "p2p": _check_peer_id,
    "ipfs": _check_peer_id,
    "quic": None,
    "quic-v1": None,
    "ws": None,
    "wss": None,
    "tls": None,
    "noise": None,
    "p2p-circuit": None,
}


def check_multiaddr(addr: str, *, require_peer_id: bool = False) -> None:
    """Raise ValueError unless ``addr`` is a plausible multiaddr (optionally ending in /p2p/ID).

    Public so the control server can vet ``bootstrap.add`` with the same rules as the config.
    """
    if not isinstance(addr, str):
        raise ValueError(f"expected a string, got {type(addr).__name__}")
    if not addr.startswith("/"):
        raise ValueError(f"{addr!r} does not start with '/'")
    parts = addr.split("/")[1:]
    if parts and parts[-1] == "":
        parts.pop()  # tolerate one trailing slash, as the multiaddr package does
    if not parts:
        raise ValueError(f"{addr!r} has no protocols")
    last = ""
    i = 0
    while i < len(parts):
        name = parts[i]
        if name not in _PROTOCOLS:
            raise ValueError(f"{addr!r}: unknown protocol {name!r}")
        checker = _PROTOCOLS[name]
        i += 1
        if checker is not None:
            if i >= len(parts):
                raise ValueError(f"{addr!r}: protocol {name!r} needs a value")
            try:
                checker(parts[i])
            except ValueError as exc:
                raise ValueError(f"{addr!r}: bad {name} value: {exc}") from None
            i += 1
        last = name
    if require_peer_id and last not in ("p2p", "ipfs"):
        raise ValueError(f"{addr!r} must end in /p2p/<peer id>")


_HOST_PROTOCOLS: Final = ("ip4", "ip6", "dns", "dns4", "dns6")
_TCP_SHAPE: Final = "/ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT"


def _parts(addr: str) -> list[str]:
    parts = addr.split("/")[1:]
    if parts[-1] == "":
        parts.pop()
    return parts


def split_listen_addr(addr: str) -> tuple[str, str, int]:
    """(protocol, host, port) of a listen address `/ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT`
    (port 0: any free port); ValueError saying what is wrong otherwise. The network speaks TCP
    only, and binds names only after resolving them (see ``node.network``)."""
    check_multiaddr(addr)
    parts = _parts(addr)
    if len(parts) != 4 or parts[0] not in _HOST_PROTOCOLS or parts[2] != "tcp":
        raise ValueError(f"{addr!r}: cannot listen there: want {_TCP_SHAPE}")
    return parts[0], parts[1], int(parts[3])


def split_peer_addr(addr: str) -> tuple[str, str, int, str]:
    """(protocol, host, port, peer id) of an address a node dials or persists:
    `/ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT/p2p/PEER_ID`, port in 1..65535; ValueError saying
    what is wrong otherwise. Whether it is the node's own address is the caller's check (the
    config is read before the key)."""
    check_multiaddr(addr, require_peer_id=True)
    parts = _parts(addr)
    if parts[0] in ("p2p", "ipfs"):
        raise ValueError(f"{addr!r} has no transport: want {_TCP_SHAPE}/p2p/PEER_ID")
    if len(parts) != 6 or parts[0] not in _HOST_PROTOCOLS or parts[2] != "tcp":
        raise ValueError(f"{addr!r}: the network speaks TCP only: want {_TCP_SHAPE}/p2p/PEER_ID")
    if int(parts[3]) == 0:
        raise ValueError(f"{addr!r}: port 0 cannot be dialed")
    return parts[0], parts[1], int(parts[3]), parts[5]


# ---------------------------------------------------------------------------------------------
# Paths


def _env_path(env: Mapping[str, str], name: str) -> Path | None:
    # Empty path variables count as unset, as the XDG base directory spec says for XDG_*.
    value = env.get(name, "")
    return Path(value).expanduser() if value else None


def _user_home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    return Path(home) if home else Path.home()


def _systemd_dir(env: Mapping[str, str], name: str) -> Path | None:
    # systemd joins several directories with ':' when a unit lists more than one; ours is first.
    value = env.get(name, "")
    first = value.split(":", 1)[0]
    return Path(first) if first else None


def default_home(env: Mapping[str, str]) -> Path:
    """The home used when no ``--home`` is given (see the module docstring for the order)."""
    explicit = _env_path(env, "SOVEREIGN_HOME")
    if explicit is not None:
        return explicit.absolute()
    state = _systemd_dir(env, "STATE_DIRECTORY")
    if state is not None:
        return state.absolute()
    xdg = _env_path(env, "XDG_DATA_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg is not None and xdg.is_absolute():
        return xdg / "sovereign"
    return _user_home(env) / ".local" / "share" / "sovereign"


def _socket_path(
    home: Path, home_from_systemd: bool, env: Mapping[str, str], overrides: Mapping[str, Any]
) -> tuple[Path, str]:
    override = overrides.get("socket_path")
    if override is not None:
        if not isinstance(override, (str, os.PathLike)) or not os.fspath(override):
            raise ConfigError(f"flag socket_path: expected a path, got {override!r}")
        return Path(override).expanduser().absolute(), "flag socket_path"
    from_env = _env_path(env, "SOVEREIGN_SOCKET")
    if from_env is not None:
        return from_env.absolute(), "$SOVEREIGN_SOCKET"
    runtime = _systemd_dir(env, "RUNTIME_DIRECTORY")
    if home_from_systemd and runtime is not None:
        return runtime.absolute() / SOCKET_NAME, "$RUNTIME_DIRECTORY"
    return home / SOCKET_NAME, "the home directory"


def _check_socket_length(path: Path, source: str) -> None:
    size = len(os.fsencode(path))
    if size > _MAX_SOCKET_PATH_BYTES:
        raise ConfigError(
            f"control socket path {str(path)!r} (from {source}) is {size} bytes; Unix sockets "
            f"allow at most {_MAX_SOCKET_PATH_BYTES}. Use a shorter --home, or put the socket "
            "elsewhere with SOVEREIGN_SOCKET=/short/path.sock"
        )


# ---------------------------------------------------------------------------------------------
# Values


def _coerce(name: str, value: Any, where: str) -> Any:
    """Check one typed value (from TOML or a CLI flag) and normalise it; ConfigError names ``where``."""
    if name in _LIST_FIELDS:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        items = list(value)
        for item in items:
            if not isinstance(item, str):
                raise ConfigError(f"{where}: expected a list of strings, found {item!r}")
            try:
                if name == "protocols":
                    _check_protocol_path(item)
                elif name == "bootstrap":
                    split_peer_addr(item)
                else:
                    split_listen_addr(item)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        # Duplicates would mean binding the same port twice or dialing a peer twice.
        return tuple(dict.fromkeys(items))
    if name in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number of seconds, got {value!r}")
        number = float(value)
        if not math.isfinite(number) or number <= 0:
            raise ConfigError(f"{where}: must be a positive number of seconds, got {value!r}")
        return _in_range(name, number, where, "s")
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer number of bytes, got {value!r}")
        return _in_range(name, value, where, "bytes")
    if name in _CHOICE_FIELDS:
        choices = _CHOICE_FIELDS[name]
        if not isinstance(value, str) or value.lower() not in choices:
            raise ConfigError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
        return value.lower()
    raise AssertionError(f"no coercion for field {name}")  # pragma: no cover


_MODULE_PATH: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_][A-Za-z0-9_]*)?")


def _check_protocol_path(item: str) -> None:
    if len(item) > 200 or not _MODULE_PATH.fullmatch(item):
        raise ValueError(f"{item!r} is not a protocol to load: expected module.path or module.path:ATTRIBUTE")


def _in_range(name: str, number: Any, where: str, unit: str) -> Any:
    low, high = _RANGES[name]
    if not low <= number <= high:
        shown = f"{low}..{high}" if isinstance(low, int) else f"{low:g}..{high:g}"
        raise ConfigError(f"{where}: must be in {shown} {unit}, got {number!r}")
    return number


def _parse_env_value(name: str, text: str, where: str) -> Any:
    if name in _LIST_FIELDS:
        return [item.strip() for item in text.split(",") if item.strip()]
    if name in _FLOAT_FIELDS:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{where}: expected a number of seconds, got {text!r}") from None
    if name in _INT_FIELDS:
        try:
            return int(text.strip())
        except ValueError:
            raise ConfigError(f"{where}: expected an integer number of bytes, got {text!r}") from None
    return text


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start})") from None
    try:
        # tomllib's message already carries "(at line N, column M)".
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def load_config(
    *, home: Path | None, env: Mapping[str, str], overrides: Mapping[str, Any]
) -> Config:
    """Resolve paths and merge defaults < config.toml < env < overrides, then validate.

    ``overrides`` holds CLI flags keyed by field name; a value of None means "flag not given",
    so an argparse namespace's ``vars()`` can be passed after dropping unrelated keys. Besides the
    tunables it accepts ``socket_path``. Unknown keys are rejected.
    """
    unknown = set(overrides) - set(_TUNABLES) - {"socket_path"}
    if unknown:
        raise ConfigError(f"unknown override(s): {', '.join(sorted(unknown))}")

    home_from_systemd = False
    if home is not None:
        home_path = Path(home).expanduser().absolute()
    else:
        home_path = default_home(env)
        home_from_systemd = (
            _env_path(env, "SOVEREIGN_HOME") is None
            and _systemd_dir(env, "STATE_DIRECTORY") is not None
        )
    if home_path.exists() and not home_path.is_dir():
        raise ConfigError(f"home directory {str(home_path)!r} exists and is not a directory")
    socket_path, socket_source = _socket_path(home_path, home_from_systemd, env, overrides)
    _check_socket_length(socket_path, socket_source)
    config_path = home_path / CONFIG_NAME

    values: dict[str, Any] = dict(_DEFAULTS)
    sources: dict[str, str] = {name: "default" for name in _TUNABLES}

    table = _read_toml(config_path)
    for key, value in table.items():
        if key not in _TUNABLES:
            hint = " (a [table] is not allowed; keys are top-level)" if isinstance(value, dict) else ""
            raise ConfigError(
                f"{config_path}: unknown key {key!r}{hint}; known keys: {', '.join(_TUNABLES)}"
            )
        where = f"{config_path}: key {key!r}"
        values[key] = _coerce(key, value, where)
        sources[key] = where

    for name in _TUNABLES:
        var = "SOVEREIGN_" + name.upper()
        if var not in env:
            continue
        where = f"environment variable {var}"
        values[name] = _coerce(name, _parse_env_value(name, env[var], where), where)
        sources[name] = where

    for name, value in overrides.items():
        if value is None or name == "socket_path":
            continue
        where = f"flag --{name.replace('_', '-')}"
        if isinstance(value, str):
            value = _parse_env_value(name, value, where)
        values[name] = _coerce(name, value, where)
        sources[name] = where

    _check_relations(values, sources)

    return Config(
        home=home_path,
        socket_path=socket_path,
        key_path=home_path / KEY_NAME,
        store_path=home_path / STORE_NAME,
        config_path=config_path,
        **values,
    )


def _check_relations(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    def show(name: str) -> str:
        return f"{name} = {values[name]!r} (from {sources[name]})"

    if not values["listen"]:
        raise ConfigError(f"listen must name at least one multiaddr (from {sources['listen']})")
    # Suspecting a peer before it could have sent its next card would flap every peer.
    if values["suspect_after"] < values["card_interval"]:
        raise ConfigError(f"{show('suspect_after')} must be >= {show('card_interval')}")
    if values["dead_after"] <= values["suspect_after"]:
        raise ConfigError(f"{show('dead_after')} must be > {show('suspect_after')}")


# ---------------------------------------------------------------------------------------------
# Files


def _make_private_dir(path: Path, what: str) -> None:
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} exists and is not a directory")
    if path.is_dir():
        return  # an existing directory's mode is the operator's choice
    try:
        path.mkdir(mode=0o700, parents=True)
        # mkdir's mode is filtered by the umask; the home holds the private key, so be exact.
        os.chmod(path, 0o700)
    except FileExistsError:
        if not path.is_dir():
            raise ConfigError(f"{what} {str(path)!r} exists and is not a directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {what} {str(path)!r}: {exc.strerror}") from None


def ensure_home(config: Config) -> None:
    """Create the home (and the socket's directory) with mode 0700 if missing."""
    _make_private_dir(config.home, "home directory")
    if config.socket_path.parent != config.home:
        _make_private_dir(config.socket_path.parent, "socket directory")


DEFAULT_CONFIG_TEXT: Final = """\
# sovereign node configuration.
# Every key is optional; the commented values are the built-in defaults.
# Precedence: defaults < this file < SOVEREIGN_* environment < command-line flags.
# Unknown keys are errors, so a typo cannot silently fall back to a default.

# Multiaddrs to listen on (at least one): /ip4|ip6/ADDR/tcp/PORT or /dns4|dns6|dns/NAME/tcp/PORT.
# listen = ["/ip4/0.0.0.0/tcp/4100"]

# Peers to dial at start, each /ip4|ip6|dns4|dns6|dns/HOST/tcp/PORT/p2p/<peer id>. `sovereign bootstrap add` keeps its own
# list in the store; this one is read at every start.
# bootstrap = []

# Seconds between this node's capability card publications (the daemon adds jitter); 0.1..60.
# card_interval = 1.0

# Seconds without a card from a peer before it is suspect (0.1..300, >= card_interval), then
# dead (0.2..300, > suspect_after).
# suspect_after = 2.0
# dead_after = 3.0

# PBFT (when the home holds a genesis.json): seconds a replica waits for a request to commit
# before it votes to replace the primary; doubled after each failed view change. 0.05..600.
# request_timeout = 1.0

# Control socket: seconds before a connection that sends nothing, has no call in flight and no
# event subscription is closed (1..86400); bytes of unread answers and events held for all
# clients together before the one with the longest backlog is closed (1 MiB..4 GiB).
# control_idle_timeout = 300.0
# control_max_queued_bytes = 67108864

# Log output: "human" or "json" (one object per line).
# log_format = "human"

# debug | info | warning | error
# log_level = "info"

# Extra peer protocols to run: Python modules (module or module:ATTRIBUTE) holding a ProtocolSpec.
# protocols = []
"""


def write_default_config(config_path: Path) -> bool:
    """Write a commented default config (mode 0600); return False if one already exists."""
    try:
        # O_EXCL: never clobber an operator's file, even if it appears between check and write.
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError as exc:
        raise ConfigError(f"cannot create {config_path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(DEFAULT_CONFIG_TEXT)
    return True

