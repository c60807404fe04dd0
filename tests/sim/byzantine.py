"""Byzantine behaviours, each wrapped around a real Replica so the liar otherwise takes part.

A behaviour sees its process's outgoing effects (and may rewrite them), sees what it receives, and
may schedule its own actions. What it can NOT do is change the transport sender: the daemon
verifies envelope signatures before a replica sees anything, so lying about `message.sender` shows
up as a mismatch with the authenticated sender (evidence for the receiver).

Nested messages (the prepares in a certificate, the view-changes in a new-view, the checkpoint
proof) carry no signatures in the protocols/pbft interface, so a replica cannot tell a genuine
prepare from r2 from one the liar made up in r2's name. In the daemon those nested messages must be
individually signed; the sim models that by dropping, at the transport, any message from a liar
whose nested messages claim a correct replica's identity but were never sent by it
(`authentic`). What remains for the replica to catch are certificates recombined from genuine
messages: too few, duplicated, mismatched, for the wrong view or sequence number, proofs that do
not prove what they claim, pre-prepares from a non-primary, ...

Twins (two processes with one identity) need no behaviour at all: the scenario adds a second
correct process under the same identity and partitions the pair apart (see scenarios.py).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from protocols.codec import encode
from protocols.pbft.app import KVStore
from protocols.pbft.effects import Broadcast, Send, SendReply, StableCheckpoint
from protocols.pbft.messages import (
    Checkpoint,
    Commit,
    FetchState,
    NewView,
    PrePrepare,
    Prepare,
    PreparedCert,
    Reply,
    StartViewChange,
    StateTransfer,
    ViewChange,
    batch_digest,
    encode_message,
)

if TYPE_CHECKING:
    from tests.sim.runner import Proc, Sim


class Behaviour:
    """A correct replica; subclasses lie."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def start(self, sim: "Sim", proc: "Proc") -> None:
        pass

    def outgoing(self, sim: "Sim", proc: "Proc", effects: list[Any]) -> list[Any]:
        return effects

    def observe(self, sim: "Sim", proc: "Proc", msg: Any) -> None:
        pass

    def authentic(self, sim: "Sim", msg: Any) -> bool:
        return True

    def every(self, sim: "Sim", proc: "Proc", period: float, action: Any) -> None:
        """Run `action(sim, proc)` every ~period (jittered) while the process is up."""

        def tick(s: "Sim") -> None:
            if proc.replica is not None:
                action(s, proc)
            s.call_at(s.clock.now + self.rng.uniform(0.5, 1.5) * period, tick)

        sim.call_at(self.rng.uniform(0, period), tick)


class Silent(Behaviour):
    """Receives everything, says nothing (not even replies)."""

    def outgoing(self, sim: "Sim", proc: "Proc", effects: list[Any]) -> list[Any]:
        return [e for e in effects if type(e) not in (Send, Broadcast, SendReply)]


class VoteSpammer(Behaviour):
    """Otherwise correct, it votes for view changes nobody needs, to random subsets of the
    committee: votes for the next view, and for views far ahead. f such voters must never move a
    committee whose correct members are content."""

    def __init__(self, rng: random.Random, period: float = 0.03) -> None:
        super().__init__(rng)
        self.period = period
        self.sent = 0

    def start(self, sim: "Sim", proc: "Proc") -> None:
        self.every(sim, proc, self.period, self._spam)

    def _spam(self, sim: "Sim", proc: "Proc") -> None:
        view = proc.replica.view if proc.replica is not None else 0
        target = view + (1 if self.rng.random() < 0.5 else self.rng.randint(2, 1 << 40))
        for m in sim.config.members:
            if m != proc.ident and self.rng.random() < 0.7:
                self.sent += 1
                sim.send_to_ident(proc.name, m, encode_message(StartViewChange(target, proc.ident)))


