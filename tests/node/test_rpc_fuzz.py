"""Every control method, driven with generated params, never answers -32603 (internal error).

A real daemon in a federation of one (its genesis committee is just itself) serves the real
registrations, so ledger.* and federation.* are covered as well as node.*, peers.*, bootstrap.*,
events.* and predict.*. Methods are enumerated from `rpc.methods`, with their params schemas: a
method added later is fuzzed without touching this file.

Params are generated per field from the schema, mixing well-typed extremes (huge and boundary
integers, +-1e308 and subnormal floats, empty, huge and unicode strings including lone
surrogates, deep nesting, the node's own peer id and addresses) with values of every other JSON
type, missing and unknown fields, positional arrays and non-object params. Bad input must get
-32602 (or -32600, or an application error); a generated call that happens to be valid may act
(a transfer commits, a vote is recorded): that is harmless here, and the large checkpoint
interval keeps any committee change from taking effect.

Knobs for exploring (the defaults are what CI runs): FUZZ_RANDOM=1 draws new examples instead of
the fixed ones, FUZZ_ONLY=PREFIX fuzzes only the methods whose names start with it, FUZZ_STATS=1
(or =messages) prints how far the calls got per method, SOVEREIGN_TEST_KEEP=1 keeps the daemon's
home and log (the tracebacks behind any -32603).

Safety: nothing generated may make the node dial anything but loopback (peers.connect,
bootstrap.add, persisted bootstrap peers): every string of every params object that is a
dialable address must name a loopback IP, or the example is discarded. node.shutdown is given
only params it must refuse.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from keys.identity import Identity
from node.config import split_peer_addr
from node.federation.homes import create_federation_homes
from node.rpc import INTERNAL_ERROR, INVALID_PARAMS
from node.scaling.process import DaemonProcess

pytestmark = pytest.mark.integration

EXAMPLES_BASE, EXAMPLES_PER_FIELD = 50, 40  # more fields, more combinations worth trying
ANSWER_TIMEOUT_S = 20.0
MAX_LINE = 1 << 20  # the control server's default
STATS: dict[str, dict[str, int]] | None = {} if os.environ.get("FUZZ_STATS") else None  # see count_outcome  # generous: predict.* may legitimately compute for a while
DATA = Path(__file__).resolve().parents[1] / "data"


# ---------------------------------------------------------------------------------------------
# The daemon and a raw client (params no well-behaved client would send)


class RawClient:
    """One connection at a time; answers are matched by id, event notifications skipped. After a
    timeout or a hang-up the next call connects afresh, so one bad call does not spoil the rest."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock: socket.socket | None = None
        self.buf = b""
        self.next_id = 0

    def line(self, method: str, params: Any, *, omit_params: bool = False) -> bytes:
        self.next_id += 1
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if not omit_params:
            msg["params"] = params
        # ensure_ascii: lone surrogates travel as \ud800 escapes, as any JSON client may send them.
        return json.dumps(msg, ensure_ascii=True, allow_nan=False).encode() + b"\n"

    def call(self, method: str, params: Any, *, omit_params: bool = False) -> dict[str, Any]:
        return self.send(self.line(method, params, omit_params=omit_params), method)

    def send(self, line: bytes, method: str) -> dict[str, Any]:
        try:
            return self._exchange(line, method)
        except (OSError, ConnectionError):  # TimeoutError is an OSError
            self.close()
            raise

    def _exchange(self, line: bytes, method: str) -> dict[str, Any]:
        if self.sock is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(ANSWER_TIMEOUT_S)
            self.sock.connect(os.fspath(self.path))
        self.sock.sendall(line)
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionError(f"the daemon closed the connection during {method}")
                self.buf += chunk
            line, _, self.buf = self.buf.partition(b"\n")
            reply: dict[str, Any] = json.loads(line)
            if reply.get("id") == self.next_id:
                return reply
            # An event (we may have subscribed) or an answer to nothing we asked: skip it.

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""


