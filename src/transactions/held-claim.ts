/**
 * A claim kept alive while its work runs: renewed every third of its lifetime, so that only a node that
 * stopped (crashed, cut off from the database, frozen) loses it. Work asks `confirm()` right before an
 * act that must not happen twice without need (sending a report): it renews, and says whether the claim
 * is still ours.
 */
import type { Logger } from 'pino';
import type { Claim, TransactionRepository } from './repository.js';

export class HeldClaim {
  private current: Claim;
  private lost = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly repo: TransactionRepository,
    claim: Claim,
    private readonly ttlMs: number,
    private readonly now: () => number,
    private readonly logger: Logger,
  ) {
    this.current = claim;
    this.start();
  }

  private start(): void {
    this.stop();
    this.timer = setInterval(() => void this.renew(), Math.max(50, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
  }

  get claim(): Claim {
    return this.current;
  }

  get id(): number {
    return this.current.id;
  }

  /** Another node took it over (or it was released): nothing more may be written or sent under it. */
  get isLost(): boolean {
    return this.lost;
  }

  /**
   * A new claim of the same transaction (claimed again after a step that released the previous one, or
   * the same claim with a fresher record): renewed from now on.
   */
  replace(claim: Claim): void {
    this.current = claim;
    this.lost = false;
    this.start();
  }

  /**
   * The next write ends this claim (it releases it: a verdict, a recorded attempt). Renewals stop first:
   * one landing after that write would find the claim gone and take it for a loss to another node.
   */
  ending(): void {
    this.stop();
  }

  /**
   * Renews now. True when the claim is still ours; false when another node holds it, or when the database
   * cannot be asked and the claim has run out meanwhile (then another node may be at the same work).
   */
  async confirm(): Promise<boolean> {
    await this.renew();
    return !this.lost && this.current.until > this.now();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async renew(): Promise<void> {
    if (this.lost) return;
    const claim = this.current;
    try {
      const renewed = await this.repo.renew(claim, this.now(), this.ttlMs);
      if (claim !== this.current) return; // replaced while renewing
      if (renewed) {
        this.current = renewed;
        return;
      }
      this.lost = true;
      this.stop();
      this.logger.warn({ transactionId: claim.id, owner: claim.owner, epoch: claim.epoch, kind: claim.kind }, 'claim lost: another node has taken this transaction over; this node stops working on it');
    } catch (error) {
      // The database did not answer: the claim holds until its expiry; confirm() then says it is gone.
      this.logger.warn({ err: error instanceof Error ? error.message : String(error), transactionId: claim.id }, 'could not renew a claim');
    }
  }
}
