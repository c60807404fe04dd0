from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.pbft import (
    Checkpoint,
    Commit,
    FetchState,
    NewView,
    PrePrepare,
    Prepare,
    PreparedCert,
    Reply,
    Request,
    StateTransfer,
    Status,
    ViewChange,
    batch_digest,
)
from protocols.pbft.app import put

from tests.protocols.pbft.harness import Cluster


def test_equivocating_primary_gives_evidence_and_no_divergence() -> None:
    c = Cluster(request_timeout=1.0)
    a = (Request("a", 1, put("k", b"A")),)
    b = (Request("b", 1, put("k", b"B")),)
    pa = PrePrepare(0, 1, batch_digest(a), a, "r0")
    pb = PrePrepare(0, 1, batch_digest(b), b, "r0")
    # r0 is byzantine: it says A to r1 and r2, B to r3, and later B to r1 as well.
    c.down.add("r0")  # its genuine traffic is replaced by what is injected
    for dst, pp in [("r1", pa), ("r2", pa), ("r3", pb), ("r1", pb)]:
        c.inject("r0", dst, pp)
    c.run()
    assert ("r1", "equivocation") in [(rid, e.reason) for rid, e in c.evidence]
    # nobody commits seq 1 in view 0 (A has 2f prepares at r1/r2 but only 2 commits)
    assert all(r.last_executed == 0 for r in c.replicas.values())
    c.request("a", 1, put("k", b"A"), to="all")
    c.request("b", 1, put("k", b"B"), to="all")
    c.run(until=10.0)
    c.assert_agreement()
    assert c.result("a", 1) is not None and c.result("b", 1) is not None
    states = {tuple(sorted(c.apps[r].data.items())) for r in ("r1", "r2", "r3")}
    assert len(states) == 1


def test_forged_and_out_of_range_messages() -> None:
    c = Cluster(window=16, checkpoint_interval=8)
    req = (Request("x", 1, b"op"),)
    d = batch_digest(req)
    bad = [
        ("r3", PrePrepare(0, 1, d, req, "r3")),  # not the primary
        ("r0", PrePrepare(0, 1, b"\0" * 32, req, "r0")),  # digest mismatch
        ("r0", Prepare(0, 1, d, "r0")),  # primaries do not prepare
        ("r2", Prepare(0, 1, d, "r1")),  # claims another sender
        ("zz", Commit(0, 1, d, "zz")),  # not a member
    ]
    for src, m in bad:
        c.inject(src, "r1", m)
    c.run()
    assert [e.reason for _, e in c.evidence] == [
        "pre-prepare-not-from-primary",
        "bad-digest",
        "prepare-from-primary",
        "sender-mismatch",
        "not-a-member",
    ]
    # out of the window or stale: silently ignored, no state kept
    c.inject("r0", "r1", PrePrepare(0, 17, d, req, "r0"))
    c.inject("r2", "r1", Prepare(0, 0, d, "r2"))
    c.run()
    assert c.replicas["r1"].log_size() == 0
    assert len(c.evidence) == 5


def test_conflicting_votes_are_evidence() -> None:
    c = Cluster()
    c.inject("r2", "r1", Prepare(0, 1, b"a" * 32, "r2"))
    c.inject("r2", "r1", Prepare(0, 1, b"b" * 32, "r2"))
    c.inject("r2", "r1", Commit(0, 1, b"a" * 32, "r2"))
    c.inject("r2", "r1", Commit(0, 1, b"b" * 32, "r2"))
    c.inject("r2", "r1", Checkpoint(128, b"a" * 32, "r2"))
    c.inject("r2", "r1", Checkpoint(128, b"b" * 32, "r2"))
    c.run()
    assert [e.reason for _, e in c.evidence] == ["conflicting-prepare", "conflicting-commit", "conflicting-checkpoint"]


def test_forged_commit_quorum_cannot_execute_without_preprepare() -> None:
    c = Cluster()
    req = (Request("x", 1, put("k", b"evil")),)
    d = batch_digest(req)
    for s in ("r2", "r3"):
        c.inject(s, "r1", Commit(0, 1, d, s))
        c.inject(s, "r1", Prepare(0, 1, d, s))
    c.run()
    assert c.replicas["r1"].last_executed == 0


# ------------------------------------------------------------ random byzantine traffic

MEMBERS = ("r0", "r1", "r2", "r3")
digests = st.sampled_from([b"\0" * 32, b"\1" * 32, batch_digest(())])
small = st.integers(0, 20)
senders = st.sampled_from(MEMBERS + ("zz",))
requests = st.builds(Request, st.sampled_from(["a", "b"]), st.integers(0, 5), st.binary(max_size=8))
batches = st.lists(requests, max_size=3).map(tuple)
pre_prepares = st.builds(PrePrepare, st.integers(0, 3), small, digests, batches, senders)
prepares = st.builds(Prepare, st.integers(0, 3), small, digests, senders)
commits = st.builds(Commit, st.integers(0, 3), small, digests, senders)
checkpoints = st.builds(Checkpoint, st.sampled_from([0, 4, 8, 12, 5]), digests, senders)
certs = st.builds(PreparedCert, pre_prepares, st.lists(prepares, max_size=3).map(tuple))
view_changes = st.builds(
    ViewChange, st.integers(0, 4), st.sampled_from([0, 4, 8]), st.lists(checkpoints, max_size=3).map(tuple),
    st.lists(certs, max_size=2).map(tuple), senders,
)
new_views = st.builds(
    NewView, st.integers(0, 4), st.lists(view_changes, max_size=3).map(tuple), st.lists(pre_prepares, max_size=3).map(tuple), senders
)
messages = st.one_of(
    pre_prepares, prepares, commits, checkpoints, view_changes, new_views, requests,
    st.builds(FetchState, small, senders),
    st.builds(StateTransfer, small, digests, st.binary(max_size=8), st.binary(max_size=8), senders),
    st.builds(Reply, small, small, st.just("a"), senders, st.binary(max_size=4)),
    st.builds(Status, st.integers(0, 4), st.booleans(), small, st.sampled_from([0, 4, 8]), senders),
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(MEMBERS + ("zz",)), st.sampled_from(MEMBERS[:3]), messages), max_size=25))
def test_random_byzantine_traffic_never_raises_or_diverges(traffic: list) -> None:
    """r3 (and a non-member) send arbitrary well-formed messages amid real load: correct replicas
    never raise, never diverge, and still serve the client."""
    c = Cluster(checkpoint_interval=4, window=8, request_timeout=1.0)
    c.filter = lambda s, d, m: s != "r3"  # r3's genuine traffic is replaced by the random one
    for i, (src, dst, m) in enumerate(traffic):
        if src in ("r0", "r1", "r2"):
            src = "r3"
        c.inject(src, dst, m)
        if i % 5 == 0:
            c.request("cl", i + 1, put("k", b"%d" % i), to="all")
        c.run(until=c.now + 0.05)
    c.request("cl", 1000, put("k", b"end"), to="all")
    c.run(until=c.now + 30.0)
    assert c.result("cl", 1000) is not None
    c.assert_agreement()