@dataclass
class Node:
    daemon: DaemonProcess
    peer_id: str
    addrs: list[str]
    methods: list[dict[str, Any]]
    other_peer: str = field(default_factory=lambda: Identity.generate().peer_id)


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    # Short paths: AF_UNIX socket paths are limited to 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="sovfz-", dir="/tmp"))
    # A federation of one; no checkpoint (so no committee change) within the test's few commits.
    homes, ids, _ = create_federation_homes(root, 1, chain_id="fuzz", checkpoint_interval=2048)
    daemon = DaemonProcess(homes[0], env=dict(os.environ))
    try:
        daemon.start()
        daemon.wait_ready()
        addrs = daemon.call("node.id")["addrs"]
        yield Node(daemon, ids[0], addrs, daemon.call("rpc.methods"))
    finally:
        daemon.stop()
        if not os.environ.get("SOVEREIGN_TEST_KEEP"):  # set it to read the daemon's log afterwards
            shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Values


EXTREME_INTS = [
    0, -1, 1, 2, 3, 7, 255, 256, 1000, 1001, 65535, 65536, 2**31 - 1, 2**31, 2**32, 2**53, 2**53 + 1,
    2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**100, -(10**100), 10**4000,
]
EXTREME_FLOATS = [
    0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 5e-324, -5e-324, 1e-308, 2.2250738585072014e-308,
    1e308, -1e308, 1.7976931348623157e308, -1.7976931348623157e308, 3600.0, 3600.0000001, 1e9, 1e-9,
]
ODD_TEXT = [
    "", " ", "\x00", "\n", "a" * 100_000, "é", "𝕏", "\u202e", "\ufeff", "\ud800", "a\udfffb", "../../x",
    "/", "*", ".", "..", "peer", "null", "NaN", "Infinity", "1e999", "-0", "0x10", "auto", "gbm",
    "0" * 64, "f" * 64, "F" * 64, "g" * 64,
]
SMALL_BIF = """network tiny {
}
variable rain {
  type discrete [ 2 ] { yes, no };
}
variable wet {
  type discrete [ 2 ] { yes, no };
}
probability ( rain ) {
  table 0.2, 0.8;
}
probability ( wet | rain ) {
  (yes) 0.9, 0.1;
  (no) 0.1, 0.9;
}
"""


def nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from(EXTREME_INTS),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(EXTREME_FLOATS),
        text,
    )
    trees = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5),
        max_leaves=12,
    )
    deep = st.builds(nested, st.integers(1, 400), scalars)
    return st.one_of(trees, deep)


@dataclass
class Pools:
    """Values that mean something to this node, so that generated params reach past the schema."""

    meaningful: list[str]  # what a valid call names: peer ids, addresses, a network and its states
    strings: list[str]
    keys: list[str]

    @classmethod
    def for_node(cls, node: Node) -> Pools:
        me, other = node.peer_id, node.other_peer
        own = node.addrs[0]
        port = own.split("/")[4]
        strings = [
            me, other, me[:-1], me + "x", me.lower(),
            own, own.replace(me, other), f"/ip4/127.0.0.1/tcp/1/p2p/{other}", f"/ip6/::1/tcp/1/p2p/{other}",
            f"/ip4/127.0.0.1/tcp/0/p2p/{other}", f"/p2p/{other}", f"/p2p/{me}", f"/ip4/127.0.0.1/tcp/{port}",
            f"/ip4/127.0.0.1/udp/{port}/quic-v1/p2p/{other}", f"/ip4/127.0.0.1/tcp/{port}/p2p/{other}/",
            f"/dns4/localhost/tcp/{port}/p2p/{me}", SMALL_BIF, SMALL_BIF.replace("0.9, 0.1", "1e308, -1e308"),
            *(p.read_text() for p in sorted(DATA.glob("*.bif"))), "rain", "wet", "yes", "no", "tiny",
            "asia", "lung", "xray", *ODD_TEXT,
        ]
        # Field names and words of every method's doc: keys a dict-typed field may expect.
        words = {f["name"] for m in node.methods for f in m["params"]}
        for m in node.methods:
            words.update(re.findall(r"[a-z_]{3,20}", m["doc"]))
        meaningful = [me, other, own, f"/ip4/127.0.0.1/tcp/1/p2p/{other}", SMALL_BIF, "tiny", "rain", "wet", "yes", "0" * 64]
        return cls(meaningful, strings, sorted(words))

    def text(self) -> st.SearchStrategy[str]:
        meaningful = st.sampled_from(self.meaningful)
        hostile = st.sampled_from(["", "\x00", "\ud800", "a\udfffb", "a" * 100_000])
        return st.one_of(
            meaningful, meaningful, hostile, st.text(max_size=40), st.sampled_from(self.strings), st.sampled_from(self.keys)
        )


