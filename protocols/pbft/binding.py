"""What ties every federation message to one genesis.

Two federations may share a chain id (a test net restarted with new balances, a typo'd copy of a
genesis file) and even members. Nothing signed for one may count in the other, so the genesis hash
is bound into every signature a replica makes:

- each signed envelope's payload starts with the 32-byte genesis hash (the envelope signature
  covers it), so a frame from a node holding another genesis is refused as "wrong-genesis"
  after its signature verified: attributable, and logged as what it is (a misconfigured peer,
  not a forger);
- the signatures nested in certificates (pre-prepares, prepares, checkpoints, view changes) are
  made over GENESIS_PREFIX + hash + the usual signing bytes, so a certificate signed in one
  federation does not verify in the other.

Transactions carry the genesis hash themselves (protocols/ledger/tx.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.errors import ProtocolError
from protocols.pbft.signing import Signer, Verifier

GENESIS_PREFIX = b"sovereign-genesis-v1\x00"
HASH_LEN = 32


@dataclass(frozen=True)
class ChainBinding:
    digest: bytes  # the genesis hash, raw

    def __post_init__(self) -> None:
        if type(self.digest) is not bytes or len(self.digest) != HASH_LEN:
            raise ValueError(f"a genesis hash is {HASH_LEN} bytes")

    @classmethod
    def of(cls, genesis_hash: str) -> ChainBinding:
        """From Genesis.hash (hex)."""
        return cls(bytes.fromhex(genesis_hash))

    def seal(self, payload: bytes) -> bytes:
        """An envelope payload bound to this genesis."""
        return self.digest + payload

    def open(self, payload: bytes) -> bytes:
        """The inner payload of a bound envelope payload; ProtocolError if it names another genesis."""
        if len(payload) < HASH_LEN:
            raise ProtocolError("malformed", "payload shorter than a genesis hash")
        theirs = payload[:HASH_LEN]
        if theirs != self.digest:
            raise ProtocolError(
                "wrong-genesis", f"the sender holds genesis {theirs.hex()[:16]}…, ours is {self.digest.hex()[:16]}…"
            )
        return payload[HASH_LEN:]

    def signer(self, sign: Signer) -> Signer:
        prefix = GENESIS_PREFIX + self.digest
        return lambda data: sign(prefix + data)

    def verifier(self, verify: Verifier) -> Verifier:
        prefix = GENESIS_PREFIX + self.digest
        return lambda peer_id, sig, data: verify(peer_id, sig, prefix + data)
