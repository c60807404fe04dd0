"""Per-message signatures (protocols/pbft/signing.py): transferable certificates.

Unit checks of sign/verify for each signed type and of the nested checks (forged prepares,
checkpoints, pre-prepares, VIEW-CHANGEs), then signed clusters end to end: every message a correct
replica produces, nested ones included, must verify (the harness fails on any refusal)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys.identity import Identity
from protocols.errors import ProtocolError
from protocols.pbft import (
    Checkpoint,
    Commit,
    FetchState,
    KVStore,
    NewView,
    PbftConfig,
    PrePrepare,
    Prepare,
    PreparedCert,
    Replica,
    Reply,
    Request,
    StateTransfer,
    Status,
    ViewChange,
    batch_digest,
    decode_message,
    encode_message,
)
from protocols.pbft.app import put
from protocols.pbft.signing import (
    SIG_DOMAIN,
    check_signatures,
    default_verifier,
    sign_message,
    signing_bytes,
)
from protocols.pbft.view_checks import compute_new_view

from tests.protocols.pbft.harness import Cluster

PROPS = settings(max_examples=150, deadline=None, derandomize=True)

KEYS = [Identity.from_seed(bytes([i]) * 32) for i in range(5)]
P = [k.peer_id for k in KEYS]  # P[0..3]: the committee (P[0] primary of view 0); P[4]: an outsider
BY_ID = {k.peer_id: k for k in KEYS}
CONFIG = PbftConfig(tuple(P[:4]), checkpoint_interval=4, window=8)


def signed(msg: Any, who: str | None = None) -> Any:
    """`msg` signed by the key of `who` (default: its claimed sender)."""
    return sign_message(msg, BY_ID[who or msg.sender].sign)


R = Request("client", 1, b"op")
PP0 = signed(PrePrepare(0, 5, batch_digest((R,)), (R,), P[0]))


def cert(pp: PrePrepare, backups: tuple[str, ...] = (P[1], P[2])) -> PreparedCert:
    return PreparedCert(pp, tuple(signed(Prepare(pp.view, pp.seq, pp.digest, b)) for b in backups))


def proof(seq: int = 4, digest: bytes = b"s" * 32) -> tuple[Checkpoint, ...]:
    return tuple(signed(Checkpoint(seq, digest, p)) for p in P[:3])


def view_change(sender: str, new_view: int = 1, certs: tuple[PreparedCert, ...] = (), by: str | None = None) -> ViewChange:
    return signed(ViewChange(new_view, 4, proof(), certs or (cert(PP0),), sender), by)


def new_view(vcs: tuple[ViewChange, ...]) -> NewView:
    primary = CONFIG.primary(1)
    _, _, _, o = compute_new_view(CONFIG, 1, vcs)
    return NewView(1, vcs, tuple(signed(pp, primary) for pp in o), primary)


VCS = tuple(view_change(p) for p in (P[0], P[2], P[3]))
NV = new_view(VCS)
SIGNED_SAMPLES = [
    PP0,
    signed(Prepare(0, 5, PP0.digest, P[1])),
    signed(Checkpoint(4, b"s" * 32, P[2])),
    VCS[0],
]


# ---------------------------------------------------------------- sign / verify


@pytest.mark.parametrize("msg", SIGNED_SAMPLES, ids=lambda m: type(m).__name__)
def test_sign_verify_round_trip(msg: Any) -> None:
    assert len(msg.sig) == 64
    assert check_signatures(msg) is None
    wire = decode_message(encode_message(msg))
    assert wire.sig == msg.sig and wire == msg  # type: ignore[union-attr]
    assert check_signatures(wire) is None
    assert signing_bytes(msg) == SIG_DOMAIN + encode_message(dataclasses.replace(msg, sig=b""))
    assert check_signatures(dataclasses.replace(msg, sig=b"")) == "unsigned"


def test_new_view_round_trip_and_equality_ignores_sigs() -> None:
    assert check_signatures(NV) is None
    assert check_signatures(decode_message(encode_message(NV))) is None
    assert NV.pre_prepares and NV.pre_prepares == compute_new_view(CONFIG, 1, VCS)[3]  # unsigned copies compare equal
    assert all(pp.sig for pp in NV.pre_prepares)


@pytest.mark.parametrize(
    "msg",
    [Commit(0, 1, PP0.digest, P[1]), R, Reply(0, 1, "c", P[1], b"r"), Status(0, True, 1, 0, P[1]),
     FetchState(4, P[1]), StateTransfer(4, b"s" * 32, b"", b"", P[1])],
    ids=lambda m: type(m).__name__,
)
def test_unsigned_types_pass_and_are_left_alone(msg: Any) -> None:
    assert check_signatures(msg) is None
    assert sign_message(msg, KEYS[1].sign) is msg


def test_signer_must_return_64_bytes() -> None:
    with pytest.raises(ValueError):
        sign_message(Prepare(0, 1, PP0.digest, P[1]), lambda data: b"short")


def test_default_verifier_refuses_bad_peer_ids() -> None:
    data = b"x"
    sig = KEYS[1].sign(data)
    assert default_verifier(P[1], sig, data)
    assert not default_verifier(P[2], sig, data)
    assert not default_verifier("r1", sig, data)  # not a peer id
    assert not default_verifier("", sig, data)
    assert not default_verifier(P[1], sig[:63], data)


def _mutations(msg: Any) -> list[Any]:
    """Each field of `msg` changed a little (a flipped bit, +1, another member as sender)."""
    def flip(b: bytes) -> bytes:
        return bytes([b[0] ^ 1]) + b[1:]

    out = [dataclasses.replace(msg, sig=flip(msg.sig)), dataclasses.replace(msg, sig=msg.sig[:-1] + bytes([msg.sig[-1] ^ 0x80]))]
    for f in dataclasses.fields(msg):
        v = getattr(msg, f.name)
        if f.name == "sig":
            continue
        if f.name == "sender":
            out.append(dataclasses.replace(msg, sender=P[(P.index(v) + 1) % 4]))
        elif isinstance(v, int):
            out.append(dataclasses.replace(msg, **{f.name: v + 1}))
        elif isinstance(v, bytes):
            out.append(dataclasses.replace(msg, **{f.name: flip(v)}))
        elif f.name == "batch":
            out.append(dataclasses.replace(msg, batch=(dataclasses.replace(v[0], op=flip(v[0].op)),)))
            out.append(dataclasses.replace(msg, batch=()))
        elif f.name == "checkpoint_proof":
            out.append(dataclasses.replace(msg, checkpoint_proof=v[:-1]))
        elif f.name == "prepared":
            out.append(dataclasses.replace(msg, prepared=()))
    return out


@pytest.mark.parametrize("msg", SIGNED_SAMPLES, ids=lambda m: type(m).__name__)
def test_any_changed_field_is_refused(msg: Any) -> None:
    muts = _mutations(msg)
    assert len(muts) >= 5
    for m in muts:
        assert check_signatures(m) == "bad-signature", m


@PROPS
@given(st.sampled_from(SIGNED_SAMPLES + [NV]), st.data())
def test_flipped_bit_on_the_wire_is_refused(msg: Any, data: st.DataObject) -> None:
    raw = bytearray(encode_message(msg))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= 1 << data.draw(st.integers(0, 7))
    try:
        got = decode_message(bytes(raw))
    except ProtocolError:
        return
    if type(got) is type(msg) and encode_message(got) == encode_message(msg):
        return  # decodes to the very same message (cannot happen with canonical msgpack, but harmless)
    assert check_signatures(got) is not None


@PROPS
@given(st.sampled_from(SIGNED_SAMPLES), st.binary(min_size=64, max_size=64))
def test_signing_bytes_ignore_the_own_signature(msg: Any, sig: bytes) -> None:
    other = dataclasses.replace(msg, sig=sig)
    assert signing_bytes(other) == signing_bytes(msg)
    assert decode_message(encode_message(other)).sig == sig  # type: ignore[union-attr]
    assert check_signatures(other) == ("bad-signature" if sig != msg.sig else None)


# ---------------------------------------------------------------- nested certificates


def test_view_change_with_forged_nested_prepare() -> None:
    forged = PreparedCert(PP0, (signed(Prepare(0, 5, PP0.digest, P[1])), signed(Prepare(0, 5, PP0.digest, P[2]), P[3])))
    vc = signed(ViewChange(1, 4, proof(), (forged,), P[3]))
    assert check_signatures(vc) == "bad-nested-signature"
    # The core alone would take it: its shape is a valid certificate.
    from protocols.pbft.view_checks import view_change_error

    assert view_change_error(CONFIG, vc) is None


@pytest.mark.parametrize(
    "tamper",
    [
        "unsigned-prepare", "prepare-by-outsider", "pre-prepare-by-backup", "unsigned-pre-prepare",
        "checkpoint-by-other", "unsigned-checkpoint", "altered-prepare",
    ],
)
def test_view_change_nested_forgeries(tamper: str) -> None:
    pp, prepares, cps = PP0, list(cert(PP0).prepares), list(proof())
    if tamper == "unsigned-prepare":
        prepares[0] = dataclasses.replace(prepares[0], sig=b"")
    elif tamper == "prepare-by-outsider":
        prepares[1] = signed(prepares[1], P[4])
    elif tamper == "pre-prepare-by-backup":
        pp = signed(PP0, P[3])
    elif tamper == "unsigned-pre-prepare":
        pp = dataclasses.replace(PP0, sig=b"")
    elif tamper == "checkpoint-by-other":
        cps[2] = signed(cps[2], P[3])
    elif tamper == "unsigned-checkpoint":
        cps[0] = dataclasses.replace(cps[0], sig=b"")
    elif tamper == "altered-prepare":
        prepares[0] = dataclasses.replace(prepares[0], digest=b"x" * 32)  # keeps the old signature
    vc = signed(ViewChange(1, 4, tuple(cps), (PreparedCert(pp, tuple(prepares)),), P[3]))
    assert check_signatures(vc) == "bad-nested-signature"
    # and a VIEW-CHANGE carrying it inside a NEW-VIEW is refused too
    assert check_signatures(new_view((VCS[0], VCS[1], vc))) == "bad-nested-signature"


def test_new_view_with_fabricated_view_change() -> None:
    # The byzantine new primary P[1] makes up a VIEW-CHANGE "from" P[3] and signs it itself.
    fake = view_change(P[3], by=P[1])
    assert check_signatures(fake) == "bad-signature"
    assert check_signatures(new_view((VCS[0], VCS[1], fake))) == "bad-nested-signature"
    # an unsigned one, or a genuine one whose content was edited, fares no better
    assert check_signatures(new_view((VCS[0], VCS[1], dataclasses.replace(VCS[2], sig=b"")))) == "bad-nested-signature"
    edited = dataclasses.replace(VCS[2], prepared=())
    assert check_signatures(new_view((VCS[0], VCS[1], edited))) == "bad-nested-signature"


def test_new_view_pre_prepares_must_be_signed_by_its_sender() -> None:
    o = NV.pre_prepares
    by_other = NewView(1, VCS, (signed(o[0], P[2]),) + o[1:], NV.sender)
    assert check_signatures(by_other) == "bad-nested-signature"
    unsigned = NewView(1, VCS, (dataclasses.replace(o[0], sig=b""),) + o[1:], NV.sender)
    assert check_signatures(unsigned) == "bad-nested-signature"
    other_sender = NewView(1, VCS, (signed(dataclasses.replace(o[0], sender=P[2])),) + o[1:], NV.sender)
    assert check_signatures(other_sender) == "bad-nested-signature"


def test_repeated_nested_messages_are_verified_once() -> None:
    calls: list[str] = []

    def counting(peer: str, sig: bytes, data: bytes) -> bool:
        calls.append(peer)
        return default_verifier(peer, sig, data)

    assert check_signatures(NV, counting) is None
    # 3 VIEW-CHANGEs + one shared proof (3) + one shared cert (1 + 2) + O; not 3 * (1 + 3 + 3) + O
    assert len(calls) == 3 + 3 + 3 + len(NV.pre_prepares)


# ---------------------------------------------------------------- the replica signs what it creates


def load(c: Cluster, first: int, count: int, client: str = "c") -> None:
    for i in range(first, first + count):
        c.request(client, i, put(f"k{i % 5}", b"%d" % i))
        c.run(until=c.now + 0.01)


def test_signed_cluster_end_to_end() -> None:
    """Normal case, checkpoints, two view changes with prepared certificates (the second carrying
    pre-prepares a NEW-VIEW re-issued) and state transfer, all signed and all checked: zero refusals."""
    c = Cluster(signed=True, checkpoint_interval=4, window=8, max_batch=1, request_timeout=1.0)
    r0, r1, r2, r3 = c.members
    load(c, 1, 9)
    assert all(r.last_executed == 9 and r.low_watermark == 8 for r in c.replicas.values())
    assert all(cp.sig for r in c.replicas.values() for cp in r.stable_proof)

    # seq 10 prepares everywhere but commits are lost; the primary dies: view 1 re-proposes it
    c.filter = lambda s, d, m: not isinstance(m, Commit)
    c.request("c", 10, put("k", b"10"))
    c.run(until=c.now + 0.01)
    assert all(r.certs.get(10) for r in c.replicas.values())
    c.down.add(r0)
    c.request("c", 10, put("k", b"10"), to="all")
    c.run(until=c.now + 2.0)  # the view-change timer fires at +1 s; view 1's doubled one would at +3 s
    for rid in (r1, r2, r3):
        rep = c.replicas[rid]
        assert rep.view == 1 and rep.active
        nv = rep.new_view_msg
        assert nv is not None and nv.sender == r1 and [pp.seq for pp in nv.pre_prepares] == [9, 10]
        assert any(vc.prepared and vc.checkpoint_proof for vc in nv.view_changes)
        # the backups keep the new primary's signed pre-prepare, and certify with it
        assert rep.pre_prepares[10].sig and rep.certs[10].pre_prepare.view == 1 and rep.certs[10].pre_prepare.sig

    # still no commits; view 1's primary dies too: view 2's VIEW-CHANGEs carry view-1 certificates
    c.down.discard(r0)
    c.down.add(r1)
    seen: list[NewView] = []

    def no_commits_but_watch(src: str, dst: str, m: Any) -> bool:
        if isinstance(m, NewView):
            seen.append(m)
        return not isinstance(m, Commit)

    c.filter = no_commits_but_watch
    c.request("c", 10, put("k", b"10"), to="all")
    c.run(until=c.now + 4.0)
    nv2 = next(nv for nv in seen if nv.view == 2)
    carried = [cert.pre_prepare for vc in nv2.view_changes for cert in vc.prepared]
    assert any(pp.view == 1 and pp.sender == r1 and pp.sig for pp in carried)
    assert all(c.replicas[rid].view >= 2 for rid in (r0, r2, r3))
    c.filter = lambda s, d, m: True
    c.run(until=c.now + 3.0)
    assert c.result("c", 10) is not None
    assert all(c.replicas[rid].last_executed == 10 for rid in (r0, r2, r3))

    # r1 comes back and catches up; then r3 misses a stretch and recovers by state transfer
    c.down.discard(r1)
    load(c, 11, 3)
    c.run(until=c.now + 3.0)
    c.down.add(r3)
    load(c, 14, 20)
    c.down.discard(r3)
    load(c, 34, 8)
    c.run(until=c.now + 3.0)
    last = c.replicas[r0].last_executed
    assert last == 41
    for rid in c.members:
        assert c.replicas[rid].last_executed == last, rid
        assert c.apps[rid].data == c.apps[r0].data
    c.assert_agreement()
    assert not c.refused and not c.evidence
    assert c.checked == c.delivered > 500


def test_signed_recovery_keeps_signatures() -> None:
    """persistent_state -> recover(signer=): certificates from the restored log still verify."""
    c = Cluster(signed=True, checkpoint_interval=4, window=8, max_batch=1, request_timeout=1.0)
    r0 = c.members[0]
    load(c, 1, 5)
    c.filter = lambda s, d, m: not isinstance(m, Commit)
    c.request("c", 6, put("k", b"6"))
    c.run(until=c.now + 0.01)
    for rid in c.members:
        state = c.replicas[rid].persistent_state()
        c.apps[rid] = KVStore()
        c.replicas[rid] = Replica.recover(rid, c.config, c.apps[rid], state, signer=c.signer(rid))
        assert c.replicas[rid].signer is not None
        assert c.replicas[rid].certs[6].pre_prepare.sig and c.replicas[rid].stable_proof[0].sig
    c.down.add(r0)
    c.request("c", 6, put("k", b"6"), to="all")
    c.run(until=c.now + 2.0)  # still no commits: a view change whose certificates come from the restored logs
    for rid in c.members[1:]:
        rep = c.replicas[rid]
        assert rep.view == 1 and rep.active and rep.new_view_msg is not None
        assert all(vc.prepared for vc in rep.new_view_msg.view_changes)
    c.filter = lambda s, d, m: True
    c.run(until=c.now + 3.0)
    assert c.result("c", 6) is not None
    assert not c.refused and c.checked == c.delivered


def test_byzantine_forgeries_are_refused_before_the_core() -> None:
    c = Cluster(signed=True, checkpoint_interval=4, window=8, max_batch=1, request_timeout=1.0)
    r0, r1, r2, r3 = c.members
    load(c, 1, 2)
    # r3 claims a prepared certificate for a batch nobody prepared, forging r1's and r2's prepares
    bad = (Request("evil", 1, put("k", b"evil")),)
    pp = sign_message(PrePrepare(0, 3, batch_digest(bad), bad, r0), c.identities[r3].sign)
    prepares = tuple(sign_message(Prepare(0, 3, pp.digest, s), c.identities[r3].sign) for s in (r1, r2))
    vc = sign_message(ViewChange(1, 0, (), (PreparedCert(pp, prepares),), r3), c.identities[r3].sign)
    # r1, the next primary, makes up VIEW-CHANGEs from r0 and r2 to install view 1 on its own
    fakes = tuple(sign_message(ViewChange(1, 0, (), (), s), c.identities[r1].sign) for s in (r0, r2))
    nv_fake = NewView(1, (*fakes, sign_message(ViewChange(1, 0, (), (), r1), c.identities[r1].sign)), (), r1)
    for dst in (r0, r1, r2):
        c.inject(r3, dst, vc)
    for dst in (r0, r2, r3):
        c.inject(r1, dst, nv_fake)
    c.run()
    reasons = sorted({(src, type(m).__name__, why) for src, _d, m, why in c.refused})
    assert reasons == [(r1, "NewView", "bad-nested-signature"), (r3, "ViewChange", "bad-nested-signature")]
    assert len(c.refused) == 6
    assert all(r.view == 0 and r.active for r in c.replicas.values())
    load(c, 3, 2)
    assert all(r.last_executed == 4 for r in c.replicas.values())


def test_from_checkpoint_passes_the_signer() -> None:
    ident = KEYS[1]
    app = KVStore()
    r = Replica.from_checkpoint(P[1], CONFIG, app, 8, b"\x90", 0, signer=ident.sign)
    assert r.signer is not None
    assert Replica(P[1], CONFIG, KVStore()).signer is None


def test_caching_verifier_skips_repeats_only() -> None:
    from protocols.pbft.signing import CachingVerifier

    calls: list[str] = []

    def counting(peer: str, sig: bytes, data: bytes) -> bool:
        calls.append(peer)
        return default_verifier(peer, sig, data)

    cv = CachingVerifier(counting)
    for vc in VCS:
        assert check_signatures(vc, cv) is None
    first = len(calls)
    assert check_signatures(NV, cv) is None  # only O's pre-prepares are new
    assert len(calls) == first + len(NV.pre_prepares) and cv.hits > 0
    # a cached signature does not vouch for other data, and refusals are not cached
    edited = dataclasses.replace(VCS[2], prepared=())
    assert check_signatures(edited, cv) == "bad-signature"
    assert check_signatures(edited, cv) == "bad-signature"
    small = CachingVerifier(counting, size=2)
    assert check_signatures(NV, small) is None and len(small._ok) == 2
    with pytest.raises(ValueError):
        CachingVerifier(size=0)
