from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

import pytest

from node.config import (
    DEFAULT_CONFIG_TEXT,
    Config,
    ConfigError,
    check_multiaddr,
    default_home,
    ensure_home,
    load_config,
    write_default_config,
)

PEER = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
BOOT = f"/ip4/192.0.2.10/tcp/4100/p2p/{PEER}"


def load(home: Path, env: dict[str, str] | None = None, **overrides: object) -> Config:
    return load_config(home=home, env=env or {}, overrides=overrides)


def write(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- paths ----------------------------------------------------------------------------------


def test_defaults_without_file(tmp_path: Path) -> None:
    config = load(tmp_path)
    assert config.home == tmp_path
    assert config.socket_path == tmp_path / "sovereign.sock"
    assert config.key_path == tmp_path / "identity.key"
    assert config.store_path == tmp_path / "sovereign.db"
    assert config.config_path == tmp_path / "config.toml"
    assert config.listen == ("/ip4/0.0.0.0/tcp/4100",)
    assert config.bootstrap == ()
    assert (config.card_interval, config.suspect_after, config.dead_after) == (1.0, 2.0, 3.0)
    assert (config.log_format, config.log_level) == ("human", "info")


def test_default_home_order() -> None:
    assert default_home({"HOME": "/u"}) == Path("/u/.local/share/sovereign")
    assert default_home({"HOME": "/u", "XDG_DATA_HOME": "/x"}) == Path("/x/sovereign")
    # A relative XDG_DATA_HOME is invalid per the spec and ignored.
    assert default_home({"HOME": "/u", "XDG_DATA_HOME": "rel"}) == Path("/u/.local/share/sovereign")
    assert default_home({"HOME": "/u", "XDG_DATA_HOME": ""}) == Path("/u/.local/share/sovereign")
    env = {"HOME": "/u", "XDG_DATA_HOME": "/x", "STATE_DIRECTORY": "/var/lib/sovereign:/var/lib/other"}
    assert default_home(env) == Path("/var/lib/sovereign")
    assert default_home({**env, "SOVEREIGN_HOME": "/h"}) == Path("/h")


def test_systemd_dirs(tmp_path: Path) -> None:
    env = {"STATE_DIRECTORY": str(tmp_path / "state"), "RUNTIME_DIRECTORY": str(tmp_path / "run")}
    config = load_config(home=None, env=env, overrides={})
    assert config.home == tmp_path / "state"
    assert config.socket_path == tmp_path / "run" / "sovereign.sock"
    assert config.key_path == tmp_path / "state" / "identity.key"


def test_explicit_home_keeps_its_own_socket_under_systemd(tmp_path: Path) -> None:
    # A sibling daemon inherits RUNTIME_DIRECTORY; it must not take the parent's socket.
    env = {"STATE_DIRECTORY": str(tmp_path / "state"), "RUNTIME_DIRECTORY": str(tmp_path / "run")}
    sibling = tmp_path / "sibling"
    assert load(sibling, env).socket_path == sibling / "sovereign.sock"
    via_env = load_config(home=None, env={**env, "SOVEREIGN_HOME": str(sibling)}, overrides={})
    assert via_env.home == sibling
    assert via_env.socket_path == sibling / "sovereign.sock"


def test_socket_override(tmp_path: Path) -> None:
    env = {"SOVEREIGN_SOCKET": str(tmp_path / "env.sock")}
    assert load(tmp_path / "h", env).socket_path == tmp_path / "env.sock"
    flag = load(tmp_path / "h", env, socket_path=tmp_path / "flag.sock")
    assert flag.socket_path == tmp_path / "flag.sock"


def test_relative_home_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load(Path("node1")).home == tmp_path / "node1"
    assert load_config(home=None, env={"SOVEREIGN_HOME": "n2"}, overrides={}).home == tmp_path / "n2"


def test_socket_path_too_long(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    with pytest.raises(ConfigError, match="SOVEREIGN_SOCKET") as info:
        load(deep)
    assert "107" in str(info.value)


# --- config.toml ----------------------------------------------------------------------------


def test_full_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        f"""
        listen = ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"]
        bootstrap = ["{BOOT}"]
        card_interval = 2
        suspect_after = 5.0
        dead_after = 9.5
        log_format = "json"
        log_level = "DEBUG"
        """,
    )
    config = load(tmp_path)
    assert config.listen == ("/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0")
    assert config.bootstrap == (BOOT,)
    assert config.card_interval == 2.0 and isinstance(config.card_interval, float)
    assert (config.suspect_after, config.dead_after) == (5.0, 9.5)
    assert (config.log_format, config.log_level) == ("json", "debug")


def test_docstring_example_is_valid(tmp_path: Path) -> None:
    import node.config as module

    doc = module.__doc__ or ""
    example = doc.split("A complete example::", 1)[1].split("\nEnvironment:", 1)[0]
    lines = [line[4:] if line.startswith("    ") else line for line in example.splitlines()]
    write(tmp_path, "\n".join(lines))
    config = load(tmp_path)
    assert config.bootstrap and len(config.listen) == 2


def test_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, "card_intervall = 1.0\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    assert str(path) in str(info.value) and "card_intervall" in str(info.value)


def test_table_is_rejected(tmp_path: Path) -> None:
    write(tmp_path, '[log]\nformat = "json"\n')
    with pytest.raises(ConfigError, match="'log'.*top-level"):
        load(tmp_path)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'listen = ["/ip4/127.0.0.1/tcp/1"]\ncard_interval = = 2\n')
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    assert str(path) in str(info.value) and "line 2" in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('card_interval = "1"', "number"),
        ("card_interval = true", "number"),
        ("card_interval = 0", "positive"),
        ("card_interval = -1.5", "positive"),
        ("card_interval = nan", "positive"),
        ("dead_after = inf", "positive"),
        ('listen = "/ip4/0.0.0.0/tcp/1"', "list"),
        ("listen = [1]", "strings"),
        ('listen = ["ip4/0.0.0.0/tcp/1"]', "start with '/'"),
        ('listen = ["/ip4/300.0.0.1/tcp/1"]', "ip4"),
        ('listen = ["/ip4/1.2.3.4/tcp/70000"]', "port"),
        ('listen = ["/ip4/1.2.3.4/tcp"]', "needs a value"),
        ('listen = ["/foo/1"]', "unknown protocol"),
        ('bootstrap = ["/ip4/1.2.3.4/tcp/1"]', "/p2p/"),
        (f'bootstrap = ["/ip4/1.2.3.4/tcp/1/p2p/{PEER[:-3]}"]', "truncated"),
        ('bootstrap = ["/ip4/1.2.3.4/tcp/1/p2p/not-a-peer"]', "base58"),
        ('log_format = "xml"', "human, json"),
        ('log_level = "verbose"', "debug, info"),
        ("log_level = 3", "debug, info"),
    ],
)
def test_bad_values(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text + "\n")
    key = text.split(" ", 1)[0]
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    message = str(info.value)
    assert str(path) in message and repr(key) in message and fragment in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("listen = []", "at least one"),
        ("card_interval = 3.0", "suspect_after"),
        ("suspect_after = 3.0", "dead_after"),
        ("dead_after = 1.5", "dead_after"),
    ],
)
def test_relations(tmp_path: Path, text: str, fragment: str) -> None:
    write(tmp_path, text + "\n")
    with pytest.raises(ConfigError, match=fragment) as info:
        load(tmp_path)
    assert "config.toml" in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        # 1e-4 s between cards used half a core and had every peer flap.
        ("card_interval = 1e-4", "0.1..60"),
        ("card_interval = 61", "0.1..60"),
        ("suspect_after = 301", "0.1..300"),
        ("dead_after = 1e9", "0.2..300"),
        ("request_timeout = 0.001", "0.05..600"),
        ("request_timeout = 86400", "0.05..600"),
        ("control_idle_timeout = 0.5", "1..86400"),
        ("control_idle_timeout = 1e6", "1..86400"),
        ("control_max_queued_bytes = 1000", "1048576..4294967296 bytes"),
        ("control_max_queued_bytes = 1.5e6", "integer"),
        ("control_max_queued_bytes = 99999999999999999", "bytes"),
        ("control_idle_timeout = nan", "positive"),
        # Addresses we dial or persist need a transport, a port that is not 0, and a peer id.
        (f'bootstrap = ["/p2p/{PEER}"]', "no transport"),
        (f'bootstrap = ["/ip4/1.2.3.4/tcp/0/p2p/{PEER}"]', "port 0"),
        (f'bootstrap = ["/ip4/1.2.3.4/udp/1/quic-v1/p2p/{PEER}"]', "TCP only"),
        (f'bootstrap = ["/dnsaddr/bootstrap.example/p2p/{PEER}"]', "TCP only"),
        # What the network cannot bind exactly is refused before it is tried.
        ('listen = ["/ip4/127.0.0.1/udp/1/quic-v1"]', "cannot listen there"),
        (f'listen = ["/ip4/127.0.0.1/tcp/1/p2p/{PEER}"]', "cannot listen there"),
    ],
)
def test_ranges_and_address_shapes(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text + "\n")
    key = text.split(" ", 1)[0]
    with pytest.raises(ConfigError) as info:
        load(tmp_path)
    message = str(info.value)
    assert str(path) in message and repr(key) in message and fragment in message, message


