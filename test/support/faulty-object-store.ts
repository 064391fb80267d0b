// A fault-injecting ObjectStore decorator for tests: fails, delays or truncates a chosen share of
// calls, deterministically from a seed, so a failing run can be replayed.
import { S0Error } from '../../src/core/errors.js'
import type { GetOptions, IoOptions, ObjectInfo, ObjectStore } from '../../src/blockstore/object-store.js'

export interface FaultPlan {
  seed?: number
  /** Probability that a call fails with a retryable error (like an S3 503). */
  errorRate?: number
  /** Probability that a put fails after the inner put stored the object (a lost response). */
  lostAckRate?: number
  /** Probability that a get returns a truncated body. */
  truncateRate?: number
  /** Probability and size of an added delay. */
  delayRate?: number
  delayMs?: number
  /** When true, every put fails (an outage). */
  putsDown?: boolean
}

export class FaultyObjectStore implements ObjectStore {
  readonly name: string
  injected = { errors: 0, lostAcks: 0, truncations: 0, delays: 0 }
  private state: number

  constructor(
    readonly inner: ObjectStore,
    public plan: FaultPlan,
  ) {
    this.name = `faulty(${inner.name})`
    this.state = (plan.seed ?? 1) >>> 0 || 1
  }

  private rand(): number {
    // xorshift32: deterministic for a seed.
    let x = this.state
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    this.state = x >>> 0
    return this.state / 0x1_0000_0000
  }

  private async before(op: string): Promise<void> {
    if (this.plan.delayRate && this.rand() < this.plan.delayRate) {
      this.injected.delays++
      await new Promise((r) => setTimeout(r, this.plan.delayMs ?? 5))
    }
    if (this.plan.errorRate && this.rand() < this.plan.errorRate) {
      this.injected.errors++
      throw new S0Error('object_store_unavailable', `injected fault on ${op}`)
    }
  }

  async put(key: string, body: Buffer, opts?: IoOptions): Promise<void> {
    if (this.plan.putsDown) {
      this.injected.errors++
      throw new S0Error('object_store_unavailable', 'injected outage')
    }
    await this.before('put')
    await this.inner.put(key, body, opts)
    if (this.plan.lostAckRate && this.rand() < this.plan.lostAckRate) {
      this.injected.lostAcks++
      throw new S0Error('object_store_unavailable', 'injected lost acknowledgement')
    }
  }

  async get(key: string, opts?: GetOptions): Promise<Buffer> {
    await this.before('get')
    const buf = await this.inner.get(key, opts)
    // A ranged body cut short, as a dropped connection delivers it to a careless client.
    if (opts?.range && this.plan.truncateRate && buf.length > 1 && this.rand() < this.plan.truncateRate) {
      this.injected.truncations++
      return buf.subarray(0, Math.floor(buf.length / 2))
    }
    return buf
  }

  async head(key: string, opts?: IoOptions): Promise<ObjectInfo | undefined> {
    await this.before('head')
    return this.inner.head(key, opts)
  }

  async delete(key: string, opts?: IoOptions): Promise<void> {
    await this.before('delete')
    return this.inner.delete(key, opts)
  }

  list(prefix: string, opts?: IoOptions): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix, opts)
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}
