/**
 * One budget for the bytes that dcmjs-dimse holds for unfinished incoming DIMSE messages, across all
 * associations. Each association may hold a small message (`freePerOwner`) without asking, so C-ECHOs
 * and ordinary N-ACTIONs are never held up; beyond that, bytes count against `limitBytes`, and an
 * association that would take the total over the limit stops being read (TCP backpressure: the sender
 * waits) until others finish or are closed. Memory therefore stays bounded whatever the peers send.
 */
export class BufferBudget<Owner> {
  private readonly held = new Map<Owner, number>();
  private charged = 0;
  private total = 0;
  private readonly waiters = new Map<Owner, () => void>();

  constructor(
    private readonly limitBytes: number,
    private readonly freePerOwner: number,
  ) {}

  /** All bytes held right now (for metrics). */
  get heldBytes(): number {
    return this.total;
  }

  private chargeOf(bytes: number): number {
    return Math.max(0, bytes - this.freePerOwner);
  }

  /** Records what `owner` holds now; returns whether it may keep reading. */
  update(owner: Owner, bytes: number): boolean {
    const before = this.held.get(owner) ?? 0;
    if (bytes === 0) this.held.delete(owner);
    else this.held.set(owner, bytes);
    this.total += bytes - before;
    this.charged += this.chargeOf(bytes) - this.chargeOf(before);
    if (bytes < before) this.wake();
    return this.mayRead(owner);
  }

  mayRead(owner: Owner): boolean {
    return this.charged <= this.limitBytes || this.chargeOf(this.held.get(owner) ?? 0) === 0;
  }

  /** Resolves once `owner` may read again (or was released). One waiter per owner. */
  waitForRoom(owner: Owner): Promise<void> {
    return new Promise((resolve) => {
      if (this.mayRead(owner)) return resolve();
      this.waiters.set(owner, resolve);
    });
  }

  release(owner: Owner): void {
    this.update(owner, 0);
    const waiter = this.waiters.get(owner);
    this.waiters.delete(owner);
    waiter?.();
  }

  private wake(): void {
    for (const [owner, resolve] of this.waiters) {
      if (!this.mayRead(owner)) continue;
      this.waiters.delete(owner);
      resolve();
    }
  }
}
