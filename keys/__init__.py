"""Who a node is: keypair files, peer ids, signing, signed envelopes, capability cards.

Imports only the stdlib, cryptography and msgpack (ARCHITECTURE.md).
"""
