// The leaves one sandbox CA presents, by server name: an LRU of ready TLS contexts (bounded, each
// re-issued before it expires), single-flight per name, with P-256 keys generated ahead and the
// signature computed on the libuv pool, so a new name costs the event loop ~0.2 ms, not ~1.3 ms.
import crypto from 'node:crypto'
import tls from 'node:tls'
import { LRUCache } from 'lru-cache'
import { limits } from '../../core/limits.js'
import {
  leafTbs,
  loadCa,
  parseServerName,
  signLeafAsync,
  type CertificatePem,
  type LeafKey,
  type SigningCa,
} from './x509.js'

/** A leaf ready to present: its TLS context and when it stops being valid. */
export interface Leaf {
  readonly certPem: string
  readonly context: tls.SecureContext
  readonly notAfterMs: number
}

/** Key pairs generated ahead on the libuv pool; every CA's leaves draw from the one pool. */
class SpareKeys {
  readonly #spare: LeafKey[] = []
  #generating = 0

  async take(): Promise<LeafKey> {
    const key = this.#spare.pop() ?? (await generateLeafKey())
    this.#refill()
    return key
  }

  /** Fills the pool now (the proxy calls it at start so the first names are fast too). */
  prewarm(): void {
    this.#refill()
  }

  #refill(): void {
    while (this.#spare.length + this.#generating < limits.egressLeafSpareKeysMax) {
      this.#generating++
      generateLeafKey().then(
        (k) => {
          this.#generating--
          this.#spare.push(k)
        },
        () => {
          // Key generation does not fail short of memory exhaustion; take() generates its own
          // then and surfaces that error to the connection that needs the key.
          this.#generating--
        },
      )
    }
  }
}

function generateLeafKey(): Promise<LeafKey> {
  return new Promise((resolve, reject) => {
    crypto.generateKeyPair(
      'ec',
      {
        namedCurve: 'prime256v1',
        publicKeyEncoding: { type: 'spki', format: 'der' },
        privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      },
      (err, spkiDer, keyPem) => {
        if (err) reject(err)
        else resolve({ spkiDer, keyPem })
      },
    )
  })
}

const spareKeys = new SpareKeys()

/** Starts generating spare leaf keys in the background. */
export function prewarmLeafKeys(): void {
  spareKeys.prewarm()
}

/** The leaves of one sandbox CA. Construct once per sandbox (at claim or proxy start). */
export class LeafCache {
  readonly ca: SigningCa
  readonly #leaves: LRUCache<string, Promise<Leaf>>

  /** `egress_tls_ca_invalid` when the CA cannot sign. */
  constructor(ca: CertificatePem, opts: { entriesMax?: number } = {}) {
    this.ca = loadCa(ca)
    this.#leaves = new LRUCache({ max: opts.entriesMax ?? limits.egressLeafCacheEntriesMax })
  }

  get caCertPem(): string {
    return this.ca.certPem
  }

  /**
   * The leaf for `serverName` (an SNI, or the destination IP when there was none): cached, or
   * issued now. `egress_tls_name_invalid` for a name no certificate can carry.
   */
  leaf(serverName: string): Promise<Leaf> {
    let san: ReturnType<typeof parseServerName>
    try {
      san = parseServerName(serverName) // before anything is cached
    } catch (err) {
      return Promise.reject(err)
    }
    const key = san.name
    const cached = this.#leaves.get(key)
    if (cached !== undefined) return cached.then((leaf) => (fresh(leaf) ? leaf : this.#issue(key, san)))
    return this.#issue(key, san)
  }

  /** The TLS context presenting the leaf for `serverName`. */
  async secureContext(serverName: string): Promise<tls.SecureContext> {
    return (await this.leaf(serverName)).context
  }

  get size(): number {
    return this.#leaves.size
  }

  #issue(key: string, san: ReturnType<typeof parseServerName>): Promise<Leaf> {
    const pending = this.#leaves.get(key)
    // Single flight: a renewal already under way for this name is shared.
    if (pending !== undefined && pendingRenewals.has(pending)) return pending
    const p = (async (): Promise<Leaf> => {
      const leafKey = await spareKeys.take()
      const now = new Date()
      const tbs = leafTbs(this.ca, [san], leafKey.spkiDer, { now })
      const certPem = await signLeafAsync(this.ca, tbs)
      const context = tls.createSecureContext({ cert: certPem, key: leafKey.keyPem, minVersion: 'TLSv1.2' })
      const notAfterMs = Math.min(now.getTime() + limits.egressLeafValidityMs, this.ca.notAfter.getTime())
      return { certPem, context, notAfterMs }
    })()
    pendingRenewals.add(p)
    this.#leaves.set(key, p)
    p.then(
      () => pendingRenewals.delete(p),
      () => {
        pendingRenewals.delete(p)
        if (this.#leaves.peek(key) === p) this.#leaves.delete(key) // a failure is not cached
      },
    )
    return p
  }
}

/** Leaves still being issued (so a second caller joins instead of issuing again). */
const pendingRenewals = new WeakSet<Promise<Leaf>>()

function fresh(leaf: Leaf): boolean {
  return Date.now() < leaf.notAfterMs - limits.egressLeafRenewBeforeMs
}
