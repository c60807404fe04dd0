"""The TUI's model: what events and answers do to it, and that no daemon answer can break it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui.forms import FormError, build_params, parse_field
from tui.state import HISTORY, DaemonState, format_duration, short_id

from .sample import ME, NOW, PEER_A, PEER_B, PEER_C, sample_state


def test_status_snapshot_fills_identity_and_counts() -> None:
    s = sample_state()
    assert s.peer_id == ME and s.version == "0.1.0" and s.pid == 4242
    assert s.peer_counts == {"alive": 2, "suspect": 1, "dead": 0, "connected": 2}
    assert s.uptime_now(NOW + 10) == pytest.approx(3735.0)


def test_uptime_stops_while_disconnected() -> None:
    s = sample_state(connected=False)
    assert s.uptime_now(NOW + 10) == pytest.approx(3725.0)


def test_peer_events_move_states_and_forget() -> None:
    s = sample_state()
    assert s.peers[PEER_C].state == "suspect"
    s.apply_event({"topic": "peer.alive", "ts": 1, "data": {"peer_id": PEER_C}})
    assert s.peers[PEER_C].state == "alive"
    s.apply_event({"topic": "peer.left", "ts": 2, "data": {"peer_id": PEER_B}})
    assert s.peers[PEER_B].state == "dead"
    s.apply_event({"topic": "peer.forgotten", "ts": 3, "data": {"peer_id": PEER_B}})
    assert PEER_B not in s.peers
    new = "12D3KooWNewPeerNewPeerNewPeerNewPeerNewPeerNewPeer1234"
    s.apply_event({"topic": "peer.joined", "ts": 4, "data": {"peer_id": new, "addrs": ["/ip4/127.0.0.1/tcp/9"]}})
    assert s.peers[new].state == "alive" and s.peers[new].addrs == ["/ip4/127.0.0.1/tcp/9"]
    # An event about a peer we never saw, other than joined/updated, does not invent it.
    s.apply_event({"topic": "peer.suspect", "ts": 5, "data": {"peer_id": "12D3KooWghost"}})
    assert "12D3KooWghost" not in s.peers


def test_committed_events_feed_the_rate_and_the_batches() -> None:
    s = DaemonState()
    s.apply_federation({"role": "replica", "last_executed": 10, "view": 0})
    for seq, n in ((11, 5), (12, 7), (12, 7)):  # the repeat (log and event overlap) is not added twice
        s.apply_event({"topic": "federation.committed", "ts": seq, "data": {"seq": seq, "view": 0, "requests": n}})
    assert [b["seq"] for b in s.batches] == [11, 12]
    assert s.federation is not None and s.federation["last_executed"] == 12
    s.tick()
    assert s.tx_rate[-1] == 19.0 and len(s.tx_rate) == HISTORY
    s.tick()
    assert s.tx_rate[-1] == 0.0


def test_view_and_checkpoint_events_update_federation() -> None:
    s = sample_state()
    s.apply_event({"topic": "federation.view", "ts": 1, "data": {"view": 2, "primary": PEER_B, "at_ms": 5}})
    s.apply_event({"topic": "federation.checkpoint", "ts": 2, "data": {"seq": 1408, "digest": "ee"}})
    assert s.federation is not None
    assert s.federation["view"] == 2 and s.federation["primary"] == PEER_B
    assert s.federation["stable_checkpoint"] == {"seq": 1408, "digest": "ee"}
    assert s.view_changes[-1]["view"] == 2


def test_no_federation_is_shown_with_the_daemon_reason() -> None:
    s = DaemonState()
    s.no_federation("this node is in no federation: its home has no genesis.json")
    assert s.role == "none" and "genesis.json" in s.federation_note


def test_events_are_bounded() -> None:
    s = DaemonState()
    for i in range(s.events.maxlen + 10):  # type: ignore[operator]
        s.apply_event({"topic": "x", "ts": i, "data": {}})
    assert len(s.events) == s.events.maxlen and s.events_seen == s.events.maxlen + 10  # type: ignore[operator]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
keys = st.sampled_from(["peer_id", "addrs", "state", "seq", "view", "requests", "primary", "peers", "members",
                        "uptime_s", "listen_addrs", "batches", "view_changes", "connected", "latency_ms"])
shaped = st.dictionaries(keys, json_values, max_size=6)
topics = st.sampled_from(["peer.joined", "peer.updated", "peer.alive", "peer.suspect", "peer.left", "peer.forgotten",
                          "federation.committed", "federation.view", "federation.checkpoint", "other"])


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["event", "status", "peers", "federation", "log", "bootstrap"]),
                          topics, st.one_of(shaped, json_values)), max_size=12))
def test_no_daemon_answer_breaks_the_model(steps: list[tuple[str, str, Any]]) -> None:
    """A daemon of another version, or a broken one, may send anything: the model absorbs it."""
    s = sample_state()
    for kind, topic, payload in steps:
        if kind == "event":
            s.apply_event({"topic": topic, "ts": 1, "data": payload})
            s.apply_event(payload)
        elif kind == "status":
            s.apply_status(payload, NOW)
        elif kind == "peers":
            s.apply_peers({"peers": payload} if isinstance(payload, list) else payload)
        elif kind == "federation":
            s.apply_federation(payload)
        elif kind == "log":
            s.apply_log(payload)
        else:
            s.apply_bootstrap(payload)
        s.tick()
    s.uptime_now(NOW)
    assert isinstance(s.role, str)


def test_format_helpers() -> None:
    assert format_duration(None) == "?"
    assert format_duration(59.9) == "0m59s"
    assert format_duration(3725) == "1h02m05s"
    assert format_duration(2 * 86_400 + 3_660) == "2d 01h01m"
    assert short_id(PEER_A, 6) == "…RRSpMG" and short_id("abc") == "abc"


def test_form_fields_parse_by_type() -> None:
    assert parse_field("to", "str", "12D3 x") == "12D3 x"
    assert parse_field("amount", "int", "12") == 12
    assert parse_field("tags", "list[str]", '["a", "b"]') == ["a", "b"]
    assert parse_field("account", "str | None", "plain text") == "plain text"
    with pytest.raises(FormError, match="amount: expected int"):
        parse_field("amount", "int", "ten")


def test_form_params_leave_defaults_and_require_required() -> None:
    fields = [{"name": "to", "type": "str", "required": True}, {"name": "timeout", "type": "float", "required": False}]
    assert build_params(fields, {"to": "x", "timeout": ""}) == {"to": "x"}
    assert build_params(fields, {"to": "x", "timeout": "2.5"}) == {"to": "x", "timeout": 2.5}
    assert build_params([], {}) is None
    with pytest.raises(FormError, match="to is required"):
        build_params(fields, {"to": ""})