class Equivocator(Behaviour):
    """As primary, sends a different pre-prepare for the same (view, seq) to a random subset of the
    backups: the batch reordered, cut short, or replaced by the null request, under its own digest
    or (a lie) under the original one."""

    def outgoing(self, sim: "Sim", proc: "Proc", effects: list[Any]) -> list[Any]:
        out: list[Any] = []
        for e in effects:
            if type(e) is Broadcast and type(e.message) is PrePrepare:
                pp = e.message
                others = [m for m in sim.config.members if m != proc.ident]
                self.rng.shuffle(others)
                k = self.rng.randint(1, len(others) - 1)
                alt_batch = self._alternative(pp.batch)
                # Sometimes keep the digest and swap only the batch: the backups then agree on a
                # digest while holding different requests, which only checking the digest against
                # the batch catches.
                digest = pp.digest if self.rng.random() < 0.3 else batch_digest(alt_batch)
                alt = PrePrepare(pp.view, pp.seq, digest, alt_batch, pp.sender)
                for i, m in enumerate(others):
                    out.append(Send(m, pp if i < k else alt))
            else:
                out.append(e)
        return out

    def _alternative(self, batch: tuple[Any, ...]) -> tuple[Any, ...]:
        r = self.rng.random()
        if len(batch) > 1 and r < 0.4:
            return tuple(reversed(batch))
        if len(batch) > 1 and r < 0.7:
            return batch[: self.rng.randint(1, len(batch) - 1)]
        return ()


class Amnesiac(Behaviour):
    """Votes selectively and forgets in view changes. Its prepares and commits reach a random
    subset of the others (so some correct replicas fall short of a quorum while others do not),
    and its VIEW-CHANGE claims nothing prepared since its stable checkpoint: a well-formed message
    hiding exactly what a new primary must not lose. PBFT survives it because a request committed
    anywhere was prepared at f+1 correct replicas, and any 2f+1 VIEW-CHANGEs include one of them;
    a replica that commits on fewer votes, or a new primary that trusts fewer VIEW-CHANGEs, loses
    the request and shows up as an agreement violation. It also votes for a view change all the
    time, so that a single correct replica's timeout (one lost message) is enough to start one:
    views change often, and each is a chance for its forgetful VIEW-CHANGE to do harm."""

    def start(self, sim: "Sim", proc: "Proc") -> None:
        self.every(sim, proc, sim.config.request_timeout / 2, self._vote)

    def _vote(self, sim: "Sim", proc: "Proc") -> None:
        if proc.replica is not None:
            vote = StartViewChange(proc.replica.view + 1, proc.ident)
            for m in sim.config.members:
                if m != proc.ident:
                    sim.send_to_ident(proc.name, m, encode_message(vote))

    def outgoing(self, sim: "Sim", proc: "Proc", effects: list[Any]) -> list[Any]:
        out: list[Any] = []
        for e in effects:
            msg: Any = getattr(e, "message", None)
            if type(e) is Broadcast and type(msg) in (Prepare, Commit):
                others = [m for m in sim.config.members if m != proc.ident]
                for m in self.rng.sample(others, self.rng.randint(0, len(others))):
                    out.append(Send(m, msg))
            elif type(e) in (Broadcast, Send) and type(msg) is ViewChange:
                lie = ViewChange(msg.new_view, msg.stable_seq, msg.checkpoint_proof, (), msg.sender)
                out.append(Broadcast(lie) if type(e) is Broadcast else Send(e.to, lie))
            else:
                out.append(e)
        return out


class Recorder(Behaviour):
    """Keeps what it received (genuine messages of others) for replays and recombined forgeries."""

    def __init__(self, rng: random.Random, keep: int = 400) -> None:
        super().__init__(rng)
        self.seen: list[Any] = []
        self.keep = keep

    def observe(self, sim: "Sim", proc: "Proc", msg: Any) -> None:
        if len(self.seen) < self.keep:
            self.seen.append(msg)
        else:
            self.seen[self.rng.randrange(self.keep)] = msg

    def pick(self, *types: type) -> Any:
        cands = [m for m in self.seen if type(m) in types] if types else self.seen
        return self.rng.choice(cands) if cands else None

    def target(self, sim: "Sim", proc: "Proc") -> str:
        return self.rng.choice([m for m in sim.config.members if m != proc.ident])