def test_range_ends_are_accepted(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
        card_interval = 0.1
        suspect_after = 0.1
        dead_after = 300
        request_timeout = 600
        control_idle_timeout = 1
        control_max_queued_bytes = 1048576
        """,
    )
    config = load(tmp_path)
    assert (config.card_interval, config.suspect_after, config.dead_after) == (0.1, 0.1, 300.0)
    assert (config.request_timeout, config.control_idle_timeout) == (600.0, 1.0)
    assert config.control_max_queued_bytes == 1 << 20


def test_ranges_apply_to_env_and_flags(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SOVEREIGN_CARD_INTERVAL.*0.1..60"):
        load(tmp_path, {"SOVEREIGN_CARD_INTERVAL": "0.0001"})
    with pytest.raises(ConfigError, match="SOVEREIGN_CONTROL_MAX_QUEUED_BYTES.*integer"):
        load(tmp_path, {"SOVEREIGN_CONTROL_MAX_QUEUED_BYTES": "lots"})
    with pytest.raises(ConfigError, match="--control-idle-timeout"):
        load(tmp_path, control_idle_timeout="0.01")
    config = load(tmp_path, {"SOVEREIGN_CONTROL_MAX_QUEUED_BYTES": " 2097152 ", "SOVEREIGN_CONTROL_IDLE_TIMEOUT": "60"})
    assert (config.control_max_queued_bytes, config.control_idle_timeout) == (2 << 20, 60.0)


def test_duplicates_collapse(tmp_path: Path) -> None:
    write(tmp_path, f'bootstrap = ["{BOOT}", "{BOOT}"]\n')
    assert load(tmp_path).bootstrap == (BOOT,)


def test_config_path_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "config.toml").mkdir()
    with pytest.raises(ConfigError, match="directory"):
        load(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_bytes(b"log_level = '\xff'\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load(tmp_path)


# --- environment and flags ------------------------------------------------------------------


def test_precedence(tmp_path: Path) -> None:
    write(tmp_path, 'log_level = "debug"\nlog_format = "json"\ncard_interval = 0.5\n')
    env = {"SOVEREIGN_LOG_LEVEL": "warning", "SOVEREIGN_CARD_INTERVAL": "0.25"}
    config = load(tmp_path, env, log_level="error", log_format=None)
    assert config.log_level == "error"  # flag beats env beats file
    assert config.card_interval == 0.25  # env beats file
    assert config.log_format == "json"  # None means "flag not given"


def test_env_values(tmp_path: Path) -> None:
    env = {
        "SOVEREIGN_LISTEN": "/ip4/127.0.0.1/tcp/1, /ip4/127.0.0.1/tcp/2",
        "SOVEREIGN_BOOTSTRAP": BOOT,
        "SOVEREIGN_CARD_INTERVAL": "0.5",
        "SOVEREIGN_SUSPECT_AFTER": "1",
        "SOVEREIGN_DEAD_AFTER": "1.5",
        "SOVEREIGN_LOG_FORMAT": "json",
        "SOVEREIGN_LOG_LEVEL": "Warning",
        "SOVEREIGN_PASSPHRASE": "not ours",
        "SOVEREIGN_SOMETHING_ELSE": "not ours either",
    }
    config = load(tmp_path, env)
    assert config.listen == ("/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/2")
    assert config.bootstrap == (BOOT,)
    assert (config.card_interval, config.suspect_after, config.dead_after) == (0.5, 1.0, 1.5)
    assert (config.log_format, config.log_level) == ("json", "warning")


def test_empty_bootstrap_env_clears_file(tmp_path: Path) -> None:
    write(tmp_path, f'bootstrap = ["{BOOT}"]\n')
    assert load(tmp_path, {"SOVEREIGN_BOOTSTRAP": ""}).bootstrap == ()


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("SOVEREIGN_CARD_INTERVAL", "fast"),
        ("SOVEREIGN_DEAD_AFTER", "-3"),
        ("SOVEREIGN_LISTEN", "tcp://0.0.0.0:4100"),
        ("SOVEREIGN_LISTEN", ""),
        ("SOVEREIGN_BOOTSTRAP", "/ip4/1.2.3.4/tcp/1"),
        ("SOVEREIGN_LOG_FORMAT", "yaml"),
        ("SOVEREIGN_LOG_LEVEL", ""),
    ],
)
def test_bad_env(tmp_path: Path, var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        load(tmp_path, {var: value})


def test_flags(tmp_path: Path) -> None:
    config = load(tmp_path, listen=["/ip4/127.0.0.1/tcp/0"], bootstrap=BOOT, card_interval=0.2)
    assert config.listen == ("/ip4/127.0.0.1/tcp/0",)
    assert config.bootstrap == (BOOT,)
    assert config.card_interval == 0.2


def test_bad_flags(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--card-interval"):
        load(tmp_path, card_interval="soon")
    with pytest.raises(ConfigError, match="unknown override"):
        load(tmp_path, listn=["/ip4/127.0.0.1/tcp/0"])


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load(tmp_path)
    with pytest.raises(AttributeError):
        config.log_level = "debug"  # type: ignore[misc]


# --- multiaddr checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "addr",
    [
        "/ip4/0.0.0.0/tcp/4100",
        "/ip6/::/tcp/4100",
        "/dns4/node.example.org/tcp/4100",
        "/ip4/127.0.0.1/udp/4100/quic-v1",
        f"/ip4/127.0.0.1/tcp/4100/p2p/{PEER}",
        "/ip4/127.0.0.1/tcp/4100/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
    ],
)
def test_plausible_multiaddrs(addr: str) -> None:
    check_multiaddr(addr)


def test_multiaddrs_agree_with_the_multiaddr_package() -> None:
    # The light check must accept what the real parser accepts (for the protocols it knows).
    from multiaddr import Multiaddr

    for addr in ["/ip4/0.0.0.0/tcp/4100", "/ip6/::1/tcp/1", f"/ip4/1.2.3.4/tcp/1/p2p/{PEER}"]:
        Multiaddr(addr)
        check_multiaddr(addr)
    for addr in ["/ip4/999.1.1.1/tcp/1", "/ip4/1.2.3.4/tcp/99999", "/foo/bar"]:
        with pytest.raises(Exception):
            Multiaddr(addr)
        with pytest.raises(ValueError):
            check_multiaddr(addr)


# --- files ----------------------------------------------------------------------------------


def test_ensure_home_creates_private_dirs(tmp_path: Path) -> None:
    env = {"STATE_DIRECTORY": str(tmp_path / "a" / "state"), "RUNTIME_DIRECTORY": str(tmp_path / "run")}
    config = load_config(home=None, env=env, overrides={})
    old = os.umask(0o022)
    try:
        ensure_home(config)
        ensure_home(config)  # idempotent
    finally:
        os.umask(old)
    assert stat.S_IMODE(config.home.stat().st_mode) == 0o700
    assert stat.S_IMODE(config.socket_path.parent.stat().st_mode) == 0o700


def test_ensure_home_leaves_existing_dir_mode(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir(mode=0o750)
    os.chmod(home, 0o750)
    ensure_home(load(home))
    assert stat.S_IMODE(home.stat().st_mode) == 0o750


def test_ensure_home_refuses_a_file(tmp_path: Path) -> None:
    home = tmp_path / "h"
    config = load(home)
    home.write_text("oops")
    with pytest.raises(ConfigError, match="not a directory"):
        ensure_home(config)
    with pytest.raises(ConfigError, match="home directory .* not a directory"):
        load(home)


def test_write_default_config(tmp_path: Path) -> None:
    config = load(tmp_path)
    assert write_default_config(config.config_path)
    assert stat.S_IMODE(config.config_path.stat().st_mode) == 0o600
    assert load(tmp_path) == config  # everything commented out: the file changes nothing
    config.config_path.write_text("log_level = 'debug'\n")
    assert not write_default_config(config.config_path)
    assert config.config_path.read_text() == "log_level = 'debug'\n"


def test_default_config_comments_match_defaults(tmp_path: Path) -> None:
    # Uncommenting every key line must reproduce the built-in defaults, so the file never lies.
    lines = [line[2:] for line in DEFAULT_CONFIG_TEXT.splitlines() if re.match(r"# [a-z_]+ = ", line)]
    table = tomllib.loads("\n".join(lines))
    assert set(table) == {
        "listen", "bootstrap", "card_interval", "suspect_after", "dead_after", "request_timeout",
        "control_idle_timeout", "control_max_queued_bytes", "log_format", "log_level", "protocols",
    }
    write(tmp_path, "\n".join(lines))
    defaults = load(tmp_path / "other")
    loaded = load(tmp_path)
    for key in table:
        assert getattr(loaded, key) == getattr(defaults, key)


# --- agreement with the real parser, on generated input -------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(ip=st.ip_addresses(), port=st.integers(min_value=0, max_value=70000))
def test_light_check_agrees_with_multiaddr(ip: object, port: int) -> None:
    from multiaddr import Multiaddr

    addr = f"/ip{ip.version}/{ip}/tcp/{port}"  # type: ignore[attr-defined]
    try:
        Multiaddr(addr)
        real_ok = True
    except Exception:
        real_ok = False
    try:
        check_multiaddr(addr)
        light_ok = True
    except ValueError:
        light_ok = False
    assert light_ok == real_ok, addr


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=1, max_value=len(PEER) - 1))
def test_truncated_peer_ids_are_caught(cut: int) -> None:
    with pytest.raises(ValueError):
        check_multiaddr(f"/ip4/1.2.3.4/tcp/1/p2p/{PEER[:-cut]}", require_peer_id=True)


# --- protocols ---------------------------------------------------------------------------------


def test_protocols_name_modules_to_load(tmp_path: Path) -> None:
    write(tmp_path, 'protocols = ["tests.echo_protocol", "pkg.mod:SPEC"]\n')
    assert load(tmp_path).protocols == ("tests.echo_protocol", "pkg.mod:SPEC")
    assert load(tmp_path / "env", env={"SOVEREIGN_PROTOCOLS": "a.b, c:D"}).protocols == ("a.b", "c:D")


@pytest.mark.parametrize("bad", ['"tests.echo"', '["../x.py"]', '["a b"]', '["mod:"]', '[1]'])
def test_a_bad_protocols_entry_is_refused_by_name(tmp_path: Path, bad: str) -> None:
    write(tmp_path, f"protocols = {bad}\n")
    with pytest.raises(ConfigError, match="protocols"):
        load(tmp_path)
