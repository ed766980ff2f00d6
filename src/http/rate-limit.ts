/**
 * Token buckets by key, in memory: a burst of `capacity` requests, then one more every `refillMs`. The
 * map is bounded: full buckets are forgotten first (they are the same as new ones), then the oldest keys.
 */
export interface TokenBucketOptions {
  readonly capacity: number;
  readonly refillMs: number;
  readonly maxKeys?: number;
  readonly now?: () => number;
}

export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly maxKeys: number;
  private readonly now: () => number;

  constructor(private readonly options: TokenBucketOptions) {
    this.maxKeys = options.maxKeys ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  /** Takes one token for `key`: 0 when granted, otherwise the milliseconds until one is available. */
  take(key: string): number {
    const now = this.now();
    let bucket = this.buckets.get(key);
    if (bucket) {
      bucket.tokens = this.refilled(bucket, now);
      bucket.at = now;
    } else {
      if (this.buckets.size >= this.maxKeys) this.prune(now);
      bucket = { tokens: this.options.capacity, at: now };
      this.buckets.set(key, bucket);
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - bucket.tokens) * this.options.refillMs);
  }

  get size(): number {
    return this.buckets.size;
  }

  private refilled(bucket: { tokens: number; at: number }, now: number): number {
    return Math.min(this.options.capacity, bucket.tokens + Math.max(0, now - bucket.at) / this.options.refillMs);
  }

  private prune(now: number): void {
    for (const [key, bucket] of this.buckets) if (this.refilled(bucket, now) >= this.options.capacity) this.buckets.delete(key);
    // Still full of busy keys: drop the oldest (a Map iterates in insertion order).
    for (const key of this.buckets.keys()) {
      if (this.buckets.size < this.maxKeys) break;
      this.buckets.delete(key);
    }
  }
}