class Replayer(Recorder):
    """Re-sends old messages it received from others (transport sender: itself, so the receiver
    sees a mismatch), and its own old messages (genuine, just stale)."""

    def __init__(self, rng: random.Random, period: float = 0.01) -> None:
        super().__init__(rng)
        self.period = period
        self.mine: list[Any] = []

    def start(self, sim: "Sim", proc: "Proc") -> None:
        self.every(sim, proc, self.period, self.replay)

    def outgoing(self, sim: "Sim", proc: "Proc", effects: list[Any]) -> list[Any]:
        for e in effects:
            if type(e) in (Send, Broadcast) and len(self.mine) < 300:
                self.mine.append(e.message)
        return effects

    def replay(self, sim: "Sim", proc: "Proc") -> None:
        pool = self.mine if self.mine and self.rng.random() < 0.5 else self.seen
        if pool:
            msg = self.rng.choice(pool)
            sim.send_to_ident(proc.name, self.target(sim, proc), encode_message(msg))


class NetworkReplayer:
    """Not a replica: an attacker on the wire who captures envelopes between replicas and
    re-delivers them much later, with their original (authenticated) sender. The daemon's
    envelope sequence numbers would refuse them; the replica must be safe without that."""

    def __init__(self, rng: random.Random, period: float = 0.005, keep: int = 300) -> None:
        self.rng, self.period, self.keep = rng, period, keep
        self.captured: list[tuple[str, str, bytes]] = []

    def attach(self, sim: "Sim") -> None:
        sim.taps.append(self.capture)

        def tick(s: "Sim") -> None:
            if self.captured:
                src, dst, payload = self.rng.choice(self.captured)
                # To its original destination or to anybody else.
                target = dst if self.rng.random() < 0.5 else self.rng.choice(list(s.procs))
                if target != src:
                    s.transmit(src, s.procs[target], payload)
            s.call_at(s.clock.now + self.rng.uniform(0.5, 1.5) * self.period, tick)

        sim.call_at(self.period, tick)

    def capture(self, src: str, dst: str, payload: bytes) -> None:
        if len(self.captured) < self.keep:
            self.captured.append((src, dst, payload))
        elif self.rng.random() < 0.2:
            self.captured[self.rng.randrange(self.keep)] = (src, dst, payload)