def ints() -> st.SearchStrategy[int]:
    # Plausible values reach past the handlers' own checks; extremes test the bounds.
    past_64_bits = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**100, 10**4000])
    return st.one_of(st.integers(-3, 40), st.integers(-3, 40), st.sampled_from(EXTREME_INTS), past_64_bits, st.integers())


def floats() -> st.SearchStrategy[float]:
    plausible = st.floats(-1000, 1000, allow_nan=False)
    return st.one_of(plausible, plausible, st.sampled_from(EXTREME_FLOATS), st.floats(allow_nan=False, allow_infinity=False))


def typed(type_name: str, pools: Pools) -> st.SearchStrategy[Any]:
    """Well-typed values for one schema type name, as `rpc.methods` spells it."""
    text = pools.text()
    if type_name.endswith(" | None"):
        return st.none() | typed(type_name[: -len(" | None")], pools)
    if type_name == "str":
        return text
    if type_name == "int":
        return ints()
    if type_name == "float":
        return floats() | st.integers(-5, 5)
    if type_name == "bool":
        return st.booleans()
    if type_name == "list[float]":
        # Series: plausible ones (a walk) with extremes spliced in, and arbitrary ones.
        walk = st.lists(st.floats(1, 1000, allow_nan=False), min_size=0, max_size=80)
        spliced = st.tuples(walk, st.lists(st.sampled_from(EXTREME_FLOATS), max_size=4), st.integers(0, 80)).map(
            lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]
        )
        return st.one_of(walk, spliced, st.lists(floats(), max_size=40), st.lists(st.sampled_from(EXTREME_FLOATS), max_size=30))
    if type_name.startswith("list[") and type_name.endswith("]"):
        inner = typed(type_name[5:-1], pools)
        return st.lists(inner, max_size=30) | st.lists(inner, min_size=1, max_size=4).map(lambda xs: xs * 100)
    if type_name.startswith("dict[str, ") and type_name.endswith("]"):
        inner_name = type_name[len("dict[str, ") : -1]
        inner = json_values(text) if inner_name == "Any" else typed(inner_name, pools)
        if inner_name == "Any":  # an options object, most likely: plausible scalars under known keys
            inner = st.one_of(st.integers(-3, 40), st.integers(-3, 40), st.sampled_from(pools.strings), inner)
            known = st.dictionaries(st.sampled_from(pools.keys), inner, max_size=3)
            return known | known | st.dictionaries(text, inner, max_size=6)
        return st.dictionaries(st.sampled_from(pools.keys) | text, inner, max_size=6)
    if type_name.startswith("one of "):
        choices = [json.loads(c.replace("'", '"')) for c in type_name[len("one of ") :].split(", ")]
        return st.sampled_from(choices)
    return json_values(text)  # "Any", or a type this test does not know yet


