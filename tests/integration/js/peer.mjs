// A js-libp2p peer for tests/integration/test_js_interop.py.
//
//   node peer.mjs <daemon multiaddr ending in /p2p/ID> <cards wanted>
//
// It dials the daemon (TCP, Noise, yamux), subscribes to the card topic under GossipSub's
// StrictNoSign policy, verifies every card it receives (the envelope's and the card's Ed25519
// signatures, against the key inside the sender's peer id), and once it has the wanted number of
// distinct cards publishes a card-shaped message with a bad signature, which the daemon must refuse.
// It reports one JSON object per line on stdout and exits when stdin closes.

import { createPublicKey, verify } from 'node:crypto'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { decode, encode } from '@msgpack/msgpack'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

const TOPIC = 'sovereign/cards/1'
const ENVELOPE_PREFIX = 'sovereign-envelope-v1\0'
const CARD_PREFIX = 'sovereign-card-v1\0'
const ENVELOPE_KEYS = ['payload', 'sender', 'seq', 'sig', 'ts', 'type', 'v']
const CARD_KEYS = ['addrs', 'capabilities', 'expires_at_ms', 'issued_at_ms', 'peer_id', 'sig', 'v', 'version']
const MAX_FUTURE_SKEW_MS = 30_000
// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32 raw key bytes follow it.
const ED25519_SPKI = Buffer.from('302a300506032b6570032100', 'hex')
const LIFETIME_MS = 60_000 // a leftover process never outlives its test for long

const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const utf8 = (s) => Buffer.from(s, 'utf8')
const hex = (bytes) => Buffer.from(bytes).toString('hex')

function check (ok, what) {
  if (!ok) throw new Error(what)
}

function hasExactly (obj, keys) {
  return obj !== null && typeof obj === 'object' && !Array.isArray(obj) &&
    JSON.stringify(Object.keys(obj).sort()) === JSON.stringify(keys)
}

function ed25519Verify (peerId, signature, data) {
  const id = peerIdFromString(peerId)
  check(id.type === 'Ed25519', `${peerId} is not an Ed25519 peer id`)
  const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI, id.publicKey.raw]), format: 'der', type: 'spki' })
  return verify(null, data, key, signature)
}

// keys/envelope.py: the signature covers prefix + domain + NUL + msgpack([sender, type, seq, ts, payload]).
function openEnvelope (data, domain) {
  const env = decode(data)
  check(hasExactly(env, ENVELOPE_KEYS), 'not an envelope (wrong fields)')
  check(env.v === 1, `unsupported envelope version ${env.v}`)
  check(env.payload instanceof Uint8Array && env.sig instanceof Uint8Array, 'payload and sig must be bytes')
  const signed = Buffer.concat([utf8(ENVELOPE_PREFIX), utf8(domain), Buffer.from([0]),
    encode([env.sender, env.type, env.seq, env.ts, env.payload])])
  check(ed25519Verify(env.sender, env.sig, signed), 'bad envelope signature')
  return env
}

// msgpack headers, for the parts of the signed bytes that must keep a given key order (msgpack-js
// packs an object's integer-like keys first, and a Map not at all).
function arrayHeader (n) {
  return n < 16 ? Buffer.from([0x90 | n]) : Buffer.from([0xdc, n >> 8, n & 0xff])
}

function mapHeader (n) {
  return n < 16 ? Buffer.from([0x80 | n]) : Buffer.from([0xde, n >> 8, n & 0xff])
}

// keys/card.py: the signature covers prefix + msgpack([peer_id, addrs, caps, version, issued, expires])
// with the capabilities as [[name, {param: value} sorted by param]] sorted by name. Floats are not
// supported here (msgpack-js re-encodes an integral float as an int); our cards carry none.
function verifyCard (payload, sender, nowMs) {
  const card = decode(payload)
  check(hasExactly(card, CARD_KEYS), 'not a card (wrong fields)')
  check(card.v === 1, `unsupported card version ${card.v}`)
  check(card.peer_id === sender, 'card of one peer sealed by another')
  check(card.issued_at_ms <= nowMs + MAX_FUTURE_SKEW_MS && nowMs < card.expires_at_ms, 'card not valid now')
  const names = Object.keys(card.capabilities).sort()
  const caps = [arrayHeader(names.length)]
  for (const name of names) {
    const params = card.capabilities[name]
    const keys = Object.keys(params).sort()
    caps.push(arrayHeader(2), encode(name), mapHeader(keys.length), ...keys.flatMap((k) => [encode(k), encode(params[k])]))
  }
  const body = Buffer.concat([arrayHeader(6), encode(card.peer_id), encode(card.addrs), ...caps,
    encode(card.version), encode(card.issued_at_ms), encode(card.expires_at_ms)])
  check(ed25519Verify(card.peer_id, card.sig, Buffer.concat([utf8(CARD_PREFIX), body])), 'bad card signature')
  return card
}

function garbageCard (me, nowMs) {
  const card = {
    v: 1, peer_id: me, addrs: [], capabilities: {}, version: 'js', issued_at_ms: nowMs,
    expires_at_ms: nowMs + 30_000, sig: new Uint8Array(64)
  }
  return encode({ v: 1, sender: me, type: 'card', seq: 1, ts: nowMs, payload: encode(card), sig: new Uint8Array(64) })
}

async function main () {
  const [daemonAddr, wantedArg] = process.argv.slice(2)
  const wanted = Number(wantedArg)
  const daemonId = multiaddr(daemonAddr).getPeerId()
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({ globalSignaturePolicy: 'StrictNoSign', emitSelf: false })
    }
  })
  const me = node.peerId.toString()
  const stop = async (code) => {
    await node.stop().catch(() => {})
    process.exit(code)
  }
  process.stdin.on('end', () => stop(0))
  process.stdin.resume()
  setTimeout(() => { say({ event: 'timeout' }); stop(3) }, LIFETIME_MS).unref()

  const pubsub = node.services.pubsub
  const seqs = new Set()
  let published = false
  pubsub.addEventListener('gossipsub:message', (evt) => {
    const { propagationSource, msgId, msg } = evt.detail
    if (msg.topic !== TOPIC || published) return
    try {
      check(msg.type === 'unsigned', `a ${msg.type} message under StrictNoSign`)
      const env = openEnvelope(msg.data, TOPIC)
      check(env.type === 'card', `unexpected message type ${env.type}`)
      const card = verifyCard(env.payload, env.sender, Date.now())
      seqs.add(env.seq)
      say({
        event: 'card', via: propagationSource.toString(), sender: env.sender, seq: env.seq,
        addrs: card.addrs, msg_id: msgId, data: hex(msg.data)
      })
    } catch (err) {
      say({ event: 'invalid', error: String(err.message ?? err), data: hex(msg.data) })
      return
    }
    if (seqs.size >= wanted) {
      published = true
      pubsub.publish(TOPIC, garbageCard(me, Date.now()))
        .then(({ recipients }) => say({ event: 'published', recipients: recipients.map(String) }))
        .catch((err) => say({ event: 'publish-failed', error: String(err.message ?? err) }))
    }
  })
  const identified = new Promise((resolve) => node.addEventListener('peer:identify', (evt) => {
    if (evt.detail.peerId.toString() === daemonId) resolve(evt.detail.protocols)
  }))
  pubsub.subscribe(TOPIC)
  await node.dial(multiaddr(daemonAddr))
  say({ event: 'ready', peer_id: me, daemon_protocols: await identified })
}

main().catch((err) => {
  say({ event: 'error', error: String(err.stack ?? err) })
  process.exit(2)
})