class Forger(Recorder):
    """Sends made-up and recombined messages and certificates (see the module docstring)."""

    def __init__(self, rng: random.Random, period: float = 0.01) -> None:
        super().__init__(rng)
        self.period = period
        self.genuine: set[Any] = set()  # every message (nested ones too) this liar received
        self.rogue: list[PrePrepare] = []  # pre-prepares to follow a rogue NEW-VIEW

    def start(self, sim: "Sim", proc: "Proc") -> None:
        self.every(sim, proc, self.period, self.forge)

    def authentic(self, sim: "Sim", msg: Any) -> bool:
        # Drop what the daemon's nested-signature check would: a nested message in a correct
        # replica's name that this liar has never received from anyone.
        for m in _nested(msg):
            if m.sender != msg.sender and m not in self.genuine:
                owner = sim.by_ident.get(m.sender)
                if owner and owner[0].correct:
                    return False
        return True

    def observe(self, sim: "Sim", proc: "Proc", msg: Any) -> None:
        super().observe(sim, proc, msg)
        if type(msg) in (Prepare, Commit, Checkpoint, PrePrepare, ViewChange, NewView):
            self.genuine.add(msg)
            self.genuine.update(_nested(msg))
        if type(msg) is FetchState and proc.replica is not None:
            self._poison(sim, proc, [msg.sender], msg.seq)

    def outgoing(self, sim: "Sim", proc: "Proc", effects: list[Any]) -> list[Any]:
        # The moment a checkpoint becomes stable, a lagging replica may be about to fetch it.
        if any(type(e) is StableCheckpoint for e in effects):
            self._poison(sim, proc, [m for m in sim.config.members if m != proc.ident], 0)
        return effects

    def _poison(self, sim: "Sim", proc: "Proc", to: list[str], min_seq: int) -> None:
        """A state transfer for the right (certified) checkpoint with a well-formed snapshot of a
        different state: only checking the snapshot against the certified digest stops it."""
        rep = proc.replica
        assert rep is not None
        seq, digest = rep.stable_checkpoint
        if seq < min_seq or seq == 0:
            return
        kv = KVStore()
        kv.data = {"a": b"poisoned"}
        snapshot = encode([kv.snapshot(), []])  # the AuditedApp snapshot layout
        table = getattr(rep, "stable_table", encode({}))
        payload = encode_message(StateTransfer(seq, digest, snapshot, table, proc.ident))
        for m in to:
            sim.send_to_ident(proc.name, m, payload)

    def _digest(self) -> bytes:
        return self.rng.randbytes(32)

    def forge(self, sim: "Sim", proc: "Proc") -> None:
        rep = proc.replica
        assert rep is not None
        me, view, members = proc.ident, rep.view, sim.config.members
        other = self.rng.choice([m for m in members if m != me])
        r = self.rng.randrange(12)
        msg: Any
        if r == 0:  # impersonation: a genuine message of another replica, from my transport
            msg = self.pick(Prepare, Commit, Checkpoint, ViewChange, PrePrepare)
        elif r == 1:  # impersonation with made-up content
            pp = self.pick(PrePrepare)
            seq = pp.seq if pp else 1
            cls = self.rng.choice([Prepare, Commit])
            msg = cls(view, seq, self._digest(), other)
        elif r == 2:  # a checkpoint I sign with a wrong state digest
            cp = self.pick(Checkpoint)
            msg = Checkpoint(cp.seq if cp else sim.config.checkpoint_interval, self._digest(), me)
        elif r == 3:  # a pre-prepare although I am not the primary (or am, with a bad digest)
            pp = self.pick(PrePrepare)
            batch = pp.batch if pp else ()
            digest = batch_digest(batch) if self.rng.random() < 0.5 else self._digest()
            msg = PrePrepare(view, (pp.seq if pp else 1) + self.rng.randint(0, 2), digest, batch, me)
        elif r in (4, 5):
            msg = self._view_change(sim, proc, view)
        elif r == 6:
            msg = self._new_view(sim, proc, view) if self.rng.random() < 0.5 else self._rogue_view(sim, proc, view)
        elif r == 7:  # an unsolicited state transfer with a snapshot that matches nothing
            cp = self.pick(Checkpoint)
            seq = cp.seq if cp else sim.config.checkpoint_interval
            digest = cp.state_digest if cp and self.rng.random() < 0.5 else self._digest()
            msg = StateTransfer(seq, digest, encode([["k", b"forged"]]), encode({}), me)
        elif r == 8:  # a commit far outside the watermarks, or for a future view
            msg = Commit(view + self.rng.choice([0, 1, 5]), rep.low_watermark + self.rng.choice([0, 10**6, 2**62]),
                         self._digest(), me)
        elif r == 9:
            msg = self._view_change(sim, proc, view, far=True)
        elif r == 10:
            self._impersonated_quorum(sim, proc, view)
            return
        else:
            self._lie_to_clients(sim, proc, view)
            return
        if msg is None:
            return
        if self.rng.random() < 0.3 or self.rogue:
            for m in members:
                if m != me:
                    sim.send_to_ident(proc.name, m, encode_message(msg))
                    for pp in self.rogue:
                        sim.send_to_ident(proc.name, m, encode_message(pp))
        else:
            sim.send_to_ident(proc.name, other, encode_message(msg))
        self.rogue = []

    def _lie_to_clients(self, sim: "Sim", proc: "Proc", view: int) -> None:
        """Replies with made-up results for requests clients have (or are about to have)
        outstanding: one liar is never f+1 matching replies."""
        pp = self.pick(PrePrepare)
        if pp is None:
            return
        for req in pp.batch:
            client = sim.clients.get(req.client_id)
            if client is not None:
                lie = Reply(view, req.timestamp + self.rng.choice([0, 1]), req.client_id, proc.ident,
                            encode(["ok", b"forged"]))
                sim.transmit(proc.name, client, encode_message(lie))

    def _impersonated_quorum(self, sim: "Sim", proc: "Proc", view: int) -> None:
        """A whole agreement in other replicas' names, sent to one victim from my own transport: the
        primary's pre-prepare for the next sequence number with a batch of my choosing, and
        prepares and commits for it "from" everybody. Only the sender-vs-transport check stops it."""
        rep = proc.replica
        assert rep is not None
        pp = self.pick(PrePrepare)
        if pp is None:
            return
        seq = rep.last_executed + 1
        batch = pp.batch[::-1] if len(pp.batch) > 1 else ()
        digest = batch_digest(batch)
        victim = self.rng.choice([m for m in sim.config.members if m != proc.ident])
        primary = sim.config.primary(view)
        forged: list[Any] = [PrePrepare(view, seq, digest, batch, primary)]
        for m in sim.config.members:
            if m != primary:
                forged.append(Prepare(view, seq, digest, m))
            forged.append(Commit(view, seq, digest, m))
        for msg in forged:
            sim.send_to_ident(proc.name, victim, encode_message(msg))

    def _rogue_view(self, sim: "Sim", proc: "Proc", view: int) -> NewView | None:
        return _rogue(self, sim, proc, view)

    def _cert(self, sim: "Sim") -> PreparedCert | None:
        pp = self.pick(PrePrepare)
        if pp is None:
            return None
        preps = [m for m in self.seen if type(m) is Prepare]
        matching = [p for p in preps if (p.view, p.seq, p.digest) == (pp.view, pp.seq, pp.digest)]
        r = self.rng.randrange(4)
        if r == 0:  # too few prepares
            chosen = matching[: max(0, 2 * sim.config.f - 1)]
        elif r == 1 and matching:  # the same prepare repeated to look like a quorum
            chosen = [matching[0]] * (2 * sim.config.f)
        elif r == 2:  # prepares for something else
            chosen = self.rng.sample(preps, min(len(preps), 2 * sim.config.f))
        else:  # a genuine-looking quorum for a pre-prepare with a swapped batch
            chosen = matching[: 2 * sim.config.f]
            other = self.pick(PrePrepare)
            if other is not None:
                pp = PrePrepare(pp.view, pp.seq, pp.digest, other.batch, pp.sender)
        return PreparedCert(pp, tuple(chosen))

    def _view_change(self, sim: "Sim", proc: "Proc", view: int, far: bool = False) -> ViewChange:
        rep = proc.replica
        assert rep is not None
        cps = [m for m in self.seen if type(m) is Checkpoint]
        proof: tuple[Checkpoint, ...] = ()
        stable = rep.low_watermark
        if cps and self.rng.random() < 0.5:
            cp = self.rng.choice(cps)
            same = [c for c in cps if c.seq == cp.seq]
            # Claim a higher stable point than the proof shows, or prove it with too few / mixed digests.
            proof = tuple(same[: sim.config.f + 1]) if self.rng.random() < 0.5 else tuple(self.rng.sample(cps, min(3, len(cps))))
            stable = cp.seq + self.rng.choice([0, 0, sim.config.checkpoint_interval])
        certs = [c for c in (self._cert(sim) for _ in range(self.rng.randint(0, 3))) if c is not None]
        nv = view + (self.rng.randint(2, 50) if far else 1)
        return ViewChange(nv, stable, proof, tuple(certs), proc.ident)

    def _new_view(self, sim: "Sim", proc: "Proc", view: int) -> NewView:
        vcs = [m for m in self.seen if type(m) is ViewChange]
        target = view + 1
        for v in range(view + 1, view + 1 + sim.n):  # a view I am primary of, if I can find one soon
            if sim.config.primary(v) == proc.ident:
                target = v
                break
        vset = [vc for vc in vcs if vc.new_view == target]
        mine = self._view_change(sim, proc, target - 1)
        chosen = tuple((vset + [mine])[: self.rng.randint(1, 2 * sim.config.f + 1)])
        pps: list[PrePrepare] = []
        for pp in (self.pick(PrePrepare) for _ in range(self.rng.randint(0, 3))):
            if pp is not None:
                digest = pp.digest if self.rng.random() < 0.5 else self._digest()
                pps.append(PrePrepare(target, pp.seq, digest, pp.batch, proc.ident))
        return NewView(target, chosen, tuple(pps), proc.ident)