def params_for(method: dict[str, Any], pools: Pools) -> st.SearchStrategy[tuple[bool, Any]]:
    """(omit the params member?, params) for one method's schema."""
    fields = method["params"]
    anything = json_values(pools.text())

    @st.composite
    def by_name(draw: st.DrawFn, spoil: bool) -> dict[str, Any]:
        """Every value well-typed (what reaches the handlers), or with one thing spoiled."""
        # Optional fields now and then: each one given is one more check that may refuse the call.
        present = [f for f in fields if f["required"] or draw(st.booleans())]
        out = {f["name"]: draw(typed(f["type"], pools)) for f in present}
        if spoil:
            how = draw(st.sampled_from(["retype", "drop", "unknown"]))
            if how == "retype" and out:
                out[draw(st.sampled_from(sorted(out)))] = draw(anything)
            elif how == "drop" and out:
                del out[draw(st.sampled_from(sorted(out)))]
            else:
                out[draw(pools.text())] = draw(anything)
        return out

    @st.composite
    def positional(draw: st.DrawFn) -> list[Any]:
        values = [draw(typed(f["type"], pools)) for f in fields[: draw(st.integers(0, len(fields)))]]
        return values + ([draw(anything)] if draw(st.integers(0, 4)) == 0 else [])

    return st.one_of(
        st.tuples(st.just(False), by_name(False)),
        st.tuples(st.just(False), by_name(False)),
        st.tuples(st.just(False), by_name(False)),
        st.tuples(st.just(False), by_name(True)),
        st.tuples(st.just(False), positional()),
        st.tuples(st.just(False), anything),  # not an object or array at all, often
        st.tuples(st.just(True), st.none()),  # no params member
    )


# ---------------------------------------------------------------------------------------------
# Safety: only loopback is ever dialable


def strings_in(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())


def dials_only_loopback(params: Any) -> bool:
    for s in strings_in(params):
        try:
            proto, host, _, _ = split_peer_addr(s)
        except ValueError:
            continue  # not an address the node would dial or persist
        if proto not in ("ip4", "ip6") or not ipaddress.ip_address(host).is_loopback:
            return False
    return True


def test_the_safety_guard_recognises_non_loopback_addresses() -> None:
    peer = Identity.generate().peer_id
    assert dials_only_loopback({"addr": f"/ip4/127.0.0.1/tcp/1/p2p/{peer}"})
    assert dials_only_loopback([f"/ip6/::1/tcp/1/p2p/{peer}", "garbage"])
    assert not dials_only_loopback({"addr": f"/ip4/192.0.2.1/tcp/1/p2p/{peer}"})
    assert not dials_only_loopback([[{"x": f"/dns4/example.org/tcp/1/p2p/{peer}"}]])
    assert not dials_only_loopback({f"/ip6/2001:db8::1/tcp/9/p2p/{peer}": 1})


# ---------------------------------------------------------------------------------------------
# The fuzz


@dataclass
class Finding:
    method: str
    params: Any
    problem: str

    def __str__(self) -> str:
        shown = json.dumps(self.params, ensure_ascii=True)
        return f"{self.method} {shown[:300]}{'...' if len(shown) > 300 else ''}: {self.problem}"


def count_outcome(method: str, reply: dict[str, Any]) -> None:
    """FUZZ_STATS=1: how far generated calls get (ok, or which error), to judge the generators."""
    assert STATS is not None
    error = reply.get("error")
    if error is None:
        key = "ok"
    else:
        data = error.get("data")
        key = f"{error['code']} {data.get('reason', '') if isinstance(data, dict) else ''}"
        if os.environ.get("FUZZ_STATS") == "messages":
            key += " " + re.sub(r"[0-9.e+-]{3,}", "N", error["message"])[:70]
    counts = STATS.setdefault(method, {})
    counts[key] = counts.get(key, 0) + 1


def problem_with(reply: dict[str, Any]) -> str | None:
    error = reply.get("error")
    if error is not None and error.get("code") == INTERNAL_ERROR:
        return f"-32603 {error.get('message')!r}"
    return None


