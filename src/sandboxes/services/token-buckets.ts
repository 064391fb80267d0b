// Token buckets by key (a route's rate limit, a sandbox's event budget), bounded in number: the
// least recently used go first, and a bucket that comes back starts full, which is what it would
// have refilled to anyway after a while unused.
import { LRUCache } from 'lru-cache'

export class TokenBuckets {
  private readonly buckets: LRUCache<string, { tokens: number; at: number }>

  constructor(max: number) {
    this.buckets = new LRUCache({ max })
  }

  /**
   * Takes one token from `key`'s bucket (`rate` per second, up to `burst`): 0 if there was one,
   * else the seconds until there will be.
   */
  take(key: string, rate: number, burst: number): number {
    const now = Date.now()
    const b = this.buckets.get(key) ?? { tokens: burst, at: now }
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate)
    b.at = now
    this.buckets.set(key, b)
    if (b.tokens >= 1) {
      b.tokens -= 1
      return 0
    }
    return rate > 0 ? (1 - b.tokens) / rate : Infinity
  }
}