def _rogue(self: Forger, sim: "Sim", proc: "Proc", view: int) -> NewView | None:
    """A NEW-VIEW that is internally consistent but rests on my VIEW-CHANGE alone (it claims
    nothing prepared), for the next view I am primary of, followed by pre-prepares in that view
    that reuse sequence numbers the committee already committed with other batches. Only the
    2f+1 VIEW-CHANGE quorum check stands between it and a lagging replica executing them."""
    rep = proc.replica
    assert rep is not None
    target = next((v for v in range(view + 1, view + 1 + sim.n) if sim.config.primary(v) == proc.ident), None)
    if target is None:
        return None
    vc = ViewChange(target, rep.low_watermark, tuple(getattr(rep, "stable_proof", ())), (), proc.ident)
    nv = NewView(target, (vc,), (), proc.ident)
    pps = [m for m in self.seen if type(m) is PrePrepare and m.seq > rep.low_watermark and m.batch]
    for i, old in enumerate(pps[:4]):
        donor = pps[(i + 1) % len(pps)].batch
        if donor == old.batch:
            continue
        self.rogue.append(PrePrepare(target, old.seq, batch_digest(donor), donor, proc.ident))
    return nv


def _nested(msg: Any) -> list[Any]:
    out: list[Any] = []
    if type(msg) is ViewChange:
        out.extend(msg.checkpoint_proof)
        for c in msg.prepared:
            out.append(c.pre_prepare)
            out.extend(c.prepares)
    elif type(msg) is NewView:
        for vc in msg.view_changes:
            out.append(vc)
            out.extend(_nested(vc))
        out.extend(p for p in msg.pre_prepares)
    elif type(msg) is PreparedCert:
        out.append(msg.pre_prepare)
        out.extend(msg.prepares)
    return out