def fuzz_method(node: Node, method: dict[str, Any], pools: Pools) -> Finding | None:
    name = method["name"]
    client = RawClient(node.daemon.socket_path)
    found: list[Finding] = []

    @settings(
        max_examples=EXAMPLES_BASE + EXAMPLES_PER_FIELD * len(method["params"]),
        deadline=None,
        database=None,  # the daemon's state differs from run to run; replaying would mislead
        # The same examples every run (CI must be deterministic); FUZZ_RANDOM=1 explores others.
        derandomize=not os.environ.get("FUZZ_RANDOM"),
        suppress_health_check=list(HealthCheck),
    )
    @given(call=params_for(method, pools))
    def check(call: tuple[bool, Any]) -> None:
        omit, params = call
        assume(dials_only_loopback(params))
        if name == "node.shutdown":
            assume(not omit and params not in (None, [], {}))  # only params it must refuse
        line = client.line(name, params, omit_params=omit)
        assume(len(line) <= MAX_LINE)  # a longer one is refused before parsing (and tested elsewhere)
        try:
            reply = client.send(line, name)
        except OSError as exc:  # a timeout, or the daemon hung up on a valid line
            problem: str | None = f"no answer: {type(exc).__name__}: {exc}"
        else:
            problem = problem_with(reply)
            if STATS is not None:
                count_outcome(name, reply)
        if problem is not None:
            found[:] = [Finding(name, None if omit else params, problem)]
            raise AssertionError(problem)

    try:
        check()
    except Exception:  # noqa: BLE001 - hypothesis has shrunk it; the finding says what it was
        pass
    finally:
        client.close()
    return found[0] if found else None


def test_no_method_answers_internal_error_for_any_params(node: Node) -> None:
    pools = Pools.for_node(node)
    names = [m["name"] for m in node.methods]
    assert {"node.status", "peers.connect", "ledger.transfer", "federation.log", "predict.forecast"} <= set(names)
    only = os.environ.get("FUZZ_ONLY", "")  # a method-name prefix, to explore one namespace
    chosen = [m for m in node.methods if m["name"].startswith(only)]
    findings = [f for m in chosen if (f := fuzz_method(node, m, pools)) is not None]
    for method, counts in sorted((STATS or {}).items()):
        print(method, counts)
    assert node.daemon.poll() is None, f"the daemon died:\n{node.daemon.log_tail()}"
    assert node.daemon.call("node.status")["peer_id"] == node.peer_id
    assert not findings, "internal errors where invalid params belong:\n" + "\n".join(map(str, findings))


# ---------------------------------------------------------------------------------------------
# The cases the issue reported, and the address rules, by hand


def error_of(node: Node, method: str, params: Any) -> dict[str, Any]:
    client = RawClient(node.daemon.socket_path)
    try:
        reply = client.call(method, params)
    finally:
        client.close()
    assert "error" in reply, reply
    error: dict[str, Any] = reply["error"]
    return error


@pytest.mark.parametrize(
    ("method", "params", "field_name"),
    [
        ("bootstrap.remove", {"addr": ""}, "addr"),
        ("federation.log", {"since": 2**63}, "since"),
        ("federation.log", {"limit": -(2**63) - 1}, "limit"),
        ("ledger.transfer", {"to": "x", "amount": 2**64}, "amount"),
    ],
)
def test_reported_internal_errors_are_invalid_params(node: Node, method: str, params: Any, field_name: str) -> None:
    error = error_of(node, method, params)
    assert error["code"] == INVALID_PARAMS, error
    assert error["data"]["field"] == field_name


def test_addresses_to_dial_or_persist_are_checked(node: Node) -> None:
    other = node.other_peer
    cases = {
        f"/p2p/{other}": "no transport",
        f"/ip4/127.0.0.1/tcp/0/p2p/{other}": "port 0",
        f"/ip4/127.0.0.1/udp/4100/quic-v1/p2p/{other}": "TCP only",
        f"/ip4/127.0.0.1/tcp/4100": "/p2p/",
        node.addrs[0]: "own address",
    }
    for method in ("bootstrap.add", "peers.connect"):
        for addr, fragment in cases.items():
            error = error_of(node, method, {"addr": addr})
            assert error["code"] == INVALID_PARAMS and error["data"]["field"] == "addr", (method, addr, error)
            assert fragment in error["message"], (method, addr, error)
    assert not set(cases) & set(node.daemon.call("bootstrap.list")["persisted"])
    good = f"/ip4/127.0.0.1/tcp/1/p2p/{other}"
    assert node.daemon.call("bootstrap.add", {"addr": good})["added"]
    assert node.daemon.call("bootstrap.remove", {"addr": good})["removed"]