class Garbage(Recorder):
    """Random bytes, bit-flipped genuine messages, and well-formed msgpack of the wrong shape, all
    through decode_message at the receiver."""

    def __init__(self, rng: random.Random, period: float = 0.005) -> None:
        super().__init__(rng, keep=50)
        self.period = period

    def start(self, sim: "Sim", proc: "Proc") -> None:
        self.every(sim, proc, self.period, self.spray)

    def spray(self, sim: "Sim", proc: "Proc") -> None:
        r = self.rng.randrange(4)
        if r == 0:
            payload = self.rng.randbytes(self.rng.randint(0, 200))
        elif r == 1 and self.seen:
            data = bytearray(encode_message(self.rng.choice(self.seen)))
            for _ in range(self.rng.randint(1, 4)):
                data[self.rng.randrange(len(data))] = self.rng.randrange(256)
            payload = bytes(data)
        elif r == 2:
            payload = encode(self._junk(3))
        else:
            payload = encode({"t": self.rng.choice(["prepare", "commit", "view_change", "new_view", "pre_prepare",
                                                    "checkpoint", "state_transfer", "fetch_state", "reply"]),
                              "view": self._junk(0), "seq": self._junk(0), "digest": self._junk(0),
                              "sender": self._junk(0)})
        sim.send_to_ident(proc.name, self.target(sim, proc), payload)

    def _junk(self, depth: int) -> Any:
        r = self.rng.randrange(8 if depth > 0 else 6)
        if r == 0:
            return self.rng.choice([0, -1, 2**63, 2**64 - 1, -(2**63), 7])
        if r == 1:
            return self.rng.random()
        if r == 2:
            return self.rng.randbytes(self.rng.choice([0, 31, 32, 33]))
        if r == 3:
            return self.rng.choice(["", "r0", "x" * 200, "\u2603"])
        if r == 4:
            return self.rng.choice([None, True, False])
        if r == 5:
            return {}
        if r == 6:
            return [self._junk(depth - 1) for _ in range(self.rng.randint(0, 4))]
        return {str(self.rng.randint(0, 5)): self._junk(depth - 1) for _ in range(self.rng.randint(0, 4))}
